//! What `rollout list|show` prints and the rollout pages show: every rollout with each
//! approved ring's counts (read through `JobState::standing`, like the host page), its
//! gate, and its hosts by state, by name (ids stay in the JSON and on hover).

use std::fmt::Write as _;

use jiff::Timestamp;

use super::{RolloutError, World, engine};
use crate::fleet::standing::Standing;
use crate::policy::Approval;

/// One ring's line in `rollout list|show`. The counts come from
/// [`crate::fleet::jobs::JobState::standing`], the same reading as the host page.
#[derive(Debug, serde::Serialize)]
pub struct RingView {
    pub ring: String,
    pub hosts: usize,
    pub succeeded: usize,
    pub in_progress: usize,
    /// Installed and verified, waiting for the host's reboot (`reboot_pending`).
    pub awaiting_reboot: usize,
    /// Failed or rolled back.
    pub failed: usize,
    pub gate: crate::policy::GateStatus,
    /// The ring's hosts by name with their state (failed first, not started last).
    pub members: Vec<MemberView>,
}

impl RingView {
    /// Hosts of the ring with no job for the patch yet.
    pub fn not_started(&self) -> usize {
        self.hosts
            .saturating_sub(self.succeeded + self.in_progress + self.awaiting_reboot + self.failed)
    }
}

/// One host of a ring in `rollout show` (and the rollout page's drill-down).
#[derive(Debug, Clone, serde::Serialize)]
pub struct MemberView {
    pub id: String,
    pub hostname: String,
    pub state: Standing,
    /// Its latest job for the patch (none when not started).
    pub job: Option<String>,
}

/// One rollout in `rollout list|show`.
#[derive(Debug, serde::Serialize)]
pub struct RolloutView {
    pub patch: String,
    pub title: String,
    pub state: String,
    pub note: String,
    pub approval: Approval,
    pub started_at: String,
    /// When every host of every approved ring had the patch (state `completed`).
    pub completed_at: Option<String>,
    pub rings: Vec<RingView>,
}

/// Every rollout (only `only`, a `FEED:ID`, when given) with each approved ring's
/// progress and gate: what `rollout list|show` prints and the web page shows.
pub fn views(
    world: &World,
    policy: &crate::policy::Policy,
    now: Timestamp,
    only: Option<&str>,
) -> Result<Vec<RolloutView>, RolloutError> {
    let mut out = Vec::new();
    for p in &world.patches {
        let Some(r) = world.rollout(p) else { continue };
        if only.is_some_and(|k| k != p.key()) {
            continue;
        }
        let approval = world.approval(p);
        let (rings, expedited) = match approval.effective(now) {
            Approval::Approved { rings, expedite } => (rings, expedite.is_some()),
            _ => (vec![], false),
        };
        let mut rv = Vec::new();
        for ring in &rings {
            let members = engine::ring_hosts(world, policy, p, ring);
            let res = engine::ring_results(world, policy, p, ring);
            let rules = engine::rules_for(policy, p, ring, expedited);
            let count = |s: &[Standing]| members.iter().filter(|h| s.contains(&h.standing)).count();
            let mut list: Vec<MemberView> = members
                .iter()
                .map(|h| MemberView {
                    id: h.id.to_string(),
                    hostname: h.host.hostname.clone(),
                    state: h.standing,
                    job: h
                        .job
                        .filter(|_| h.standing != Standing::NotStarted)
                        .map(|j| j.id.clone()),
                })
                .collect();
            let order = |s: Standing| Standing::ALL.iter().position(|x| *x == s);
            list.sort_by(|a, b| {
                (order(a.state), &a.hostname, &a.id).cmp(&(order(b.state), &b.hostname, &b.id))
            });
            rv.push(RingView {
                ring: ring.clone(),
                hosts: members.len(),
                succeeded: count(&[Standing::Installed]),
                in_progress: count(&[Standing::Running]),
                awaiting_reboot: count(&[Standing::AwaitingReboot]),
                failed: count(&[Standing::Failed, Standing::RolledBack]),
                gate: crate::policy::gate(&res, &rules, now),
                members: list,
            });
        }
        out.push(RolloutView {
            patch: p.key(),
            title: p.entry.title.clone(),
            state: r.state.clone(),
            note: r.note.clone(),
            approval,
            started_at: r.started_at.clone(),
            completed_at: (r.state == "completed").then(|| r.updated_at.clone()),
            rings: rv,
        });
    }
    Ok(out)
}

