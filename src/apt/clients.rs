//! apt clients: which machines fetch which ring's apt index, so that servers pointed
//! at a ring's repository without an agent are not invisible.
//!
//! The apt handlers note each index fetch (`InRelease`, `Release`, `Packages*`,
//! by-hash) in memory ([`AptClients::note`]); the server writes the notes every
//! [`FLUSH_EVERY`] in one transaction ([`flush`]). apt traffic therefore costs the
//! database writer at most one small transaction per interval, however many requests
//! arrive, and memory is bounded: at most [`MAX_PENDING`] distinct (ring, address,
//! user agent) keys wait between flushes (further new keys are dropped and counted;
//! known keys still count). The table keeps at most [`MAX_ROWS`] rows, the most
//! recently seen. Every time is the appliance's clock at the request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, params};
use serde::Serialize;

use crate::error::DbError;

/// How often noted fetches are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// Distinct keys held in memory between two flushes.
pub const MAX_PENDING: usize = 4096;
/// Rows kept in `apt_clients`; the least recently seen go first.
pub const MAX_ROWS: usize = 2000;
/// Longest user agent kept (apt's is ~40 bytes; a longer one is someone else's).
pub const MAX_USER_AGENT: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    ring: String,
    address: String,
    user_agent: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    first: Timestamp,
    last: Timestamp,
    requests: u64,
}

/// Index fetches noted since the last flush.
#[derive(Debug, Default)]
pub struct AptClients {
    // A std Mutex: the critical section is a map update, never held across an await.
    pending: Mutex<HashMap<Key, Seen>>,
    dropped: AtomicU64,
}

impl AptClients {
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes one fetch of `ring`'s index by `address` with `user_agent` at `now`.
    pub fn note(&self, ring: &str, address: &str, user_agent: &str, now: Timestamp) {
        let key = Key {
            ring: ring.to_owned(),
            address: address.to_owned(),
            user_agent: clean_user_agent(user_agent),
        };
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let full = p.len() >= MAX_PENDING;
        match p.get_mut(&key) {
            Some(s) => {
                s.first = s.first.min(now);
                s.last = s.last.max(now);
                s.requests = s.requests.saturating_add(1);
            }
            None if full => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                p.insert(
                    key,
                    Seen {
                        first: now,
                        last: now,
                        requests: 1,
                    },
                );
            }
        }
    }

    /// Keys waiting for the next flush.
    pub fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// New keys refused because [`MAX_PENDING`] were waiting (since start).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn take(&self) -> HashMap<Key, Seen> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts a batch back after a failed write (merged with what arrived meanwhile).
    fn restore(&self, batch: HashMap<Key, Seen>) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (k, s) in batch {
            let full = p.len() >= MAX_PENDING;
            match p.get_mut(&k) {
                Some(cur) => {
                    cur.first = cur.first.min(s.first);
                    cur.last = cur.last.max(s.last);
                    cur.requests = cur.requests.saturating_add(s.requests);
                }
                None if full => {
                    self.dropped.fetch_add(s.requests, Ordering::Relaxed);
                }
                None => {
                    p.insert(k, s);
                }
            }
        }
    }
}

/// Printable ASCII only, at most [`MAX_USER_AGENT`] bytes: it is shown on a page and
/// in a terminal.
fn clean_user_agent(ua: &str) -> String {
    let s: String = ua
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(MAX_USER_AGENT)
        .collect();
    if s.trim().is_empty() {
        "(none)".into()
    } else {
        s.trim().to_owned()
    }
}

/// Writes the noted fetches in one transaction and trims the table to [`MAX_ROWS`];
/// returns how many keys were written. On failure the batch is kept for the next
/// flush.
pub fn flush(db: &crate::db::Db, clients: &AptClients) -> Result<usize, DbError> {
    let batch = clients.take();
    if batch.is_empty() {
        return Ok(0);
    }
    let r = db.write_blocking(|tx| {
        let mut up = tx.prepare_cached(
            "INSERT INTO apt_clients (ring, address, user_agent, first_seen, last_seen, requests)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (ring, address, user_agent) DO UPDATE SET
               first_seen = min(first_seen, excluded.first_seen),
               last_seen = max(last_seen, excluded.last_seen),
               requests = requests + excluded.requests",
        )?;
        for (k, s) in &batch {
            up.execute(params![
                k.ring,
                k.address,
                k.user_agent,
                s.first.to_string(),
                s.last.to_string(),
                i64::try_from(s.requests).unwrap_or(i64::MAX),
            ])?;
        }
        // Timestamps are stored in one format (UTC, `Z`), so text order is time order.
        tx.execute(
            "DELETE FROM apt_clients WHERE (ring, address, user_agent) IN (
               SELECT ring, address, user_agent FROM apt_clients
               ORDER BY last_seen DESC LIMIT -1 OFFSET ?1)",
            [i64::try_from(MAX_ROWS).unwrap_or(i64::MAX)],
        )?;
        Ok::<_, DbError>(())
    });
    match r {
        Ok(()) => Ok(batch.len()),
        Err(e) => {
            clients.restore(batch);
            Err(e)
        }
    }
}

