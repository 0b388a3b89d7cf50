//! The legacy segment's fence as an operator drives it (issue [10]): `plan` (what an
//! apply would change), `apply` (through `patchward-netd`, recorded and audited),
//! `status` (is the kernel's table the one applied? which hosts wait for an apply?) and
//! `export` (the ruleset and CSVs for a site whose own firewall fences).
//!
//! What is applied is recorded as the segment's *input* (`legacy_segment.input`, the
//! JSON of [`SegmentInput`]) and the sha256 of the text netd applied (which the kernel's
//! table carries in its comment). DNS answers are not part of the input: they are read
//! at render time, so the keeper (`legacy::keeper`) can re-render the approved input
//! with fresh answers and never applies edits nobody approved.
//!
//! These functions talk to netd over a blocking unix socket: call them from
//! `spawn_blocking` in async code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use rusqlite::Connection;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::flows::DnsAnswers;
use super::netd::client::{self, NetdError};
use super::segment_input::{self, InputHost, SegmentInput};
use super::{LegacyError, hosts, nft};
use crate::audit::{self, NewEntry};
use crate::config::{LegacyConfig, SegmentMode};
use crate::db::Db;
use crate::db::legacy_monitor as events;
use crate::db::legacy_segment::{self as q, AppliedRow};

/// Longest apply reason, in characters.
pub const MAX_REASON_CHARS: usize = 1000;
/// The audit subject of segment entries.
pub const SUBJECT: &str = "legacy-segment";

/// Whether the kernel holds the fence as applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FenceState {
    /// The kernel's table is the one last applied.
    Applied,
    /// Something was applied, and the kernel's table is another one or gone.
    Drifted,
    /// Nothing was ever applied (enforce mode).
    NotApplied,
    /// `segment_mode = "export"`: the site's firewall fences; nothing is applied here.
    ExportOnly,
    /// Enforce mode, but `patchward-netd` cannot be reached: the sentence why.
    HelperAbsent(String),
}

impl FenceState {
    /// The words a page or the CLI shows.
    pub fn label(&self) -> &'static str {
        match self {
            FenceState::Applied => "applied",
            FenceState::Drifted => "drifted",
            FenceState::NotApplied => "not applied",
            FenceState::ExportOnly => "export only",
            FenceState::HelperAbsent(_) => "helper absent",
        }
    }
}

/// One legacy host's place in the fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostFence {
    /// Its flows (and addresses) are exactly the ones last applied.
    Fenced,
    /// Its flows or addresses changed since the last apply (or it was never applied).
    Pending,
    /// It has no flows and none were applied: it is not fenced.
    NotFenced,
    /// Export mode: its flows (and addresses) are exactly the ones last exported for
    /// the site's firewall (export mode reports `Pending` until the next export).
    Exported,
}

impl HostFence {
    pub fn label(self) -> &'static str {
        match self {
            HostFence::Fenced => "fenced",
            HostFence::Pending => "pending",
            HostFence::NotFenced => "not fenced",
            HostFence::Exported => "exported",
        }
    }
}

/// `segment status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentStatus {
    #[serde(serialize_with = "mode_str")]
    pub mode: SegmentMode,
    pub state: FenceState,
    pub applied_at: Option<String>,
    pub applied_by: Option<String>,
    pub reason: Option<String>,
    /// The wanted input differs from the one applied (export mode: exported): an apply
    /// (an export) would change something.
    pub pending: bool,
    /// The sha256 of the wanted input's JSON: what a "marked exported" form names, so
    /// the mark records the flows the admin saw.
    pub wanted_input_sha256: String,
    /// The last export: when, by whom, where to.
    pub exported_at: Option<String>,
    pub exported_by: Option<String>,
    pub exported_to: Option<String>,
    /// Per legacy host key.
    pub hosts: BTreeMap<String, HostFence>,
}

fn mode_str<S: serde::Serializer>(m: &SegmentMode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.as_str())
}

/// `segment plan`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The ruleset an apply would send.
    pub wanted: String,
    /// What it was compared with (None: nothing, so everything is new).
    pub applied: Option<String>,
    /// Unified diff from `applied` to `wanted`; empty when equal.
    pub diff: String,
    pub changed: bool,
    /// Which "applied" this is: the kernel's table, or the ruleset rendered from the
    /// stored applied input (export mode, helper absent), and why.
    pub against: String,
}

