//! The fleet planner: every active rollout's ring results and gates computed once for
//! the whole fleet, so that a check-in asks an in-memory [`Plan`] instead of reading
//! every host's inventory.
//!
//! [`Plan::build`] takes the decisions and jobs of a [`World`] (without its hosts) and a
//! [`FleetIndex`], and for each active rollout works out which hosts it applies to, the
//! results per ring, the gate plan, and which hosts of each open ring are still
//! waiting. It is pure (no IO, `now` is a parameter).
//!
//! A plan is a snapshot, rebuilt by the server about every second. Where being a second
//! late could do harm, [`offer`] re-checks in the transaction that creates the job:
//! the host's own jobs and current facts (applicability, ring, window), the rollout's
//! state and approval, the ring's capacity (canary, `max_parallel`) counted from the
//! jobs table, and failures newer than the plan (which hold new offers of that patch
//! until a plan that has seen them decides on the brake). Being late is then only ever
//! conservative: a gate opens up to a second after it could have.

use std::collections::BTreeSet;

use foldhash::{HashMap, HashMapExt};

use jiff::Timestamp;
use rusqlite::{OptionalExtension, Transaction};

use super::fleet_index::FleetIndex;
use super::{Patch, RolloutError, World};
use crate::db::rollout::JobBrief;
use crate::fleet::jobs::{JobState, NewJob};
use crate::policy::deps::{DepGraph, host_queue};
use crate::policy::gate::{GateRules, HostOutcome, HostResult, RingResults};
use crate::policy::{Approval, HostFacts, Policy, RingPlan, applicability, plan_rollout};
use crate::trust::keys::Ed25519Key;

/// One active rollout, planned.
#[derive(Debug, Clone)]
pub struct PatchPlan {
    pub patch: Patch,
    /// The approval as it was when planned (compared again before an offer).
    pub approval: Approval,
    pub expedited: bool,
    /// The approved rings, in ring order, with their results and rules.
    pub rings: Vec<String>,
    pub results: Vec<RingResults>,
    pub rules: Vec<GateRules>,
    pub plan: RingPlan,
    /// Per approved ring: positions (in the index) of hosts that may still be offered
    /// the patch (it applies, they are in the ring, they have no job for it), ascending.
    waiting: Vec<Vec<usize>>,
}

impl PatchPlan {
    /// Whether every host of every approved ring has the patch: each listed host
    /// succeeded and none is left waiting for an offer. Nothing more can happen, so the
    /// rollout is `completed` rather than `active` with a soak that ends tomorrow.
    /// Hosts whose failure an operator acknowledged (resume) are not waited for: they
    /// are never offered the patch again on their own. Rings with no host the patch
    /// applies to have nothing to wait for.
    pub fn finished(&self) -> bool {
        self.results.iter().all(|r| {
            r.unlisted_pending == 0
                && r.hosts
                    .iter()
                    .all(|h| matches!(h.outcome, HostOutcome::Succeeded { .. }))
        })
    }

    /// How many hosts of the approved rings have the patch.
    pub fn installed(&self) -> usize {
        self.results
            .iter()
            .flat_map(|r| &r.hosts)
            .filter(|h| matches!(h.outcome, HostOutcome::Succeeded { .. }))
            .count()
    }

    /// How many hosts of the approved rings still need it (not offered, or offered and
    /// not finished).
    pub fn needing(&self) -> usize {
        self.results
            .iter()
            .map(|r| {
                r.unlisted_pending
                    + r.hosts
                        .iter()
                        .filter(|h| !matches!(h.outcome, HostOutcome::Succeeded { .. }))
                        .count()
            })
            .sum()
    }
}

/// The fleet-wide plan.
#[derive(Debug, Clone)]
pub struct Plan {
    pub built_at: Timestamp,
    /// The approvals-and-rollouts generation the plan was built from (set by the
    /// planner; see `db::rollout::rollout_generation`).
    pub generation: i64,
    /// Active rollouts, most urgent first.
    pub patches: Vec<PatchPlan>,
    deps: DepGraph,
    /// Per host: the patch ids it has installed (a job succeeded).
    installed: HashMap<String, BTreeSet<String>>,
    /// Completed rollouts that a host of an approved ring needs again (it enrolled,
    /// moved into the ring, or its job expired): the planner reopens them.
    pub reopen: Vec<PatchPlan>,
    /// Hosts with an unfinished job (one job at a time).
    busy: BTreeSet<String>,
    /// Every host of the index: its position and its facts without packages (ring
    /// membership and windows read only id, assigned ring and labels).
    hosts: HashMap<String, (usize, HostFacts)>,
}

