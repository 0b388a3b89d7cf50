//! Rollouts: persists the approval decisions and advances approved patches through the
//! rings, one job at a time, by asking `policy` (which is pure) what may happen now.
//!
//! - [`approvals`]: `approve`, `decline`, `defer`, `expedite` and the auto-approval
//!   rules, each audited with actor and reason; approving a patch starts its rollout.
//! - [`engine`]: at each check-in, [`engine::offer`] turns approvals, rings, gates,
//!   windows, dependencies and the host's state into at most one new job for that host
//!   (one job at a time per host); [`engine::explain`] gives the same evaluation as
//!   reasons ("why not yet?") without creating anything.
//! - Rollout states: `active` (offers are made), `halted` (the error brake fired or an
//!   operator halted it: no new offers), `aborted` (no new offers ever; offered jobs
//!   are cancelled), `superseded` (a newer approved patch replaces it), `completed`
//!   (every host of every approved ring has it; reopened to `active` when a host of
//!   those rings needs it later).
//!
//! Everything reads a [`World`]: a snapshot of the catalogs, approvals, rollouts, hosts
//! and jobs taken inside the caller's transaction, so an offer is decided on the same
//! state it is written into (the single writer makes ring capacities exact).

pub mod approvals;
pub mod apt_sync;
pub mod cli;
pub mod coverage;
pub mod engine;
pub mod explain;
pub mod fleet_index;
pub mod plan;
pub mod planner;
pub mod views;
pub mod windows;
pub mod windows_cli;

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use rusqlite::Connection;

use crate::db::rollout::{self as q, JobBrief, RolloutRow};
use crate::feed::catalog::PatchEntry;
use crate::fleet::inventory::Inventory;
use crate::fleet::jobs::JobState;
use crate::policy::{Approval, HostFacts};

