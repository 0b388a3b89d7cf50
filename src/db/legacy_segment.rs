//! Queries of the legacy segment (issue [10]): flows per host, named peer sets, the DNS
//! answers for name peers, and the fence as last applied. The callers (`legacy::segment`
//! and the CLI and page on top of it) validate; these only read and write rows.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::DbError;

/// One stored flow of a host (`flow`: the canonical text form of `legacy::flows::Flow`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRow {
    pub host: String,
    pub flow: String,
    pub added_at: String,
    pub added_by: String,
}

fn flow_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FlowRow> {
    Ok(FlowRow {
        host: r.get(0)?,
        flow: r.get(1)?,
        added_at: r.get(2)?,
        added_by: r.get(3)?,
    })
}

/// The flows of one host, in the order they were added.
pub fn flows_of(conn: &Connection, host: &str) -> Result<Vec<FlowRow>, DbError> {
    let mut st = conn.prepare_cached(
        "SELECT host, flow, added_at, added_by FROM legacy_flows WHERE host = ?1 ORDER BY rowid",
    )?;
    let rows = st.query_map(params![host], flow_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every stored flow, by host then in the order added.
pub fn flows_all(conn: &Connection) -> Result<Vec<FlowRow>, DbError> {
    let mut st = conn.prepare_cached(
        "SELECT host, flow, added_at, added_by FROM legacy_flows ORDER BY host, rowid",
    )?;
    let rows = st.query_map([], flow_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Adds a flow; `false` when the host already has exactly this flow.
pub fn insert_flow(tx: &Transaction<'_>, f: &FlowRow) -> Result<bool, DbError> {
    let n = tx.execute(
        "INSERT INTO legacy_flows (host, flow, added_at, added_by) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (host, flow) DO NOTHING",
        params![f.host, f.flow, f.added_at, f.added_by],
    )?;
    Ok(n == 1)
}

/// Removes a flow; `false` when the host has no such flow.
pub fn delete_flow(tx: &Transaction<'_>, host: &str, flow: &str) -> Result<bool, DbError> {
    let n = tx.execute(
        "DELETE FROM legacy_flows WHERE host = ?1 AND flow = ?2",
        params![host, flow],
    )?;
    Ok(n == 1)
}

/// Removes every flow of a host (when the host leaves the registry); how many.
pub fn delete_flows_of(tx: &Transaction<'_>, host: &str) -> Result<usize, DbError> {
    Ok(tx.execute("DELETE FROM legacy_flows WHERE host = ?1", params![host])?)
}

/// A named peer set (`members`: a JSON array of CIDRs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetRow {
    pub name: String,
    pub members: String,
    pub comment: String,
    pub updated_at: String,
    pub updated_by: String,
}

fn set_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SetRow> {
    Ok(SetRow {
        name: r.get(0)?,
        members: r.get(1)?,
        comment: r.get(2)?,
        updated_at: r.get(3)?,
        updated_by: r.get(4)?,
    })
}

const SET_COLS: &str = "name, members, comment, updated_at, updated_by";

/// Every named set, by name.
pub fn sets_all(conn: &Connection) -> Result<Vec<SetRow>, DbError> {
    let mut st =
        conn.prepare_cached(&format!("SELECT {SET_COLS} FROM legacy_sets ORDER BY name"))?;
    let rows = st.query_map([], set_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The named set `name`, if defined.
pub fn set(conn: &Connection, name: &str) -> Result<Option<SetRow>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {SET_COLS} FROM legacy_sets WHERE name = ?1"),
            params![name],
            set_row,
        )
        .optional()?)
}

/// Defines or replaces a named set.
pub fn upsert_set(tx: &Transaction<'_>, s: &SetRow) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO legacy_sets (name, members, comment, updated_at, updated_by)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (name) DO UPDATE SET members = excluded.members,
             comment = excluded.comment, updated_at = excluded.updated_at,
             updated_by = excluded.updated_by",
        params![s.name, s.members, s.comment, s.updated_at, s.updated_by],
    )?;
    Ok(())
}

/// Removes a named set; `false` when there is none.
pub fn delete_set(tx: &Transaction<'_>, name: &str) -> Result<bool, DbError> {
    Ok(tx.execute("DELETE FROM legacy_sets WHERE name = ?1", params![name])? == 1)
}

/// One address a DNS-name peer resolved to, until `expires_at` (RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRow {
    pub name: String,
    pub address: String,
    pub expires_at: String,
    pub resolved_at: String,
}

