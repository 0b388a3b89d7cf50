//! Approval decisions and rollout control, each audited with actor and reason.
//!
//! Approving a patch (by hand or by an auto-approval rule) stores the decision and
//! starts (or restarts) its rollout; approving a patch that supersedes older approved
//! ones marks their rollouts `superseded` (hosts that lack the older get the newest).
//! Declining aborts a running rollout; deferring halts it until the date.

use jiff::Timestamp;
use rusqlite::Transaction;

use super::{Patch, RolloutError, World};
use crate::audit::{self, NewEntry};
use crate::db::rollout as q;
use crate::fleet::jobs::JobState;
use crate::policy::approval::{Decision, auto_approve, decide as check_decision};
use crate::policy::deps::DepGraph;
use crate::policy::{Approval, Policy};

/// Who decided what, and why (for the audit entry).
struct Why<'a> {
    actor: &'a str,
    reason: &'a str,
    action: &'a str,
}

fn store(
    tx: &Transaction<'_>,
    now: Timestamp,
    world: &World,
    p: &Patch,
    approval: &Approval,
    why: Why<'_>,
) -> Result<Vec<String>, RolloutError> {
    let Why {
        actor,
        reason,
        action,
    } = why;
    let at = now.to_string();
    let json = serde_json::to_string(approval).map_err(|e| RolloutError::Stored(e.to_string()))?;
    q::put_approval(tx, &p.feed, &p.entry.id, &json, &at, actor)?;
    audit::append(
        tx,
        now,
        &NewEntry {
            actor,
            action,
            subject: &p.key(),
            details: serde_json::json!({ "approval": approval, "reason": reason }),
        },
    )?;
    let mut retired = Vec::new();
    match approval {
        Approval::Approved { .. } => {
            q::put_rollout(
                tx,
                &p.feed,
                &p.entry.id,
                "active",
                &at,
                &format!("approved by {actor}"),
            )?;
            // Older approved patches this one supersedes stop rolling out.
            let mut approved = world.approved_ids(now);
            approved.insert(p.entry.id.clone());
            let all: Vec<_> = world.patches.iter().map(|x| x.entry.clone()).collect();
            let deps = DepGraph::new(&all, &approved);
            for old in &world.patches {
                let replaced = deps.replaced_by.get(&old.entry.id) == Some(&p.entry.id);
                let running = world
                    .rollout(old)
                    .is_some_and(|r| r.state == "active" || r.state == "halted");
                if replaced && running {
                    let note = format!("superseded by {}", p.key());
                    q::put_rollout(tx, &old.feed, &old.entry.id, "superseded", &at, &note)?;
                    audit::append(
                        tx,
                        now,
                        &NewEntry {
                            actor,
                            action: "rollout.superseded",
                            subject: &old.key(),
                            details: serde_json::json!({ "by": p.key() }),
                        },
                    )?;
                    retired.push(old.key());
                }
            }
        }
        Approval::Declined { reason } => {
            if world.rollout(p).is_some() {
                let note = format!("declined by {actor}: {reason}");
                q::put_rollout(tx, &p.feed, &p.entry.id, "aborted", &at, &note)?;
            }
        }
        Approval::Deferred { until } => {
            if world.rollout(p).is_some() {
                let note = format!("deferred by {actor} until {until}");
                q::put_rollout(tx, &p.feed, &p.entry.id, "halted", &at, &note)?;
            }
        }
        Approval::New => {}
    }
    Ok(retired)
}

/// What a decision did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Decided {
    pub patch: String,
    pub approval: Approval,
    /// Rollouts of older patches this approval superseded.
    pub superseded: Vec<String>,
}

