//! Queries for the fleet: enrollment tokens, hosts, their latest inventory and its change
//! history. Plain SQL, no decisions: the rules live in `fleet::`.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::DbError;

/// An enrollment token as stored (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenRow {
    pub id: i64,
    pub ring: Option<String>,
    /// JSON object of labels.
    pub labels: String,
    pub created_at: String,
    pub created_by: String,
    pub expires_at: String,
    pub max_uses: u32,
    pub uses: u32,
}

const TOKEN_COLS: &str = "id, ring, labels, created_at, created_by, expires_at, max_uses, uses";

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        id: r.get(0)?,
        ring: r.get(1)?,
        labels: r.get(2)?,
        created_at: r.get(3)?,
        created_by: r.get(4)?,
        expires_at: r.get(5)?,
        max_uses: r.get(6)?,
        uses: r.get(7)?,
    })
}

/// Inserts a token by its sha256; returns its id.
#[allow(clippy::too_many_arguments)]
pub fn insert_token(
    tx: &Transaction<'_>,
    sha256: &str,
    ring: Option<&str>,
    labels: &str,
    created_at: &str,
    created_by: &str,
    expires_at: &str,
    max_uses: u32,
) -> Result<i64, DbError> {
    tx.execute(
        "INSERT INTO enrollment_tokens
           (sha256, ring, labels, created_at, created_by, expires_at, max_uses)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            sha256, ring, labels, created_at, created_by, expires_at, max_uses
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

pub fn token_by_hash(conn: &Connection, sha256: &str) -> Result<Option<TokenRow>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {TOKEN_COLS} FROM enrollment_tokens WHERE sha256 = ?1"),
            [sha256],
            token_row,
        )
        .optional()?)
}

pub fn list_tokens(conn: &Connection) -> Result<Vec<TokenRow>, DbError> {
    let mut st = conn.prepare(&format!(
        "SELECT {TOKEN_COLS} FROM enrollment_tokens ORDER BY id"
    ))?;
    let rows = st.query_map([], token_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn count_token_use(tx: &Transaction<'_>, id: i64) -> Result<(), DbError> {
    tx.execute(
        "UPDATE enrollment_tokens SET uses = uses + 1 WHERE id = ?1",
        [id],
    )?;
    Ok(())
}

/// A host as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRow {
    pub id: String,
    pub hostname: String,
    pub public_key: String,
    pub ring: Option<String>,
    pub labels: String,
    pub enrolled_at: String,
    pub last_seen: Option<String>,
    pub revoked_at: Option<String>,
}

const HOST_COLS: &str =
    "id, hostname, public_key, ring, labels, enrolled_at, last_seen, revoked_at";

fn host_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HostRow> {
    Ok(HostRow {
        id: r.get(0)?,
        hostname: r.get(1)?,
        public_key: r.get(2)?,
        ring: r.get(3)?,
        labels: r.get(4)?,
        enrolled_at: r.get(5)?,
        last_seen: r.get(6)?,
        revoked_at: r.get(7)?,
    })
}

pub fn insert_host(
    tx: &Transaction<'_>,
    h: &HostRow,
    token_id: Option<i64>,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO hosts (id, hostname, public_key, ring, labels, token_id, enrolled_at, last_seen)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            h.id,
            h.hostname,
            h.public_key,
            h.ring,
            h.labels,
            token_id,
            h.enrolled_at,
            h.last_seen
        ],
    )?;
    Ok(())
}

pub fn host(conn: &Connection, id: &str) -> Result<Option<HostRow>, DbError> {
    // Cached: every signed agent request looks its host up.
    Ok(conn
        .prepare_cached(&format!("SELECT {HOST_COLS} FROM hosts WHERE id = ?1"))?
        .query_row([id], host_row)
        .optional()?)
}

/// Whether the host exists and is not revoked.
pub fn host_is_active(conn: &Connection, id: &str) -> Result<bool, DbError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM hosts WHERE id = ?1 AND revoked_at IS NULL")?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some())
}

