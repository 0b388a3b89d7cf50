//! Rollouts drive the per-ring apt repositories (`apt`): a patch installed with apt
//! is in a ring's repository only while it is approved for that ring and every earlier
//! ring's gate has passed, which is when the scheduler may offer it there too.
//!
//! [`sync`] runs every minute and before an apt job is offered. It releases an active
//! rollout's debs to each ring its plan has opened. A halted rollout keeps what it
//! has: hosts may have installed from it already, and nothing new is added. An
//! aborted, superseded or declined patch is withdrawn from every ring; a patch that was
//! never approved is left as `patchward apt release|withdraw` set it. A ring is only
//! offered an apt job once its repository has been published with the patch in it, so
//! the agent's `apt-get update` finds it.

use std::collections::BTreeSet;

use jiff::Timestamp;
use rusqlite::{OptionalExtension, Transaction};

use super::{Patch, RolloutError, World};
use crate::feed::catalog::InstallMethod;
use crate::policy::{Approval, Policy, plan_rollout};

fn released_rings(tx: &Transaction<'_>, p: &Patch) -> Result<BTreeSet<String>, RolloutError> {
    let mut st = tx
        .prepare("SELECT DISTINCT ring FROM apt_ring_packages WHERE feed = ?1 AND patch_id = ?2")?;
    let rows = st.query_map([&p.feed, &p.entry.id], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The rings whose repositories should hold `p` now, or `None` to leave them as they
/// are (a halted rollout).
fn wanted(world: &World, policy: &Policy, p: &Patch, now: Timestamp) -> Option<BTreeSet<String>> {
    // A patch that was never approved is left alone: what `patchward apt release`
    // put there by hand (audited) stays until someone withdraws it.
    let state = Some(world.rollout(p)?.state.as_str());
    match (state, world.approval(p).effective(now)) {
        // A completed rollout keeps the rings it reached: every host there has it.
        (Some("halted" | "completed"), Approval::Approved { .. }) => None,
        (Some("active"), Approval::Approved { rings, expedite }) => {
            let steps: Vec<_> = rings
                .iter()
                .map(|r| {
                    (
                        super::engine::ring_results(world, policy, p, r),
                        super::engine::rules_for(policy, p, r, expedite.is_some()),
                    )
                })
                .collect();
            let plan = plan_rollout(&steps, now);
            if plan.halted.is_some() {
                return None;
            }
            Some(
                plan.steps
                    .iter()
                    .filter(|s| s.open)
                    .map(|s| s.ring.clone())
                    .collect(),
            )
        }
        _ => Some(BTreeSet::new()),
    }
}

/// Brings the apt repositories in line with the rollouts; returns one line per change.
pub fn sync(
    tx: &Transaction<'_>,
    world: &World,
    policy: &Policy,
    now: Timestamp,
) -> Result<Vec<String>, RolloutError> {
    sync_with(tx, world, now, &|p| wanted(world, policy, p, now))
}

/// [`sync`] with the fleet planner's answer for active rollouts (`plan`), so that no
/// host snapshot is read: patches the plan does not cover (not active) need none.
pub fn sync_planned(
    tx: &Transaction<'_>,
    world: &World,
    policy: &Policy,
    plan: Option<&super::plan::Plan>,
    now: Timestamp,
) -> Result<Vec<String>, RolloutError> {
    sync_with(tx, world, now, &|p| {
        if world.rollout(p).is_some_and(|r| r.state == "active") {
            // Without a plan yet, leave the active rollouts' rings as they are.
            return plan.and_then(|plan| plan.apt_rings(p)).flatten();
        }
        wanted(world, policy, p, now)
    })
}

fn sync_with(
    tx: &Transaction<'_>,
    world: &World,
    now: Timestamp,
    wanted: &dyn Fn(&Patch) -> Option<BTreeSet<String>>,
) -> Result<Vec<String>, RolloutError> {
    let mut changes = Vec::new();
    for p in world
        .patches
        .iter()
        .filter(|p| p.entry.install == InstallMethod::Apt)
    {
        let have = released_rings(tx, p)?;
        let Some(mut want) = wanted(p) else {
            continue;
        };
        // Never take a patch out of a ring because a gate regressed (a late failure
        // elsewhere): only abort, decline and supersedence withdraw.
        if world.rollout(p).is_some_and(|r| r.state == "active") {
            want.extend(have.iter().cloned());
        }
        let actor = format!("rollout:{}", p.key());
        for ring in want.difference(&have) {
            // A patch whose debs cannot be released (no control data) must not stop
            // the others; it is reported, and its ring is never offered the job.
            match crate::apt::release_to_ring(tx, now, ring, &p.feed, &p.entry.id, &actor) {
                Ok(_) => changes.push(format!("{} released to apt ring {ring}", p.key())),
                Err(e) => changes.push(format!("{} cannot be released to {ring}: {e}", p.key())),
            }
        }
        for ring in have.difference(&want) {
            crate::apt::withdraw_from_ring(tx, now, ring, &p.feed, &p.entry.id, &actor)
                .map_err(|e| RolloutError::Stored(format!("apt withdraw of {}: {e}", p.key())))?;
            changes.push(format!("{} withdrawn from apt ring {ring}", p.key()));
        }
    }
    Ok(changes)
}

/// Whether `ring`'s published repository already serves `p` (released, and published
/// since).
pub fn published(tx: &Transaction<'_>, p: &Patch, ring: &str) -> Result<bool, RolloutError> {
    let released: Option<String> = tx
        .query_row(
            "SELECT MAX(released_at) FROM apt_ring_packages
             WHERE ring = ?1 AND feed = ?2 AND patch_id = ?3",
            [ring, &p.feed, &p.entry.id],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    let Some(released) = released else {
        return Ok(false);
    };
    let row: Option<(i64, Option<String>)> = tx
        .query_row(
            "SELECT dirty, published_at FROM apt_rings WHERE ring = ?1",
            [ring],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(matches!(row, Some((0, Some(at))) if at >= released))
}