/// What `apply` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApplyOutcome {
    /// False when the input was the one applied and the kernel still held it.
    pub changed: bool,
    pub sha256: String,
}

/// The sentence for a helper that cannot be reached, or None for another netd error.
pub fn helper_absent(e: &NetdError) -> Option<String> {
    let (path, why) = match e {
        NetdError::NotRunning { path, why } => (path, why.to_string()),
        NetdError::Connect { path, cause } => (path, format!("refuses this account: {cause}")),
        _ => return None,
    };
    Some(format!(
        "patchward-netd is not reachable: its socket {} {why}. Enable it with \
         `systemctl enable --now patchward-netd.socket` (this account must be root or in \
         group patchward); until then nothing is applied, and \
         `patchward legacy segment export --out DIR` still works",
        path.display()
    ))
}

fn netd_error(e: NetdError) -> LegacyError {
    LegacyError::Refused(helper_absent(&e).unwrap_or_else(|| e.to_string()))
}

/// The refusal of `apply` in export mode.
pub fn export_mode_refusal() -> LegacyError {
    LegacyError::Refused(
        "segment_mode is export: use `patchward legacy segment export --out DIR` and load \
         the ruleset on the site's firewall (set legacy.segment_mode = \"enforce\" to apply \
         it here)"
            .into(),
    )
}

/// The hex sha256 of a ruleset text (what netd puts in the table's comment).
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Renders `input` with `dns`.
pub fn render(input: &SegmentInput, dns: &DnsAnswers) -> Result<String, LegacyError> {
    let hosts = input.segment_hosts();
    let sets = input.named_sets()?;
    nft::render(nft::Segment {
        hosts: &hosts,
        sets: &sets,
        dns,
    })
    .map_err(|e| LegacyError::Refused(format!("the fence cannot be rendered: {e}")))
}

/// The input of an applied record.
pub fn applied_input(row: &AppliedRow) -> Result<SegmentInput, LegacyError> {
    serde_json::from_str(&row.input).map_err(|e| {
        LegacyError::Refused(format!(
            "the stored applied fence (sha256 {}) is damaged: {e}",
            row.sha256
        ))
    })
}

/// What one read of the database gives every command.
struct Snapshot {
    input: SegmentInput,
    dns: DnsAnswers,
    row: Option<AppliedRow>,
    prior: Option<SegmentInput>,
    export_row: Option<AppliedRow>,
    exported: Option<SegmentInput>,
}

fn snapshot(
    conn: &Connection,
    now: Timestamp,
    cfg: &LegacyConfig,
) -> Result<Snapshot, LegacyError> {
    let input = segment_input::load(conn, now, cfg)?;
    let dns = segment_input::dns_answers(conn, now)?;
    let row = q::applied(conn)?;
    let prior = row.as_ref().map(applied_input).transpose()?;
    let export_row = q::exported(conn)?;
    let exported = export_row.as_ref().map(applied_input).transpose()?;
    Ok(Snapshot {
        input,
        dns,
        row,
        prior,
        export_row,
        exported,
    })
}

/// The diff of the wanted ruleset against what is applied.
pub fn plan(db: &Db, cfg: &LegacyConfig, now: Timestamp) -> Result<Plan, LegacyError> {
    let s = db.read_blocking(|c| snapshot(c, now, cfg))?;
    let wanted = render(&s.input, &s.dns)?;
    let stored = s.prior.as_ref().map(|p| render(p, &s.dns)).transpose()?;
    let from_stored = |why: &str| match &stored {
        Some(_) => format!("{why}: compared with the ruleset rendered from the last applied input"),
        None => format!("{why}: nothing was applied yet, so everything is new"),
    };
    let (applied, against) = match cfg.segment_mode {
        SegmentMode::Export => (stored.clone(), from_stored("export mode")),
        SegmentMode::Enforce => match client::show(&cfg.netd_socket) {
            Err(e) => match helper_absent(&e) {
                Some(why) => (stored.clone(), from_stored(&why)),
                None => return Err(netd_error(e)),
            },
            Ok(t) if t.text.is_none() => (
                None,
                "the kernel has no table inet patchward: everything is new".to_string(),
            ),
            Ok(t) if t.sha256.is_some() && t.sha256 == s.row.as_ref().map(|r| r.sha256.clone()) => {
                (
                    stored.clone(),
                    "the kernel's table (it holds the last apply)".to_string(),
                )
            }
            Ok(t) => (
                t.text,
                "the kernel's table as nft lists it: it is not the last apply (drifted)"
                    .to_string(),
            ),
        },
    };
    let diff = nft::diff(applied.as_deref().unwrap_or(""), &wanted);
    Ok(Plan {
        changed: !diff.is_empty(),
        wanted,
        applied,
        diff,
        against,
    })
}

