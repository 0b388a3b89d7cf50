//! The gate between rings (DESIGN §4 "Rings"): may the next ring start?
//!
//! [`gate`] looks at one ring's results and answers [`GateStatus::Passed`],
//! [`GateStatus::Waiting`] (with every unmet condition) or [`GateStatus::Halted`] (the
//! error brake: a human must resume, abort or roll back). [`ring_capacity`] says how
//! many more hosts of a ring may be offered the patch now (canary alone first, then up
//! to `max_parallel`).
//!
//! Decisions where DESIGN is silent:
//! - `min_successes` is capped at the ring's size, so the default fits a 2-host ring.
//!   The ratio is over all hosts in the ring, rounded up. A non-empty ring always needs
//!   one success.
//! - An empty ring passes at once (there is nothing to wait for).
//! - A rollback anywhere in the ring halts, like the brake: "no rollbacks" is a health
//!   condition a later success cannot undo.
//! - When the remaining hosts can no longer reach the needed successes, the ring halts
//!   instead of waiting forever.
//! - The gate is a function of the snapshot: a success that arrives after the gate
//!   passed restarts the soak, and the next ring gets no new offers until it is over.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::PolicyError;

/// How far one host got in a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum HostOutcome {
    /// Not offered yet.
    Pending,
    /// Offered and not finished (downloading, installing, rebooting, verifying).
    InProgress {
        since: Timestamp,
    },
    Succeeded {
        at: Timestamp,
    },
    Failed {
        at: Timestamp,
    },
    RolledBack {
        at: Timestamp,
    },
}

/// One host's result in a ring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostResult {
    pub host: String,
    pub outcome: HostOutcome,
    /// The host's last check-in (any request), for the health condition.
    pub last_checkin: Option<Timestamp>,
}

/// The hosts of one ring that the patch applies to, with their results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingResults {
    pub ring: String,
    pub hosts: Vec<HostResult>,
    /// Hosts of the ring the patch applies to that have no job for it yet and are not
    /// listed in `hosts` (the fleet planner counts them instead of listing thousands of
    /// `Pending` entries). They count exactly like `Pending` entries.
    #[serde(default)]
    pub unlisted_pending: usize,
}

impl RingResults {
    /// How many hosts the ring has for this patch, listed or not.
    pub fn len(&self) -> usize {
        self.hosts.len() + self.unlisted_pending
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The error brake: halt when failures exceed a count or a percentage of the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureLimit {
    Count(u32),
    Percent(u8),
}

impl FailureLimit {
    /// Whether `failures` out of `hosts` exceed the limit.
    pub fn exceeded(self, failures: usize, hosts: usize) -> bool {
        match self {
            FailureLimit::Count(n) => failures > n as usize,
            FailureLimit::Percent(p) => failures * 100 > usize::from(p) * hosts,
        }
    }
}

impl std::fmt::Display for FailureLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureLimit::Count(n) => write!(f, "{n}"),
            FailureLimit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// In TOML: an integer (`max_failures = 1`) or a percentage string (`"20%"`).
impl<'de> Deserialize<'de> for FailureLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u32),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Count(n) => Ok(FailureLimit::Count(n)),
            Raw::Text(s) => s
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<u8>().ok())
                .filter(|p| *p <= 100)
                .map(FailureLimit::Percent)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "max_failures {s:?} is neither a count (1) nor a percentage (\"20%\", 0-100)"
                    ))
                }),
        }
    }
}

impl Serialize for FailureLimit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FailureLimit::Count(n) => s.serialize_u32(*n),
            FailureLimit::Percent(_) => s.serialize_str(&self.to_string()),
        }
    }
}

/// What a ring must show before the next ring starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateRules {
    /// The first host runs alone and must succeed before any other host starts.
    pub canary: bool,
    /// Successes needed (capped at the ring's size).
    pub min_successes: u32,
    /// Share of the ring's hosts that must have succeeded, 0.0-1.0.
    pub success_ratio: f64,
    /// Wait this long after the ring's last success.
    #[serde(deserialize_with = "crate::policy::duration::de")]
    pub soak: SignedDuration,
    /// Every host that succeeded must have checked in since, and within this long.
    #[serde(deserialize_with = "crate::policy::duration::de")]
    pub checkin_within: SignedDuration,
    /// The error brake.
    pub max_failures: FailureLimit,
    /// At most this many hosts of the ring at once (`None`: no limit).
    pub max_parallel: Option<u32>,
}

