//! Errors from verifying feed metadata.
//!
//! Each message names what failed, the numbers involved and, in parentheses, the attack
//! the check stops, so an operator reading an import failure knows whether to suspect
//! tampering, a stale bundle or a wrong clock.

use jiff::Timestamp;

use crate::feed::catalog::InvalidCatalog;

/// Why signed feed metadata was refused.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("envelope is not valid DSSE JSON: {reason}")]
    MalformedEnvelope { reason: String },
    #[error(
        "payload type is {found:?} but {expected:?} was expected (metadata of another kind substituted)"
    )]
    PayloadType { expected: String, found: String },
    #[error("envelope has {count} signatures, more than the {max} allowed")]
    TooManySignatures { count: usize, max: usize },
    #[error("the {role} role has threshold 0, which would accept unsigned metadata")]
    ZeroThreshold { role: String },
    #[error("{valid} of {threshold} required signatures from the {role} role{}", notes_suffix(.notes))]
    Threshold {
        role: String,
        valid: usize,
        threshold: u32,
        notes: Vec<String>,
    },
    #[error("{role} payload is malformed: {reason}")]
    MalformedPayload { role: String, reason: String },
    #[error(
        "{role} {field} {value} is out of range (at most {max}, what this appliance can \
         store); refused"
    )]
    OutOfRange {
        role: &'static str,
        field: &'static str,
        value: u64,
        max: u64,
    },
    #[error("root version {version} is invalid: {reason}")]
    InvalidRoot { version: u64, reason: String },
    #[error("root version {given} given but {expected} expected next (skipped root)")]
    RootSkipped { given: u64, expected: u64 },
    #[error(
        "new root version {version} is not signed by the old root's keys: {cause} (rotation must be approved by the old root)"
    )]
    RootNotSignedByOld {
        version: u64,
        cause: Box<TrustError>,
    },
    #[error(
        "new root version {version} is not signed by its own keys: {cause} (the new root keys must prove possession)"
    )]
    RootNotSignedByNew {
        version: u64,
        cause: Box<TrustError>,
    },
    #[error("{role} version {given} is older than the accepted version {accepted} (rollback)")]
    Rollback {
        role: &'static str,
        given: u64,
        accepted: u64,
    },
    #[error(
        "{role} version {version} differs from the accepted {role} version {version} \
         (same version, different content: replay or publisher error)"
    )]
    SameVersionDifferentContent { role: &'static str, version: u64 },
    #[error(
        "{role} version {version} expired at {expires} (appliance time {now}, newest signed time seen {newest}) \
         (stale or frozen metadata); get a newer bundle or check the clock"
    )]
    Expired {
        role: &'static str,
        version: u64,
        expires: Timestamp,
        now: Timestamp,
        newest: Timestamp,
    },
    #[error(
        "catalog version {given} given but the timestamp names version {expected} (mix-and-match)"
    )]
    TimestampVersion { given: u64, expected: u64 },
    #[error(
        "catalog is {found} bytes with sha256 {found_sha256} but the timestamp says {expected} bytes \
         with sha256 {expected_sha256} (tampered or mixed-up catalog)"
    )]
    TimestampHash {
        expected: u64,
        expected_sha256: String,
        found: u64,
        found_sha256: String,
    },
    #[error("catalog version {version} is signed but invalid: {cause}")]
    InvalidCatalog { version: u64, cause: InvalidCatalog },
}

fn notes_suffix(notes: &[String]) -> String {
    if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    }
}
