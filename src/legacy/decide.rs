//! The decisions an operator records about a legacy host, each validated, written and
//! audited in the caller's transaction (so a refusal changes nothing):
//!
//! - **include / exclude**: opt an agent host in to rollouts despite its lifecycle
//!   state, and undo that. Only agent hosts: Patchward never offers patches to a host
//!   without an agent, so including an agentless one would promise something untrue.
//! - **accept / revoke_acceptance**: a risk acceptance, i.e. someone with authority
//!   says the host may run as it is, under named compensating controls, until a date.
//!   The date is a UTC calendar day and the acceptance ends at the START of it
//!   (`--until 2027-06-30` covers up to 2027-06-29 inclusive): an acceptance never runs
//!   a moment longer than the day written on it, and it is at most
//!   `legacy.max_acceptance_days` from today.
//! - **expire_due**: an acceptance whose end has passed turns the host back to
//!   unaccepted on its own (the read side compares with `now`); this records the
//!   expiry in the audit log once, as `system`.
//!
//! Who may accept (admins only) is checked by the caller: the web's role guard, and
//! `decide_cli` for the command line.

use jiff::Timestamp;
use jiff::civil::Date;
use rusqlite::{Transaction, params};
use serde_json::json;

use super::decisions::{self, Acceptance};
use super::{HostRef, LegacyError};
use crate::audit::{self, NewEntry};
use crate::config::LegacyConfig;

/// The compensating controls an acceptance may name: (name, what it means). A fixed
/// vocabulary, so acceptances can be counted and compared across the fleet, and part 2
/// (network fencing) can check the ones it can see.
pub const CONTROLS: &[(&str, &str)] = &[
    (
        "segmented",
        "on a network segment of its own; traffic to and from it is filtered",
    ),
    (
        "isolated-vlan",
        "on a VLAN that reaches only the hosts it must talk to",
    ),
    (
        "no-internet",
        "cannot reach the internet and cannot be reached from it",
    ),
    (
        "monitored",
        "its traffic or logs are watched, with alerts on anomalies",
    ),
    (
        "app-firewall",
        "an application firewall or reverse proxy filters requests to it",
    ),
    (
        "backup-verified",
        "backed up, with a restore tested recently",
    ),
    (
        "vendor-extended-support",
        "covered by the vendor's paid extended support",
    ),
    (
        "replacement-planned",
        "a replacement is scheduled before the acceptance ends",
    ),
];

/// The longest reason accepted, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// What `accept` records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptRequest {
    pub reason: String,
    pub controls: Vec<String>,
    /// The UTC day at whose start the acceptance ends.
    pub until: Date,
}