/// How a ring's host did with a patch, from its latest job (`None`: no job that
/// counts, e.g. expired or cancelled); the same reading as the exact scheduler's.
fn outcome(j: &JobBrief) -> Option<HostOutcome> {
    let at = |s: &str| s.parse().unwrap_or(Timestamp::UNIX_EPOCH);
    super::engine::outcome(&j.state, at(&j.created_at), at(&j.updated_at))
}

impl Plan {
    /// Plans every active rollout of `world` (its `hosts` are not read: the index
    /// stands for them) as of `now`.
    pub fn build(world: &World, index: &FleetIndex, policy: &Policy, now: Timestamp) -> Plan {
        let all: Vec<_> = world.patches.iter().map(|p| p.entry.clone()).collect();
        let deps = DepGraph::new(&all, &world.approved_ids(now));
        let mut installed: HashMap<String, BTreeSet<String>> = HashMap::new();
        let mut busy = BTreeSet::new();
        for ((_, id), jobs) in &world.jobs {
            for j in jobs {
                match JobState::parse(&j.state) {
                    Some(JobState::Succeeded) => {
                        installed
                            .entry(j.host_id.clone())
                            .or_default()
                            .insert(id.clone());
                    }
                    Some(s) if s.is_open() => {
                        busy.insert(j.host_id.clone());
                    }
                    _ => {}
                }
            }
        }
        let mut patches: Vec<PatchPlan> = world
            .patches
            .iter()
            .filter(|p| world.rollout(p).is_some_and(|r| r.state == "active"))
            .filter_map(|p| plan_patch(world, index, policy, p, now))
            .collect();
        let reopen = Self::reopen(world, index, policy, now);
        patches.sort_by(|a, b| {
            let u = |x: &PatchPlan| crate::policy::sla::priority(&x.patch.entry, x.patch.kev);
            u(b).cmp(&u(a))
        });
        let hosts = index
            .iter()
            .map(|(pos, h)| (h.id.clone(), (pos, h.facts_without_packages())))
            .collect();
        Plan {
            built_at: now,
            generation: 0,
            patches,
            reopen,
            deps,
            installed,
            busy,
            hosts,
        }
    }

    /// The completed rollouts of `world` that are no longer finished on `index`: a
    /// host of an approved ring lacks the patch (see [`PatchPlan::finished`]).
    pub fn reopen(
        world: &World,
        index: &FleetIndex,
        policy: &Policy,
        now: Timestamp,
    ) -> Vec<PatchPlan> {
        world
            .patches
            .iter()
            .filter(|p| world.rollout(p).is_some_and(|r| r.state == "completed"))
            .filter_map(|p| plan_patch(world, index, policy, p, now))
            .filter(|pp| !pp.finished())
            .collect()
    }

    /// The first (most urgent) patch the host may be offered now according to the
    /// plan, with its ring and the window's `latest_start`; `facts` are the host's
    /// (packages are only read when `waiting_pos` is `None`, see [`Candidate`]).
    fn pick(
        &self,
        policy: &Policy,
        host: &Candidate<'_>,
        now: Timestamp,
    ) -> Option<(usize, String, Timestamp)> {
        let ring = policy.ring_of(host.facts)?;
        let empty = BTreeSet::new();
        let installed = host.installed.unwrap_or(&empty);
        for (i, pp) in self.patches.iter().enumerate() {
            let Some(k) = pp.rings.iter().position(|r| *r == ring.name) else {
                continue;
            };
            let step = &pp.plan.steps[k];
            if !step.open || step.capacity == 0 {
                continue;
            }
            let waiting = match host.position {
                Some(pos) => pp.waiting[k].binary_search(&pos).is_ok(),
                None => {
                    !(host.has_job)(&pp.patch) && applicability(&pp.patch.entry, host.facts).is_ok()
                }
            };
            if !waiting {
                continue;
            }
            if pp
                .approval
                .allows(&ring.name, pp.patch.entry.kind, &policy.classes, now)
                .is_err()
                || self.deps.check(&pp.patch.entry.id).is_err()
            {
                continue;
            }
            let queued = host_queue(&[&pp.patch.entry], installed, &self.deps);
            if queued.first().is_some_and(|q| q.status.is_err()) {
                continue;
            }
            let Some(ws) = policy.windows_for(host.facts, ring) else {
                continue;
            };
            let urgency = policy
                .classes
                .get(pp.patch.entry.kind)
                .urgency(pp.expedited);
            if let Some((_, latest_start)) = crate::policy::may_start_now(
                &ws.windows,
                &ws.tz,
                now,
                pp.patch.entry.est_minutes,
                urgency,
            ) {
                return Some((i, ring.name.clone(), latest_start));
            }
        }
        None
    }

    /// The hosts the plan covers (the planner's index when it was built).
    pub fn hosts(&self) -> usize {
        self.hosts.len()
    }

