//! Replay protection for signed agent requests, per host and across restarts.
//!
//! **Within a run:** the signatures each host had accepted while they are still within
//! the date check's window ([`MAX_SKEW`]), one bounded map per host. A host that fills
//! its own map gets 503; no other host is affected (issue [8] item 2).
//!
//! **Across restarts** (item 3), without a write per request: the database keeps a
//! *horizon*, a date that no request accepted without a *floor* was dated after. The
//! server renews it to `now + HORIZON_LEASE` every [`HORIZON_RENEW`] (and at start,
//! before it serves), and a request dated past the horizon (a host whose clock runs
//! ahead) first commits its host's floor, the newest such date. After a restart,
//! whether clean or a crash, a request dated at or before the previous run's horizon,
//! or at or before its host's floor, is refused: every request an earlier run
//! accepted is one of those. So that honest requests are not refused, the server
//! starts serving only once its clock has passed the previous horizon
//! ([`ReplayGuard::settle`]: at most the lease after a crash; nothing after a clean
//! shutdown, which lowers the horizon to the newest date it accepted). A host whose
//! clock is behind can still be refused for a moment: 503 with `Retry-After`, which
//! the agent waits out and signs again.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::DbError;
use crate::fleet::signing::{AuthError, MAX_SKEW};

/// How far ahead of the clock the stored horizon is kept.
/// Short, because a start after a crash waits out what is left of it: a renewal every
/// second costs one tiny commit.
pub const HORIZON_LEASE: SignedDuration = SignedDuration::from_secs(3);
/// How often the server renews it (well inside the lease).
pub const HORIZON_RENEW: std::time::Duration = std::time::Duration::from_secs(1);

/// Dates as stored: nanoseconds since the epoch (a request's date is within minutes of
/// the appliance's clock, so it fits an `i64` until 2262).
fn ns(t: Timestamp) -> i64 {
    i64::try_from(t.as_nanosecond()).unwrap_or(i64::MAX)
}

fn from_ns(n: i64) -> Timestamp {
    Timestamp::from_nanosecond(i128::from(n)).unwrap_or(Timestamp::MAX)
}

/// The stored horizon, if any run wrote one.
pub fn stored_horizon(conn: &Connection) -> Result<Option<Timestamp>, DbError> {
    Ok(conn
        .query_row(
            "SELECT until_ns FROM agent_replay_horizon WHERE id = 1",
            [],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .map(from_ns))
}

/// Stores `until` as the horizon. It only moves back when `lower` is set (a clean
/// shutdown, which knows every date it accepted).
pub fn store_horizon(tx: &Transaction<'_>, until: Timestamp, lower: bool) -> Result<(), DbError> {
    let sql = if lower {
        "INSERT INTO agent_replay_horizon (id, until_ns) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET until_ns = excluded.until_ns"
    } else {
        "INSERT INTO agent_replay_horizon (id, until_ns) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET until_ns = max(until_ns, excluded.until_ns)"
    };
    tx.execute(sql, [ns(until)])?;
    Ok(())
}

/// Raises `host_id`'s floor to `date` (never lowers it).
pub fn store_floor(tx: &Transaction<'_>, host_id: &str, date: Timestamp) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO agent_replay_floors (host_id, floor_ns) VALUES (?1, ?2)
         ON CONFLICT (host_id) DO UPDATE SET floor_ns = max(floor_ns, excluded.floor_ns)",
        params![host_id, ns(date)],
    )?;
    Ok(())
}

fn stored_floors(conn: &Connection) -> Result<HashMap<String, Timestamp>, DbError> {
    let mut st = conn.prepare("SELECT host_id, floor_ns FROM agent_replay_floors")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    rows.map(|r| r.map(|(h, n)| (h, from_ns(n))).map_err(DbError::from))
        .collect()
}

/// What a request needs before it may be acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remembered {
    /// Nothing more: its date is inside the stored horizon.
    Done,
    /// Commit this floor for the host first ([`store_floor`]).
    NeedsFloor(Timestamp),
}

/// The replay memory of one server run.
pub struct ReplayGuard {
    /// Accepted signatures by host. A std Mutex: short map operations, never held
    /// across an await.
    seen: Mutex<HashMap<String, HashMap<[u8; 64], Timestamp>>>,
    per_host: usize,
    /// Requests dated at or before this may have been accepted by an earlier run.
    restart_floor: Timestamp,
    /// Per-host floors the earlier runs committed.
    floors: HashMap<String, Timestamp>,
    /// The stored horizon as last committed, and the newest date accepted.
    state: Mutex<(Timestamp, Timestamp)>,
}

impl ReplayGuard {
    /// A guard that remembers at most `per_host` signatures per host, with nothing
    /// from earlier runs (tests, and a database that never served).
    /// Nothing is stored for it, so no request ever needs a floor.
    pub fn new(per_host: usize) -> Self {
        let g = Self::with_history(per_host, Timestamp::MIN, HashMap::new());
        g.state.lock().unwrap_or_else(|p| p.into_inner()).0 = Timestamp::MAX;
        g
    }

