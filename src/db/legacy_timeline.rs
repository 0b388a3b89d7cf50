//! Read-only queries of the legacy event log for the admin pages (issue [10], hW): each
//! answers one page section in one statement, so the list and the dashboard never query
//! per host (the writers are in `db::legacy_monitor`).

use rusqlite::{Connection, params};

use super::legacy_monitor::EventRow;
use crate::error::DbError;

/// An event with the name people see for its host (the agent host's hostname, or the
/// key itself for an agentless host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedEvent {
    pub e: EventRow,
    pub name: String,
}

fn named(r: &rusqlite::Row<'_>) -> rusqlite::Result<NamedEvent> {
    Ok(NamedEvent {
        e: EventRow {
            id: r.get(0)?,
            host: r.get(1)?,
            at: r.get(2)?,
            kind: r.get(3)?,
            text: r.get(4)?,
            detail: r.get(5)?,
        },
        name: r.get(6)?,
    })
}

const NAMED_COLS: &str =
    "e.id, e.host, e.at, e.kind, e.text, e.detail, coalesce(h.hostname, e.host)";

/// The newest event of every host that has one (by host key).
pub fn last_per_host(conn: &Connection) -> Result<Vec<NamedEvent>, DbError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {NAMED_COLS} FROM legacy_events e LEFT JOIN hosts h ON h.id = e.host
         WHERE e.id IN (SELECT max(id) FROM legacy_events GROUP BY host) ORDER BY e.host"
    ))?;
    let rows = st.query_map([], named)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The newest `limit` events of all hosts, newest first, with their hosts' names.
pub fn recent_named(conn: &Connection, limit: usize) -> Result<Vec<NamedEvent>, DbError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {NAMED_COLS} FROM legacy_events e LEFT JOIN hosts h ON h.id = e.host
         ORDER BY e.id DESC LIMIT ?1"
    ))?;
    let rows = st.query_map(params![limit as i64], named)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many events of `kind` happened at or after `since` (RFC 3339).
pub fn count_since(conn: &Connection, kind: &str, since: &str) -> Result<u64, DbError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM legacy_events WHERE kind = ?1 AND at >= ?2",
        params![kind, since],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

/// How many hosts the monitor last saw in `state`.
pub fn hosts_in_state(conn: &Connection, state: &str) -> Result<u64, DbError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM legacy_monitor_state WHERE state = ?1",
        params![state],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

/// A page of one host's events, newest first: at most `limit` after skipping
/// `offset`, and the host's total.
pub fn page_of(
    conn: &Connection,
    host: &str,
    limit: usize,
    offset: usize,
) -> Result<(Vec<EventRow>, u64), DbError> {
    let mut st = conn.prepare_cached(
        "SELECT id, host, at, kind, text, detail FROM legacy_events
         WHERE host = ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3",
    )?;
    let rows = st.query_map(params![host, limit as i64, offset as i64], |r| {
        Ok(EventRow {
            id: r.get(0)?,
            host: r.get(1)?,
            at: r.get(2)?,
            kind: r.get(3)?,
            text: r.get(4)?,
            detail: r.get(5)?,
        })
    })?;
    let rows = rows.collect::<Result<_, _>>()?;
    let total = conn.query_row(
        "SELECT count(*) FROM legacy_events WHERE host = ?1",
        params![host],
        |r| r.get::<_, i64>(0),
    )?;
    Ok((rows, total as u64))
}
