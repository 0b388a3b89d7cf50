//! The server's planner: keeps a [`FleetIndex`] current and rebuilds the [`Plan`] about
//! every second while a rollout needs attention, so that check-ins read a plan from
//! memory instead of the whole fleet from the database.
//!
//! The index is updated incrementally: the `hosts` table (small rows) is scanned for
//! new, revoked and re-labelled hosts and for `last_seen`; inventories are re-read only
//! for hosts listed in `inventory_changes` (filled by triggers, so changes made by any
//! process are seen). The plan is swapped in whole behind an `Arc`; check-ins never
//! wait for a rebuild.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use rusqlite::{Connection, Transaction};

use super::fleet_index::{FleetIndex, HostInput};
use super::plan::Plan;
use super::{RolloutError, World};
use crate::audit::{self, NewEntry};
use crate::fleet::inventory::{Inventory, OsRelease};
use crate::legacy::offer::Fence;
use crate::policy::Policy;
use std::collections::HashMap;

/// The index and where it is up to. A std `Mutex`: held only by the (blocking)
/// rebuild, never across an await.
#[derive(Default)]
struct IndexState {
    index: FleetIndex,
    /// The last `inventory_changes` id applied.
    applied: i64,
    /// Whether the first full load happened.
    loaded: bool,
    /// The input counters (`db::rollout::plan_inputs`) read before the last refresh.
    inputs: Option<(i64, i64, i64)>,
    /// The legacy inputs (catalog, includes, `[legacy]`, day) the hosts' end-of-life
    /// flags were computed from; `None` until a refresh that knows the time.
    fence: Option<Fence>,
    /// Each indexed host's name and os-release, to recompute the flags when the fence
    /// moves without an inventory change (a day rollover, an include, a new catalog).
    os: HashMap<String, (String, OsRelease)>,
}

/// How long a plan is reused while nothing it reads changed: gates also move with time
/// alone (a soak ends, a host stops checking in), which this bounds.
const REUSE_FOR: jiff::SignedDuration = jiff::SignedDuration::from_secs(10);

/// Shared between the planning task and the check-in handlers. The policy is passed
/// to each rebuild (the effective policy can change while the server runs); ring
/// membership in the index follows the policy of the latest rebuild.
#[derive(Default)]
pub struct Planner {
    state: Mutex<IndexState>,
    plan: Mutex<Option<Arc<Plan>>>,
    /// The input counters (`db::rollout::plan_inputs`) the current plan was built from.
    inputs: Mutex<Option<(i64, i64, i64)>>,
}

impl Planner {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current plan (`None` before the first build, or while no rollout is active).
    pub fn current(&self) -> Option<Arc<Plan>> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The current plan if it was built from the latest approvals and rollouts, else a
    /// new one built now on `conn` (an operator's approval or halt is seen by the very
    /// next check-in, not a second later; check-ins call this on their reader
    /// connection, so an approval sends no burst of check-ins to the writer). `None`
    /// while another thread is rebuilding: the caller offers nothing this time rather
    /// than wait. Also `None` before the index's first full load, which only the
    /// planner task does ([`Planner::warm`]): reading every inventory must never happen
    /// inside a check-in.
    pub fn fresh(
        &self,
        conn: &Connection,
        policy: &Policy,
        now: Timestamp,
    ) -> Result<Option<Arc<Plan>>, RolloutError> {
        let generation = crate::db::rollout::rollout_generation(conn)?;
        if let Some(plan) = self.current()
            && plan.generation == generation
        {
            return Ok(Some(plan));
        }
        let st = match self.state.try_lock() {
            Ok(st) => st,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(None),
        };
        if !st.loaded {
            return Ok(None);
        }
        metrics::counter!("patchward_plan_inline_builds_total").increment(1);
        self.rebuild_locked(st, conn, policy, now).map(Some)
    }

