//! Accounts of the admin page: users and roles, password hashing (argon2id), sessions,
//! sign-in throttling. Queries are in `db::users`; the web layer is `web::admin`.
//!
//! - [`password`]: hashing, verification, generated passwords, rules for chosen ones.
//! - [`session`]: tokens (only their sha256 stored), CSRF tokens, idle and absolute
//!   expiry, the cookie.
//! - [`throttle`]: the pure lockout decision from recent failures.
//! - [`users`]: the audited operations the CLI and the web page share.
//! - [`actor`]: who runs the CLI (`cli:NAME`), from the kernel's view, not the
//!   environment.

pub mod actor;
pub mod cli;
pub mod password;
mod role;
pub mod session;
pub mod throttle;
pub mod users;

pub use role::Role;
pub use session::SessionRules;
pub use throttle::ThrottleRules;

use crate::error::{AuditError, DbError};

/// The admin page's settings (`[web]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WebSettings {
    pub sessions: SessionRules,
    pub throttle: ThrottleRules,
}

/// Errors of account operations, worded for the operator or the form that shows them.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "a user called {0:?} exists already; choose another name, or set its password with \
         `patchward users passwd`"
    )]
    Exists(String),
    #[error("there is no user called {0:?}; `patchward users list` shows the accounts")]
    NoSuchUser(String),
    #[error("{0}")]
    Hash(String),
    #[error("The current password is wrong.")]
    WrongPassword,
    #[error("Too many failed attempts; try again after {until}.")]
    Throttled { until: jiff::Timestamp },
    #[error("cannot write the output: {0}")]
    Io(std::io::Error),
}

// The cause is part of the message above, so it is not also exposed as `source()`
// (a chain printer would name it twice); hence these by hand instead of `#[from]`.
impl From<std::io::Error> for AuthError {
    fn from(e: std::io::Error) -> Self {
        AuthError::Io(e)
    }
}

impl From<rusqlite::Error> for AuthError {
    fn from(e: rusqlite::Error) -> Self {
        AuthError::Db(DbError::Sqlite(e))
    }
}
