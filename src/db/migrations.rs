//! Schema migrations, applied in order at open; the schema version is SQLite's
//! `user_version` (managed by rusqlite_migration).
//!
//! Migrations are append-only: a released migration is never edited, only followed by a
//! new one.

use std::path::Path;
use std::sync::LazyLock;

use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};

use crate::error::DbError;

static MIGRATIONS: LazyLock<Migrations<'static>> = LazyLock::new(|| {
    Migrations::new(vec![M::up(
        r#"
        -- Small settings and facts about this appliance (first start, key ids, ...).
        CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) STRICT;

        -- Append-only, hash-chained audit log (see audit.rs).
        CREATE TABLE audit_log (
            seq       INTEGER PRIMARY KEY,
            at        TEXT NOT NULL,
            actor     TEXT NOT NULL,
            action    TEXT NOT NULL,
            subject   TEXT NOT NULL,
            details   TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash      TEXT NOT NULL
        ) STRICT;
        CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        "#,
    )])
});

/// The schema version this binary writes.
pub const LATEST: usize = 1;

/// Reads the schema version of an open connection.
pub fn schema_version(conn: &Connection) -> Result<usize, DbError> {
    let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    Ok(usize::try_from(v).unwrap_or(usize::MAX))
}

pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), DbError> {
    let found = schema_version(conn)?;
    if found > LATEST {
        return Err(DbError::TooNew {
            path: path.to_path_buf(),
            found,
            known: LATEST,
        });
    }
    MIGRATIONS.to_latest(conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid_and_latest_matches() {
        super::MIGRATIONS.validate().unwrap();
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        super::MIGRATIONS.to_latest(&mut c).unwrap();
        assert_eq!(super::schema_version(&c).unwrap(), super::LATEST);
    }
}