    fn with_history(
        per_host: usize,
        restart_floor: Timestamp,
        floors: HashMap<String, Timestamp>,
    ) -> Self {
        Self {
            seen: Mutex::new(HashMap::new()),
            per_host,
            restart_floor,
            floors,
            state: Mutex::new((restart_floor, restart_floor)),
        }
    }

    /// The guard for a server starting at `now`: the earlier runs' horizon and floors
    /// are read, and the new horizon is committed before this returns, so the first
    /// request already finds it. A stored horizon further ahead than any run could have
    /// written means the appliance's clock went back; it is then cut to the lease (and
    /// a warning logged) rather than refusing every request until the clock catches up.
    pub fn open(db: &crate::db::Db, per_host: usize, now: Timestamp) -> Result<Self, DbError> {
        let (prev, floors) =
            db.read_blocking(|c| Ok::<_, DbError>((stored_horizon(c)?, stored_floors(c)?)))?;
        let lease_end = now.checked_add(HORIZON_LEASE).unwrap_or(now);
        let mut restart_floor = prev.unwrap_or(Timestamp::MIN);
        if restart_floor > lease_end {
            tracing::warn!(
                stored = %restart_floor, %now,
                "the replay horizon is ahead of the clock (the clock went back?); cut to the lease"
            );
            restart_floor = lease_end;
        }
        db.write_blocking(|tx| store_horizon(tx, restart_floor.max(lease_end), true))?;
        let g = Self::with_history(per_host, restart_floor, floors);
        g.state.lock().unwrap_or_else(|p| p.into_inner()).0 = restart_floor.max(lease_end);
        Ok(g)
    }

    /// How long a server starting at `now` should wait before it serves agents: until
    /// its clock has passed the previous run's horizon (at most [`HORIZON_LEASE`]).
    pub fn settle(&self, now: Timestamp) -> std::time::Duration {
        let left = self.restart_floor.duration_since(now);
        let left = left.clamp(SignedDuration::ZERO, HORIZON_LEASE) + SignedDuration::from_millis(1);
        std::time::Duration::try_from(left).unwrap_or_default()
    }

    /// Renews the stored horizon to `now + HORIZON_LEASE`.
    pub fn renew(&self, db: &crate::db::Db, now: Timestamp) -> Result<(), DbError> {
        let until = now.checked_add(HORIZON_LEASE).unwrap_or(now);
        db.write_blocking(|tx| store_horizon(tx, until, false))?;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.0 = st.0.max(until);
        Ok(())
    }

    /// At a clean shutdown (after the listeners stopped): lowers the stored horizon to
    /// the newest date this run accepted (never below what the earlier runs need).
    pub fn close(&self, db: &crate::db::Db) -> Result<(), DbError> {
        let newest = self.state.lock().unwrap_or_else(|p| p.into_inner()).1;
        let until = newest.max(self.restart_floor);
        db.write_blocking(|tx| store_horizon(tx, until, true))
    }

    /// Refuses `sig` from `host` (dated `date`) if it was accepted before, in this run
    /// or an earlier one. Remembers nothing (see [`ReplayGuard::remember`]).
    pub fn check(&self, host: &str, sig: &[u8; 64], date: Timestamp) -> Result<(), AuthError> {
        if date <= self.restart_floor {
            let wait = self.restart_floor.duration_since(date).as_secs().max(0) + 1;
            return Err(AuthError::SignedBeforeRestart {
                retry_after_s: u64::try_from(wait).unwrap_or(1),
            });
        }
        if self.floors.get(host).is_some_and(|f| date <= *f) {
            return Err(AuthError::Replay);
        }
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.get(host).is_some_and(|m| m.contains_key(sig)) {
            return Err(AuthError::Replay);
        }
        Ok(())
    }

    /// Remembers `sig` (which [`ReplayGuard::check`] passed) unless a concurrent twin
    /// got there first. Entries older than the date window are pruned when the host's
    /// map is full; still full, the host gets `Busy` (503), and only that host.
    pub fn remember(
        &self,
        host: &str,
        sig: [u8; 64],
        date: Timestamp,
        now: Timestamp,
    ) -> Result<Remembered, AuthError> {
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let mine = seen.entry(host.to_string()).or_default();
            if mine.contains_key(&sig) {
                return Err(AuthError::Replay);
            }
            if mine.len() >= self.per_host {
                let oldest_live = now.checked_sub(MAX_SKEW).unwrap_or(now);
                mine.retain(|_, d| *d >= oldest_live);
                if mine.len() >= self.per_host {
                    return Err(AuthError::Busy);
                }
            }
            mine.insert(sig, date);
            // Hosts whose every entry expired are dropped now and then, so the outer
            // map holds only recently active hosts.
            if seen.len() > 1024 && seen.len().is_power_of_two() {
                let oldest_live = now.checked_sub(MAX_SKEW).unwrap_or(now);
                seen.retain(|_, m| m.values().any(|d| *d >= oldest_live));
            }
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.1 = st.1.max(date);
        Ok(if date > st.0 {
            Remembered::NeedsFloor(date)
        } else {
            Remembered::Done
        })
    }

