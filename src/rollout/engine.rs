//! The scheduler: what each host may be offered now, and why not.
//!
//! [`evaluate`] answers for one (host, patch) from a [`World`] snapshot, in this order:
//! the host's own job for the patch (installed, in progress, or failed: a failed or
//! rolled-back install is never retried on its own), applicability, approval for the
//! host's ring, the rollout's state, supersedence, `requires` and `conflicts`, the gates
//! of the earlier rings and the capacity of the host's ring (canary, `max_parallel`),
//! and finally the host's maintenance window. [`offer`] runs it for every active rollout
//! at a check-in and creates at most one job, for the most urgent patch that may start
//! now, with the window's `latest_start` in its ticket. A host runs one job at a time.

use jiff::Timestamp;
use rusqlite::Transaction;
use serde::Serialize;

use super::{Host, Patch, RolloutError, World};
use crate::audit::{self, NewEntry};
use crate::db::rollout as q;
use crate::db::rollout::JobBrief;
use crate::fleet::jobs::{JobState, NewJob};
use crate::fleet::standing::Standing;
use crate::policy::deps::{DepGraph, host_queue};
use crate::policy::gate::{GateRules, HostOutcome, HostResult, RingResults};
use crate::policy::{Approval, Policy, StartCheck, WhyNot, applicability, may_start, plan_rollout};
use crate::trust::keys::Ed25519Key;

/// Why a patch is not offered, beyond what `policy` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Reason {
    /// An operator aborted the rollout.
    RolloutAborted { note: String },
    /// An operator halted the rollout (not the error brake).
    RolloutHaltedByOperator { note: String },
    /// Every host of the approved rings had it; the planner reopens the rollout for a
    /// host that needs it since (about a second after it sees the change).
    RolloutCompleted { at: String },
    /// The host is busy with another job.
    HostBusy { job: String, patch: String },
    /// A reason from `policy` (carries its own `code`).
    #[serde(untagged)]
    Policy(WhyNot),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Policy(w) => write!(f, "{w}"),
            Reason::RolloutAborted { note } => write!(f, "the rollout was aborted: {note}"),
            Reason::RolloutHaltedByOperator { note } => {
                write!(f, "the rollout is halted: {note}")
            }
            Reason::RolloutCompleted { at } => write!(
                f,
                "the rollout completed at {at}; it reopens for a host of its rings that still needs it"
            ),
            Reason::HostBusy { job, patch } => {
                write!(
                    f,
                    "the host is busy with job {job} ({patch}); one job at a time"
                )
            }
        }
    }
}

impl From<WhyNot> for Reason {
    fn from(w: WhyNot) -> Self {
        Reason::Policy(w)
    }
}

/// The answer for one (host, patch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verdict {
    /// May be offered now.
    Offer {
        ring: String,
        expedited: bool,
        window_end: Timestamp,
        latest_start: Timestamp,
    },
    /// The host has a job for it that is not finished, or finished without success.
    Job {
        id: String,
        state: String,
    },
    Installed {
        job: String,
    },
    Blocked {
        reason: Reason,
    },
}

/// How a ring's host did with a patch, from its latest job (`None`: no job that counts,
/// it expired or was cancelled). The exact scheduler and the fleet planner both read
/// jobs through this, and it reads states only through [`JobState::standing`]. The
/// gate takes a job that waits for its reboot as still in progress: it is no success
/// until the host has rebooted and verified, and it keeps its place in the ring's
/// `max_parallel` meanwhile.
pub(crate) fn outcome(state: &str, created: Timestamp, updated: Timestamp) -> Option<HostOutcome> {
    Some(match Standing::of(state)? {
        Standing::NotStarted => return None,
        Standing::Running | Standing::AwaitingReboot => HostOutcome::InProgress { since: created },
        Standing::Installed => HostOutcome::Succeeded { at: updated },
        Standing::RolledBack => HostOutcome::RolledBack { at: updated },
        Standing::Failed => HostOutcome::Failed { at: updated },
    })
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap_or(Timestamp::UNIX_EPOCH)
}

/// One host of a ring that counts for a patch, with its latest job.
#[derive(Debug, Clone)]
pub struct RingHost<'w> {
    pub id: &'w str,
    pub host: &'w Host,
    pub job: Option<&'w JobBrief>,
    /// `NotStarted` when it has no job that counts.
    pub standing: Standing,
    pub outcome: HostOutcome,
}

