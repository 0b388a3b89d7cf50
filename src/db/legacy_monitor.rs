//! Queries of the legacy monitor (issue [10]): extra watched ports, the monitor's
//! state per host (kept across restarts), and the event log the host page, the
//! dashboard and compliance read.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::DbError;

/// A port watched beside the host's `in` flows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRow {
    pub host: String,
    pub port: u16,
    pub banner: bool,
    pub added_at: String,
    pub added_by: String,
}

fn port_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PortRow> {
    Ok(PortRow {
        host: r.get(0)?,
        port: r.get(1)?,
        banner: r.get(2)?,
        added_at: r.get(3)?,
        added_by: r.get(4)?,
    })
}

/// Every extra watched port, by host and port.
pub fn ports_all(conn: &Connection) -> Result<Vec<PortRow>, DbError> {
    let mut st = conn.prepare_cached(
        "SELECT host, port, banner, added_at, added_by FROM legacy_monitor_ports ORDER BY host, port",
    )?;
    let rows = st.query_map([], port_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The extra watched ports of one host.
pub fn ports_of(conn: &Connection, host: &str) -> Result<Vec<PortRow>, DbError> {
    let mut st = conn.prepare_cached(
        "SELECT host, port, banner, added_at, added_by FROM legacy_monitor_ports
         WHERE host = ?1 ORDER BY port",
    )?;
    let rows = st.query_map(params![host], port_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Adds (or replaces the banner flag of) a watched port; `false` when it was there
/// with the same flag.
pub fn upsert_port(tx: &Transaction<'_>, p: &PortRow) -> Result<bool, DbError> {
    let n = tx.execute(
        "INSERT INTO legacy_monitor_ports (host, port, banner, added_at, added_by)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (host, port) DO UPDATE SET banner = excluded.banner,
             added_at = excluded.added_at, added_by = excluded.added_by
         WHERE banner != excluded.banner",
        params![p.host, p.port, p.banner, p.added_at, p.added_by],
    )?;
    Ok(n == 1)
}

/// Removes a watched port; `false` when there was none.
pub fn delete_port(tx: &Transaction<'_>, host: &str, port: u16) -> Result<bool, DbError> {
    Ok(tx.execute(
        "DELETE FROM legacy_monitor_ports WHERE host = ?1 AND port = ?2",
        params![host, port],
    )? == 1)
}

/// The monitor's state of one host, as stored after its last cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRow {
    pub host: String,
    pub address: String,
    /// `up`, `pending` or `down`.
    pub state: String,
    pub since: String,
    pub last_cycle: String,
    /// JSON: the port baselines (`legacy::monitor` defines the shape).
    pub baselines: String,
}

fn state_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StateRow> {
    Ok(StateRow {
        host: r.get(0)?,
        address: r.get(1)?,
        state: r.get(2)?,
        since: r.get(3)?,
        last_cycle: r.get(4)?,
        baselines: r.get(5)?,
    })
}

const STATE_COLS: &str = "host, address, state, since, last_cycle, baselines";

/// Every host's monitor state.
pub fn states_all(conn: &Connection) -> Result<Vec<StateRow>, DbError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {STATE_COLS} FROM legacy_monitor_state ORDER BY host"
    ))?;
    let rows = st.query_map([], state_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One host's monitor state.
pub fn state_of(conn: &Connection, host: &str) -> Result<Option<StateRow>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {STATE_COLS} FROM legacy_monitor_state WHERE host = ?1"),
            params![host],
            state_row,
        )
        .optional()?)
}

/// Stores one host's state after a cycle.
pub fn put_state(tx: &Transaction<'_>, s: &StateRow) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO legacy_monitor_state (host, address, state, since, last_cycle, baselines)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (host) DO UPDATE SET address = excluded.address, state = excluded.state,
             since = excluded.since, last_cycle = excluded.last_cycle,
             baselines = excluded.baselines",
        params![
            s.host,
            s.address,
            s.state,
            s.since,
            s.last_cycle,
            s.baselines
        ],
    )?;
    Ok(())
}

/// Forgets the state of hosts no longer watched; how many.
pub fn delete_state(tx: &Transaction<'_>, host: &str) -> Result<usize, DbError> {
    Ok(tx.execute(
        "DELETE FROM legacy_monitor_state WHERE host = ?1",
        params![host],
    )?)
}

/// One stored event (`detail`: JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub id: i64,
    pub host: String,
    pub at: String,
    pub kind: String,
    pub text: String,
    pub detail: String,
}

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        id: r.get(0)?,
        host: r.get(1)?,
        at: r.get(2)?,
        kind: r.get(3)?,
        text: r.get(4)?,
        detail: r.get(5)?,
    })
}

/// Appends an event; its id.
pub fn insert_event(
    tx: &Transaction<'_>,
    host: &str,
    at: &str,
    kind: &str,
    text: &str,
    detail: &str,
) -> Result<i64, DbError> {
    tx.execute(
        "INSERT INTO legacy_events (host, at, kind, text, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![host, at, kind, text, detail],
    )?;
    Ok(tx.last_insert_rowid())
}

/// A host's events, newest first, at most `limit`.
pub fn events_of(conn: &Connection, host: &str, limit: usize) -> Result<Vec<EventRow>, DbError> {
    let mut st = conn.prepare_cached(
        "SELECT id, host, at, kind, text, detail FROM legacy_events
         WHERE host = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = st.query_map(params![host, limit as i64], event_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The newest events of all hosts, newest first, at most `limit`.
pub fn events_recent(conn: &Connection, limit: usize) -> Result<Vec<EventRow>, DbError> {
    let mut st = conn.prepare_cached(
        "SELECT id, host, at, kind, text, detail FROM legacy_events ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = st.query_map(params![limit as i64], event_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Events at or after `since` (RFC 3339), oldest first: what compliance reads.
pub fn events_since(conn: &Connection, since: &str) -> Result<Vec<EventRow>, DbError> {
    let mut st = conn.prepare_cached(
        "SELECT id, host, at, kind, text, detail FROM legacy_events WHERE at >= ?1 ORDER BY id",
    )?;
    let rows = st.query_map(params![since], event_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Removes events older than `before`; how many.
pub fn prune_events(tx: &Transaction<'_>, before: &str) -> Result<usize, DbError> {
    Ok(tx.execute("DELETE FROM legacy_events WHERE at < ?1", params![before])?)
}