    /// Whether a check-in of `host_id` could be offered a job now, from the plan alone
    /// (no database): the quick test that keeps every other check-in on the read-only
    /// path. A `true` is confirmed or refuted by [`offer`].
    pub fn may_offer(&self, policy: &Policy, host_id: &str, now: Timestamp) -> bool {
        if self.patches.is_empty() || self.busy.contains(host_id) {
            return false;
        }
        let Some((pos, facts)) = self.hosts.get(host_id) else {
            return false;
        };
        let cand = Candidate {
            facts,
            position: Some(*pos),
            installed: self.installed.get(host_id),
            has_job: &|_| true,
        };
        self.pick(policy, &cand, now).is_some()
    }

    /// The rings each planned patch's apt repositories should hold now (`None`: leave
    /// them, the rollout is halted by its brake).
    pub fn apt_rings(&self, p: &Patch) -> Option<Option<BTreeSet<String>>> {
        let pp = self
            .patches
            .iter()
            .find(|pp| pp.patch.feed == p.feed && pp.patch.entry.id == p.entry.id)?;
        if pp.plan.halted.is_some() {
            return Some(None);
        }
        Some(Some(
            pp.plan
                .steps
                .iter()
                .filter(|s| s.open)
                .map(|s| s.ring.clone())
                .collect(),
        ))
    }
}

/// A host being matched against the plan. From the plan's own index (`position` set:
/// "waiting" comes from the plan) or, for the exact check, from the database
/// (`position` `None`: applicability from the full `facts`, jobs from `has_job`).
struct Candidate<'a> {
    facts: &'a HostFacts,
    position: Option<usize>,
    installed: Option<&'a BTreeSet<String>>,
    /// Whether the host has a job for the patch that counts (not expired/cancelled).
    has_job: &'a dyn Fn(&Patch) -> bool,
}

fn plan_patch(
    world: &World,
    index: &FleetIndex,
    policy: &Policy,
    p: &Patch,
    now: Timestamp,
) -> Option<PatchPlan> {
    let approval = world.approval(p).effective(now);
    let Approval::Approved { rings, expedite } = &approval else {
        return None;
    };
    let expedited = expedite.is_some();
    let applies = index.applies(&p.entry);
    let ack: Option<Timestamp> = world
        .rollout(p)
        .and_then(|r| r.acknowledged_at.as_deref())
        .and_then(|s| s.parse().ok());
    // The latest job per host position (jobs are ordered by creation); jobs of hosts
    // no longer enrolled do not count.
    let mut latest: HashMap<usize, &JobBrief> = HashMap::new();
    for j in world.jobs_of(p) {
        if let Some(pos) = index.position(&j.host_id) {
            latest.insert(pos, j);
        }
    }
    let mut results = Vec::new();
    let mut rules = Vec::new();
    let mut waiting = Vec::new();
    for ring in rings {
        let rp = policy.rings.iter().position(|r| r.name == *ring);
        let in_ring = |pos: usize| rp.is_some() && index.host(pos).is_some_and(|h| h.ring == rp);
        let mut hosts = Vec::new();
        let mut wait: Vec<usize> = Vec::new();
        for (&pos, j) in &latest {
            if !in_ring(pos) {
                continue;
            }
            let Some(out) = outcome(j) else {
                // Expired or cancelled: waiting again, if the patch still applies.
                if applies.binary_search(&pos).is_ok() {
                    wait.push(pos);
                }
                continue;
            };
            if let HostOutcome::Failed { at } | HostOutcome::RolledBack { at } = out
                && ack.is_some_and(|a| at <= a)
            {
                continue;
            }
            hosts.push(HostResult {
                host: j.host_id.clone(),
                outcome: out,
                last_checkin: index.host(pos).and_then(|h| h.last_seen),
            });
        }
        for &pos in &applies {
            if in_ring(pos) && !latest.contains_key(&pos) {
                wait.push(pos);
            }
        }
        wait.sort_unstable();
        wait.dedup();
        hosts.sort_by(|a, b| a.host.cmp(&b.host));
        results.push(RingResults {
            ring: ring.clone(),
            hosts,
            unlisted_pending: wait.len(),
        });
        rules.push(super::engine::rules_for(policy, p, ring, expedited));
        waiting.push(wait);
    }
    let steps: Vec<(RingResults, GateRules)> =
        results.iter().cloned().zip(rules.iter().cloned()).collect();
    let plan = plan_rollout(&steps, now);
    Some(PatchPlan {
        patch: p.clone(),
        approval: approval.clone(),
        expedited,
        rings: rings.clone(),
        results,
        rules,
        plan,
        waiting,
    })
}