impl Default for GateRules {
    fn default() -> Self {
        Self {
            canary: true,
            min_successes: 3,
            success_ratio: 0.5,
            soak: SignedDuration::from_hours(24),
            checkin_within: SignedDuration::from_hours(2),
            max_failures: FailureLimit::Count(1),
            max_parallel: None,
        }
    }
}

impl GateRules {
    /// Checks ranges; `key` is the table's path, used in errors.
    pub fn validate(&self, key: &str) -> Result<(), PolicyError> {
        if !(0.0..=1.0).contains(&self.success_ratio) {
            return Err(PolicyError::new(
                format!("{key}.success_ratio"),
                format!("{} is outside 0.0..1.0", self.success_ratio),
            ));
        }
        if self.min_successes == 0 {
            return Err(PolicyError::new(
                format!("{key}.min_successes"),
                "must be at least 1",
            ));
        }
        for (name, d) in [("soak", self.soak), ("checkin_within", self.checkin_within)] {
            if d.is_negative() || d > SignedDuration::from_hours(90 * 24) {
                return Err(PolicyError::new(
                    format!("{key}.{name}"),
                    format!("{d:#} must be between 0s and 90d"),
                ));
            }
        }
        if self.checkin_within < SignedDuration::from_mins(1) {
            return Err(PolicyError::new(
                format!("{key}.checkin_within"),
                "must be at least 1m",
            ));
        }
        if self.max_parallel == Some(0) {
            return Err(PolicyError::new(
                format!("{key}.max_parallel"),
                "must be at least 1 (leave it out for no limit)",
            ));
        }
        Ok(())
    }

    /// Successes a ring of `hosts` needs: `min_successes` capped at the ring's size, the
    /// ratio rounded up, and at least one.
    pub fn needed(&self, hosts: usize) -> usize {
        if hosts == 0 {
            return 0;
        }
        let by_min = (self.min_successes as usize).min(hosts);
        // Rounded up, with a little slack so 0.3 * 10 is 3, not 4.
        let by_ratio = (self.success_ratio * hosts as f64 - 1e-9).ceil().max(0.0) as usize;
        by_min.max(by_ratio).clamp(1, hosts)
    }
}

/// Why a gate has not passed (yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum GateReason {
    /// The canary is running or not yet chosen.
    Canary,
    Successes {
        have: usize,
        need: usize,
    },
    Soaking {
        until: Timestamp,
    },
    /// Hosts that succeeded but have not checked in since, or not recently.
    NotCheckingIn {
        hosts: Vec<String>,
    },
    /// Halting reasons from here on.
    RolledBack {
        hosts: Vec<String>,
    },
    TooManyFailures {
        failures: usize,
        limit: String,
    },
    /// Even if every remaining host succeeds, the ring cannot reach `need`.
    Unreachable {
        possible: usize,
        need: usize,
    },
}

impl std::fmt::Display for GateReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GateReason::Canary => write!(f, "the canary host has not succeeded yet"),
            GateReason::Successes { have, need } => write!(f, "{have}/{need} succeeded"),
            GateReason::Soaking { until } => {
                write!(f, "soak ends at {}", crate::timefmt::display_ts(*until))
            }
            GateReason::NotCheckingIn { hosts } => {
                write!(f, "not checking in since success: {}", hosts.join(", "))
            }
            GateReason::RolledBack { hosts } => write!(f, "rolled back on {}", hosts.join(", ")),
            GateReason::TooManyFailures { failures, limit } => {
                write!(f, "{failures} failures exceed max_failures {limit}")
            }
            GateReason::Unreachable { possible, need } => write!(
                f,
                "at most {possible} hosts can still succeed, {need} are needed"
            ),
        }
    }
}