    /// Keeps the index current while no rollout needs a plan: applies new hosts,
    /// revocations and changed inventories when the input counters moved (quiet
    /// check-ins do not move them), and does the first full load at start-up. So the
    /// cost of reading every inventory is paid once, by this background task, and
    /// not when an operator approves a patch with thousands of check-ins waiting.
    /// Returns the hosts in the index.
    ///
    /// When the index moved it also returns the completed rollouts that a host needs
    /// again (a new host of an approved ring, an expired job): the caller reopens them
    /// ([`complete_and_reopen`]). Only then, so a quiet fleet costs nothing more.
    pub fn warm(
        &self,
        conn: &Connection,
        policy: &Policy,
        now: Timestamp,
    ) -> Result<(usize, Vec<super::plan::PatchPlan>), RolloutError> {
        let inputs = crate::db::rollout::plan_inputs(conn)?;
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut reopen = Vec::new();
        let fenced = refresh_fence(conn, policy, now, &mut st)?;
        if fenced || !(st.loaded && st.inputs == Some(inputs)) {
            refresh_index(conn, policy, &mut st)?;
            st.inputs = Some(inputs);
            if crate::db::rollout::any_completed(conn)? {
                let mut world = World::load_decisions(conn)?;
                world.load_rollout_jobs(conn)?;
                reopen = Plan::reopen(&world, &st.index, policy, now);
            }
        }
        Ok((st.index.len(), reopen))
    }

    /// Runs `f` on the fleet index brought up to date on `conn`, as [`Planner::warm`]
    /// does (the first call on a new planner loads every inventory: the server's
    /// planner task has done that at start-up; a CLI pays it once).
    pub fn with_index<R>(
        &self,
        conn: &Connection,
        policy: &Policy,
        f: impl FnOnce(&FleetIndex) -> R,
    ) -> Result<R, RolloutError> {
        let inputs = crate::db::rollout::plan_inputs(conn)?;
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !(st.loaded && st.inputs == Some(inputs)) {
            refresh_index(conn, policy, &mut st)?;
            st.inputs = Some(inputs);
        }
        Ok(f(&st.index))
    }

    /// Drops the plan (no rollout needs attention).
    pub fn clear(&self) {
        *self.plan.lock().unwrap_or_else(|e| e.into_inner()) = None;
        *self.inputs.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The last inventory change the index has applied (older rows may be deleted).
    pub fn applied_change(&self) -> i64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).applied
    }

    /// The current plan if nothing it reads changed and it is younger than
    /// [`REUSE_FOR`], else a rebuilt one (the server's once-a-second task).
    pub fn refresh(
        &self,
        conn: &Connection,
        policy: &Policy,
        now: Timestamp,
    ) -> Result<Arc<Plan>, RolloutError> {
        let inputs = crate::db::rollout::plan_inputs(conn)?;
        let same = *self.inputs.lock().unwrap_or_else(|e| e.into_inner()) == Some(inputs);
        if same
            && let Some(plan) = self.current()
            && now.duration_since(plan.built_at) < REUSE_FOR
        {
            return Ok(plan);
        }
        let plan = self.rebuild(conn, policy, now)?;
        *self.inputs.lock().unwrap_or_else(|e| e.into_inner()) = Some(inputs);
        Ok(plan)
    }

    /// Brings the index up to date on `conn` and builds a new plan as of `now`.
    pub fn rebuild(
        &self,
        conn: &Connection,
        policy: &Policy,
        now: Timestamp,
    ) -> Result<Arc<Plan>, RolloutError> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.rebuild_locked(st, conn, policy, now)
    }

    fn rebuild_locked(
        &self,
        mut st: std::sync::MutexGuard<'_, IndexState>,
        conn: &Connection,
        policy: &Policy,
        now: Timestamp,
    ) -> Result<Arc<Plan>, RolloutError> {
        let inputs = crate::db::rollout::plan_inputs(conn)?;
        let started = std::time::Instant::now();
        let fenced = refresh_fence(conn, policy, now, &mut st)?;
        if !fenced && st.loaded && st.inputs == Some(inputs) {
            // Nothing the index holds changed but `last_seen` (quiet check-ins move
            // no counter): the time-driven rebuild reads just that.
            for (id, last_seen) in crate::db::fleet::hosts_last_seen(conn)? {
                st.index
                    .touch(&id, last_seen.as_deref().and_then(|s| s.parse().ok()));
            }
        } else {
            refresh_index(conn, policy, &mut st)?;
            st.inputs = Some(inputs);
        }
        let generation = crate::db::rollout::rollout_generation(conn)?;
        let mut world = World::load_decisions(conn)?;
        world.load_rollout_jobs(conn)?;
        let mut plan = Plan::build(&world, &st.index, policy, now);
        plan.generation = generation;
        metrics::histogram!("patchward_plan_build_seconds").record(started.elapsed().as_secs_f64());
        let plan = Arc::new(plan);
        drop(st);
        *self.plan.lock().unwrap_or_else(|e| e.into_inner()) = Some(plan.clone());
        Ok(plan)
    }
}

