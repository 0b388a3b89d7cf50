//! Which enrolled hosts each patch applies to, and which of them have it: what the SLA
//! standing (`policy::sla::standing`) and the "its selectors match no enrolled host"
//! warning read, for the dashboard, the patches pages, `patches list` and `approve`.
//!
//! Applicability comes from the planner's [`FleetIndex`](super::fleet_index::FleetIndex)
//! (the same matching the scheduler offers jobs by, without parsing 10,000 inventories
//! per page view); installs from the succeeded jobs of hosts still enrolled.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jiff::Timestamp;
use rusqlite::Connection;

use super::planner::Planner;
use super::{Patch, RolloutError, World};
use crate::policy::Policy;
use crate::policy::sla::{Standing, standing};

/// One patch's hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Enrolled hosts it applies to now (host ids, ascending). Shared by the patches
    /// whose selectors are the same (often most of a feed: `os = debian`).
    pub applies: Arc<[String]>,
    /// Enrolled hosts that installed it, with when.
    pub installed: BTreeMap<String, Timestamp>,
}

impl Coverage {
    /// No enrolled host matches its selectors and none installed it.
    pub fn matches_no_host(&self) -> bool {
        self.applies.is_empty() && self.installed.is_empty()
    }

    /// The SLA standing of `p` on these hosts as of `now`.
    pub fn standing(&self, p: &Patch, policy: &Policy, now: Timestamp) -> Standing {
        let due = if policy.classes.get(p.entry.kind).sla {
            p.due(&policy.sla)
        } else {
            None
        };
        standing(due, &self.applies, &self.installed, now)
    }
}

/// The coverage of each of `patches`, in order.
pub fn coverage(
    conn: &Connection,
    policy: &Policy,
    planner: &Planner,
    patches: &[&Patch],
) -> Result<Vec<Coverage>, RolloutError> {
    let installed = crate::db::views::installed_hosts(conn)?;
    planner.with_index(conn, policy, |index| {
        let live: BTreeSet<&str> = index.iter().map(|(_, h)| h.id.as_str()).collect();
        // One evaluation per distinct selector list: a dashboard over 1,000 patches
        // that all say `os = debian` matched 10,000 hosts 1,000 times.
        let mut seen: Vec<(&[crate::feed::catalog::Selector], Arc<[String]>)> = Vec::new();
        patches
            .iter()
            .map(|p| {
                let selectors = p.entry.applies_to.as_slice();
                let applies = match seen.iter().find(|(s, _)| *s == selectors) {
                    Some((_, a)) => a.clone(),
                    None => {
                        let mut ids: Vec<String> = index
                            .applies(&p.entry)
                            .into_iter()
                            .filter_map(|pos| index.host(pos).map(|h| h.id.clone()))
                            .collect();
                        ids.sort();
                        let a: Arc<[String]> = ids.into();
                        seen.push((selectors, a.clone()));
                        a
                    }
                };
                let installed = installed
                    .get(&(p.feed.clone(), p.entry.id.clone()))
                    .into_iter()
                    .flatten()
                    .filter(|(h, _)| live.contains(h.as_str()))
                    .map(|(h, at)| (h.clone(), at.parse().unwrap_or(Timestamp::UNIX_EPOCH)))
                    .collect();
                Coverage { applies, installed }
            })
            .collect()
    })
}

/// Whether `p` waits for an approval decision: new, replaced by no current patch, and
/// some enrolled host it applies to lacks it.
pub fn waits_for_decision(world: &World, p: &Patch, c: &Coverage, now: Timestamp) -> bool {
    world.approval(p).effective(now) == crate::policy::Approval::New
        && world.superseded_by(p).is_none()
        && c.applies.iter().any(|h| !c.installed.contains_key(h))
}

/// The warning for an approved patch whose selectors match no enrolled host (none
/// when it matches one, or is not approved).
pub fn no_host_warning(world: &World, p: &Patch, c: &Coverage, now: Timestamp) -> Option<String> {
    if !matches!(
        world.approval(p).effective(now),
        crate::policy::Approval::Approved { .. }
    ) || !c.matches_no_host()
    {
        return None;
    }
    let selectors: Vec<String> = p
        .entry
        .applies_to
        .iter()
        .map(|s| {
            let mut f = Vec::new();
            if let Some(v) = &s.os {
                f.push(format!("os={v}"));
            }
            if let Some(v) = &s.version {
                f.push(format!("version={v}"));
            }
            if let Some(v) = &s.arch {
                f.push(format!("arch={v}"));
            }
            if let Some(v) = &s.package {
                f.push(match &s.below_version {
                    Some(b) => format!("package {v} below {b}"),
                    None => format!("package {v}"),
                });
            }
            f.extend(s.labels.iter().map(|l| format!("label {l}")));
            f.join(", ")
        })
        .collect();
    Some(format!(
        "{} is approved, but its selectors ({}) match no enrolled host: no host will be offered it",
        p.key(),
        if selectors.is_empty() {
            "none".to_string()
        } else {
            selectors.join("; ")
        }
    ))
}
