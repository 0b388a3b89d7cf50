//! Queries for the maintenance-window entries added on the web page (`window_entries`,
//! migration 10). Plain SQL; `rollout::windows` checks and audits every change.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::DbError;

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowEntryRow {
    pub id: i64,
    pub window_set: String,
    pub kind: String,
    pub emergency: bool,
    /// The entry's keys in the config file's TOML syntax.
    pub spec: String,
    pub created_at: String,
    pub created_by: String,
    pub updated_at: String,
    pub updated_by: String,
}

const COLS: &str =
    "id, window_set, kind, emergency, spec, created_at, created_by, updated_at, updated_by";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WindowEntryRow> {
    Ok(WindowEntryRow {
        id: r.get(0)?,
        window_set: r.get(1)?,
        kind: r.get(2)?,
        emergency: r.get(3)?,
        spec: r.get(4)?,
        created_at: r.get(5)?,
        created_by: r.get(6)?,
        updated_at: r.get(7)?,
        updated_by: r.get(8)?,
    })
}

/// Every entry, oldest first (the order they are laid over the configuration).
pub fn entries(conn: &Connection) -> Result<Vec<WindowEntryRow>, DbError> {
    let mut st = conn.prepare_cached(&format!("SELECT {COLS} FROM window_entries ORDER BY id"))?;
    let rows = st.query_map([], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn entry(conn: &Connection, id: i64) -> Result<Option<WindowEntryRow>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLS} FROM window_entries WHERE id = ?1"),
            [id],
            row,
        )
        .optional()?)
}

/// A cheap fingerprint of the table: changes whenever an entry is added, changed or
/// removed (the server reloads its policy when it moves).
pub fn revision(conn: &Connection) -> Result<(i64, i64, String), DbError> {
    Ok(conn.query_row(
        "SELECT count(*), coalesce(max(id), 0), coalesce(max(updated_at), '') FROM window_entries",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?)
}

pub fn insert(
    tx: &Transaction<'_>,
    set: &str,
    kind: &str,
    emergency: bool,
    spec: &str,
    at: &str,
    by: &str,
) -> Result<i64, DbError> {
    tx.execute(
        "INSERT INTO window_entries
           (window_set, kind, emergency, spec, created_at, created_by, updated_at, updated_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?5, ?6)",
        params![set, kind, emergency, spec, at, by],
    )?;
    Ok(tx.last_insert_rowid())
}

#[allow(clippy::too_many_arguments)]
pub fn update(
    tx: &Transaction<'_>,
    id: i64,
    set: &str,
    kind: &str,
    emergency: bool,
    spec: &str,
    at: &str,
    by: &str,
) -> Result<bool, DbError> {
    let n = tx.execute(
        "UPDATE window_entries SET window_set = ?2, kind = ?3, emergency = ?4, spec = ?5,
                updated_at = ?6, updated_by = ?7
         WHERE id = ?1",
        params![id, set, kind, emergency, spec, at, by],
    )?;
    Ok(n == 1)
}

pub fn delete(tx: &Transaction<'_>, id: i64) -> Result<bool, DbError> {
    Ok(tx.execute("DELETE FROM window_entries WHERE id = ?1", [id])? == 1)
}