/// A non-empty, trimmed reason.
fn reason_of(text: &str) -> Result<&str, LegacyError> {
    let r = text.trim();
    let invalid = |why: String| LegacyError::Invalid {
        field: "reason".into(),
        reason: why,
    };
    if r.is_empty() {
        return Err(invalid(
            "a reason is required (--reason \"...\"): say why, for the audit log".into(),
        ));
    }
    let n = r.chars().count();
    if n > MAX_REASON_CHARS {
        return Err(invalid(format!(
            "{n} characters is too long (at most {MAX_REASON_CHARS})"
        )));
    }
    Ok(r)
}

/// The keys of hosts whose entry differs between `old` and `new` (added, removed or
/// changed), each with the new entry (None: it left the fence).
pub fn changed_hosts<'a>(
    old: Option<&'a SegmentInput>,
    new: &'a SegmentInput,
) -> Vec<(String, Option<&'a InputHost>, Option<&'a InputHost>)> {
    let by_key = |i: &'a SegmentInput| -> BTreeMap<&'a str, &'a InputHost> {
        i.hosts.iter().map(|h| (h.key.as_str(), h)).collect()
    };
    let o = old.map(by_key).unwrap_or_default();
    let n = by_key(new);
    let keys: BTreeSet<&str> = o.keys().chain(n.keys()).copied().collect();
    keys.into_iter()
        .filter(|k| o.get(k) != n.get(k))
        .map(|k| (k.to_string(), o.get(k).copied(), n.get(k).copied()))
        .collect()
}

/// Applies the wanted fence through netd (enforce mode only), records its input and
/// hash, audits `legacy.segment_applied` and writes a `fence_applied` event per host
/// whose entry changed. With nothing changed (same input, and the kernel holds the last
/// apply) nothing is sent or stored, and one audit entry says `changed: false`.
pub fn apply(
    db: &Db,
    cfg: &LegacyConfig,
    now: Timestamp,
    actor: &str,
    reason: &str,
) -> Result<ApplyOutcome, LegacyError> {
    let reason = reason_of(reason)?;
    if cfg.segment_mode == SegmentMode::Export {
        return Err(export_mode_refusal());
    }
    // One write transaction around render and apply: the input recorded is exactly the
    // one applied, and a failure records nothing.
    db.write_blocking(|tx| {
        let s = snapshot(tx, now, cfg)?;
        let text = render(&s.input, &s.dns)?;
        let kernel = client::show(&cfg.netd_socket).map_err(netd_error)?;
        let same_input = s.prior.as_ref() == Some(&s.input);
        let kernel_holds = kernel.sha256.is_some()
            && kernel.sha256.as_deref() == s.row.as_ref().map(|r| r.sha256.as_str());
        let names: Vec<&str> = s.input.hosts.iter().map(|h| h.display.as_str()).collect();
        if same_input && kernel_holds {
            let sha256 = kernel.sha256.unwrap_or_default();
            audit::append(
                tx,
                now,
                &NewEntry {
                    actor,
                    action: "legacy.segment_applied",
                    subject: SUBJECT,
                    details: json!({"reason": reason, "hosts": names, "sha256": sha256,
                        "changed": false}),
                },
            )?;
            return Ok(ApplyOutcome {
                changed: false,
                sha256,
            });
        }
        let applied = client::apply(&cfg.netd_socket, &text).map_err(netd_error)?;
        let input_json = serde_json::to_string(&s.input)
            .map_err(|e| LegacyError::Refused(format!("cannot record the fence: {e}")))?;
        q::set_applied(
            tx,
            &AppliedRow {
                input: input_json,
                sha256: applied.sha256.clone(),
                applied_at: now.to_string(),
                applied_by: actor.to_string(),
                reason: reason.to_string(),
            },
        )?;
        let at = now.to_string();
        let changed = changed_hosts(s.prior.as_ref(), &s.input);
        for (key, old, new) in &changed {
            let (text, flows) = match (old, new) {
                (_, Some(h)) => (
                    format!(
                        "fence applied to {}: {} allowed flow(s), everything else dropped (by {actor}: {reason})",
                        h.display,
                        h.flows.len()
                    ),
                    h.flows.len(),
                ),
                (Some(h), None) => (
                    format!(
                        "{} left the fence (no flows): its traffic is no longer filtered (by {actor}: {reason})",
                        h.display
                    ),
                    0,
                ),
                (None, None) => continue,
            };
            let detail = json!({"sha256": applied.sha256, "flows": flows, "actor": actor,
                "reason": reason});
            events::insert_event(tx, key, &at, "fence_applied", &text, &detail.to_string())?;
        }
        let changed_keys: Vec<&str> = changed.iter().map(|(k, _, _)| k.as_str()).collect();
        audit::append(
            tx,
            now,
            &NewEntry {
                actor,
                action: "legacy.segment_applied",
                subject: SUBJECT,
                details: json!({"reason": reason, "hosts": names, "sha256": applied.sha256,
                    "changed": true, "kernel_changed": applied.changed,
                    "hosts_changed": changed_keys}),
            },
        )?;
        Ok(ApplyOutcome {
            changed: true,
            sha256: applied.sha256,
        })
    })
}

