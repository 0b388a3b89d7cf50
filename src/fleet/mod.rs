//! The fleet: enrollment tokens, enrolled hosts, their inventory, and the signed-request
//! format agents use after enrollment (DESIGN §3 "Agent protocol").
//!
//! Everything here takes `now` and a database connection or transaction from the caller;
//! the web handlers and the admin CLI call the same functions. Hostnames, labels and
//! inventories come from machines the appliance does not control, so they are validated
//! (length and character set) before anything is stored.

pub mod hosts;
pub mod inventory;
pub mod job_detail;
pub mod jobs;
pub mod signing;
pub mod standing;
pub mod tokens;

use std::collections::BTreeMap;

use crate::error::{AuditError, DbError};

/// How often agents are asked to check in (seconds). A constant until policy windows
/// arrive; the agent jitters it by ±20 %.
pub const POLL_SECONDS: u64 = 300;

/// A host is shown as stale when it has not been seen for this many poll intervals.
pub const STALE_AFTER_POLLS: u64 = 3;

/// Labels set on a token and copied to the hosts it enrolls (`key=value`).
pub type Labels = BTreeMap<String, String>;

/// Why an enrollment token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("unknown token; ask the administrator for a new one (`patchward hosts token create`)")]
    Unknown,
    #[error("the token expired at {0}; ask the administrator for a new one")]
    Expired(String),
    #[error("the token was already used {0} times, its limit; ask the administrator for a new one")]
    UsedUp(u32),
}

/// Errors from fleet operations. Each maps to one HTTP status in `web::agent`.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("enrollment refused: {0}")]
    Token(TokenRefusal),
    #[error("this public key is already enrolled as host {0}; generate a new key to enroll again")]
    KeyInUse(String),
    #[error("no host matches {0:?}{1}; see `patchward hosts list`")]
    NoSuchHost(String, crate::suggest::DidYouMean),
    #[error("{0:?} matches several hosts ({1}); use the host id")]
    Ambiguous(String, String),
    #[error("host {0} is revoked; enroll it again with a new token")]
    Revoked(String),
    #[error("no patch {0:?} in any feed's current catalog{1}; see `patchward patches list`")]
    NoSuchPatch(String, crate::suggest::DidYouMean),
    #[error("patch {0:?} is in several feeds ({1}); give it as FEED:ID")]
    AmbiguousPatch(String, String),
    #[error("no job {0:?}; see `patchward jobs list`")]
    NoSuchJob(String),
    #[error("job {0} is not this host's job")]
    NotYourJob(String),
    #[error("job {job}: {from} -> {to} is not a legal transition")]
    IllegalTransition {
        job: String,
        from: String,
        to: String,
    },
    #[error("packages_digest does not match the last report; send the full package list")]
    DigestMismatch,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("cannot encode JSON: {0}")]
    Json(serde_json::Error),
}

// The cause is part of the message above, so it is not also exposed as `source()`
// (a chain printer would name it twice); hence these by hand instead of `#[from]`.
impl From<TokenRefusal> for FleetError {
    fn from(e: TokenRefusal) -> Self {
        FleetError::Token(e)
    }
}
impl From<serde_json::Error> for FleetError {
    fn from(e: serde_json::Error) -> Self {
        FleetError::Json(e)
    }
}

impl From<rusqlite::Error> for FleetError {
    fn from(e: rusqlite::Error) -> Self {
        FleetError::Db(DbError::Sqlite(e))
    }
}

