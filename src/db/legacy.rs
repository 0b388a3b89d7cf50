//! Queries shared by the legacy modules: finding a legacy host by name and reading the
//! active lifecycle catalog. (Each legacy area keeps its own queries beside these:
//! `db::legacy_*`.)

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::DbError;

/// Whether an agentless legacy host of this name exists.
pub fn agentless_exists(conn: &Connection, name: &str) -> Result<bool, DbError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM legacy_hosts WHERE name = ?1",
            params![name],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// The names of all agentless legacy hosts, sorted.
pub fn agentless_names(conn: &Connection) -> Result<Vec<String>, DbError> {
    let mut st = conn.prepare("SELECT name FROM legacy_hosts ORDER BY name")?;
    let rows = st.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The stored lifecycle catalog: (version, source, sha256, feed, imported_at, body).
pub type CatalogRow = (String, String, String, String, String, Vec<u8>);

/// The lifecycle catalog a feed brought, if any.
pub fn eol_catalog(conn: &Connection) -> Result<Option<CatalogRow>, DbError> {
    Ok(conn
        .query_row(
            "SELECT version, source, sha256, feed, imported_at, body FROM eol_catalog WHERE id = 1",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .optional()?)
}