/// One row of the apt clients list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AptClient {
    pub ring: String,
    pub address: String,
    pub user_agent: String,
    pub first_seen: String,
    pub last_seen: String,
    pub requests: i64,
    /// The enrolled host that reported this address in its inventory, if one did (an
    /// agent with the apt backend fetches the index too).
    pub host: Option<String>,
}

/// Every recorded apt client, most recently seen first.
///
/// The host names come from the addresses the agents reported, read from
/// `inventory_facts` (a small row per host), not from the inventories themselves:
/// parsing 10,000 inventories cost the Hosts page ~240 ms per view (BENCHMARKS.md).
pub fn list(conn: &Connection) -> Result<Vec<AptClient>, DbError> {
    let mut st = conn.prepare(
        "SELECT ring, address, user_agent, first_seen, last_seen, requests FROM apt_clients
         ORDER BY last_seen DESC, ring, address, user_agent",
    )?;
    let mut out = st
        .query_map([], |r| {
            Ok(AptClient {
                ring: r.get(0)?,
                address: r.get(1)?,
                user_agent: r.get(2)?,
                first_seen: r.get(3)?,
                last_seen: r.get(4)?,
                requests: r.get(5)?,
                host: None,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    if out.is_empty() {
        return Ok(out);
    }
    let mut by_address: HashMap<String, String> = HashMap::new();
    let mut st = conn.prepare(
        "SELECT h.hostname, f.addresses FROM hosts h JOIN inventory_facts f ON f.host_id = h.id
         WHERE h.revoked_at IS NULL ORDER BY h.hostname, h.id",
    )?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (name, addresses) = row?;
        let Ok(addresses) = serde_json::from_str::<Vec<String>>(&addresses) else {
            continue;
        };
        for addr in addresses {
            // Inventory addresses may carry a prefix length (`10.0.0.5/24`).
            let ip = addr.split('/').next().unwrap_or(&addr).to_owned();
            by_address.entry(ip).or_insert_with(|| name.clone());
        }
    }
    for c in &mut out {
        c.host = by_address.get(&c.address).cloned();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, crate::db::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("t.db"), Default::default()).unwrap();
        (dir, db)
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn fetches_coalesce_into_one_row_per_client_and_ring() {
        let (_d, db) = db();
        let c = AptClients::new();
        let apt = "Debian APT-HTTP/1.3 (2.6.1)";
        for i in 0..50 {
            c.note(
                "pilot",
                "10.0.0.7",
                apt,
                t("2026-12-07T10:00:00Z") + jiff::SignedDuration::from_secs(i),
            );
        }
        c.note("broad", "10.0.0.7", apt, t("2026-12-07T10:05:00Z"));
        c.note(
            "pilot",
            "10.0.0.8",
            "curl/8\u{1b}[31m",
            t("2026-12-07T10:06:00Z"),
        );
        assert_eq!(c.pending(), 3);
        assert_eq!(flush(&db, &c).unwrap(), 3);
        assert_eq!(c.pending(), 0);
        // A later batch moves last_seen and adds to the count; first_seen stays.
        c.note("pilot", "10.0.0.7", apt, t("2026-12-07T11:00:00Z"));
        assert_eq!(flush(&db, &c).unwrap(), 1);
        assert_eq!(flush(&db, &c).unwrap(), 0, "nothing pending: no write");
        let rows = db.read_blocking(list).unwrap();
        assert_eq!(rows.len(), 3);
        let pilot7 = rows
            .iter()
            .find(|r| r.ring == "pilot" && r.address == "10.0.0.7")
            .unwrap();
        assert_eq!(pilot7.requests, 51);
        assert_eq!(pilot7.first_seen, "2026-12-07T10:00:00Z");
        assert_eq!(pilot7.last_seen, "2026-12-07T11:00:00Z");
        assert_eq!(pilot7.user_agent, apt);
        assert_eq!(rows[0], *pilot7, "most recently seen first");
        let curl = rows.iter().find(|r| r.address == "10.0.0.8").unwrap();
        assert_eq!(curl.user_agent, "curl/8[31m", "no control characters");
        assert_eq!(curl.host, None);
    }

    #[test]
    fn memory_and_rows_are_bounded() {
        let (_d, db) = db();
        let c = AptClients::new();
        let now = t("2026-12-07T10:00:00Z");
        for i in 0..MAX_PENDING + 10 {
            c.note(
                "pilot",
                &format!("10.{}.{}.1", i / 256, i % 256),
                "apt",
                now,
            );
        }
        assert_eq!(c.pending(), MAX_PENDING);
        assert_eq!(c.dropped(), 10);
        // A known key still counts when the map is full.
        c.note("pilot", "10.0.0.1", "apt", now);
        assert_eq!(c.dropped(), 10);
        flush(&db, &c).unwrap();
        let n = db
            .read_blocking(|conn| {
                conn.query_row("SELECT count(*) FROM apt_clients", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map_err(DbError::from)
            })
            .unwrap();
        assert_eq!(n, MAX_ROWS as i64);
        let long = "x".repeat(1000);
        assert_eq!(clean_user_agent(&long).len(), MAX_USER_AGENT);
        assert_eq!(clean_user_agent(""), "(none)");
    }
}