    /// How many signatures are remembered for `host` (for tests and metrics).
    pub fn remembered(&self, host: &str) -> usize {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(host).map_or(0, HashMap::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn bounded_per_host_and_pruned_by_time() {
        let g = ReplayGuard::new(2);
        let now = t("2026-11-27T10:00:00Z");
        for s in [1, 2] {
            g.check("a", &[s; 64], now).unwrap();
            g.remember("a", [s; 64], now, now).unwrap();
        }
        // Host a's map is full of live entries: a is refused...
        assert_eq!(g.remember("a", [3; 64], now, now), Err(AuthError::Busy));
        // ... and host b is not.
        g.check("b", &[3; 64], now).unwrap();
        assert_eq!(g.remember("b", [3; 64], now, now), Ok(Remembered::Done));
        // The same signature from b again is a replay, from a it is not b's.
        assert_eq!(g.check("b", &[3; 64], now), Err(AuthError::Replay));
        assert_eq!(g.remember("b", [3; 64], now, now), Err(AuthError::Replay));
        assert_eq!(g.remembered("a"), 2);
        // Past the window, a's old entries go and it may sign again.
        let later = now + SignedDuration::from_secs(301);
        assert_eq!(g.remember("a", [3; 64], later, later), Ok(Remembered::Done));
        assert_eq!(g.remembered("a"), 1);
    }

    #[test]
    fn a_run_refuses_what_the_earlier_runs_accepted() {
        let d = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&d.path().join("t.db"), Default::default()).unwrap();
        let host = crate::fleet::hosts::tests_support::enrolled(
            &db,
            t("2026-11-27T09:00:00Z"),
            &crate::trust::keys::Ed25519Key::generate(&mut rand::rngs::OsRng),
        );
        let start = t("2026-11-27T10:00:00Z");
        let run1 = ReplayGuard::open(&db, 100, start).unwrap();
        let ahead = start + SignedDuration::from_secs(120);
        let accepted = [
            (start + SignedDuration::from_secs(2), [1; 64]),
            // A host whose clock is two minutes ahead: past the horizon, so its floor
            // must be committed first.
            (ahead, [2; 64]),
        ];
        let now = start + SignedDuration::from_secs(2);
        assert_eq!(
            run1.remember(&host, accepted[0].1, accepted[0].0, now),
            Ok(Remembered::Done)
        );
        assert_eq!(
            run1.remember(&host, accepted[1].1, accepted[1].0, now),
            Ok(Remembered::NeedsFloor(ahead))
        );
        db.write_blocking(|tx| store_floor(tx, &host, ahead))
            .unwrap();
        run1.renew(&db, now).unwrap();
        // A crash (no close): the next run refuses both, and an honest request once
        // the old lease has passed is fine.
        let restart = now + SignedDuration::from_secs(1);
        let run2 = ReplayGuard::open(&db, 100, restart).unwrap();
        // It waits out the rest of the old lease before it serves.
        let left = run2.settle(restart);
        assert!(
            left > std::time::Duration::from_secs(1) && left <= HORIZON_LEASE.unsigned_abs(),
            "{left:?}"
        );
        let e = run2
            .check(&host, &accepted[0].1, accepted[0].0)
            .unwrap_err();
        assert!(matches!(e, AuthError::SignedBeforeRestart { .. }), "{e}");
        assert_eq!(
            run2.check(&host, &accepted[1].1, accepted[1].0),
            Err(AuthError::Replay)
        );
        // (Another host: this one's floor is two minutes ahead.)
        let fresh = now + HORIZON_LEASE + SignedDuration::from_secs(1);
        run2.check("h-other", &[9; 64], fresh).unwrap();
        assert!(run2.check(&host, &[9; 64], fresh).is_err());
        // A clean shutdown lowers the horizon to the newest accepted date: after the
        // next start, a request dated just after it passes at once.
        run2.remember("h-other", [9; 64], fresh, fresh).unwrap();
        run2.close(&db).unwrap();
        let run3 = ReplayGuard::open(&db, 100, fresh).unwrap();
        assert!(run3.settle(fresh) <= std::time::Duration::from_millis(1));
        assert!(run3.check("h-other", &[9; 64], fresh).is_err());
        run3.check("h-other", &[10; 64], fresh + SignedDuration::from_millis(1))
            .unwrap();
    }

    #[test]
    fn a_horizon_far_ahead_of_the_clock_is_cut_to_the_lease() {
        let d = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&d.path().join("t.db"), Default::default()).unwrap();
        let now = t("2026-11-27T10:00:00Z");
        db.write_blocking(|tx| store_horizon(tx, now + SignedDuration::from_hours(5), true))
            .unwrap();
        let g = ReplayGuard::open(&db, 10, now).unwrap();
        let ok = now + HORIZON_LEASE + SignedDuration::from_secs(1);
        g.check("h", &[1; 64], ok).unwrap();
        assert!(g.check("h", &[1; 64], now).is_err());
    }
}