/// The stored answers whose records have not expired at `now` (RFC 3339; timestamps
/// are stored in one format, so they compare as text).
pub fn dns_live(conn: &Connection, now: &str) -> Result<Vec<DnsRow>, DbError> {
    let mut st = conn.prepare_cached(
        "SELECT name, address, expires_at, resolved_at FROM legacy_dns
         WHERE expires_at > ?1 ORDER BY name, address",
    )?;
    let rows = st.query_map(params![now], |r| {
        Ok(DnsRow {
            name: r.get(0)?,
            address: r.get(1)?,
            expires_at: r.get(2)?,
            resolved_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Replaces the answers for `name` with `rows` (an empty list forgets the name).
pub fn replace_dns(tx: &Transaction<'_>, name: &str, rows: &[DnsRow]) -> Result<(), DbError> {
    tx.execute("DELETE FROM legacy_dns WHERE name = ?1", params![name])?;
    let mut st = tx.prepare_cached(
        "INSERT INTO legacy_dns (name, address, expires_at, resolved_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name, address) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)",
    )?;
    for r in rows {
        st.execute(params![name, r.address, r.expires_at, r.resolved_at])?;
    }
    Ok(())
}

/// Forgets answers that expired before `now`; how many.
pub fn prune_dns(tx: &Transaction<'_>, now: &str) -> Result<usize, DbError> {
    Ok(tx.execute(
        "DELETE FROM legacy_dns WHERE expires_at <= ?1",
        params![now],
    )?)
}

/// The fence as last applied (`input`: the segment's input as JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedRow {
    pub input: String,
    pub sha256: String,
    pub applied_at: String,
    pub applied_by: String,
    pub reason: String,
}

/// What was last applied, if anything.
pub fn applied(conn: &Connection) -> Result<Option<AppliedRow>, DbError> {
    record(conn, "legacy_segment")
}

/// Records what was applied (replacing the previous record).
pub fn set_applied(tx: &Transaction<'_>, a: &AppliedRow) -> Result<(), DbError> {
    set_record(tx, "legacy_segment", a)
}

/// What was last exported for the site's firewall (`reason`: where to), if anything.
pub fn exported(conn: &Connection) -> Result<Option<AppliedRow>, DbError> {
    record(conn, "legacy_segment_export")
}

/// Records what was exported (replacing the previous record).
pub fn set_exported(tx: &Transaction<'_>, a: &AppliedRow) -> Result<(), DbError> {
    set_record(tx, "legacy_segment_export", a)
}

/// The single row of `table` (`legacy_segment` or `legacy_segment_export`).
fn record(conn: &Connection, table: &'static str) -> Result<Option<AppliedRow>, DbError> {
    let sql =
        format!("SELECT input, sha256, applied_at, applied_by, reason FROM {table} WHERE id = 1");
    Ok(conn
        .query_row(&sql, [], |r| {
            Ok(AppliedRow {
                input: r.get(0)?,
                sha256: r.get(1)?,
                applied_at: r.get(2)?,
                applied_by: r.get(3)?,
                reason: r.get(4)?,
            })
        })
        .optional()?)
}

fn set_record(tx: &Transaction<'_>, table: &'static str, a: &AppliedRow) -> Result<(), DbError> {
    let sql = format!(
        "INSERT INTO {table} (id, input, sha256, applied_at, applied_by, reason)
         VALUES (1, ?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET input = excluded.input, sha256 = excluded.sha256,
             applied_at = excluded.applied_at, applied_by = excluded.applied_by,
             reason = excluded.reason"
    );
    tx.execute(
        &sql,
        params![a.input, a.sha256, a.applied_at, a.applied_by, a.reason],
    )?;
    Ok(())
}