/// The answer of [`gate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum GateStatus {
    Passed,
    Waiting {
        reasons: Vec<GateReason>,
    },
    /// The error brake: no new offers anywhere until a human resumes, aborts or rolls back.
    Halted {
        reasons: Vec<GateReason>,
    },
}

impl GateStatus {
    pub fn passed(&self) -> bool {
        matches!(self, GateStatus::Passed)
    }
    pub fn halted(&self) -> bool {
        matches!(self, GateStatus::Halted { .. })
    }
}

#[derive(Default)]
struct Counts {
    pending: usize,
    in_progress: usize,
    succeeded: usize,
    failed: usize,
    rolled_back: Vec<String>,
    last_success: Option<Timestamp>,
}

fn counts(r: &RingResults) -> Counts {
    let mut c = Counts {
        pending: r.unlisted_pending,
        ..Counts::default()
    };
    for h in &r.hosts {
        match h.outcome {
            HostOutcome::Pending => c.pending += 1,
            HostOutcome::InProgress { .. } => c.in_progress += 1,
            HostOutcome::Succeeded { at } => {
                c.succeeded += 1;
                c.last_success = c.last_success.max(Some(at));
            }
            HostOutcome::Failed { .. } => c.failed += 1,
            HostOutcome::RolledBack { .. } => {
                c.failed += 1;
                c.rolled_back.push(h.host.clone());
            }
        }
    }
    c
}

/// May the ring after `ring` start? Pure: `now` is only compared with the soak's end and
/// check-in times.
pub fn gate(ring: &RingResults, rules: &GateRules, now: Timestamp) -> GateStatus {
    let n = ring.len();
    if n == 0 {
        return GateStatus::Passed;
    }
    let c = counts(ring);
    let need = rules.needed(n);

    let mut halt = Vec::new();
    if !c.rolled_back.is_empty() {
        halt.push(GateReason::RolledBack {
            hosts: c.rolled_back.clone(),
        });
    }
    if rules.max_failures.exceeded(c.failed, n) {
        halt.push(GateReason::TooManyFailures {
            failures: c.failed,
            limit: rules.max_failures.to_string(),
        });
    }
    let possible = c.succeeded + c.pending + c.in_progress;
    if possible < need {
        halt.push(GateReason::Unreachable { possible, need });
    }
    if !halt.is_empty() {
        return GateStatus::Halted { reasons: halt };
    }

    let mut wait = Vec::new();
    if rules.canary && c.succeeded == 0 {
        wait.push(GateReason::Canary);
    }
    if c.succeeded < need {
        wait.push(GateReason::Successes {
            have: c.succeeded,
            need,
        });
    }
    if let Some(last) = c.last_success {
        let until = last.saturating_add(rules.soak).unwrap_or(last);
        if now < until {
            wait.push(GateReason::Soaking { until });
        }
    }
    let silent: Vec<String> = ring
        .hosts
        .iter()
        .filter_map(|h| match h.outcome {
            HostOutcome::Succeeded { at } => {
                let fresh = h.last_checkin.is_some_and(|seen| {
                    seen >= at && now.duration_since(seen) <= rules.checkin_within
                });
                (!fresh).then(|| h.host.clone())
            }
            _ => None,
        })
        .collect();
    if !silent.is_empty() {
        wait.push(GateReason::NotCheckingIn { hosts: silent });
    }
    if wait.is_empty() {
        GateStatus::Passed
    } else {
        GateStatus::Waiting { reasons: wait }
    }
}

/// How many more hosts of this ring may be offered the patch now: none while the brake
/// is on; one at a time until the canary succeeds; then up to `max_parallel` in flight.
pub fn ring_capacity(ring: &RingResults, rules: &GateRules, now: Timestamp) -> usize {
    if gate(ring, rules, now).halted() {
        return 0;
    }
    let c = counts(ring);
    let limit = if rules.canary && c.succeeded == 0 {
        1
    } else {
        rules.max_parallel.map_or(usize::MAX, |m| m as usize)
    };
    limit.saturating_sub(c.in_progress).min(c.pending)
}

#[cfg(test)]
mod tests;
