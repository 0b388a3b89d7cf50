//! Queries for approvals, rollouts and the scheduler's view of jobs (see `rollout`).

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::DbError;

/// One row of `rollouts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRow {
    pub feed: String,
    pub patch_id: String,
    pub state: String,
    pub started_at: String,
    pub updated_at: String,
    pub acknowledged_at: Option<String>,
    pub note: String,
}

fn rollout_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RolloutRow> {
    Ok(RolloutRow {
        feed: r.get(0)?,
        patch_id: r.get(1)?,
        state: r.get(2)?,
        started_at: r.get(3)?,
        updated_at: r.get(4)?,
        acknowledged_at: r.get(5)?,
        note: r.get(6)?,
    })
}

const ROLLOUT_COLS: &str = "feed, patch_id, state, started_at, updated_at, acknowledged_at, note";

/// The stored approval JSON of a patch, with who decided and when.
pub fn approval(
    conn: &Connection,
    feed: &str,
    patch_id: &str,
) -> Result<Option<(String, String, String)>, DbError> {
    Ok(conn
        .query_row(
            "SELECT approval, decided_at, decided_by FROM approvals
             WHERE feed = ?1 AND patch_id = ?2",
            [feed, patch_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?)
}

/// Every stored approval: (feed, patch, approval JSON).
pub fn approvals(conn: &Connection) -> Result<Vec<(String, String, String)>, DbError> {
    let mut st = conn.prepare("SELECT feed, patch_id, approval FROM approvals")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn put_approval(
    tx: &Transaction<'_>,
    feed: &str,
    patch_id: &str,
    approval: &str,
    at: &str,
    by: &str,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO approvals (feed, patch_id, approval, decided_at, decided_by)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (feed, patch_id) DO UPDATE
         SET approval = ?3, decided_at = ?4, decided_by = ?5",
        params![feed, patch_id, approval, at, by],
    )?;
    Ok(())
}

pub fn rollout(
    conn: &Connection,
    feed: &str,
    patch_id: &str,
) -> Result<Option<RolloutRow>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {ROLLOUT_COLS} FROM rollouts WHERE feed = ?1 AND patch_id = ?2"),
            [feed, patch_id],
            rollout_row,
        )
        .optional()?)
}

