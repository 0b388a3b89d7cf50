//! The decisions recorded about legacy hosts, as read by the views and the planner:
//! an include (opted in to rollouts despite its state) and a risk acceptance (run as it
//! is, under named compensating controls, until a date). Changes go through
//! `legacy::decide`, each in one transaction with its audit entry.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::LegacyError;

/// `legacy include HOST --reason R`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Include {
    pub reason: String,
    pub at: String,
    pub actor: String,
}

/// A risk acceptance as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Acceptance {
    pub reason: String,
    pub controls: Vec<String>,
    pub accepted_at: Timestamp,
    pub until: Timestamp,
    pub actor: String,
    /// Whether its expiry has been audited.
    pub expiry_audited: bool,
}

impl Acceptance {
    /// Whether it has run out at `now` (an acceptance ends at `until`).
    pub fn expired(&self, now: Timestamp) -> bool {
        now >= self.until
    }
}

/// Where a host stands on acceptance at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AcceptanceStatus {
    Accepted,
    Expired,
    Missing,
}

impl AcceptanceStatus {
    pub fn of(a: Option<&Acceptance>, now: Timestamp) -> Self {
        match a {
            Some(a) if !a.expired(now) => AcceptanceStatus::Accepted,
            Some(_) => AcceptanceStatus::Expired,
            None => AcceptanceStatus::Missing,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AcceptanceStatus::Accepted => "accepted",
            AcceptanceStatus::Expired => "expired",
            AcceptanceStatus::Missing => "missing",
        }
    }
}

/// The include of host `key`, if any.
pub fn include_of(conn: &Connection, key: &str) -> Result<Option<Include>, LegacyError> {
    Ok(conn
        .query_row(
            "SELECT reason, at, actor FROM legacy_includes WHERE host = ?1",
            params![key],
            |r| {
                Ok(Include {
                    reason: r.get(0)?,
                    at: r.get(1)?,
                    actor: r.get(2)?,
                })
            },
        )
        .optional()?)
}

/// Every include, by host key.
pub fn includes(conn: &Connection) -> Result<Vec<(String, Include)>, LegacyError> {
    let mut st =
        conn.prepare("SELECT host, reason, at, actor FROM legacy_includes ORDER BY host")?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            Include {
                reason: r.get(1)?,
                at: r.get(2)?,
                actor: r.get(3)?,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

type RawAcceptance = (String, String, String, String, String, String, i64);

fn acceptance(raw: RawAcceptance) -> Result<(String, Acceptance), LegacyError> {
    let (host, reason, controls, accepted_at, until, actor, audited) = raw;
    let stored = |what: &str, e: String| {
        LegacyError::Refused(format!("stored risk acceptance of {host}: bad {what}: {e}"))
    };
    let a = Acceptance {
        reason,
        controls: serde_json::from_str(&controls).map_err(|e| stored("controls", e.to_string()))?,
        accepted_at: accepted_at
            .parse()
            .map_err(|e: jiff::Error| stored("accepted_at", e.to_string()))?,
        until: until
            .parse()
            .map_err(|e: jiff::Error| stored("until", e.to_string()))?,
        actor,
        expiry_audited: audited != 0,
    };
    Ok((host, a))
}

const ACCEPTANCE_COLS: &str = "host, reason, controls, accepted_at, until, actor, expiry_audited";

fn raw_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawAcceptance> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

/// The risk acceptance of host `key`, if any (expired ones included).
pub fn acceptance_of(conn: &Connection, key: &str) -> Result<Option<Acceptance>, LegacyError> {
    let raw = conn
        .query_row(
            &format!("SELECT {ACCEPTANCE_COLS} FROM legacy_acceptances WHERE host = ?1"),
            params![key],
            raw_row,
        )
        .optional()?;
    raw.map(|r| acceptance(r).map(|(_, a)| a)).transpose()
}

/// Every risk acceptance, by host key.
pub fn acceptances(conn: &Connection) -> Result<Vec<(String, Acceptance)>, LegacyError> {
    let mut st = conn.prepare(&format!(
        "SELECT {ACCEPTANCE_COLS} FROM legacy_acceptances ORDER BY host"
    ))?;
    let rows = st.query_map([], raw_row)?.collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(acceptance).collect()
}