/// At a check-in of `host_id`: creates at most one job, for the most urgent patch the
/// plan allows and the exact checks confirm (see the module doc). Returns its id.
pub fn offer(
    tx: &Transaction<'_>,
    now: Timestamp,
    policy: &Policy,
    key: &Ed25519Key,
    plan: &Plan,
    host_id: &str,
) -> Result<Option<String>, RolloutError> {
    let own = crate::db::rollout::jobs_of_host(tx, host_id)?;
    if own
        .iter()
        .any(|j| JobState::parse(&j.state).is_some_and(JobState::is_open))
    {
        return Ok(None);
    }
    let Some(facts) = super::host_facts(tx, host_id, now, &policy.legacy)? else {
        return Ok(None);
    };
    let installed: BTreeSet<String> = own
        .iter()
        .filter(|j| j.state == JobState::Succeeded.as_str())
        .map(|j| j.patch_id.clone())
        .collect();
    let has_job = |p: &Patch| {
        own.iter()
            .rev()
            .find(|j| j.feed == p.feed && j.patch_id == p.entry.id)
            .is_some_and(|j| outcome(j).is_some())
    };
    // Candidates in urgency order; the first that passes the exact checks is offered.
    let mut skip = BTreeSet::new();
    loop {
        let cand = Candidate {
            facts: &facts,
            position: None,
            installed: Some(&installed),
            has_job: &|p: &Patch| skip.contains(&p.key()) || has_job(p),
        };
        let Some((i, ring, latest_start)) = plan.pick(policy, &cand, now) else {
            return Ok(None);
        };
        let pp = &plan.patches[i];
        if !confirmed(tx, plan, pp, &ring)? {
            skip.insert(pp.patch.key());
            continue;
        }
        let p = &pp.patch;
        if p.entry.install == crate::feed::catalog::InstallMethod::Apt
            && !super::apt_sync::published(tx, p, &ring)?
        {
            // The planner releases it to the ring's repository; offered once published.
            skip.insert(p.key());
            continue;
        }
        let req = NewJob {
            patch: p.key(),
            host: host_id.to_string(),
            not_before: None,
            latest_start: Some(latest_start),
            health_check: policy.classes.get(p.entry.kind).health_check,
            rollback_of: None,
        };
        let (row, _) =
            crate::fleet::jobs::create(tx, now, key, &req, &format!("rollout:{}", p.key()))?;
        crate::db::rollout::set_job_ring(tx, &row.id, &ring)?;
        return Ok(Some(row.id));
    }
}

/// The exact checks before an offer of `pp` in `ring` (see the module doc).
fn confirmed(
    tx: &Transaction<'_>,
    plan: &Plan,
    pp: &PatchPlan,
    ring: &str,
) -> Result<bool, RolloutError> {
    let (feed, id) = (&pp.patch.feed, &pp.patch.entry.id);
    let state: Option<String> = tx
        .query_row(
            "SELECT state FROM rollouts WHERE feed = ?1 AND patch_id = ?2",
            [feed, id],
            |r| r.get(0),
        )
        .optional()?;
    if state.as_deref() != Some("active") {
        return Ok(false);
    }
    let stored: Option<String> = tx
        .query_row(
            "SELECT approval FROM approvals WHERE feed = ?1 AND patch_id = ?2",
            [feed, id],
            |r| r.get(0),
        )
        .optional()?;
    let approval: Approval = match stored {
        Some(json) => super::stored("approval", &json)?,
        None => Approval::New,
    };
    if approval.effective(plan.built_at) != pp.approval {
        return Ok(false);
    }
    let mut st = tx.prepare_cached(
        "SELECT state, ring, updated_at FROM jobs WHERE feed = ?1 AND patch_id = ?2",
    )?;
    let rows = st.query_map([feed, id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let (mut in_flight, mut succeeded) = (0usize, 0usize);
    for row in rows {
        let (state, job_ring, updated) = row?;
        let Some(s) = JobState::parse(&state) else {
            continue;
        };
        let here = job_ring.as_deref() == Some(ring);
        match s {
            JobState::Failed | JobState::RolledBack | JobState::RollbackFailed => {
                let at: Timestamp = updated.parse().unwrap_or(Timestamp::UNIX_EPOCH);
                if at > plan.built_at {
                    return Ok(false);
                }
            }
            JobState::Succeeded if here => succeeded += 1,
            // Jobs made by `patchward deploy` (no ring) count against every ring.
            s if s.is_open() && (here || job_ring.is_none()) => in_flight += 1,
            _ => {}
        }
    }
    let Some(k) = pp.rings.iter().position(|r| r == ring) else {
        return Ok(false);
    };
    let rules = &pp.rules[k];
    let limit = if rules.canary && succeeded == 0 {
        1
    } else {
        rules.max_parallel.map_or(usize::MAX, |m| m as usize)
    };
    Ok(in_flight < limit)
}