/// Errors from rollout operations.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
    #[error(transparent)]
    Decision(#[from] crate::policy::approval::DecisionError),
    #[error("no rollout for {0}; approve the patch first (`patchward approve`)")]
    NoRollout(String),
    #[error("the rollout of {patch} is {state}; {hint}")]
    State {
        patch: String,
        state: String,
        hint: String,
    },
    #[error(transparent)]
    Db(#[from] crate::error::DbError),
    #[error(transparent)]
    Audit(#[from] crate::error::AuditError),
    #[error("stored data is malformed: {0}")]
    Stored(String),
    #[error(transparent)]
    Window(#[from] windows::WindowError),
    #[error(transparent)]
    Legacy(#[from] crate::legacy::LegacyError),
}

impl From<rusqlite::Error> for RolloutError {
    fn from(e: rusqlite::Error) -> Self {
        RolloutError::Db(crate::error::DbError::Sqlite(e))
    }
}

/// A patch of a current catalog, with its KEV standing.
#[derive(Debug, Clone)]
pub struct Patch {
    pub feed: String,
    pub entry: PatchEntry,
    pub kev: bool,
    pub kev_due: Option<jiff::civil::Date>,
    /// When this appliance first had it (its own clock).
    pub first_seen: Option<Timestamp>,
}

impl Patch {
    /// `FEED:ID`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.feed, self.entry.id)
    }

    /// Its SLA deadline (`policy::sla::deadline`), if one applies.
    pub fn due(&self, rules: &crate::policy::SlaRules) -> Option<Timestamp> {
        crate::policy::sla::deadline(&self.entry, self.first_seen, self.kev_due, rules)
    }
}

/// A host as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct Host {
    pub facts: HostFacts,
    pub hostname: String,
    pub last_seen: Option<Timestamp>,
}

/// Everything a scheduling decision reads.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub patches: Vec<Patch>,
    /// By (feed, id); a patch without a row is `New`.
    pub approvals: BTreeMap<(String, String), Approval>,
    pub rollouts: BTreeMap<(String, String), RolloutRow>,
    /// Enrolled, not revoked.
    pub hosts: BTreeMap<String, Host>,
    /// Jobs by (feed, patch).
    pub jobs: BTreeMap<(String, String), Vec<JobBrief>>,
}

/// One enrolled, not revoked host's facts, read from the database, with its legacy
/// end-of-life flag as of `now` under `cfg` (`legacy::offer`).
pub fn host_facts(
    conn: &Connection,
    host_id: &str,
    now: Timestamp,
    cfg: &crate::config::LegacyConfig,
) -> Result<Option<HostFacts>, RolloutError> {
    let Some(h) = crate::db::fleet::host(conn, host_id)? else {
        return Ok(None);
    };
    if h.revoked_at.is_some() {
        return Ok(None);
    }
    let labels: BTreeMap<String, String> = stored(&format!("labels of host {}", h.id), &h.labels)?;
    let Some((_, inv, _)) = crate::db::fleet::inventory(conn, host_id)? else {
        return Ok(None);
    };
    let inv: Inventory = stored(&format!("inventory of host {}", h.id), &inv)?;
    let fence = crate::legacy::offer::Fence::load(conn, now, cfg)?;
    let eol = fence.of(&h.id, &h.hostname, &inv.os);
    Ok(Some(HostFacts::from_inventory(
        &h.id,
        &inv,
        labels,
        h.ring.clone(),
        eol,
    )))
}

fn stored<T: serde::de::DeserializeOwned>(what: &str, json: &str) -> Result<T, RolloutError> {
    serde_json::from_str(json).map_err(|e| RolloutError::Stored(format!("{what}: {e}")))
}

impl World {
    /// Loads the snapshot.
    pub fn load(conn: &Connection) -> Result<World, RolloutError> {
        let mut w = World::load_decisions(conn)?;
        w.load_hosts_and_jobs(conn)?;
        Ok(w)
    }

    /// Only the patches, approvals and rollouts (no hosts, no jobs): enough for
    /// approval decisions, and cheap.
    pub fn load_decisions(conn: &Connection) -> Result<World, RolloutError> {
        let mut w = World::default();
        type Known = (bool, Option<String>, String);
        let kev: BTreeMap<(String, String), Known> = crate::db::feeds::list_patches(conn)?
            .into_iter()
            .map(|p| ((p.feed, p.id), (p.kev, p.kev_due, p.first_seen)))
            .collect();
        for (feed, id, entry) in q::patch_entries(conn)? {
            let entry: PatchEntry = stored(&format!("patch {feed}:{id}"), &entry)?;
            let (is_kev, due, first_seen) =
                kev.get(&(feed.clone(), id)).cloned().unwrap_or_default();
            w.patches.push(Patch {
                feed,
                entry,
                kev: is_kev,
                kev_due: due.and_then(|d| d.parse().ok()),
                first_seen: first_seen.parse().ok(),
            });
        }
        for (feed, id, json) in q::approvals(conn)? {
            let a: Approval = stored(&format!("approval of {feed}:{id}"), &json)?;
            w.approvals.insert((feed, id), a);
        }
        for r in q::rollouts(conn, None)? {
            w.rollouts.insert((r.feed.clone(), r.patch_id.clone()), r);
        }
        Ok(w)
    }

    /// Sets every loaded host's legacy end-of-life flag as of `now` under `cfg`
    /// (`legacy::offer`): the hosts' os-release is re-read, since the facts keep only
    /// ID and VERSION_ID. It comes from `inventory_facts` (kept with each inventory by
    /// triggers), not from parsing every inventory a second time.
    pub fn fence_legacy(
        &mut self,
        conn: &Connection,
        now: Timestamp,
        cfg: &crate::config::LegacyConfig,
    ) -> Result<(), RolloutError> {
        let fence = crate::legacy::offer::Fence::load(conn, now, cfg)?;
        for f in crate::db::legacy_registry::active_agents(conn)? {
            let Some(host) = self.hosts.get_mut(&f.id) else {
                continue;
            };
            let os = crate::fleet::inventory::OsRelease {
                id: f.os_id,
                version_id: f.os_version_id,
                id_like: f.os_id_like,
            };
            host.facts.eol = fence.of(&f.id, &f.hostname, &os);
        }
        Ok(())
    }

    fn load_hosts_and_jobs(&mut self, conn: &Connection) -> Result<(), RolloutError> {
        let w = self;
        for (h, inv) in q::hosts_with_inventory(conn)? {
            if h.revoked_at.is_some() {
                continue;
            }
            let labels: BTreeMap<String, String> =
                stored(&format!("labels of host {}", h.id), &h.labels)?;
            // Enrollment stores an inventory, so every host has one.
            let Some(inv) = inv else { continue };
            let inv: Inventory = stored(&format!("inventory of host {}", h.id), &inv)?;
            // The end-of-life flag needs the day: `fence_legacy` sets it.
            let facts = HostFacts::from_inventory(&h.id, &inv, labels, h.ring.clone(), None);
            w.hosts.insert(
                h.id.clone(),
                Host {
                    facts,
                    hostname: h.hostname.clone(),
                    last_seen: h.last_seen.as_deref().and_then(|s| s.parse().ok()),
                },
            );
        }
        for r in w.rollouts.values() {
            let jobs = q::jobs_of_patch(conn, &r.feed, &r.patch_id)?;
            w.jobs.insert((r.feed.clone(), r.patch_id.clone()), jobs);
        }
        Ok(())
    }

    /// Loads the jobs of every active rollout (the planner's world has no hosts: the
    /// fleet index stands for them).
    pub fn load_rollout_jobs(&mut self, conn: &Connection) -> Result<(), RolloutError> {
        for r in self.rollouts.values() {
            let jobs = q::jobs_of_patch(conn, &r.feed, &r.patch_id)?;
            self.jobs.insert((r.feed.clone(), r.patch_id.clone()), jobs);
        }
        Ok(())
    }

    /// Also loads the jobs of every patch, not only those with a rollout (for
    /// `explain`, which reports patches installed by `deploy` too).
    pub fn load_all_jobs(&mut self, conn: &Connection) -> Result<(), RolloutError> {
        for p in &self.patches {
            let k = (p.feed.clone(), p.entry.id.clone());
            if let std::collections::btree_map::Entry::Vacant(slot) = self.jobs.entry(k) {
                slot.insert(q::jobs_of_patch(conn, &p.feed, &p.entry.id)?);
            }
        }
        Ok(())
    }

    pub fn patch(&self, feed: &str, id: &str) -> Option<&Patch> {
        self.patches
            .iter()
            .find(|p| p.feed == feed && p.entry.id == id)
    }

    /// Finds `ID` or `FEED:ID` among the current patches.
    pub fn find_patch(&self, needle: &str) -> Result<&Patch, crate::fleet::FleetError> {
        let hits: Vec<&Patch> = self
            .patches
            .iter()
            .filter(|p| p.entry.id == needle || p.key() == needle)
            .collect();
        match hits.as_slice() {
            [one] => Ok(one),
            [] => Err(crate::fleet::FleetError::NoSuchPatch(
                needle.to_string(),
                crate::suggest::patch_hint(
                    needle,
                    self.patches
                        .iter()
                        .map(|p| (p.feed.as_str(), p.entry.id.as_str())),
                ),
            )),
            many => Err(crate::fleet::FleetError::AmbiguousPatch(
                needle.to_string(),
                many.iter()
                    .map(|p| p.feed.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }

    pub fn approval(&self, p: &Patch) -> Approval {
        self.approvals
            .get(&(p.feed.clone(), p.entry.id.clone()))
            .cloned()
            .unwrap_or(Approval::New)
    }

    pub fn rollout(&self, p: &Patch) -> Option<&RolloutRow> {
        self.rollouts.get(&(p.feed.clone(), p.entry.id.clone()))
    }

    pub fn jobs_of(&self, p: &Patch) -> &[JobBrief] {
        self.jobs
            .get(&(p.feed.clone(), p.entry.id.clone()))
            .map_or(&[], Vec::as_slice)
    }

    /// The ids of the patches a host has installed (a job of it succeeded).
    pub fn installed_on(&self, host: &str) -> BTreeSet<String> {
        self.jobs
            .iter()
            .filter(|(_, jobs)| {
                jobs.iter()
                    .any(|j| j.host_id == host && j.state == JobState::Succeeded.as_str())
            })
            .map(|((_, id), _)| id.clone())
            .collect()
    }

    /// A current patch that replaces `p` (names it in `supersedes`), if any: a replaced
    /// patch waits for no approval and is overdue nowhere (the replacement carries the
    /// SLA).
    pub fn superseded_by(&self, p: &Patch) -> Option<&Patch> {
        self.patches
            .iter()
            .find(|o| o.entry.supersedes.contains(&p.entry.id))
    }

    /// The ids of approved patches (for supersedence).
    pub fn approved_ids(&self, now: Timestamp) -> BTreeSet<String> {
        self.patches
            .iter()
            .filter(|p| matches!(self.approval(p).effective(now), Approval::Approved { .. }))
            .map(|p| p.entry.id.clone())
            .collect()
    }
}
#[cfg(test)]
mod sim;