/// A decision by hand on `needle` (`ID` or `FEED:ID`), checked by `policy` and audited
/// with `actor` and `reason`.
pub fn decide(
    tx: &Transaction<'_>,
    now: Timestamp,
    policy: &Policy,
    needle: &str,
    decision: &Decision,
    actor: &str,
    reason: &str,
) -> Result<Decided, RolloutError> {
    let world = World::load_decisions(tx)?;
    let p = world.find_patch(needle)?.clone();
    let approval = check_decision(
        decision,
        &p.entry,
        p.kev,
        &policy.classes,
        &policy.ring_names(),
        now,
    )?;
    let action = match decision {
        Decision::Approve {
            expedite: Some(_), ..
        } => "patch.expedited",
        Decision::Approve { .. } => "patch.approved",
        Decision::Decline { .. } => "patch.declined",
        Decision::Defer { .. } => "patch.deferred",
    };
    let why = Why {
        actor,
        reason,
        action,
    };
    let superseded = store(tx, now, &world, &p, &approval, why)?;
    Ok(Decided {
        patch: p.key(),
        approval,
        superseded,
    })
}

/// Applies the auto-approval rules to every patch still `new`; returns what it approved.
pub fn auto_approve_all(
    tx: &Transaction<'_>,
    now: Timestamp,
    policy: &Policy,
) -> Result<Vec<Decided>, RolloutError> {
    if policy.auto_approve.is_empty() {
        return Ok(vec![]);
    }
    let mut world = World::load_decisions(tx)?;
    let mut out = Vec::new();
    for p in world.patches.clone() {
        let current = world.approval(&p).effective(now);
        let Some((i, approval)) = auto_approve(
            &current,
            &p.entry,
            p.kev,
            &policy.auto_approve,
            &policy.classes,
        ) else {
            continue;
        };
        let actor = format!("policy:auto_approve[{i}]");
        let why = Why {
            actor: &actor,
            reason: "matched an auto-approval rule",
            action: "patch.approved",
        };
        let superseded = store(tx, now, &world, &p, &approval, why)?;
        world
            .approvals
            .insert((p.feed.clone(), p.entry.id.clone()), approval.clone());
        out.push(Decided {
            patch: p.key(),
            approval,
            superseded,
        });
    }
    Ok(out)
}

/// `rollout halt|resume|abort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Stop new offers until resumed.
    Halt,
    /// Offers again; failures so far are acknowledged and no longer count towards
    /// the error brake.
    Resume,
    /// Stop for good; jobs not yet started are cancelled.
    Abort,
}

/// Halts, resumes or aborts the rollout of `needle`. Returns the cancelled job ids
/// (abort only).
pub fn control(
    tx: &Transaction<'_>,
    now: Timestamp,
    needle: &str,
    what: Control,
    actor: &str,
    reason: &str,
) -> Result<Vec<String>, RolloutError> {
    let world = World::load(tx)?;
    let p = world.find_patch(needle)?.clone();
    let Some(r) = world.rollout(&p) else {
        return Err(RolloutError::NoRollout(p.key()));
    };
    let at = now.to_string();
    let refuse = |hint: &str| RolloutError::State {
        patch: p.key(),
        state: r.state.clone(),
        hint: hint.to_string(),
    };
    let mut cancelled = Vec::new();
    let (state, action) = match what {
        Control::Halt => {
            if r.state != "active" {
                return Err(refuse("only an active rollout can be halted"));
            }
            ("halted", "rollout.halted")
        }
        Control::Resume => {
            if r.state != "halted" {
                return Err(refuse("only a halted rollout can be resumed"));
            }
            if let Approval::Deferred { until } = world.approval(&p).effective(now) {
                return Err(refuse(&format!(
                    "the patch is deferred until {until}; approve it again to resume now"
                )));
            }
            q::acknowledge(tx, &p.feed, &p.entry.id, &at)?;
            ("active", "rollout.resumed")
        }
        Control::Abort => {
            if r.state == "aborted" {
                return Err(refuse("it is already aborted"));
            }
            for j in world.jobs_of(&p) {
                let st = JobState::parse(&j.state);
                if st.is_some_and(|s| s.can_go_to(JobState::Cancelled)) {
                    crate::fleet::jobs::cancel(
                        tx,
                        now,
                        &j.id,
                        actor,
                        &format!("rollout aborted: {reason}"),
                    )?;
                    cancelled.push(j.id.clone());
                }
            }
            ("aborted", "rollout.aborted")
        }
    };
    let note = format!(
        "{} by {actor}: {reason}",
        action.trim_start_matches("rollout.")
    );
    q::put_rollout(tx, &p.feed, &p.entry.id, state, &at, &note)?;
    audit::append(
        tx,
        now,
        &NewEntry {
            actor,
            action,
            subject: &p.key(),
            details: serde_json::json!({ "reason": reason, "cancelled": cancelled }),
        },
    )?;
    Ok(cancelled)
}

