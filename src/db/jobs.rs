//! Queries for jobs and their events (see `fleet::jobs`).

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::DbError;

/// One row of `jobs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub id: String,
    pub host_id: String,
    pub feed: String,
    pub patch_id: String,
    pub state: String,
    pub ticket: Vec<u8>,
    pub created_at: String,
    pub updated_at: String,
}

const JOB_COLS: &str = "id, host_id, feed, patch_id, state, ticket, created_at, updated_at";

fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: r.get(0)?,
        host_id: r.get(1)?,
        feed: r.get(2)?,
        patch_id: r.get(3)?,
        state: r.get(4)?,
        ticket: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
    })
}

pub fn insert_job(tx: &Transaction<'_>, j: &JobRow) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO jobs (id, host_id, feed, patch_id, state, ticket, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            j.id,
            j.host_id,
            j.feed,
            j.patch_id,
            j.state,
            j.ticket,
            j.created_at,
            j.updated_at
        ],
    )?;
    Ok(())
}

pub fn job(conn: &Connection, id: &str) -> Result<Option<JobRow>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1"),
            [id],
            job_row,
        )
        .optional()?)
}

/// Jobs, oldest first; only `host_id`'s when given.
pub fn list_jobs(conn: &Connection, host_id: Option<&str>) -> Result<Vec<JobRow>, DbError> {
    let mut st = conn.prepare(&format!(
        "SELECT {JOB_COLS} FROM jobs WHERE ?1 IS NULL OR host_id = ?1
         ORDER BY created_at, id"
    ))?;
    let rows = st.query_map([host_id], job_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A host's jobs in one of `states`, oldest first.
pub fn jobs_in_states(
    conn: &Connection,
    host_id: &str,
    states: &[&str],
) -> Result<Vec<JobRow>, DbError> {
    let states = serde_json::to_string(states).expect("strings serialise");
    let mut st = conn.prepare(&format!(
        "SELECT {JOB_COLS} FROM jobs
         WHERE host_id = ?1 AND state IN (SELECT value FROM json_each(?2))
         ORDER BY created_at, id"
    ))?;
    let rows = st.query_map(params![host_id, states], job_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every job in `state`, oldest first.
pub fn jobs_in_state(conn: &Connection, state: &str) -> Result<Vec<JobRow>, DbError> {
    let mut st = conn.prepare(&format!(
        "SELECT {JOB_COLS} FROM jobs WHERE state = ?1 ORDER BY created_at, id"
    ))?;
    let rows = st.query_map([state], job_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn set_state(tx: &Transaction<'_>, id: &str, state: &str, at: &str) -> Result<(), DbError> {
    tx.execute(
        "UPDATE jobs SET state = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, state, at],
    )?;
    Ok(())
}

/// Whether the job already has an event for `state`.
pub fn has_event(conn: &Connection, job_id: &str, state: &str) -> Result<bool, DbError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM job_events WHERE job_id = ?1 AND state = ?2",
            [job_id, state],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Records a job event. `at` is the appliance's time; `host_at` is the time the host
/// said it happened (only for events a host reported; kept for people, never used to
/// decide anything).
pub fn insert_event(
    tx: &Transaction<'_>,
    job_id: &str,
    state: &str,
    at: &str,
    host_at: Option<&str>,
    output: &str,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO job_events (job_id, seq, state, at, output, host_at)
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM job_events WHERE job_id = ?1),
                 ?2, ?3, ?4, ?5)",
        params![job_id, state, at, output, host_at],
    )?;
    Ok(())
}

/// The host-reported times of a job's events, by `seq` (events the appliance made
/// itself have none).
pub fn event_host_times(
    conn: &Connection,
    job_id: &str,
) -> Result<std::collections::HashMap<i64, String>, DbError> {
    let mut st = conn
        .prepare("SELECT seq, host_at FROM job_events WHERE job_id = ?1 AND host_at IS NOT NULL")?;
    let rows = st.query_map([job_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A job's events in order: (seq, state, at, output).
pub fn events(
    conn: &Connection,
    job_id: &str,
) -> Result<Vec<(i64, String, String, String)>, DbError> {
    let mut st = conn
        .prepare("SELECT seq, state, at, output FROM job_events WHERE job_id = ?1 ORDER BY seq")?;
    let rows = st.query_map([job_id], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The current entry JSON of patch `id`: (feed, entry) for every feed that has it.
pub fn patch_entries(conn: &Connection, id: &str) -> Result<Vec<(String, String)>, DbError> {
    let mut st = conn.prepare("SELECT feed, entry FROM patches WHERE id = ?1 ORDER BY feed")?;
    let rows = st.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every current patch as (feed, id), for "did you mean".
pub fn patch_keys(conn: &Connection) -> Result<Vec<(String, String)>, DbError> {
    let mut st = conn.prepare("SELECT feed, id FROM patches ORDER BY feed, id")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Records the blobs job `job_id` (of `host_id`) may download: the sha256s its ticket
/// names. Called in the transaction that creates the job (and by migration 6's backfill).
pub fn insert_job_artifacts<'a>(
    tx: &Transaction<'_>,
    job_id: &str,
    host_id: &str,
    sha256s: impl IntoIterator<Item = &'a str>,
) -> Result<(), DbError> {
    let mut st = tx.prepare_cached(
        "INSERT OR IGNORE INTO job_artifacts (job_id, host_id, sha256) VALUES (?1, ?2, ?3)",
    )?;
    for sha in sha256s {
        st.execute(params![job_id, host_id, sha])?;
    }
    Ok(())
}

/// Whether some job of `host_id`, in any state, names the blob `sha256` in its ticket
/// (the artifact endpoint's authorization rule). One seek in `job_artifacts_by_blob`.
pub fn host_may_fetch(conn: &Connection, host_id: &str, sha256: &str) -> Result<bool, DbError> {
    Ok(conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM job_artifacts WHERE sha256 = ?1 AND host_id = ?2)",
        [sha256, host_id],
        |r| r.get(0),
    )?)
}
