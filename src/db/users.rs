//! Queries for the admin page's accounts: `users`, `sessions`, `login_attempts`
//! (migration 8). Rules live in `auth`; this module only reads and writes rows.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::auth::Role;
use crate::error::DbError;

/// An account as stored (without its password hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    pub must_change_password: bool,
    pub created_at: String,
    pub changed_at: String,
}

/// A session joined with its account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub token_sha256: String,
    pub user_id: i64,
    pub user: String,
    pub role: Role,
    pub disabled: bool,
    pub must_change_password: bool,
    pub created_ms: i64,
    pub last_seen_ms: i64,
    pub csrf: String,
}

fn role_of(s: String) -> rusqlite::Result<Role> {
    Role::parse(&s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown role {s:?}").into(),
        )
    })
}

const USER_COLS: &str = "id, name, role, disabled, must_change_password, created_at, changed_at";

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        id: r.get(0)?,
        name: r.get(1)?,
        role: role_of(r.get(2)?)?,
        disabled: r.get(3)?,
        must_change_password: r.get(4)?,
        created_at: r.get(5)?,
        changed_at: r.get(6)?,
    })
}

pub fn count_users(conn: &Connection) -> Result<i64, DbError> {
    Ok(conn.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?)
}

/// Inserts an account; `Ok(None)` when the name is taken.
pub fn insert_user(
    tx: &Transaction<'_>,
    name: &str,
    password_hash: &str,
    role: Role,
    must_change: bool,
    now: &str,
) -> Result<Option<i64>, DbError> {
    let n = tx.execute(
        "INSERT INTO users (name, password_hash, role, must_change_password, created_at,
         changed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT(name) DO NOTHING",
        params![name, password_hash, role.as_str(), must_change, now],
    )?;
    Ok((n == 1).then(|| tx.last_insert_rowid()))
}

pub fn user_by_name(conn: &Connection, name: &str) -> Result<Option<UserRow>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {USER_COLS} FROM users WHERE name = ?1"),
            [name],
            user_row,
        )
        .optional()?)
}

pub fn user_by_id(conn: &Connection, id: i64) -> Result<Option<UserRow>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {USER_COLS} FROM users WHERE id = ?1"),
            [id],
            user_row,
        )
        .optional()?)
}