/// The fence's state and each legacy host's place in it.
pub fn status(db: &Db, cfg: &LegacyConfig, now: Timestamp) -> Result<SegmentStatus, LegacyError> {
    let (s, keys) = db.read_blocking(|c| {
        let s = snapshot(c, now, cfg)?;
        let keys: Vec<String> = hosts::list(c, now, cfg)?
            .iter()
            .map(|v| v.host.key().to_string())
            .collect();
        Ok::<_, LegacyError>((s, keys))
    })?;
    let state = match cfg.segment_mode {
        SegmentMode::Export => FenceState::ExportOnly,
        SegmentMode::Enforce => match client::show(&cfg.netd_socket) {
            Err(e) => match helper_absent(&e) {
                Some(why) => FenceState::HelperAbsent(why),
                None => return Err(netd_error(e)),
            },
            Ok(t) => match &s.row {
                None => FenceState::NotApplied,
                Some(r) if t.sha256.as_deref() == Some(r.sha256.as_str()) => FenceState::Applied,
                Some(_) => FenceState::Drifted,
            },
        },
    };
    // Export mode compares with what was handed to the site's firewall, enforce mode
    // with what the kernel was given.
    let (baseline, done) = match cfg.segment_mode {
        SegmentMode::Export => (s.exported.as_ref(), HostFence::Exported),
        SegmentMode::Enforce => (s.prior.as_ref(), HostFence::Fenced),
    };
    let mut hosts: BTreeMap<String, HostFence> = keys
        .into_iter()
        .map(|k| (k, HostFence::NotFenced))
        .collect();
    for h in baseline.iter().flat_map(|p| p.hosts.iter()) {
        hosts.insert(h.key.clone(), done);
    }
    for (key, _, new) in changed_hosts(baseline, &s.input) {
        // A host that left the fence is simply not fenced any more.
        let state = if new.is_some() {
            HostFence::Pending
        } else {
            HostFence::NotFenced
        };
        hosts.insert(key, state);
    }
    let export = s.export_row.as_ref();
    Ok(SegmentStatus {
        mode: cfg.segment_mode,
        state,
        pending: baseline != Some(&s.input) && !(baseline.is_none() && s.input.hosts.is_empty()),
        wanted_input_sha256: input_sha256(&s.input)?,
        exported_at: export.map(|r| r.applied_at.clone()),
        exported_by: export.map(|r| r.applied_by.clone()),
        exported_to: export.map(|r| r.reason.clone()),
        applied_at: s.row.as_ref().map(|r| r.applied_at.clone()),
        applied_by: s.row.as_ref().map(|r| r.applied_by.clone()),
        reason: s.row.map(|r| r.reason),
        hosts,
    })
}

/// The files `export` writes, in this order.
pub const EXPORT_FILES: [&str; 3] = ["patchward.nft", "flows.csv", "sets.csv"];