/// Reloads the legacy inputs of the end-of-life flags (`legacy::offer::Fence`) and,
/// when they moved (a day rollover, an include or exclude, a new catalog, other
/// `[legacy]` settings), recomputes every indexed host's flag. Returns whether they
/// moved: then the plan is rebuilt even if no other input changed.
fn refresh_fence(
    conn: &Connection,
    policy: &Policy,
    now: Timestamp,
    st: &mut IndexState,
) -> Result<bool, RolloutError> {
    let fence = Fence::load(conn, now, &policy.legacy)?;
    if st.fence.as_ref().is_some_and(|f| f.key() == fence.key()) {
        return Ok(false);
    }
    let IndexState { index, os, .. } = st;
    for (id, (hostname, release)) in os.iter() {
        index.set_eol(id, fence.of(id, hostname, release));
    }
    st.fence = Some(fence);
    Ok(true)
}

fn refresh_index(
    conn: &Connection,
    policy: &Policy,
    st: &mut IndexState,
) -> Result<(), RolloutError> {
    // Changes are read first: an inventory written after this point is read again next
    // time, never missed.
    let (last, changed) = if st.loaded {
        crate::db::rollout::inventory_changes_since(conn, st.applied)?
    } else {
        (crate::db::rollout::last_inventory_change(conn)?, Vec::new())
    };
    let rows = crate::db::fleet::list_hosts(conn)?;
    let mut live = std::collections::HashSet::with_capacity(rows.len());
    for h in rows {
        if h.revoked_at.is_some() {
            st.index.remove(&h.id);
            continue;
        }
        live.insert(h.id.clone());
        let labels: BTreeMap<String, String> =
            super::stored(&format!("labels of host {}", h.id), &h.labels)?;
        let last_seen = h.last_seen.as_deref().and_then(|s| s.parse().ok());
        let known = st.index.position(&h.id).is_some();
        if known && changed.binary_search(&h.id).is_err() {
            st.index
                .set_attributes(policy, &h.id, h.ring.clone(), labels);
            st.index.touch(&h.id, last_seen);
            continue;
        }
        let Some((_, inv, _)) = crate::db::fleet::inventory(conn, &h.id)? else {
            continue;
        };
        let inv: Inventory = super::stored(&format!("inventory of host {}", h.id), &inv)?;
        let eol = st
            .fence
            .as_ref()
            .and_then(|f| f.of(&h.id, &h.hostname, &inv.os));
        st.os
            .insert(h.id.clone(), (h.hostname.clone(), inv.os.clone()));
        st.index.upsert(
            policy,
            HostInput {
                id: &h.id,
                assigned_ring: h.ring.clone(),
                labels,
                last_seen,
                inventory: &inv,
                eol,
            },
        );
    }
    let gone: Vec<String> = st
        .index
        .iter()
        .filter(|(_, h)| !live.contains(&h.id))
        .map(|(_, h)| h.id.clone())
        .collect();
    for id in gone {
        st.index.remove(&id);
        st.os.remove(&id);
    }
    st.applied = last;
    st.loaded = true;
    Ok(())
}

