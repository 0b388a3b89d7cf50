//! The keeper: keeps the kernel's `table inet patchward` the fence last applied
//! (enforce mode), run by the server at start, every `legacy.dns_refresh`, and sooner
//! when a DNS-name peer's answer runs out before that ([`next_wake`]).
//!
//! Each tick re-renders the *applied* input (never edits nobody approved) with the DNS
//! answers alive now and compares its hash with the kernel's table:
//! - the same: nothing to do;
//! - the kernel has no table (a reboot) or another one (someone changed it): a
//!   `fence_drifted` event per host, the fence applied again, `fence_restored` per host,
//!   audit `legacy.segment_restored` (cause `absent` or `drift`);
//! - the kernel holds the last apply but the rendering differs: DNS answers changed (or
//!   their element timeouts need renewing before they run out); applied again, the
//!   record's hash updated, audited (cause `dns`) only when the addresses changed, not
//!   when only the remaining TTLs did.
//!
//! A failure (helper absent, nft refused) is one `fence_failed` event per fenced host and
//! one log line per streak of failures, and the next tick tries again. Blocking (netd's
//! socket): the server calls [`Keeper::tick`] from `spawn_blocking`.

use jiff::Timestamp;
use serde::Serialize;
use serde_json::json;

use super::LegacyError;
use super::netd::client;
use super::segment::{self, SUBJECT, applied_input, sha256_hex};
use super::segment_input::{self, SegmentInput};
use crate::audit::{self, NewEntry};
use crate::config::{LegacyConfig, SegmentMode};
use crate::db::Db;
use crate::db::legacy_monitor as events;
use crate::db::legacy_segment::{self as q, AppliedRow};

/// The audit actor of the keeper's entries.
pub const ACTOR: &str = "system";

/// Why the keeper applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The kernel had no table.
    Absent,
    /// The kernel's table was not the one applied.
    Drift,
    /// DNS answers (or their remaining TTLs) changed the rendering.
    Dns,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Absent => "absent",
            Cause::Drift => "drift",
            Cause::Dns => "dns",
        }
    }
}

/// What one tick did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick {
    /// Export mode, or nothing was ever applied: nothing to keep.
    Idle,
    /// The kernel holds the fence.
    Holding,
    /// Applied again, for this cause.
    Restored { cause: Cause, sha256: String },
    /// Could not check or apply; `first` when this starts a streak of failures.
    Failed { error: String, first: bool },
}

/// The keeper's memory between ticks (a fresh one after a restart is fine: the kernel
/// and the stored record are the truth, this only quiets repeats).
#[derive(Debug, Default)]
pub struct Keeper {
    failing: bool,
    /// The rendering without element timeouts at the last apply: tells an address
    /// change from a TTL renewal.
    last_shape: Option<String>,
}

