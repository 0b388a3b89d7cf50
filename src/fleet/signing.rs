//! Signed agent requests (every agent call after enrollment).
//!
//! Wire format, version 1:
//!
//! ```text
//! Patchward-Host:      <host id>
//! Patchward-Date:      <RFC 3339 time, e.g. 2026-11-27T10:00:00.123456789Z>
//! Patchward-Signature: <standard base64 (with padding) of the 64-byte ed25519 signature>
//! signed message:      METHOD "\n" PATH "\n" DATE "\n" lowercase-hex(sha256(body))
//! ```
//!
//! `METHOD` is upper case (`POST`), `PATH` is the request path without query
//! (`/api/agent/v1/checkin`), `DATE` is the header value byte for byte. The appliance
//! verifies with `verify_strict` against the host's stored key, refuses a date more than
//! [`MAX_SKEW`] away from its clock, and refuses a signature it has already accepted
//! (per host, and across restarts: `web::agent_replay`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, VerifyingKey};
use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use crate::trust::keys::Ed25519Key;

pub const HOST_HEADER: &str = "patchward-host";
pub const DATE_HEADER: &str = "patchward-date";
pub const SIGNATURE_HEADER: &str = "patchward-signature";

/// Largest accepted difference between the request's date and the appliance's clock.
pub const MAX_SKEW: SignedDuration = SignedDuration::from_mins(5);

/// Why a signed request was refused. Each is short enough to send back as the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing or malformed {0} header")]
    Header(&'static str),
    #[error(
        "Patchward-Date is more than 5 minutes from the appliance's clock; fix the host's time"
    )]
    Skew,
    #[error("unknown host")]
    UnknownHost,
    #[error("this host was revoked; enroll it again with a new token")]
    Revoked,
    #[error("bad signature")]
    BadSignature,
    #[error("replayed request")]
    Replay,
    #[error("too many signed requests from this host in flight; retry later")]
    Busy,
    #[error("too many requests from this host; retry in {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    #[error(
        "the request is dated before the appliance restarted; sign it again with a fresh \
         date in {retry_after_s} s"
    )]
    SignedBeforeRestart { retry_after_s: u64 },
    #[error("internal error")]
    Internal,
}

/// The bytes a request signature covers.
pub fn message(method: &str, path: &str, date: &str, body: &[u8]) -> Vec<u8> {
    format!(
        "{method}\n{path}\n{date}\n{}",
        hex::encode(Sha256::digest(body))
    )
    .into_bytes()
}

/// The three headers of a signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub host: String,
    pub date: String,
    pub signature: String,
}

impl SignedHeaders {
    /// `(name, value)` pairs, ready to add to a request.
    pub fn pairs(&self) -> [(&'static str, &str); 3] {
        [
            (HOST_HEADER, &self.host),
            (DATE_HEADER, &self.date),
            (SIGNATURE_HEADER, &self.signature),
        ]
    }
}

/// Signs a request as `host_id` at time `now`. The date keeps its fractional seconds:
/// ed25519 signatures are deterministic, so two identical requests within one second
/// would otherwise be indistinguishable from a replay.
pub fn sign(
    key: &Ed25519Key,
    host_id: &str,
    method: &str,
    path: &str,
    now: Timestamp,
    body: &[u8],
) -> SignedHeaders {
    let date = now.to_string();
    let sig = key.sign(&message(method, path, &date, body));
    SignedHeaders {
        host: host_id.to_string(),
        date,
        signature: B64.encode(sig.to_bytes()),
    }
}

/// Parses the date and checks it is within [`MAX_SKEW`] of `now`.
pub fn check_date(date: &str, now: Timestamp) -> Result<Timestamp, AuthError> {
    let t: Timestamp = date
        .parse()
        .map_err(|_| AuthError::Header("Patchward-Date (RFC 3339)"))?;
    if t.duration_since(now).abs() > MAX_SKEW {
        return Err(AuthError::Skew);
    }
    Ok(t)
}

/// Decodes the signature header.
pub fn decode_signature(sig: &str) -> Result<[u8; 64], AuthError> {
    B64.decode(sig.trim())
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .ok_or(AuthError::Header("Patchward-Signature (base64)"))
}

/// Verifies `sig` over the request with `verify_strict`.
pub fn verify(
    public: &VerifyingKey,
    method: &str,
    path: &str,
    date: &str,
    sig: &[u8; 64],
    body: &[u8],
) -> Result<(), AuthError> {
    public
        .verify_strict(
            &message(method, path, date, body),
            &Signature::from_bytes(sig),
        )
        .map_err(|_| AuthError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify_and_tamper() {
        let k = Ed25519Key::generate(&mut rand::rngs::OsRng);
        let now: Timestamp = "2026-11-27T10:00:00.123Z".parse().unwrap();
        let h = sign(&k, "h1", "POST", "/api/agent/v1/checkin", now, b"{}");
        assert_eq!(h.date, "2026-11-27T10:00:00.123Z");
        let sig = decode_signature(&h.signature).unwrap();
        verify(
            &k.public(),
            "POST",
            "/api/agent/v1/checkin",
            &h.date,
            &sig,
            b"{}",
        )
        .unwrap();
        for (m, p, d, b) in [
            ("GET", "/api/agent/v1/checkin", h.date.as_str(), &b"{}"[..]),
            ("POST", "/api/agent/v1/enroll", h.date.as_str(), b"{}"),
            (
                "POST",
                "/api/agent/v1/checkin",
                "2026-11-27T10:00:01Z",
                b"{}",
            ),
            ("POST", "/api/agent/v1/checkin", h.date.as_str(), b"{ }"),
        ] {
            assert_eq!(
                verify(&k.public(), m, p, d, &sig, b),
                Err(AuthError::BadSignature)
            );
        }
        assert_eq!(check_date(&h.date, now).unwrap(), now);
        let late = now + SignedDuration::from_secs(301);
        assert_eq!(check_date(&h.date, late), Err(AuthError::Skew));
        assert!(check_date("Fri, 27 Nov 2026 10:00:00 GMT", now).is_err());
        assert!(decode_signature("AAAA").is_err());
    }
}