/// Writes the wanted fence to `dir` (which must exist): `patchward.nft` (the table,
/// loadable with `nft -f`), `flows.csv` and `sets.csv`, each replaced atomically. Works in
/// both modes and without the helper. Everything is rendered before anything is written;
/// once all three are written the export is recorded ([`mark_exported`]).
pub fn export(
    db: &Db,
    cfg: &LegacyConfig,
    now: Timestamp,
    actor: &str,
    dir: &Path,
) -> Result<Vec<PathBuf>, LegacyError> {
    if !dir.is_dir() {
        return Err(LegacyError::Invalid {
            field: "--out".into(),
            reason: format!(
                "{} is not an existing directory: create it first",
                dir.display()
            ),
        });
    }
    let s = db.read_blocking(|c| snapshot(c, now, cfg))?;
    let table = render(&s.input, &s.dns)?;
    let flows = nft::flows_csv(&s.input.segment_hosts());
    let sets = nft::sets_csv(&s.input.named_sets()?);
    let mut out = Vec::new();
    for (name, body) in EXPORT_FILES.iter().zip([table, flows, sets]) {
        let path = dir.join(name);
        crate::fsutil::write_atomic(&path, body.as_bytes(), 0o644)
            .map_err(|e| LegacyError::Refused(format!("cannot write {}: {e}", path.display())))?;
        out.push(path);
    }
    let to = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let seen = input_sha256(&s.input)?;
    record_export(db, cfg, now, actor, &seen, &to.display().to_string())?;
    Ok(out)
}

/// The sha256 of an input's JSON (stable: the input is sorted).
pub fn input_sha256(input: &SegmentInput) -> Result<String, LegacyError> {
    let json = serde_json::to_string(input)
        .map_err(|e| LegacyError::Refused(format!("cannot serialise the fence's input: {e}")))?;
    Ok(sha256_hex(&json))
}

/// Records the wanted fence as exported (`to`: where it went), for an admin who loaded
/// the files downloaded from the admin page into the site's firewall. `seen`: the
/// [`input_sha256`] of the input the admin downloaded (the page's
/// `wanted_input_sha256`); refused, recording nothing, when the flows changed since.
/// Audited `legacy.segment_exported`; a `fence_exported` event per host whose entry
/// changed since the last export.
pub fn mark_exported(
    db: &Db,
    cfg: &LegacyConfig,
    now: Timestamp,
    actor: &str,
    seen: &str,
    to: &str,
) -> Result<String, LegacyError> {
    record_export(db, cfg, now, actor, seen, to)
}

/// One transaction: the export record, its audit entry and events. Returns the sha256
/// of the rendered table. The input is checked against `seen` inside the transaction,
/// so an edit made meanwhile is never recorded as exported.
fn record_export(
    db: &Db,
    cfg: &LegacyConfig,
    now: Timestamp,
    actor: &str,
    seen: &str,
    to: &str,
) -> Result<String, LegacyError> {
    db.write_blocking(|tx| {
        let s = snapshot(tx, now, cfg)?;
        if input_sha256(&s.input)? != seen {
            return Err(LegacyError::Refused(
                "the flows changed since these files were made: nothing was recorded; download (or export) them again".into(),
            ));
        }
        let sha256 = sha256_hex(&render(&s.input, &s.dns)?);
        let input_json = serde_json::to_string(&s.input)
            .map_err(|e| LegacyError::Refused(format!("cannot record the export: {e}")))?;
        q::set_exported(
            tx,
            &AppliedRow {
                input: input_json,
                sha256: sha256.clone(),
                applied_at: now.to_string(),
                applied_by: actor.to_string(),
                reason: to.to_string(),
            },
        )?;
        let at = now.to_string();
        let changed = changed_hosts(s.exported.as_ref(), &s.input);
        for (key, _, new) in &changed {
            let text = match new {
                Some(h) => format!(
                    "fence exported for the site firewall ({} allowed flow(s)) by {actor} to {to}",
                    h.flows.len()
                ),
                None => format!("left the exported fence (no flows) by {actor} to {to}"),
            };
            let detail = json!({"sha256": sha256, "actor": actor, "to": to});
            events::insert_event(tx, key, &at, "fence_exported", &text, &detail.to_string())?;
        }
        let names: Vec<&str> = s.input.hosts.iter().map(|h| h.display.as_str()).collect();
        let changed_keys: Vec<&str> = changed.iter().map(|(k, _, _)| k.as_str()).collect();
        audit::append(
            tx,
            now,
            &NewEntry {
                actor,
                action: "legacy.segment_exported",
                subject: SUBJECT,
                details: json!({"to": to, "hosts": names, "sha256": sha256,
                    "hosts_changed": changed_keys}),
            },
        )?;
        Ok(sha256)
    })
}

#[cfg(test)]
#[path = "segment_tests.rs"]
pub(crate) mod tests;