/// The rendering with every ` timeout Ns` removed: what changes only when addresses
/// change.
pub fn without_timeouts(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(" timeout ") {
        let after = &rest[i + " timeout ".len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        out.push_str(&rest[..i]);
        if digits > 0 && after[digits..].starts_with('s') {
            rest = &after[digits + 1..];
        } else {
            out.push_str(" timeout ");
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The DNS names of the applied input (the ones the keeper must keep resolved).
pub fn applied_dns_names(conn: &rusqlite::Connection) -> Result<Vec<String>, LegacyError> {
    Ok(match q::applied(conn)? {
        Some(row) => applied_input(&row)?.dns_names(),
        None => Vec::new(),
    })
}

/// The keeper wakes for DNS at most this often: a wake can re-apply the whole table.
pub const MIN_WAKE: std::time::Duration = std::time::Duration::from_secs(10);

/// How long the keeper sleeps after a tick (pure): until one second before the earliest
/// stored answer of an applied DNS name expires, so a name whose TTL is shorter than
/// `every` (`legacy.dns_refresh`) is looked up again when its record runs out rather
/// than at the next refresh; never longer than `every`, never shorter than
/// [`MIN_WAKE`] (nor than `every`, when that is shorter).
pub fn next_wake(
    expiries: impl IntoIterator<Item = Timestamp>,
    now: Timestamp,
    every: std::time::Duration,
) -> std::time::Duration {
    let floor = MIN_WAKE.min(every);
    expiries
        .into_iter()
        .map(|t| {
            let secs = t.duration_since(now).as_secs() - 1;
            std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0))
        })
        .min()
        .map_or(every, |d| d.clamp(floor, every))
}

/// The expiry of each stored answer, alive at `now`, of the `names` (lower case).
pub fn dns_expiries(
    conn: &rusqlite::Connection,
    names: &[String],
    now: Timestamp,
) -> Result<Vec<Timestamp>, LegacyError> {
    let rows = q::dns_live(conn, &now.to_string())?;
    Ok(rows
        .iter()
        .filter(|r| names.iter().any(|n| n.eq_ignore_ascii_case(&r.name)))
        .filter_map(|r| r.expires_at.parse().ok())
        .collect())
}

impl Keeper {
    /// One pass. Errors of the database are returned; the helper's are a
    /// [`Tick::Failed`] (recorded as events once per streak).
    pub fn tick(
        &mut self,
        db: &Db,
        cfg: &LegacyConfig,
        now: Timestamp,
    ) -> Result<Tick, LegacyError> {
        if cfg.segment_mode != SegmentMode::Enforce {
            return Ok(Tick::Idle);
        }
        let Some(row) = db.read_blocking(q::applied)? else {
            return Ok(Tick::Idle);
        };
        match self.check_and_apply(db, cfg, now, &row) {
            Ok(t) => {
                self.failing = false;
                Ok(t)
            }
            Err(e @ LegacyError::Db(_)) | Err(e @ LegacyError::Audit(_)) => Err(e),
            Err(e) => {
                let first = !self.failing;
                self.failing = true;
                let error = e.to_string();
                if first {
                    let input = applied_input(&row)?;
                    db.write_blocking(|tx| {
                        for h in &input.hosts {
                            let text = format!(
                                "the fence of {} cannot be kept in place: {error}",
                                h.display
                            );
                            let detail = json!({"error": error}).to_string();
                            events::insert_event(
                                tx,
                                &h.key,
                                &now.to_string(),
                                "fence_failed",
                                &text,
                                &detail,
                            )?;
                        }
                        Ok::<_, LegacyError>(())
                    })?;
                }
                Ok(Tick::Failed { error, first })
            }
        }
    }

    fn check_and_apply(
        &mut self,
        db: &Db,
        cfg: &LegacyConfig,
        now: Timestamp,
        row: &AppliedRow,
    ) -> Result<Tick, LegacyError> {
        let input = applied_input(row)?;
        let dns = db.read_blocking(|c| segment_input::dns_answers(c, now))?;
        let text = segment::render(&input, &dns)?;
        let sha = sha256_hex(&text);
        let kernel = client::show(&cfg.netd_socket).map_err(netd)?;
        if kernel.sha256.as_deref() == Some(sha.as_str()) {
            self.last_shape
                .get_or_insert_with(|| without_timeouts(&text));
            return Ok(Tick::Holding);
        }
        let cause = if kernel.text.is_none() {
            Cause::Absent
        } else if kernel.sha256.as_deref() != Some(row.sha256.as_str()) {
            Cause::Drift
        } else {
            Cause::Dns
        };
        let shape = without_timeouts(&text);
        let addresses_changed = self.last_shape.as_deref() != Some(shape.as_str());
        // Under the write lock, so an operator's apply cannot interleave: if the record
        // changed since it was read, this tick leaves it to the next one.
        let applied = db.write_blocking(|tx| {
            match q::applied(tx)? {
                Some(r) if r == *row => {}
                _ => return Ok(None),
            }
            let applied = client::apply(&cfg.netd_socket, &text).map_err(netd)?;
            q::set_applied(
                tx,
                &AppliedRow {
                    sha256: applied.sha256.clone(),
                    ..row.clone()
                },
            )?;
            if cause != Cause::Dns || addresses_changed {
                record(
                    tx,
                    now,
                    &input,
                    cause,
                    &applied.sha256,
                    row,
                    kernel.sha256.as_deref(),
                )?;
            }
            Ok::<_, LegacyError>(Some(applied.sha256))
        })?;
        let Some(sha256) = applied else {
            return Ok(Tick::Holding);
        };
        self.last_shape = Some(shape);
        Ok(Tick::Restored { cause, sha256 })
    }
}

fn netd(e: client::NetdError) -> LegacyError {
    LegacyError::Refused(segment::helper_absent(&e).unwrap_or_else(|| e.to_string()))
}

/// The events and the audit entry of a restore.
fn record(
    tx: &rusqlite::Transaction<'_>,
    now: Timestamp,
    input: &SegmentInput,
    cause: Cause,
    sha256: &str,
    row: &AppliedRow,
    kernel_sha: Option<&str>,
) -> Result<(), LegacyError> {
    let at = now.to_string();
    if cause != Cause::Dns {
        for h in &input.hosts {
            let (drifted, why) = match cause {
                Cause::Absent => (
                    format!("the fence of {} was gone from the kernel", h.display),
                    "absent",
                ),
                _ => (
                    format!(
                        "the fence of {} in the kernel was not the one applied (changed outside patchward)",
                        h.display
                    ),
                    "drift",
                ),
            };
            let detail =
                json!({"cause": why, "kernel_sha256": kernel_sha, "sha256": sha256}).to_string();
            events::insert_event(tx, &h.key, &at, "fence_drifted", &drifted, &detail)?;
            let restored = format!(
                "the fence of {} was restored as applied {} by {}",
                h.display, row.applied_at, row.applied_by
            );
            events::insert_event(tx, &h.key, &at, "fence_restored", &restored, &detail)?;
        }
    }
    let hosts: Vec<&str> = input.hosts.iter().map(|h| h.display.as_str()).collect();
    audit::append(
        tx,
        now,
        &NewEntry {
            actor: ACTOR,
            action: "legacy.segment_restored",
            subject: SUBJECT,
            details: json!({"cause": cause.as_str(), "hosts": hosts, "sha256": sha256,
                "kernel_sha256": kernel_sha, "applied_at": row.applied_at,
                "applied_by": row.applied_by}),
        },
    )?;
    Ok(())
}

#[cfg(test)]
#[path = "keeper_tests.rs"]
mod tests;