/// Whether the rollout of `p` is in `state` in this transaction (an operator may have
/// acted since the plan was built).
fn still(tx: &Transaction<'_>, p: &super::Patch, state: &str) -> Result<bool, RolloutError> {
    Ok(crate::db::rollout::rollout(tx, &p.feed, &p.entry.id)?.is_some_and(|r| r.state == state))
}

/// Marks the planned active rollouts that are finished `completed` (every host of every
/// approved ring has the patch) and reopens the completed ones in `reopen` (a host of an
/// approved ring needs it again), both audited. Returns one line per change.
pub fn complete_and_reopen(
    tx: &Transaction<'_>,
    finished: &[&super::plan::PatchPlan],
    reopen: &[super::plan::PatchPlan],
    now: Timestamp,
) -> Result<Vec<String>, RolloutError> {
    let mut changes = Vec::new();
    let at = now.to_string();
    let mut put = |p: &super::Patch, state: &str, action: &str, note: String, details| {
        crate::db::rollout::put_rollout(tx, &p.feed, &p.entry.id, state, &at, &note)?;
        audit::append(
            tx,
            now,
            &NewEntry {
                actor: "patchward",
                action,
                subject: &p.key(),
                details,
            },
        )?;
        changes.push(format!("{} {note}", p.key()));
        Ok::<_, RolloutError>(())
    };
    for pp in finished {
        if !still(tx, &pp.patch, "active")? {
            continue;
        }
        let note = format!(
            "completed: every host of {} has it ({} hosts)",
            pp.rings.join(", "),
            pp.installed()
        );
        let details = serde_json::json!({ "rings": pp.rings, "hosts": pp.installed() });
        put(&pp.patch, "completed", "rollout.completed", note, details)?;
    }
    for pp in reopen {
        if !still(tx, &pp.patch, "completed")? {
            continue;
        }
        let note = format!(
            "reopened: {} host(s) of {} need it",
            pp.needing(),
            pp.rings.join(", ")
        );
        let details = serde_json::json!({ "rings": pp.rings, "hosts": pp.needing() });
        put(&pp.patch, "active", "rollout.reopened", note, details)?;
    }
    Ok(changes)
}

/// Acts on a plan: halts the rollouts whose error brake fired (audited), completes the
/// finished ones and reopens completed ones that a host needs again, and brings the apt
/// rings in line. Returns one line per change.
pub fn advance(
    tx: &Transaction<'_>,
    policy: &Policy,
    plan: Option<&Plan>,
    now: Timestamp,
) -> Result<Vec<String>, RolloutError> {
    let mut changes = Vec::new();
    if let Some(plan) = plan {
        let finished: Vec<_> = plan
            .patches
            .iter()
            .filter(|pp| pp.plan.halted.is_none() && pp.finished())
            .collect();
        changes.extend(complete_and_reopen(tx, &finished, &plan.reopen, now)?);
    }
    for pp in plan.map_or(&[][..], |p| p.patches.as_slice()) {
        let Some(ring) = &pp.plan.halted else {
            continue;
        };
        let p = &pp.patch;
        // Still active in this transaction (an operator may have acted meanwhile).
        let active = crate::db::rollout::rollouts(tx, Some("active"))?
            .iter()
            .any(|r| r.feed == p.feed && r.patch_id == p.entry.id);
        if !active {
            continue;
        }
        let reasons = pp
            .plan
            .steps
            .iter()
            .find(|s| &s.ring == ring)
            .and_then(|s| match &s.gate {
                crate::policy::GateStatus::Halted { reasons } => Some(reasons.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let note = super::engine::brake_note(tx, ring, &reasons)?;
        crate::db::rollout::put_rollout(
            tx,
            &p.feed,
            &p.entry.id,
            "halted",
            &now.to_string(),
            &note,
        )?;
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
        changes.push(format!("{} halted: {note}", p.key()));
    }
    let world = World::load_decisions(tx)?;
    changes.extend(super::apt_sync::sync_planned(
        tx, &world, policy, plan, now,
    )?);
    Ok(changes)
}
