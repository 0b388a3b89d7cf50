//! The `[policy]` configuration: [`RawPolicy`] mirrors the TOML (unknown keys are
//! errors), [`Policy::from_raw`] checks it and resolves time zones and class overrides.
//!
//! ```toml
//! [policy.classes.firmware]
//! min_soak = "96h"
//!
//! [[policy.rings]]
//! name = "pilot"
//! hosts = ["web1"]
//! gate = { min_successes = 2, soak = "12h", max_failures = "20%" }
//!
//! [[policy.rings]]
//! name = "broad"
//! catch_all = true
//!
//! [[policy.auto_approve]]
//! kinds = ["security"]
//! min_severity = "high"
//! rings = ["pilot", "broad"]
//!
//! [policy.windows.default]
//! tz = "Europe/Berlin"
//! weekly = [{ days = ["tue", "thu"], start = "22:00", duration = "4h" }]
//! monthly = [{ nth = 2, weekday = "tue", offset_days = 4, start = "02:00", duration = "3h" }]
//! blackout = [{ from = "2026-12-20T00:00", until = "2027-01-04T00:00", reason = "year end" }]
//! emergency = { weekly = [{ days = ["mon", "tue", "wed", "thu", "fri"], start = "12:00", duration = "1h" }] }
//!
//! [[policy.host_windows]]
//! labels = { site = "branch" }
//! windows = "branch"
//! ```
//!
//! Without `[policy.windows]`, one set named `default` opens every day 02:00-06:00 UTC.

use std::collections::BTreeMap;

use jiff::SignedDuration;
use jiff::civil::Time;
use jiff::tz::TimeZone;
use serde::Deserialize;

use super::PolicyError;
use super::applies::HostFacts;
use super::approval::AutoApproveRule;
use super::class::{ClassRules, RawClassRules};
use super::rings::{Ring, default_rings, ring_of, validate_rings};
use super::sla::SlaRules;
use super::windows::{Day, Weekly, Windows, time_zone};

/// Hosts whose labels include all of `labels` use the window set `windows`, whatever
/// their ring's set is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostWindows {
    pub labels: BTreeMap<String, String>,
    pub windows: String,
}

/// `[policy]` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    #[serde(default)]
    pub classes: RawClassRules,
    #[serde(default)]
    pub rings: Option<Vec<Ring>>,
    #[serde(default)]
    pub auto_approve: Vec<AutoApproveRule>,
    #[serde(default)]
    pub sla: SlaRules,
    #[serde(default)]
    pub windows: BTreeMap<String, Windows>,
    #[serde(default)]
    pub host_windows: Vec<HostWindows>,
}

/// A window set with its resolved zone.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSet {
    pub windows: Windows,
    pub tz: TimeZone,
}

/// The checked policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub classes: ClassRules,
    /// In rollout order.
    pub rings: Vec<Ring>,
    pub auto_approve: Vec<AutoApproveRule>,
    pub sla: SlaRules,
    pub windows: BTreeMap<String, WindowSet>,
    pub host_windows: Vec<HostWindows>,
    /// `[legacy]` (how end-of-life hosts are judged), copied in by the config loader
    /// so the planner and the offer-time check read it with the rest of the policy.
    pub legacy: crate::config::LegacyConfig,
}

fn default_windows() -> Windows {
    Windows {
        weekly: vec![Weekly {
            days: vec![
                Day::Mon,
                Day::Tue,
                Day::Wed,
                Day::Thu,
                Day::Fri,
                Day::Sat,
                Day::Sun,
            ],
            start: Time::constant(2, 0, 0, 0),
            duration: SignedDuration::from_hours(4),
        }],
        ..Windows::default()
    }
}

impl Default for Policy {
    fn default() -> Self {
        // The defaults are checked by a test, so this cannot fail.
        Policy::from_raw(&RawPolicy::default()).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Policy {
    /// Checks everything and resolves zones; the first problem is returned, naming its key.
    pub fn from_raw(raw: &RawPolicy) -> Result<Self, PolicyError> {
        let classes = ClassRules::from_raw(&raw.classes, "policy.classes")?;
        let rings = raw.rings.clone().unwrap_or_else(default_rings);
        validate_rings(&rings, "policy.rings")?;
        let names: Vec<&str> = rings.iter().map(|r| r.name.as_str()).collect();
        for (i, r) in raw.auto_approve.iter().enumerate() {
            r.validate(&format!("policy.auto_approve[{i}]"), &names)?;
        }
        raw.sla.validate("policy.sla")?;
        let mut sets = raw.windows.clone();
        if sets.is_empty() {
            sets.insert("default".into(), default_windows());
        }
        let mut windows = BTreeMap::new();
        for (name, w) in sets {
            let key = format!("policy.windows.{name}");
            w.validate(&key)?;
            let tz = time_zone(&format!("{key}.tz"), &w.tz)?;
            windows.insert(name, WindowSet { windows: w, tz });
        }
        for (i, r) in rings.iter().enumerate() {
            if !windows.contains_key(&r.windows) {
                return Err(PolicyError::new(
                    format!("policy.rings[{i}].windows"),
                    format!(
                        "window set {:?} is not defined under [policy.windows]",
                        r.windows
                    ),
                ));
            }
        }
        for (i, h) in raw.host_windows.iter().enumerate() {
            if h.labels.is_empty() {
                return Err(PolicyError::new(
                    format!("policy.host_windows[{i}].labels"),
                    "name at least one label",
                ));
            }
            if !windows.contains_key(&h.windows) {
                return Err(PolicyError::new(
                    format!("policy.host_windows[{i}].windows"),
                    format!(
                        "window set {:?} is not defined under [policy.windows]",
                        h.windows
                    ),
                ));
            }
        }
        Ok(Self {
            classes,
            rings,
            auto_approve: raw.auto_approve.clone(),
            sla: raw.sla.clone(),
            windows,
            host_windows: raw.host_windows.clone(),
            legacy: crate::config::LegacyConfig::default(),
        })
    }

    pub fn ring_names(&self) -> Vec<&str> {
        self.rings.iter().map(|r| r.name.as_str()).collect()
    }

    /// The name of the ring a host is in (as the scheduler decides it: listed by id,
    /// assigned at enrollment, matched by labels, or the catch-all), without its
    /// inventory.
    pub fn ring_name_of(
        &self,
        host_id: &str,
        assigned: Option<&str>,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Option<&str> {
        ring_of(&self.rings, host_id, assigned, labels).map(|r| r.name.as_str())
    }

    /// The host's ring, if any.
    pub fn ring_of(&self, host: &HostFacts) -> Option<&Ring> {
        ring_of(&self.rings, &host.id, host.ring.as_deref(), &host.labels)
    }

    /// The window set a host uses: the first `host_windows` entry its labels match, else
    /// its ring's set.
    pub fn windows_for(&self, host: &HostFacts, ring: &Ring) -> Option<&WindowSet> {
        let name = self
            .host_windows
            .iter()
            .find(|h| h.labels.iter().all(|(k, v)| host.labels.get(k) == Some(v)))
            .map_or(ring.windows.as_str(), |h| h.windows.as_str());
        self.windows.get(name)
    }
}

#[cfg(test)]
mod tests;