/// The ring's hosts the patch applies to (or that have a job for it), with their latest
/// jobs. Failures that ended before the rollout's `acknowledged_at` (an operator resumed
/// after them) are left out.
pub fn ring_hosts<'w>(
    world: &'w World,
    policy: &Policy,
    p: &Patch,
    ring: &str,
) -> Vec<RingHost<'w>> {
    let ack = world
        .rollout(p)
        .and_then(|r| r.acknowledged_at.as_deref())
        .map(ts);
    let jobs = world.jobs_of(p);
    let mut hosts = Vec::new();
    for (id, h) in &world.hosts {
        if policy.ring_of(&h.facts).map(|r| r.name.as_str()) != Some(ring) {
            continue;
        }
        // A host with a job for the patch counts even when the patch no longer applies
        // to it: installing it is exactly what makes a `below_version` selector stop
        // matching.
        let latest = jobs.iter().rev().find(|j| &j.host_id == id);
        let out = latest
            .and_then(|j| outcome(&j.state, ts(&j.created_at), ts(&j.updated_at)))
            .unwrap_or(HostOutcome::Pending);
        if out == HostOutcome::Pending && applicability(&p.entry, &h.facts).is_err() {
            continue;
        }
        let acknowledged = match out {
            HostOutcome::Failed { at } | HostOutcome::RolledBack { at } => {
                ack.is_some_and(|a| at <= a)
            }
            _ => false,
        };
        if acknowledged {
            continue;
        }
        hosts.push(RingHost {
            id,
            host: h,
            job: latest,
            standing: if out == HostOutcome::Pending {
                Standing::NotStarted
            } else {
                latest
                    .and_then(|j| Standing::of(&j.state))
                    .unwrap_or(Standing::NotStarted)
            },
            outcome: out,
        });
    }
    hosts
}

/// The ring's hosts the patch applies to, with their outcomes (see [`ring_hosts`]).
pub fn ring_results(world: &World, policy: &Policy, p: &Patch, ring: &str) -> RingResults {
    RingResults {
        ring: ring.to_string(),
        hosts: ring_hosts(world, policy, p, ring)
            .into_iter()
            .map(|h| HostResult {
                host: h.id.to_string(),
                outcome: h.outcome,
                last_checkin: h.host.last_seen,
            })
            .collect(),
        unlisted_pending: 0,
    }
}

/// The gate rules of `ring` for this patch's class.
pub(crate) fn rules_for(policy: &Policy, p: &Patch, ring: &str, expedited: bool) -> GateRules {
    let base = policy
        .rings
        .iter()
        .find(|r| r.name == ring)
        .map(|r| r.gate.clone())
        .unwrap_or_default();
    policy
        .classes
        .get(p.entry.kind)
        .gate_rules(&base, expedited)
}

/// The halting reasons when the error brake is on for this patch, else `None`.
pub fn brake(
    world: &World,
    policy: &Policy,
    p: &Patch,
    now: Timestamp,
) -> Option<(String, Vec<crate::policy::gate::GateReason>)> {
    let Approval::Approved { rings, expedite } = world.approval(p).effective(now) else {
        return None;
    };
    let plan = plan_rollout(
        &rings
            .iter()
            .map(|r| {
                (
                    ring_results(world, policy, p, r),
                    rules_for(policy, p, r, expedite.is_some()),
                )
            })
            .collect::<Vec<_>>(),
        now,
    );
    let ring = plan.halted?;
    let reasons = plan
        .steps
        .iter()
        .find(|s| s.ring == ring)
        .and_then(|s| match &s.gate {
            crate::policy::GateStatus::Halted { reasons } => Some(reasons.clone()),
            _ => None,
        })
        .unwrap_or_default();
    Some((ring, reasons))
}