/// The account's id, disabled flag and password hash, for a sign-in.
pub fn credentials(conn: &Connection, name: &str) -> Result<Option<(i64, bool, String)>, DbError> {
    Ok(conn
        .query_row(
            "SELECT id, disabled, password_hash FROM users WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?)
}

pub fn password_hash(conn: &Connection, id: i64) -> Result<Option<String>, DbError> {
    Ok(conn
        .query_row("SELECT password_hash FROM users WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?)
}

pub fn list_users(conn: &Connection) -> Result<Vec<UserRow>, DbError> {
    let mut st = conn.prepare(&format!("SELECT {USER_COLS} FROM users ORDER BY name"))?;
    let rows = st.query_map([], user_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn set_password(
    tx: &Transaction<'_>,
    id: i64,
    password_hash: &str,
    must_change: bool,
    now: &str,
) -> Result<(), DbError> {
    tx.execute(
        "UPDATE users SET password_hash = ?2, must_change_password = ?3, changed_at = ?4
         WHERE id = ?1",
        params![id, password_hash, must_change, now],
    )?;
    Ok(())
}

pub fn set_disabled(
    tx: &Transaction<'_>,
    id: i64,
    disabled: bool,
    now: &str,
) -> Result<(), DbError> {
    tx.execute(
        "UPDATE users SET disabled = ?2, changed_at = ?3 WHERE id = ?1",
        params![id, disabled, now],
    )?;
    Ok(())
}

pub fn insert_session(
    tx: &Transaction<'_>,
    token_sha256: &str,
    user_id: i64,
    now_ms: i64,
    csrf: &str,
    user_agent: Option<&str>,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO sessions (token_sha256, user_id, created_ms, last_seen_ms, csrf,
         user_agent) VALUES (?1, ?2, ?3, ?3, ?4, ?5)",
        params![token_sha256, user_id, now_ms, csrf, user_agent],
    )?;
    Ok(())
}

pub fn session(conn: &Connection, token_sha256: &str) -> Result<Option<SessionRow>, DbError> {
    Ok(conn
        .query_row(
            "SELECT s.token_sha256, s.user_id, u.name, u.role, u.disabled,
                    u.must_change_password, s.created_ms, s.last_seen_ms, s.csrf
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_sha256 = ?1",
            [token_sha256],
            |r| {
                Ok(SessionRow {
                    token_sha256: r.get(0)?,
                    user_id: r.get(1)?,
                    user: r.get(2)?,
                    role: role_of(r.get(3)?)?,
                    disabled: r.get(4)?,
                    must_change_password: r.get(5)?,
                    created_ms: r.get(6)?,
                    last_seen_ms: r.get(7)?,
                    csrf: r.get(8)?,
                })
            },
        )
        .optional()?)
}

pub fn touch_session(tx: &Transaction<'_>, token_sha256: &str, now_ms: i64) -> Result<(), DbError> {
    tx.execute(
        "UPDATE sessions SET last_seen_ms = max(last_seen_ms, ?2) WHERE token_sha256 = ?1",
        params![token_sha256, now_ms],
    )?;
    Ok(())
}

pub fn delete_session(tx: &Transaction<'_>, token_sha256: &str) -> Result<usize, DbError> {
    Ok(tx.execute(
        "DELETE FROM sessions WHERE token_sha256 = ?1",
        [token_sha256],
    )?)
}

/// Deletes the account's sessions, except `keep` (the one making the request).
pub fn delete_user_sessions(
    tx: &Transaction<'_>,
    user_id: i64,
    keep: Option<&str>,
) -> Result<usize, DbError> {
    Ok(tx.execute(
        "DELETE FROM sessions WHERE user_id = ?1 AND token_sha256 IS NOT ?2",
        params![user_id, keep],
    )?)
}

pub fn count_user_sessions(conn: &Connection, user_id: i64) -> Result<i64, DbError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM sessions WHERE user_id = ?1",
        [user_id],
        |r| r.get(0),
    )?)
}

/// Removes sessions idle since before `idle_cutoff_ms` or created before
/// `absolute_cutoff_ms`.
pub fn delete_expired_sessions(
    tx: &Transaction<'_>,
    idle_cutoff_ms: i64,
    absolute_cutoff_ms: i64,
) -> Result<usize, DbError> {
    Ok(tx.execute(
        "DELETE FROM sessions WHERE last_seen_ms < ?1 OR created_ms < ?2",
        params![idle_cutoff_ms, absolute_cutoff_ms],
    )?)
}

pub fn insert_failure(
    tx: &Transaction<'_>,
    at_ms: i64,
    username: &str,
    address: &str,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO login_attempts (at_ms, username, address) VALUES (?1, ?2, ?3)",
        params![at_ms, username, address],
    )?;
    Ok(())
}

/// Times (ms) of failures since `since_ms` for an account name and for an address,
/// oldest first.
pub fn failures_since(
    conn: &Connection,
    username: &str,
    address: &str,
    since_ms: i64,
) -> Result<(Vec<i64>, Vec<i64>), DbError> {
    let mut by_user = conn.prepare_cached(
        "SELECT at_ms FROM login_attempts WHERE username = ?1 AND at_ms >= ?2 ORDER BY at_ms",
    )?;
    let user: Vec<i64> = by_user
        .query_map(params![username, since_ms], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut by_addr = conn.prepare_cached(
        "SELECT at_ms FROM login_attempts WHERE address = ?1 AND at_ms >= ?2 ORDER BY at_ms",
    )?;
    let addr: Vec<i64> = by_addr
        .query_map(params![address, since_ms], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok((user, addr))
}

/// After a successful sign-in: the failures typed for that account name are forgiven
/// (those for other names from the same address still count against the address).
pub fn clear_failures(tx: &Transaction<'_>, username: &str) -> Result<(), DbError> {
    tx.execute("DELETE FROM login_attempts WHERE username = ?1", [username])?;
    Ok(())
}

pub fn prune_failures(tx: &Transaction<'_>, before_ms: i64) -> Result<usize, DbError> {
    Ok(tx.execute("DELETE FROM login_attempts WHERE at_ms < ?1", [before_ms])?)
}