/// What `rollout rollback` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RollbackOutcome {
    /// Jobs that had not started installing, cancelled.
    pub cancelled: Vec<String>,
    /// New rollback jobs, one per host that had installed the patch: (host, job).
    pub rollback_jobs: Vec<(String, String)>,
    /// Hosts still installing or verifying it: they finish first; run the rollback
    /// again once they have.
    pub still_running: Vec<String>,
}

/// Rolls a patch back: the rollout ends (`rolled_back`: no more offers, its apt rings
/// drop it), jobs not yet started are cancelled, and every host whose latest job for it
/// succeeded (or awaits its reboot) gets a rollback job, which its agent runs at its
/// next check-in, outside maintenance windows too: an operator asked for it now.
/// Audited with actor and reason. Running it again picks up hosts that finished since.
pub fn rollback(
    tx: &Transaction<'_>,
    now: Timestamp,
    key: &crate::trust::keys::Ed25519Key,
    needle: &str,
    actor: &str,
    reason: &str,
) -> Result<RollbackOutcome, RolloutError> {
    let mut world = World::load_decisions(tx)?;
    world.load_rollout_jobs(tx)?;
    let p = world.find_patch(needle)?.clone();
    let Some(r) = world.rollout(&p).cloned() else {
        return Err(RolloutError::NoRollout(p.key()));
    };
    let mut out = RollbackOutcome::default();
    // The latest job per host, in creation order.
    let mut latest: std::collections::BTreeMap<&str, &crate::db::rollout::JobBrief> =
        Default::default();
    for j in world.jobs_of(&p) {
        latest.insert(j.host_id.as_str(), j);
    }
    for (host, j) in &latest {
        match JobState::parse(&j.state) {
            Some(s) if s.can_go_to(JobState::Cancelled) => {
                crate::fleet::jobs::cancel(
                    tx,
                    now,
                    &j.id,
                    actor,
                    &format!("rollout rolled back: {reason}"),
                )?;
                out.cancelled.push(j.id.clone());
            }
            Some(s)
                if matches!(
                    s.standing(),
                    crate::fleet::standing::Standing::Installed
                        | crate::fleet::standing::Standing::AwaitingReboot
                ) =>
            {
                let req = crate::fleet::jobs::NewJob {
                    patch: p.key(),
                    host: host.to_string(),
                    not_before: None,
                    latest_start: None,
                    health_check: false,
                    rollback_of: Some(j.id.clone()),
                };
                let (row, _) = crate::fleet::jobs::create(tx, now, key, &req, actor)?;
                out.rollback_jobs.push((host.to_string(), row.id));
            }
            Some(s) if s.is_open() => out.still_running.push(host.to_string()),
            _ => {}
        }
    }
    if r.state == "rolled_back" && out.rollback_jobs.is_empty() && out.cancelled.is_empty() {
        return Err(RolloutError::State {
            patch: p.key(),
            state: r.state.clone(),
            hint: "no host has it installed any more; nothing to roll back".into(),
        });
    }
    let at = now.to_string();
    let note = format!("rolled back by {actor}: {reason}");
    q::put_rollout(tx, &p.feed, &p.entry.id, "rolled_back", &at, &note)?;
    audit::append(
        tx,
        now,
        &NewEntry {
            actor,
            action: "rollout.rolled_back",
            subject: &p.key(),
            details: serde_json::json!({
                "reason": reason,
                "cancelled": out.cancelled,
                "rollback_jobs": out.rollback_jobs,
                "still_running": out.still_running,
            }),
        },
    )?;
    Ok(out)
}