impl FleetError {
    /// A stable, machine-readable name for the refusals an agent acts on (sent as
    /// `code` next to `error`), so the agent never guesses from a status alone.
    pub fn code(&self) -> &'static str {
        match self {
            FleetError::Invalid { .. } => "invalid",
            FleetError::TooLarge(_) => "too_large",
            FleetError::Token(_) => "token_refused",
            FleetError::KeyInUse(_) => "key_in_use",
            FleetError::NoSuchHost(..) => "unknown_host",
            FleetError::Ambiguous(..) => "ambiguous",
            FleetError::Revoked(_) => "revoked",
            FleetError::NoSuchPatch(..) | FleetError::AmbiguousPatch(..) => "no_such_patch",
            FleetError::NotYourJob(_) => "not_your_job",
            FleetError::NoSuchJob(_) => "no_such_job",
            FleetError::IllegalTransition { .. } => "illegal_transition",
            FleetError::DigestMismatch => "packages_digest_unknown",
            FleetError::Db(_) | FleetError::Audit(_) | FleetError::Json(_) => "internal",
        }
    }

    /// The job a refusal is about, when it is about one.
    pub fn job(&self) -> Option<&str> {
        match self {
            FleetError::NotYourJob(j) | FleetError::IllegalTransition { job: j, .. } => Some(j),
            _ => None,
        }
    }
}

pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> FleetError {
    FleetError::Invalid {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// A hostname: 1-253 characters from `A-Z a-z 0-9 . - _`, starting with a letter or
/// digit. Anything else (HTML, spaces, control characters) is refused.
pub fn validate_hostname(name: &str) -> Result<(), FleetError> {
    if name.is_empty() || name.len() > 253 {
        return Err(invalid("hostname", "must be 1-253 characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(invalid("hostname", "must start with a letter or digit"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(invalid(
            "hostname",
            format!("character {c:?} is not allowed (only A-Z a-z 0-9 . - _)"),
        ));
    }
    Ok(())
}

fn check_word(field: &str, s: &str, max: usize, extra: &[char]) -> Result<(), FleetError> {
    if s.is_empty() || s.len() > max {
        return Err(invalid(field, format!("must be 1-{max} characters")));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || extra.contains(c)))
    {
        return Err(invalid(
            field,
            format!("{s:?}: character {c:?} is not allowed"),
        ));
    }
    Ok(())
}

/// A ring name: 1-32 characters from `a-z A-Z 0-9 - _`.
pub fn validate_ring(ring: &str) -> Result<(), FleetError> {
    check_word("ring", ring, 32, &['-', '_'])
}

/// Labels: at most 32; keys 1-63 of `a-z A-Z 0-9 . - _ /`, values 0-63 of `a-z A-Z 0-9 . - _`.
pub fn validate_labels(labels: &Labels) -> Result<(), FleetError> {
    if labels.len() > 32 {
        return Err(invalid("labels", "at most 32 labels"));
    }
    for (k, v) in labels {
        check_word("label key", k, 63, &['.', '-', '_', '/'])?;
        if !v.is_empty() {
            check_word("label value", v, 63, &['.', '-', '_'])?;
        }
    }
    Ok(())
}

/// Parses `k=v,k2=v2` (empty string: no labels) and validates the result.
pub fn parse_labels(s: &str) -> Result<Labels, FleetError> {
    let mut labels = Labels::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| invalid("labels", format!("{part:?} is not key=value")))?;
        if labels.insert(k.to_string(), v.to_string()).is_some() {
            return Err(invalid("labels", format!("key {k:?} given twice")));
        }
    }
    validate_labels(&labels)?;
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        for ok in ["web1", "db-2.example.com", "a", "x_y"] {
            validate_hostname(ok).unwrap();
        }
        for bad in [
            "",
            "<script>alert(1)</script>",
            "web\u{7}1",
            "web 1",
            "-web",
            "web\n",
            &"a".repeat(254),
        ] {
            let e = validate_hostname(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid hostname"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn labels() {
        let l = parse_labels("site=hq, role=db").unwrap();
        assert_eq!(l["site"], "hq");
        assert_eq!(l["role"], "db");
        assert!(parse_labels("").unwrap().is_empty());
        for bad in ["site", "a=1,a=2", "k=<b>", "=v", "k=v w"] {
            assert!(parse_labels(bad).is_err(), "{bad}");
        }
        validate_ring("pilot").unwrap();
        assert!(validate_ring("pi lot").is_err());
    }
}
