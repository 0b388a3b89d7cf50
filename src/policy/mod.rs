//! Pure policy decisions (DESIGN §4): patch classes, approvals, rings and their gates,
//! maintenance windows, dependencies, SLA deadlines, applicability (architecture names
//! in one vocabulary) and "why not yet".
//!
//! **Architecture Invariant:** nothing here does IO or reads a clock. Every function
//! takes a snapshot (patch entries, host facts, ring results, configuration) and a `now`,
//! and returns a decision with machine-readable reasons ([`WhyNot`]). `rollout/` persists
//! and advances what these functions decide; the CLI and the web page explain them.
//!
//! The configuration types here ([`RawPolicy`] and friends) mirror a `[policy]` TOML
//! table with `deny_unknown_fields`; [`Policy::from_raw`] validates them into resolved
//! rules, with errors that name the key at fault.

pub mod applies;
pub mod approval;
pub mod arch;
pub mod class;
pub mod config;
pub mod debversion;
pub mod deps;
pub mod duration;
pub mod gate;
pub mod layer;
pub mod rings;
pub mod sla;
pub mod why;
pub mod windows;

#[cfg(test)]
mod proptests;

pub use applies::{Applicability, HostFacts, applicability};
pub use approval::{Approval, AutoApproveRule, Expedite};
pub use class::{ClassRule, ClassRules};
pub use config::{Policy, RawPolicy};
pub use gate::{GateRules, GateStatus, HostOutcome, HostResult, RingResults, gate};
pub use rings::{Ring, RingPlan, plan_rollout};
pub use sla::{SlaRules, SlaStatus};
pub use why::{EndOfLife, WhyNot};
pub use windows::{
    Opening, StartCheck, Urgency, Windows, may_start, may_start_now, next_allowed_start,
};

/// A policy configuration problem: the key at fault and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct PolicyError {
    /// Dotted path of the offending value, e.g. `policy.windows.pilot.weekly[0].duration`.
    pub key: String,
    pub message: String,
}

impl PolicyError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}
