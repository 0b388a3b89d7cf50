//! Sessions: random 32-byte tokens (only their sha256 is stored), a CSRF token per
//! session, idle and absolute expiry decided against a `now` the caller takes from its
//! `Clock`.

use std::time::Duration;

use base64::Engine;
use jiff::Timestamp;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::db::users::SessionRow;

/// The session cookie. `__Host-` makes browsers insist on Secure, Path=/ and no Domain.
pub const COOKIE: &str = "__Host-patchward_session";

/// Session lifetimes (`[web]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRules {
    /// Signed out after this long without a request.
    pub idle: Duration,
    /// Signed out this long after signing in, active or not.
    pub absolute: Duration,
}

impl Default for SessionRules {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(12 * 3600),
        }
    }
}

/// A stored session's state at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Valid,
    IdleExpired,
    Expired,
}

/// Milliseconds since the epoch, the unit session and throttle times are stored in.
pub fn millis(t: Timestamp) -> i64 {
    t.as_millisecond()
}

/// Whether a session created at `created_ms` and last used at `last_seen_ms` is still
/// valid at `now_ms`.
pub fn freshness(
    created_ms: i64,
    last_seen_ms: i64,
    now_ms: i64,
    rules: &SessionRules,
) -> Freshness {
    if now_ms.saturating_sub(created_ms) >= rules.absolute.as_millis() as i64 {
        Freshness::Expired
    } else if now_ms.saturating_sub(last_seen_ms) >= rules.idle.as_millis() as i64 {
        Freshness::IdleExpired
    } else {
        Freshness::Valid
    }
}

/// Whether a session row may be used at `now_ms`: not expired, account not disabled.
pub fn usable(row: &SessionRow, now_ms: i64, rules: &SessionRules) -> bool {
    !row.disabled && freshness(row.created_ms, row.last_seen_ms, now_ms, rules) == Freshness::Valid
}

/// A new random session token (base64url, 43 characters) and the hex sha256 stored for it.
pub fn new_token() -> (String, String) {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let hash = token_hash(&token);
    (token, hash)
}

/// The stored form of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random CSRF token (64 hex digits: safe inside HTML attributes and JSON).
pub fn new_csrf() -> String {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    hex::encode(raw)
}

/// Whether a cookie value looks like one of our tokens (checked before any lookup).
pub fn plausible_token(v: &str) -> bool {
    v.len() == 43
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The `Set-Cookie` value that stores `token`.
pub fn set_cookie(token: &str) -> String {
    format!("{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Compares two secrets in constant time (length is not secret).
pub fn secrets_equal(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn idle_and_absolute_expiry() {
        let r = SessionRules::default();
        let t0 = 1_000_000_000_000;
        assert_eq!(freshness(t0, t0, t0, &r), Freshness::Valid);
        assert_eq!(freshness(t0, t0, t0 + 29 * MIN, &r), Freshness::Valid);
        assert_eq!(freshness(t0, t0, t0 + 30 * MIN, &r), Freshness::IdleExpired);
        // Used every 20 minutes: alive until 12 h after sign-in, then gone.
        let last = t0 + 12 * 60 * MIN - 5 * MIN;
        assert_eq!(freshness(t0, last, last + MIN, &r), Freshness::Valid);
        assert_eq!(
            freshness(t0, last, t0 + 12 * 60 * MIN, &r),
            Freshness::Expired
        );
    }

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let (a, ha) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert!(plausible_token(&a), "{a}");
        assert_eq!(ha, token_hash(&a));
        assert_eq!(ha.len(), 64);
        assert!(!ha.contains(&a));
        assert!(!plausible_token("short"));
        assert!(!plausible_token(&format!("{}=", &a[..42])));
        assert_eq!(new_csrf().len(), 64);
    }

    #[test]
    fn cookie_flags_and_secret_comparison() {
        let c = set_cookie("abc");
        assert_eq!(
            c,
            "__Host-patchward_session=abc; Path=/; Secure; HttpOnly; SameSite=Strict"
        );
        assert!(clear_cookie().ends_with("Max-Age=0"));
        assert!(secrets_equal("abcd", "abcd"));
        assert!(!secrets_equal("abcd", "abce"));
        assert!(!secrets_equal("abcd", "abc"));
        assert!(!secrets_equal("", "a"));
    }
}