pub fn host_by_public_key(conn: &Connection, key: &str) -> Result<Option<HostRow>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {HOST_COLS} FROM hosts WHERE public_key = ?1"),
            [key],
            host_row,
        )
        .optional()?)
}

/// Hosts whose id or hostname equals `needle`.
pub fn hosts_matching(conn: &Connection, needle: &str) -> Result<Vec<HostRow>, DbError> {
    let mut st = conn.prepare(&format!(
        "SELECT {HOST_COLS} FROM hosts WHERE id = ?1 OR hostname = ?1 ORDER BY id"
    ))?;
    let rows = st
        .query_map([needle], host_row)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Every host's id and hostname (the names a person may have meant, for "did you mean").
pub fn host_names(conn: &Connection) -> Result<Vec<(String, String)>, DbError> {
    let mut st = conn.prepare("SELECT id, hostname FROM hosts ORDER BY hostname, id")?;
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn list_hosts(conn: &Connection) -> Result<Vec<HostRow>, DbError> {
    let mut st = conn.prepare(&format!(
        "SELECT {HOST_COLS} FROM hosts ORDER BY hostname, id"
    ))?;
    let rows = st.query_map([], host_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Every host's id and `last_seen` (revoked hosts included; the caller knows them).
pub fn hosts_last_seen(conn: &Connection) -> Result<Vec<(String, Option<String>)>, DbError> {
    let mut st = conn.prepare_cached("SELECT id, last_seen FROM hosts")?;
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Sets `last_seen` on a host that is not revoked; false when none was updated.
pub fn touch_host(tx: &Transaction<'_>, id: &str, at: &str) -> Result<bool, DbError> {
    let n = tx.execute(
        "UPDATE hosts SET last_seen = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, at],
    )?;
    Ok(n == 1)
}

/// Sets `last_seen` to `at` on a host that is not revoked, unless it already holds a
/// later time (compared as instants, not as text); false when none was updated.
pub fn set_last_seen(tx: &Transaction<'_>, id: &str, at: &str) -> Result<bool, DbError> {
    let n = tx
        .prepare_cached(
            "UPDATE hosts SET last_seen = ?2 WHERE id = ?1 AND revoked_at IS NULL
               AND (last_seen IS NULL OR julianday(last_seen) < julianday(?2))",
        )?
        .execute(params![id, at])?;
    Ok(n == 1)
}

pub fn revoke_host(tx: &Transaction<'_>, id: &str, at: &str) -> Result<bool, DbError> {
    let n = tx.execute(
        "UPDATE hosts SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, at],
    )?;
    Ok(n == 1)
}

/// The latest inventory of a host: (reported_at, inventory JSON, packages digest).
pub fn inventory(
    conn: &Connection,
    host_id: &str,
) -> Result<Option<(String, String, String)>, DbError> {
    Ok(conn
        .prepare_cached(
            "SELECT reported_at, inventory, packages_digest FROM host_inventory WHERE host_id = ?1",
        )?
        .query_row([host_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?)
}

pub fn put_inventory(
    tx: &Transaction<'_>,
    host_id: &str,
    at: &str,
    json: &str,
    digest: &str,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO host_inventory (host_id, reported_at, inventory, packages_digest)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(host_id) DO UPDATE SET reported_at = ?2, inventory = ?3, packages_digest = ?4",
        params![host_id, at, json, digest],
    )?;
    Ok(())
}

pub fn insert_change(
    tx: &Transaction<'_>,
    host_id: &str,
    at: &str,
    fields: &str,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO host_changes (host_id, at, fields) VALUES (?1, ?2, ?3)",
        params![host_id, at, fields],
    )?;
    Ok(())
}

/// The newest `limit` changes of a host, newest first: (at, fields JSON).
pub fn recent_changes(
    conn: &Connection,
    host_id: &str,
    limit: u32,
) -> Result<Vec<(String, String)>, DbError> {
    let mut st = conn.prepare(
        "SELECT at, fields FROM host_changes WHERE host_id = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = st
        .query_map(params![host_id, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}