/// Rollouts, oldest first; only those in `state` when given.
pub fn rollouts(conn: &Connection, state: Option<&str>) -> Result<Vec<RolloutRow>, DbError> {
    let mut st = conn.prepare(&format!(
        "SELECT {ROLLOUT_COLS} FROM rollouts WHERE ?1 IS NULL OR state = ?1
         ORDER BY started_at, feed, patch_id"
    ))?;
    let rows = st.query_map([state], rollout_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Whether any rollout is active (the check-in's cheap way out).
pub fn any_active(conn: &Connection) -> Result<bool, DbError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM rollouts WHERE state = 'active' LIMIT 1",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Whether any rollout is completed (the planner then checks, when the fleet changed,
/// whether a host needs one of them again).
pub fn any_completed(conn: &Connection) -> Result<bool, DbError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM rollouts WHERE state = 'completed' LIMIT 1",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Whether the periodic rollout work has anything to do: a rollout is active, or one
/// that is not still has packages in an apt ring (to be withdrawn). A completed
/// rollout keeps its packages in the rings it reached, so it needs nothing.
pub fn needs_attention(conn: &Connection) -> Result<bool, DbError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM rollouts r
             WHERE r.state = 'active'
                OR (r.state <> 'completed'
                    AND EXISTS (SELECT 1 FROM apt_ring_packages a
                                WHERE a.feed = r.feed AND a.patch_id = r.patch_id))
             LIMIT 1",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Creates the rollout (`active`) or sets its state; `note` says why.
pub fn put_rollout(
    tx: &Transaction<'_>,
    feed: &str,
    patch_id: &str,
    state: &str,
    at: &str,
    note: &str,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO rollouts (feed, patch_id, state, started_at, updated_at, note)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5)
         ON CONFLICT (feed, patch_id) DO UPDATE SET state = ?3, updated_at = ?4, note = ?5",
        params![feed, patch_id, state, at, note],
    )?;
    Ok(())
}

pub fn acknowledge(
    tx: &Transaction<'_>,
    feed: &str,
    patch_id: &str,
    at: &str,
) -> Result<(), DbError> {
    tx.execute(
        "UPDATE rollouts SET acknowledged_at = ?3 WHERE feed = ?1 AND patch_id = ?2",
        params![feed, patch_id, at],
    )?;
    Ok(())
}

/// A job as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobBrief {
    pub id: String,
    pub host_id: String,
    pub feed: String,
    pub patch_id: String,
    pub state: String,
    pub ring: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

fn brief(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobBrief> {
    Ok(JobBrief {
        id: r.get(0)?,
        host_id: r.get(1)?,
        feed: r.get(2)?,
        patch_id: r.get(3)?,
        state: r.get(4)?,
        ring: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
    })
}

const BRIEF_COLS: &str = "id, host_id, feed, patch_id, state, ring, created_at, updated_at";

/// The jobs of one patch (all hosts), oldest first.
pub fn jobs_of_patch(
    conn: &Connection,
    feed: &str,
    patch_id: &str,
) -> Result<Vec<JobBrief>, DbError> {
    let mut st = conn.prepare(&format!(
        "SELECT {BRIEF_COLS} FROM jobs WHERE feed = ?1 AND patch_id = ?2
         ORDER BY created_at, id"
    ))?;
    let rows = st.query_map([feed, patch_id], brief)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The jobs of one host, oldest first.
pub fn jobs_of_host(conn: &Connection, host_id: &str) -> Result<Vec<JobBrief>, DbError> {
    let mut st = conn.prepare(&format!(
        "SELECT {BRIEF_COLS} FROM jobs WHERE host_id = ?1 ORDER BY created_at, id"
    ))?;
    let rows = st.query_map([host_id], brief)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn set_job_ring(tx: &Transaction<'_>, job_id: &str, ring: &str) -> Result<(), DbError> {
    tx.execute(
        "UPDATE jobs SET ring = ?2 WHERE id = ?1",
        params![job_id, ring],
    )?;
    Ok(())
}

/// Every current patch entry JSON: (feed, id, entry).
pub fn patch_entries(conn: &Connection) -> Result<Vec<(String, String, String)>, DbError> {
    let mut st = conn.prepare("SELECT feed, id, entry FROM patches ORDER BY feed, id")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every enrolled host with its inventory JSON (if it reported one).
pub fn hosts_with_inventory(
    conn: &Connection,
) -> Result<Vec<(super::fleet::HostRow, Option<String>)>, DbError> {
    let hosts = super::fleet::list_hosts(conn)?;
    let mut st = conn.prepare("SELECT inventory FROM host_inventory WHERE host_id = ?1")?;
    let mut out = Vec::with_capacity(hosts.len());
    for h in hosts {
        let inv: Option<String> = st.query_row([&h.id], |r| r.get(0)).optional()?;
        out.push((h, inv));
    }
    Ok(out)
}

/// Hosts whose inventory changed after change `after`, with the newest change id.
pub fn inventory_changes_since(
    conn: &Connection,
    after: i64,
) -> Result<(i64, Vec<String>), DbError> {
    let mut st =
        conn.prepare_cached("SELECT id, host_id FROM inventory_changes WHERE id > ?1 ORDER BY id")?;
    let mut last = after;
    let mut hosts = Vec::new();
    for row in st.query_map([after], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
    })? {
        let (id, host) = row?;
        last = last.max(id);
        hosts.push(host);
    }
    hosts.sort();
    hosts.dedup();
    Ok((last, hosts))
}

/// The newest inventory change id (0 when none).
pub fn last_inventory_change(conn: &Connection) -> Result<i64, DbError> {
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(id), 0) FROM inventory_changes",
        [],
        |r| r.get(0),
    )?)
}

/// Forgets inventory changes up to `upto` (the planner has read them).
pub fn prune_inventory_changes(tx: &Transaction<'_>, upto: i64) -> Result<usize, DbError> {
    Ok(tx.execute("DELETE FROM inventory_changes WHERE id <= ?1", [upto])?)
}

/// The approvals-and-rollouts generation (see migration 8).
pub fn rollout_generation(conn: &Connection) -> Result<i64, DbError> {
    Ok(conn
        .prepare_cached("SELECT n FROM rollout_generation WHERE id = 1")?
        .query_row([], |r| r.get(0))?)
}

/// What the fleet planner reads, as counters: (rollout generation, jobs-and-hosts
/// changes, newest inventory change). Equal counters mean an unchanged fleet.
pub fn plan_inputs(conn: &Connection) -> Result<(i64, i64, i64), DbError> {
    Ok(conn
        .prepare_cached(
            "SELECT (SELECT n FROM rollout_generation WHERE id = 1),
                    (SELECT n FROM plan_inputs WHERE id = 1),
                    (SELECT COALESCE(MAX(id), 0) FROM inventory_changes)",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?)
}