/// Evaluates one (host, patch).
pub fn evaluate(world: &World, policy: &Policy, host: &Host, p: &Patch, now: Timestamp) -> Verdict {
    let blocked = |r: Reason| Verdict::Blocked { reason: r };
    if let Some(j) = world
        .jobs_of(p)
        .iter()
        .rev()
        .find(|j| j.host_id == host.facts.id)
    {
        match JobState::parse(&j.state) {
            Some(JobState::Succeeded) => return Verdict::Installed { job: j.id.clone() },
            Some(JobState::Expired | JobState::Cancelled) => {}
            _ => {
                return Verdict::Job {
                    id: j.id.clone(),
                    state: j.state.clone(),
                };
            }
        }
    }
    if let Err(w) = applicability(&p.entry, &host.facts) {
        return blocked(w.into());
    }
    let Some(ring) = policy.ring_of(&host.facts) else {
        return blocked(WhyNot::NoRing.into());
    };
    let expedited = match world
        .approval(p)
        .allows(&ring.name, p.entry.kind, &policy.classes, now)
    {
        Ok(e) => e,
        Err(w) => return blocked(w.into()),
    };
    let all: Vec<_> = world.patches.iter().map(|q| q.entry.clone()).collect();
    let deps = DepGraph::new(&all, &world.approved_ids(now));
    if let Err(w) = deps.check(&p.entry.id) {
        return blocked(w.into());
    }
    match world.rollout(p).map(|r| (r.state.as_str(), r.note.clone())) {
        Some(("active", _)) => {}
        Some(("completed", _)) => {
            let at = world
                .rollout(p)
                .map(|r| r.updated_at.clone())
                .unwrap_or_default();
            return blocked(Reason::RolloutCompleted { at });
        }
        Some(("aborted" | "superseded" | "rolled_back", note)) => {
            return blocked(Reason::RolloutAborted { note });
        }
        Some(("halted", note)) if note.starts_with("error brake") => {
            let (ring, reasons) = brake(world, policy, p, now).unwrap_or_default();
            return blocked(WhyNot::RolloutHalted { ring, reasons }.into());
        }
        Some((_, note)) => return blocked(Reason::RolloutHaltedByOperator { note }),
        None => return blocked(WhyNot::NotApproved.into()),
    }
    let installed = world.installed_on(&host.facts.id);
    if let Some(q) = host_queue(&[&p.entry], &installed, &deps)
        .into_iter()
        .next()
        && let Err(w) = q.status
    {
        return blocked(w.into());
    }
    // Gates: every earlier approved ring must have passed, nothing halted, and the
    // host's ring must have room (canary, max_parallel).
    let Approval::Approved { rings, .. } = world.approval(p).effective(now) else {
        return blocked(WhyNot::NotApproved.into());
    };
    let Some(k) = rings.iter().position(|r| *r == ring.name) else {
        return blocked(
            WhyNot::NotApprovedForRing {
                ring: ring.name.clone(),
            }
            .into(),
        );
    };
    let steps: Vec<(RingResults, GateRules)> = rings[..=k]
        .iter()
        .map(|r| {
            (
                ring_results(world, policy, p, r),
                rules_for(policy, p, r, expedited),
            )
        })
        .collect();
    let plan = plan_rollout(&steps, now);
    if let Some(halted) = &plan.halted {
        let reasons = match &plan
            .steps
            .iter()
            .find(|s| &s.ring == halted)
            .map(|s| &s.gate)
        {
            Some(crate::policy::GateStatus::Halted { reasons }) => reasons.clone(),
            _ => vec![],
        };
        return blocked(
            WhyNot::RolloutHalted {
                ring: halted.clone(),
                reasons,
            }
            .into(),
        );
    }
    let step = &plan.steps[k];
    if !step.open {
        // The first earlier ring whose gate has not passed.
        let waiting = plan.steps[..k]
            .iter()
            .find(|s| !s.gate.passed())
            .map(|s| {
                (
                    s.ring.clone(),
                    match &s.gate {
                        crate::policy::GateStatus::Waiting { reasons } => reasons.clone(),
                        _ => vec![],
                    },
                )
            })
            .unwrap_or_default();
        return blocked(
            WhyNot::WaitingOnGate {
                ring: waiting.0,
                reasons: waiting.1,
            }
            .into(),
        );
    }
    if step.capacity == 0 {
        return blocked(
            WhyNot::RingBusy {
                ring: ring.name.clone(),
            }
            .into(),
        );
    }
    let Some(ws) = policy.windows_for(&host.facts, ring) else {
        return blocked(WhyNot::OutsideWindow { next: None }.into());
    };
    let urgency = policy.classes.get(p.entry.kind).urgency(expedited);
    match may_start(&ws.windows, &ws.tz, now, p.entry.est_minutes, urgency) {
        StartCheck::Allowed {
            window_end,
            latest_start,
        } => Verdict::Offer {
            ring: ring.name.clone(),
            expedited,
            window_end,
            latest_start,
        },
        StartCheck::Blackout { until, next } => blocked(WhyNot::Blackout { until, next }.into()),
        StartCheck::TooLate {
            latest_start, next, ..
        } => blocked(WhyNot::TooLateInWindow { latest_start, next }.into()),
        StartCheck::OutsideWindow { next } => blocked(WhyNot::OutsideWindow { next }.into()),
    }
}

