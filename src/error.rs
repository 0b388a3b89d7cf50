//! Error types shared across the library.
//!
//! Library code returns these precise errors; only the binaries wrap them in `anyhow`.
//! Messages are written for the operator who reads them: they say what went wrong and,
//! where there is one, what to do next.

use std::path::PathBuf;

/// Errors from the SQLite state database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open database {path}: {cause}")]
    Open {
        path: PathBuf,
        cause: rusqlite::Error,
    },
    #[error("database migration failed: {0}")]
    Migration(rusqlite_migration::Error),
    #[error(
        "database {path} has schema version {found}, newer than this binary knows ({known}); \
         run the newer patchward binary or restore a backup"
    )]
    TooNew {
        path: PathBuf,
        found: usize,
        known: usize,
    },
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    #[error("database worker stopped unexpectedly: {0}")]
    Worker(String),
    #[error(
        "{what} {value} does not fit the database (at most 9223372036854775807); nothing \
         was stored"
    )]
    OutOfRange { what: &'static str, value: u64 },
}

// The cause is part of the message above, so it is not also exposed as `source()`
// (a chain printer would name it twice); hence these by hand instead of `#[from]`.
impl From<rusqlite_migration::Error> for DbError {
    fn from(e: rusqlite_migration::Error) -> Self {
        DbError::Migration(e)
    }
}
impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(e)
    }
}

/// Errors from reading, generating or storing key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot write key file {path}: {cause}")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "key file {path} is malformed: {reason}; restore it from backup or move it away to generate a new key"
    )]
    Malformed { path: PathBuf, reason: String },
    #[error(
        "key file {path} has mode {mode:o}, readable by other users; run `chmod 600 {path}` \
         (and consider the key compromised if others could read it)"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("OpenPGP error: {0}")]
    OpenPgp(String),
}

/// Errors from opening the appliance's data directory.
#[derive(Debug, thiserror::Error)]
pub enum ApplianceError {
    #[error("data directory {path} is not usable: {reason}")]
    DataDir { path: PathBuf, reason: String },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("HTTPS certificate: {0}")]
    Tls(crate::tls::TlsError),
    #[error("accounts: {0}")]
    Account(crate::auth::AuthError),
}

// The cause is part of the message above, so it is not also exposed as `source()`
// (a chain printer would name it twice); hence these by hand instead of `#[from]`.
impl From<crate::tls::TlsError> for ApplianceError {
    fn from(e: crate::tls::TlsError) -> Self {
        ApplianceError::Tls(e)
    }
}
impl From<crate::auth::AuthError> for ApplianceError {
    fn from(e: crate::auth::AuthError) -> Self {
        ApplianceError::Account(e)
    }
}

/// Errors from the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("audit details are not valid JSON: {0}")]
    Details(serde_json::Error),
}

// The cause is part of the message above, so it is not also exposed as `source()`
// (a chain printer would name it twice); hence these by hand instead of `#[from]`.
impl From<serde_json::Error> for AuditError {
    fn from(e: serde_json::Error) -> Self {
        AuditError::Details(e)
    }
}

impl From<rusqlite::Error> for AuditError {
    fn from(e: rusqlite::Error) -> Self {
        AuditError::Db(DbError::Sqlite(e))
    }
}
