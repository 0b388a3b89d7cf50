//! Enrollment tokens: created by the administrator, expiring, limited uses, and they may
//! preset a ring and labels for the hosts they enroll.
//!
//! The secret is printed once and only its sha256 is stored, so a copy of the database
//! does not let anyone enroll a host. Creation and every use are audited.

use jiff::{SignedDuration, Timestamp};
use rand::RngCore;
use rusqlite::{Connection, Transaction};
use sha2::{Digest, Sha256};

use super::{FleetError, Labels, TokenRefusal, invalid, validate_labels, validate_ring};
use crate::audit::{self, NewEntry};
use crate::db::fleet::{self as q, TokenRow};

/// What the administrator asked for.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub ring: Option<String>,
    pub labels: Labels,
    pub expires_in: SignedDuration,
    pub max_uses: u32,
}

/// A freshly created token: the secret is here and nowhere else.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CreatedToken {
    pub id: i64,
    pub token: String,
    pub expires_at: String,
    pub max_uses: u32,
}

/// A new random secret: `pwt_` and 32 random bytes in hex.
pub fn generate_secret() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("pwt_{}", hex::encode(b))
}

/// What is stored for a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Parses `30m`, `12h`, `7d` (a positive number and a unit).
pub fn parse_duration(s: &str) -> Result<SignedDuration, FleetError> {
    let bad = || invalid("duration", format!("{s:?}: use e.g. 30m, 12h or 7d"));
    let s = s.trim();
    let unit = s.chars().last().ok_or_else(bad)?;
    let n: i64 = s[..s.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
    if n <= 0 || n > 3650 * 24 * 60 {
        return Err(bad());
    }
    let mins = match unit {
        'm' => n,
        'h' => n * 60,
        'd' => n * 24 * 60,
        _ => return Err(bad()),
    };
    if mins > 3650 * 24 * 60 {
        return Err(bad());
    }
    Ok(SignedDuration::from_mins(mins))
}

/// The rule: a token is usable before it expires and while uses remain.
pub fn check_usable(t: &TokenRow, now: Timestamp) -> Result<(), TokenRefusal> {
    let expires: Timestamp = t
        .expires_at
        .parse()
        .map_err(|_| TokenRefusal::Expired(t.expires_at.clone()))?;
    if now >= expires {
        return Err(TokenRefusal::Expired(t.expires_at.clone()));
    }
    if t.uses >= t.max_uses {
        return Err(TokenRefusal::UsedUp(t.max_uses));
    }
    Ok(())
}

/// Creates a token and audits it (the audit entry holds its id, never the secret).
pub fn create(
    tx: &Transaction<'_>,
    now: Timestamp,
    actor: &str,
    new: &NewToken,
) -> Result<CreatedToken, FleetError> {
    if let Some(r) = &new.ring {
        validate_ring(r)?;
    }
    validate_labels(&new.labels)?;
    if new.max_uses == 0 {
        return Err(invalid("uses", "must be at least 1"));
    }
    let secret = generate_secret();
    let expires_at = now
        .checked_add(new.expires_in)
        .map_err(|_| invalid("expires", "too far in the future"))?
        .to_string();
    let labels = serde_json::to_string(&new.labels)?;
    let id = q::insert_token(
        tx,
        &hash_token(&secret),
        new.ring.as_deref(),
        &labels,
        &now.to_string(),
        actor,
        &expires_at,
        new.max_uses,
    )?;
    audit::append(
        tx,
        now,
        &NewEntry {
            actor,
            action: "token.created",
            subject: &format!("token:{id}"),
            details: serde_json::json!({
                "ring": new.ring, "labels": new.labels,
                "expires_at": expires_at, "max_uses": new.max_uses,
            }),
        },
    )?;
    Ok(CreatedToken {
        id,
        token: secret,
        expires_at,
        max_uses: new.max_uses,
    })
}

pub fn list(conn: &Connection) -> Result<Vec<TokenRow>, FleetError> {
    Ok(q::list_tokens(conn)?)
}

/// Checks `secret` and counts one use, inside the enrollment transaction.
pub fn consume(tx: &Transaction<'_>, secret: &str, now: Timestamp) -> Result<TokenRow, FleetError> {
    let t = q::token_by_hash(tx, &hash_token(secret))?.ok_or(TokenRefusal::Unknown)?;
    check_usable(&t, now)?;
    q::count_token_use(tx, t.id)?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(expires_at: &str, max_uses: u32, uses: u32) -> TokenRow {
        TokenRow {
            id: 1,
            ring: None,
            labels: "{}".into(),
            created_at: "2026-11-01T00:00:00Z".into(),
            created_by: "t".into(),
            expires_at: expires_at.into(),
            max_uses,
            uses,
        }
    }

    #[test]
    fn token_rules() {
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        check_usable(&row("2026-11-28T00:00:00Z", 3, 2), now).unwrap();
        assert_eq!(
            check_usable(&row("2026-11-27T10:00:00Z", 3, 0), now),
            Err(TokenRefusal::Expired("2026-11-27T10:00:00Z".into()))
        );
        assert_eq!(
            check_usable(&row("2026-11-28T00:00:00Z", 3, 3), now),
            Err(TokenRefusal::UsedUp(3))
        );
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("7d").unwrap(),
            SignedDuration::from_hours(168)
        );
        assert_eq!(
            parse_duration("30m").unwrap(),
            SignedDuration::from_mins(30)
        );
        for bad in ["", "d", "0d", "-1d", "7w", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn consume_counts_and_refuses_when_used_up_or_unknown() {
        let d = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&d.path().join("t.db"), Default::default()).unwrap();
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let new = NewToken {
            ring: Some("pilot".into()),
            labels: Labels::new(),
            expires_in: SignedDuration::from_hours(1),
            max_uses: 1,
        };
        let t = db
            .write_blocking(|tx| create(tx, now, "test", &new))
            .unwrap();
        let got = db.write_blocking(|tx| consume(tx, &t.token, now)).unwrap();
        assert_eq!(got.ring.as_deref(), Some("pilot"));
        let e = db
            .write_blocking(|tx| consume(tx, &t.token, now))
            .unwrap_err();
        assert!(
            matches!(e, FleetError::Token(TokenRefusal::UsedUp(1))),
            "{e}"
        );
        let e = db
            .write_blocking(|tx| consume(tx, "pwt_nope", now))
            .unwrap_err();
        assert!(matches!(e, FleetError::Token(TokenRefusal::Unknown)), "{e}");
        // Expired: a fresh token one hour later.
        let t2 = db
            .write_blocking(|tx| create(tx, now, "test", &new))
            .unwrap();
        let later = now + SignedDuration::from_hours(2);
        let e = db
            .write_blocking(|tx| consume(tx, &t2.token, later))
            .unwrap_err();
        assert!(
            matches!(e, FleetError::Token(TokenRefusal::Expired(_))),
            "{e}"
        );
        let rows = db.read_blocking(list).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].uses, rows[1].uses), (1, 0));
    }
}