/// The rollout's note when its error brake fires, naming hosts by their names (the
/// audit entry's details keep the ids).
pub fn brake_note(
    conn: &rusqlite::Connection,
    ring: &str,
    reasons: &[crate::policy::gate::GateReason],
) -> Result<String, RolloutError> {
    let mut names = std::collections::BTreeMap::new();
    for r in reasons {
        use crate::policy::gate::GateReason;
        if let GateReason::NotCheckingIn { hosts } | GateReason::RolledBack { hosts } = r {
            for h in hosts {
                let name =
                    crate::db::fleet::host(conn, h)?.map_or_else(|| h.clone(), |x| x.hostname);
                names.insert(h.clone(), name);
            }
        }
    }
    let name = |id: &str| names.get(id).cloned().unwrap_or_else(|| id.to_string());
    let text: Vec<String> = reasons
        .iter()
        .map(|r| super::views::reason_text(r, &name))
        .collect();
    Ok(format!("error brake in ring {ring}: {}", text.join("; ")))
}

/// Halts every active rollout whose error brake is on (audited). Returns their keys.
pub fn apply_brakes(
    tx: &Transaction<'_>,
    world: &mut World,
    policy: &Policy,
    now: Timestamp,
) -> Result<Vec<String>, RolloutError> {
    let mut halted = Vec::new();
    let active: Vec<Patch> = world
        .patches
        .iter()
        .filter(|p| world.rollout(p).is_some_and(|r| r.state == "active"))
        .cloned()
        .collect();
    for p in active {
        let Some((ring, reasons)) = brake(world, policy, &p, now) else {
            continue;
        };
        let note = brake_note(tx, &ring, &reasons)?;
        let at = now.to_string();
        q::put_rollout(tx, &p.feed, &p.entry.id, "halted", &at, &note)?;
        audit::append(
            tx,
            now,
            &NewEntry {
                actor: "patchward",
                action: "rollout.halted",
                subject: &p.key(),
                details: serde_json::json!({ "ring": ring, "reasons": reasons }),
            },
        )?;
        if let Some(r) = world
            .rollouts
            .get_mut(&(p.feed.clone(), p.entry.id.clone()))
        {
            r.state = "halted".into();
            r.note = note;
        }
        halted.push(p.key());
    }
    Ok(halted)
}

/// At a check-in of `host_id`: halts rollouts whose brake fired, then creates at most
/// one job for the most urgent patch that may start now. Returns the new job's id.
pub fn offer(
    tx: &Transaction<'_>,
    now: Timestamp,
    policy: &Policy,
    key: &Ed25519Key,
    host_id: &str,
) -> Result<Option<String>, RolloutError> {
    if !q::any_active(tx)? {
        return Ok(None);
    }
    // One job at a time, whoever created it (a rollout or `patchward deploy`); checked
    // on the host's own jobs before the whole snapshot is read.
    let busy = q::jobs_of_host(tx, host_id)?
        .iter()
        .any(|j| JobState::parse(&j.state).is_some_and(JobState::is_open));
    if busy {
        return Ok(None);
    }
    let mut world = World::load(tx)?;
    world.fence_legacy(tx, now, &policy.legacy)?;
    apply_brakes(tx, &mut world, policy, now)?;
    let Some(host) = world.hosts.get(host_id).cloned() else {
        return Ok(None);
    };
    let mut best: Option<(&Patch, String, Timestamp)> = None;
    for p in &world.patches {
        if world.rollout(p).is_none_or(|r| r.state != "active") {
            continue;
        }
        if let Verdict::Offer {
            ring, latest_start, ..
        } = evaluate(&world, policy, &host, p, now)
        {
            let urgent = |x: &Patch| crate::policy::sla::priority(&x.entry, x.kev);
            if best.as_ref().is_none_or(|(b, _, _)| urgent(p) > urgent(b)) {
                best = Some((p, ring, latest_start));
            }
        }
    }
    let Some((p, ring, latest_start)) = best else {
        return Ok(None);
    };
    if p.entry.install == crate::feed::catalog::InstallMethod::Apt {
        // The agent installs from its ring's repository: release the patch there, and
        // offer the job once the repository is published with it.
        super::apt_sync::sync(tx, &world, policy, now)?;
        if !super::apt_sync::published(tx, p, &ring)? {
            return Ok(None);
        }
    }
    let req = NewJob {
        patch: p.key(),
        host: host_id.to_string(),
        not_before: None,
        latest_start: Some(latest_start),
        health_check: policy.classes.get(p.entry.kind).health_check,
        rollback_of: None,
    };
    let (row, _) = crate::fleet::jobs::create(tx, now, key, &req, &format!("rollout:{}", p.key()))?;
    q::set_job_ring(tx, &row.id, &ring)?;
    Ok(Some(row.id))
}

pub use super::explain::{Explanation, explain};