fn invalid(field: &str, reason: impl Into<String>) -> LegacyError {
    LegacyError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A reason, trimmed: 1 to 500 characters.
fn reason_of(text: &str) -> Result<&str, LegacyError> {
    let r = text.trim();
    if r.is_empty() {
        return Err(invalid(
            "reason",
            "a reason is required (--reason \"...\"): say why, for the audit log",
        ));
    }
    let n = r.chars().count();
    if n > MAX_REASON_CHARS {
        return Err(invalid(
            "reason",
            format!("{n} characters is too long (at most {MAX_REASON_CHARS})"),
        ));
    }
    Ok(r)
}

fn control_names() -> String {
    CONTROLS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses a comma-separated list of control names (`segmented,monitored`): at least
/// one, each from [`CONTROLS`] (case and spaces ignored), duplicates dropped, in the
/// order given.
pub fn parse_controls(text: &str) -> Result<Vec<String>, LegacyError> {
    let mut out: Vec<String> = Vec::new();
    let mut unknown = Vec::new();
    for part in text.split(',') {
        let name = part.trim().to_ascii_lowercase();
        if name.is_empty() {
            continue;
        }
        if !CONTROLS.iter().any(|(n, _)| *n == name) {
            unknown.push(part.trim().to_string());
        } else if !out.contains(&name) {
            out.push(name);
        }
    }
    if !unknown.is_empty() {
        return Err(invalid(
            "controls",
            format!(
                "unknown control {}; known controls: {}",
                unknown
                    .iter()
                    .map(|u| format!("{u:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                control_names()
            ),
        ));
    }
    if out.is_empty() {
        return Err(invalid(
            "controls",
            format!(
                "name at least one compensating control (--controls a,b); known controls: {}",
                control_names()
            ),
        ));
    }
    Ok(out)
}

/// The latest `--until` allowed on `today`.
pub fn latest_until(today: Date, cfg: &LegacyConfig) -> Date {
    today
        .checked_add(jiff::Span::new().days(i64::from(cfg.max_acceptance_days)))
        .unwrap_or(Date::MAX)
}

/// The moment an acceptance written with `until` ends: the start of that UTC day.
pub fn ends_at(until: Date) -> Result<Timestamp, LegacyError> {
    jiff::tz::TimeZone::UTC
        .to_timestamp(until.to_datetime(jiff::civil::Time::midnight()))
        .map_err(|e| invalid("until", e.to_string()))
}

/// Records a risk acceptance of `host` (replacing any earlier one, whose terms the
/// audit entry keeps).
pub fn accept(
    tx: &Transaction<'_>,
    now: Timestamp,
    cfg: &LegacyConfig,
    host: &HostRef,
    req: &AcceptRequest,
    actor: &str,
) -> Result<(), LegacyError> {
    let reason = reason_of(&req.reason)?;
    // Re-checked here so the web form and the CLI share one rule.
    let controls = parse_controls(&req.controls.join(","))?;
    let today = super::active::day(now);
    if req.until <= today {
        return Err(invalid(
            "until",
            format!(
                "{} is not after today ({today}, UTC): an acceptance ends at the start of \
                 its date, so give a later one",
                req.until
            ),
        ));
    }
    let latest = latest_until(today, cfg);
    if req.until > latest {
        return Err(invalid(
            "until",
            format!(
                "{} is more than legacy.max_acceptance_days ({}) days away: the latest \
                 allowed date is {latest}",
                req.until, cfg.max_acceptance_days
            ),
        ));
    }
    let until = ends_at(req.until)?;
    let old = decisions::acceptance_of(tx, host.key())?;
    tx.execute(
        "INSERT INTO legacy_acceptances (host, reason, controls, accepted_at, until, actor, expiry_audited)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)
         ON CONFLICT(host) DO UPDATE SET reason = excluded.reason, controls = excluded.controls,
           accepted_at = excluded.accepted_at, until = excluded.until, actor = excluded.actor,
           expiry_audited = 0",
        params![
            host.key(),
            reason,
            serde_json::to_string(&controls).map_err(|e| invalid("controls", e.to_string()))?,
            now.to_string(),
            until.to_string(),
            actor,
        ],
    )?;
    let mut details = json!({
        "host": host.display_name(),
        "reason": reason,
        "controls": controls,
        "until": req.until.to_string(),
        "ends_at": until.to_string(),
    });
    if let Some(old) = old {
        details["replaces"] = previous(&old, now);
    }
    audit::append(
        tx,
        now,
        &NewEntry {
            actor,
            action: "legacy.accept",
            subject: host.key(),
            details,
        },
    )?;
    Ok(())
}

/// The terms of a replaced or revoked acceptance, for its audit entry.
fn previous(old: &Acceptance, now: Timestamp) -> serde_json::Value {
    json!({
        "reason": old.reason,
        "controls": old.controls,
        "accepted_at": old.accepted_at.to_string(),
        "accepted_by": old.actor,
        "ends_at": old.until.to_string(),
        "expired": old.expired(now),
    })
}

/// Removes the risk acceptance of `host` (expired or not). Refused when there is none.
pub fn revoke_acceptance(
    tx: &Transaction<'_>,
    now: Timestamp,
    host: &HostRef,
    reason: &str,
    actor: &str,
) -> Result<(), LegacyError> {
    let reason = reason_of(reason)?;
    let Some(old) = decisions::acceptance_of(tx, host.key())? else {
        return Err(LegacyError::Refused(format!(
            "{} has no risk acceptance to revoke",
            host.display_name()
        )));
    };
    tx.execute(
        "DELETE FROM legacy_acceptances WHERE host = ?1",
        params![host.key()],
    )?;
    audit::append(
        tx,
        now,
        &NewEntry {
            actor,
            action: "legacy.revoke_acceptance",
            subject: host.key(),
            details: json!({
                "host": host.display_name(),
                "reason": reason,
                "revoked": previous(&old, now),
            }),
        },
    )?;
    Ok(())
}

/// Opts agent host `host` in to rollouts despite its lifecycle state. Allowed for a
/// host that is still supported too (it then keeps getting patches once it reaches
/// end of life). Refused for agentless hosts and for a host already included.
pub fn include(
    tx: &Transaction<'_>,
    now: Timestamp,
    host: &HostRef,
    reason: &str,
    actor: &str,
) -> Result<(), LegacyError> {
    let reason = reason_of(reason)?;
    if let HostRef::Agentless { name } = host {
        return Err(LegacyError::Refused(format!(
            "{name} is an agentless host: Patchward never offers patches to a host without \
             an agent, so there is nothing to include (record a risk acceptance instead: \
             patchward legacy accept {name} ...)"
        )));
    }
    if let Some(old) = decisions::include_of(tx, host.key())? {
        return Err(LegacyError::Refused(format!(
            "{} is already included (by {} at {}: {})",
            host.display_name(),
            old.actor,
            old.at,
            old.reason
        )));
    }
    tx.execute(
        "INSERT INTO legacy_includes (host, reason, at, actor) VALUES (?1, ?2, ?3, ?4)",
        params![host.key(), reason, now.to_string(), actor],
    )?;
    audit::append(
        tx,
        now,
        &NewEntry {
            actor,
            action: "legacy.include",
            subject: host.key(),
            details: json!({ "host": host.display_name(), "reason": reason }),
        },
    )?;
    Ok(())
}

/// Undoes [`include`]: the host is judged by its lifecycle state again. Refused when
/// it is not included.
pub fn exclude(
    tx: &Transaction<'_>,
    now: Timestamp,
    host: &HostRef,
    reason: &str,
    actor: &str,
) -> Result<(), LegacyError> {
    let reason = reason_of(reason)?;
    let Some(old) = decisions::include_of(tx, host.key())? else {
        return Err(LegacyError::Refused(format!(
            "{} is not included, so there is nothing to exclude (hosts at end of life are \
             kept out of rollouts unless included)",
            host.display_name()
        )));
    };
    tx.execute(
        "DELETE FROM legacy_includes WHERE host = ?1",
        params![host.key()],
    )?;
    audit::append(
        tx,
        now,
        &NewEntry {
            actor,
            action: "legacy.exclude",
            subject: host.key(),
            details: json!({
                "host": host.display_name(),
                "reason": reason,
                "included": { "reason": old.reason, "at": old.at, "by": old.actor },
            }),
        },
    )?;
    Ok(())
}

/// Audits every acceptance that has ended by `now` and was not audited yet (actor
/// `system`), and marks it audited. Returns how many. Running it again does nothing.
pub fn expire_due(tx: &Transaction<'_>, now: Timestamp) -> Result<usize, LegacyError> {
    let due: Vec<(String, Acceptance)> = decisions::acceptances(tx)?
        .into_iter()
        .filter(|(_, a)| !a.expiry_audited && a.expired(now))
        .collect();
    for (host, a) in &due {
        tx.execute(
            "UPDATE legacy_acceptances SET expiry_audited = 1 WHERE host = ?1",
            params![host],
        )?;
        audit::append(
            tx,
            now,
            &NewEntry {
                actor: "system",
                action: "legacy.acceptance_expired",
                subject: host,
                details: json!({
                    "ended_at": a.until.to_string(),
                    "accepted_by": a.actor,
                    "accepted_at": a.accepted_at.to_string(),
                    "reason": a.reason,
                    "controls": a.controls,
                }),
            },
        )?;
    }
    Ok(due.len())
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
