//! Read-only queries behind the web admin pages: light projections that stay fast at
//! 10,000 hosts (no inventory JSON is parsed for a list; the page's own rows read a few
//! fields with `json_extract`), failures, and job counts per rollout and ring.
//! Plain SQL, no decisions: the pages combine these with `policy` and `fleet`.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::DbError;

/// A host without its inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostBrief {
    pub id: String,
    pub hostname: String,
    /// The ring given at enrollment (the policy may place the host elsewhere).
    pub ring: Option<String>,
    /// JSON object of labels.
    pub labels: String,
    pub last_seen: Option<String>,
    pub revoked_at: Option<String>,
}

/// Every host, in name order (index `hosts_by_name`).
pub fn host_briefs(conn: &Connection) -> Result<Vec<HostBrief>, DbError> {
    let mut st = conn.prepare_cached(
        "SELECT id, hostname, ring, labels, last_seen, revoked_at FROM hosts
         ORDER BY hostname, id",
    )?;
    let rows = st.query_map([], |r| {
        Ok(HostBrief {
            id: r.get(0)?,
            hostname: r.get(1)?,
            ring: r.get(2)?,
            labels: r.get(3)?,
            last_seen: r.get(4)?,
            revoked_at: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The job states that count as a failure on a host.
pub const FAILED_STATES: [&str; 3] = ["failed", "rolled_back", "rollback_failed"];

/// Hosts whose latest job for some patch failed (failed, rolled back, or the rollback
/// failed): they need someone to look. Failures are rare, so the inner check runs
/// for few rows: index `jobs_by_state`, then a host's own few jobs. (`INDEXED BY`:
/// left alone, SQLite picks `jobs_by_patch` for the inner query and walks every job
/// of the patch, ~300 ms at 10,000 hosts.)
pub fn hosts_with_failures(conn: &Connection) -> Result<BTreeSet<String>, DbError> {
    let mut st = conn.prepare_cached(
        "SELECT DISTINCT j.host_id FROM jobs j
         WHERE j.state IN ('failed', 'rolled_back', 'rollback_failed')
           AND NOT EXISTS (
             SELECT 1 FROM jobs k INDEXED BY jobs_by_host
             WHERE k.host_id = j.host_id AND k.feed = j.feed AND k.patch_id = j.patch_id
               AND (k.created_at > j.created_at OR (k.created_at = j.created_at AND k.id > j.id)))",
    )?;
    let rows = st.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A few inventory fields for a list row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostExtra {
    pub os: Option<String>,
    pub kernel: Option<String>,
    pub reboot_required: Option<bool>,
}

/// Inventory fields of the given hosts only (one indexed lookup and one JSON parse
/// each).
pub fn host_extras(
    conn: &Connection,
    ids: &[&str],
) -> Result<BTreeMap<String, HostExtra>, DbError> {
    let mut st = conn.prepare_cached(
        "SELECT json_extract(inventory, '$.os.id', '$.os.version_id', '$.kernel',
                             '$.reboot_required')
         FROM host_inventory WHERE host_id = ?1",
    )?;
    let mut out = BTreeMap::new();
    for id in ids {
        let fields: Option<String> = st.query_row([id], |r| r.get(0)).optional()?;
        let v: Vec<serde_json::Value> = fields
            .and_then(|f| serde_json::from_str(&f).ok())
            .unwrap_or_default();
        let text = |i: usize| v.get(i).and_then(|x| x.as_str()).unwrap_or("").to_string();
        let os = format!("{} {}", text(0), text(1)).trim().to_string();
        out.insert(
            (*id).to_string(),
            HostExtra {
                os: (!os.is_empty()).then_some(os),
                kernel: Some(text(2)).filter(|k| !k.is_empty()),
                reboot_required: v.get(3).and_then(serde_json::Value::as_bool),
            },
        );
    }
    Ok(out)
}

/// A job with its host's name and its patch's title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLine {
    pub id: String,
    pub host_id: String,
    pub hostname: String,
    pub feed: String,
    pub patch_id: String,
    /// `None` when the patch left the current catalogs.
    pub title: Option<String>,
    pub state: String,
    pub ring: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl JobLine {
    /// The patch as `FEED:ID`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.feed, self.patch_id)
    }
}

const JOB_LINE: &str = "SELECT j.id, j.host_id, coalesce(h.hostname, ''), j.feed, j.patch_id,
        p.title, j.state, j.ring, j.created_at, j.updated_at
     FROM jobs j
     LEFT JOIN hosts h ON h.id = j.host_id
     LEFT JOIN patches p ON p.feed = j.feed AND p.id = j.patch_id";

fn job_line(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobLine> {
    Ok(JobLine {
        id: r.get(0)?,
        host_id: r.get(1)?,
        hostname: r.get(2)?,
        feed: r.get(3)?,
        patch_id: r.get(4)?,
        title: r.get(5)?,
        state: r.get(6)?,
        ring: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

/// One job with its host's name and its patch's title.
pub fn job(conn: &Connection, id: &str) -> Result<Option<JobLine>, DbError> {
    Ok(conn
        .query_row(&format!("{JOB_LINE} WHERE j.id = ?1"), [id], job_line)
        .optional()?)
}

/// The newest failed jobs (failed, rolled back, rollback failed), newest first.
pub fn recent_failures(conn: &Connection, limit: u32) -> Result<Vec<JobLine>, DbError> {
    let mut st = conn.prepare_cached(&format!(
        "{JOB_LINE} WHERE j.state IN ('failed', 'rolled_back', 'rollback_failed')
         ORDER BY j.updated_at DESC, j.id DESC LIMIT ?1"
    ))?;
    let rows = st.query_map([limit], job_line)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A host's newest `limit` jobs, newest first.
pub fn jobs_of_host(conn: &Connection, host_id: &str, limit: u32) -> Result<Vec<JobLine>, DbError> {
    let mut st = conn.prepare_cached(&format!(
        "{JOB_LINE} WHERE j.host_id = ?1 ORDER BY j.created_at DESC, j.id DESC LIMIT ?2"
    ))?;
    let rows = st.query_map(params![host_id, limit], job_line)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many jobs of a patch are in each state, per ring: ((ring, state), count).
pub fn job_counts(
    conn: &Connection,
    feed: &str,
    patch_id: &str,
) -> Result<BTreeMap<(Option<String>, String), u64>, DbError> {
    let mut st = conn.prepare_cached(
        "SELECT ring, state, count(*) FROM jobs WHERE feed = ?1 AND patch_id = ?2
         GROUP BY ring, state",
    )?;
    let rows = st.query_map([feed, patch_id], |r| {
        Ok(((r.get(0)?, r.get(1)?), r.get::<_, i64>(2)? as u64))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A patch of a current catalog as stored: (entry JSON, first seen, catalog version).
pub fn patch(
    conn: &Connection,
    feed: &str,
    id: &str,
) -> Result<Option<(String, String, u64)>, DbError> {
    Ok(conn
        .query_row(
            "SELECT entry, first_seen, catalog_version FROM patches WHERE feed = ?1 AND id = ?2",
            [feed, id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)),
        )
        .optional()?)
}

/// How many hosts installed a patch: its succeeded jobs (a patch installed on a host is
/// never offered to it again, so one success per host). Counted in the index
/// `jobs_by_patch` alone.
/// Per (feed, patch): host -> when its job succeeded.
pub type Installs = BTreeMap<(String, String), BTreeMap<String, String>>;

/// Every succeeded job, by patch and host.
pub fn installed_hosts(conn: &Connection) -> Result<Installs, DbError> {
    let mut st = conn.prepare_cached(
        "SELECT feed, patch_id, host_id, updated_at FROM jobs WHERE state = 'succeeded'",
    )?;
    let mut out = Installs::new();
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    for row in rows {
        let (feed, id, host, at) = row?;
        out.entry((feed, id)).or_default().insert(host, at);
    }
    Ok(out)
}

pub fn installed_count(conn: &Connection, feed: &str, patch_id: &str) -> Result<u64, DbError> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM jobs WHERE feed = ?1 AND patch_id = ?2 AND state = 'succeeded'",
        )?
        .query_row([feed, patch_id], |r| r.get(0))?;
    Ok(n as u64)
}