/// A gate reason as a person reads it: hosts by name (ids stay in the JSON).
pub fn reason_text(r: &crate::policy::gate::GateReason, name: &dyn Fn(&str) -> String) -> String {
    use crate::policy::gate::GateReason;
    let names = |hosts: &[String]| hosts.iter().map(|h| name(h)).collect::<Vec<_>>().join(", ");
    match r {
        GateReason::NotCheckingIn { hosts } => {
            format!("not checking in since success: {}", names(hosts))
        }
        GateReason::RolledBack { hosts } => format!("rolled back on {}", names(hosts)),
        other => other.to_string(),
    }
}

/// A host id's name in `world` (the id itself for a host that is gone).
pub fn host_name(world: &World) -> impl Fn(&str) -> String + '_ {
    |id: &str| {
        world
            .hosts
            .get(id)
            .map_or_else(|| id.to_string(), |h| h.hostname.clone())
    }
}

fn gate_text(g: &crate::policy::GateStatus, name: &dyn Fn(&str) -> String) -> String {
    use crate::policy::GateStatus;
    let list = |r: &[crate::policy::gate::GateReason]| {
        r.iter()
            .map(|x| reason_text(x, name))
            .collect::<Vec<_>>()
            .join("; ")
    };
    match g {
        GateStatus::Passed => "gate passed".into(),
        GateStatus::Waiting { reasons } => format!("waiting: {}", list(reasons)),
        GateStatus::Halted { reasons } => format!("HALTED: {}", list(reasons)),
    }
}

/// How many host names `rollout show` prints per state before "and N more".
const NAMES_SHOWN: usize = 50;

/// `rollout list|show` as text; `show` also lists each ring's hosts by state (only
/// those in `state` when given, then all of them).
pub(crate) fn print_views(
    v: &[RolloutView],
    world: &World,
    show: bool,
    state: Option<Standing>,
) -> String {
    let name = host_name(world);
    let mut s = String::new();
    for r in v {
        let _ = writeln!(s, "{}  {}  ({})", r.patch, r.state, r.note);
        if let Some(at) = &r.completed_at {
            let _ = writeln!(
                s,
                "  completed at {at}: every host of every approved ring has it"
            );
        }
        for ring in &r.rings {
            let _ = writeln!(
                s,
                "  {:<10} {:>3} hosts  {:>3} ok  {:>3} running  {:>3} waiting for reboot  {:>3} failed  {:>3} not started  {}",
                ring.ring,
                ring.hosts,
                ring.succeeded,
                ring.in_progress,
                ring.awaiting_reboot,
                ring.failed,
                ring.not_started(),
                gate_text(&ring.gate, &name)
            );
            if !show {
                continue;
            }
            for st in Standing::ALL {
                if state.is_some_and(|x| x != st) {
                    continue;
                }
                let of: Vec<&MemberView> = ring.members.iter().filter(|m| m.state == st).collect();
                if of.is_empty() {
                    continue;
                }
                let cap = if state.is_some() {
                    of.len()
                } else {
                    NAMES_SHOWN
                };
                let mut names: Vec<String> = of
                    .iter()
                    .take(cap)
                    .map(|m| match &m.job {
                        Some(j) => format!("{} (job {j})", m.hostname),
                        None => m.hostname.clone(),
                    })
                    .collect();
                if of.len() > cap {
                    names.push(format!(
                        "and {} more (--state {} lists them all)",
                        of.len() - cap,
                        st.as_str()
                    ));
                }
                let _ = writeln!(s, "    {}: {}", st.label(), names.join(", "));
            }
        }
    }
    s
}

/// Whether a rollout state is still in progress (`active` or `halted`); the others
/// (`completed`, `aborted`, `superseded`, `rolled_back`) are finished.
pub fn unfinished(state: &str) -> bool {
    matches!(state, "active" | "halted")
}
