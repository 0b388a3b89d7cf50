//! Rings (DESIGN §4 "Rings"): ordered groups of hosts, membership, and which rings may
//! receive work now.
//!
//! Membership, first match wins: a ring that lists the host's id; the ring the host was
//! assigned at enrollment (fleet); the first ring, in order, whose label selector
//! matches; the catch-all ring. The default is `pilot` (empty until hosts are named)
//! then `broad` (catch-all).
//!
//! [`plan_rollout`] opens ring 0 at once and ring N+1 only while ring N's gate passes.
//! Any halted ring stops new offers in every ring.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::PolicyError;
use super::gate::{GateRules, GateStatus, RingResults, gate, ring_capacity};

/// One ring in configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ring {
    pub name: String,
    /// Host ids that belong here whatever their labels.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Hosts whose labels include all of these belong here (empty: no selector).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Hosts that match no ring land here. At most one ring may say so.
    #[serde(default)]
    pub catch_all: bool,
    /// The gate from this ring to the next.
    #[serde(default)]
    pub gate: GateRules,
    /// Name of the window set (`[policy.windows.NAME]`) this ring's hosts use.
    #[serde(default = "default_windows")]
    pub windows: String,
}

fn default_windows() -> String {
    "default".into()
}

/// `pilot` (named hosts only), then `broad` (everything else).
pub fn default_rings() -> Vec<Ring> {
    vec![
        Ring {
            name: "pilot".into(),
            hosts: vec![],
            labels: BTreeMap::new(),
            catch_all: false,
            gate: GateRules::default(),
            windows: default_windows(),
        },
        Ring {
            name: "broad".into(),
            hosts: vec![],
            labels: BTreeMap::new(),
            catch_all: true,
            gate: GateRules::default(),
            windows: default_windows(),
        },
    ]
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks names (unique, fleet's ring-name rules), at most one catch-all, a host listed
/// in one ring only, and each ring's gate.
pub fn validate_rings(rings: &[Ring], key: &str) -> Result<(), PolicyError> {
    if rings.is_empty() {
        return Err(PolicyError::new(key, "define at least one ring"));
    }
    if rings.len() > 16 {
        return Err(PolicyError::new(key, "at most 16 rings"));
    }
    let mut seen_hosts: BTreeMap<&str, &str> = BTreeMap::new();
    for (i, r) in rings.iter().enumerate() {
        let k = format!("{key}[{i}]");
        if !valid_name(&r.name) {
            return Err(PolicyError::new(
                format!("{k}.name"),
                format!("{:?} must be 1-32 characters of a-z A-Z 0-9 - _", r.name),
            ));
        }
        if rings[..i].iter().any(|o| o.name == r.name) {
            return Err(PolicyError::new(
                format!("{k}.name"),
                format!("ring {:?} is defined twice", r.name),
            ));
        }
        if r.catch_all && rings[..i].iter().any(|o| o.catch_all) {
            return Err(PolicyError::new(
                format!("{k}.catch_all"),
                "only one ring may be the catch-all",
            ));
        }
        for h in &r.hosts {
            if let Some(other) = seen_hosts.insert(h, &r.name) {
                return Err(PolicyError::new(
                    format!("{k}.hosts"),
                    format!("host {h:?} is already listed in ring {other:?}"),
                ));
            }
        }
        r.gate.validate(&format!("{k}.gate"))?;
    }
    Ok(())
}

/// The ring a host belongs to, if any (see the module doc for the order).
pub fn ring_of<'a>(
    rings: &'a [Ring],
    host_id: &str,
    assigned: Option<&str>,
    labels: &BTreeMap<String, String>,
) -> Option<&'a Ring> {
    rings
        .iter()
        .find(|r| r.hosts.iter().any(|h| h == host_id))
        .or_else(|| assigned.and_then(|a| rings.iter().find(|r| r.name == a)))
        .or_else(|| {
            rings.iter().find(|r| {
                !r.labels.is_empty() && r.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
        })
        .or_else(|| rings.iter().find(|r| r.catch_all))
}

/// One ring's place in a rollout plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RingStep {
    pub ring: String,
    /// This ring may receive new offers (all earlier gates pass, nothing halted).
    pub open: bool,
    /// How many more of its hosts may be offered now.
    pub capacity: usize,
    /// Its own gate towards the next ring.
    pub gate: GateStatus,
}

/// What a rollout may do now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RingPlan {
    pub steps: Vec<RingStep>,
    /// The first halted ring, if any: no new offers anywhere.
    pub halted: Option<String>,
}

/// Plans a rollout over the rings it is approved for, in ring order.
pub fn plan_rollout(rings: &[(RingResults, GateRules)], now: Timestamp) -> RingPlan {
    let gates: Vec<GateStatus> = rings.iter().map(|(r, g)| gate(r, g, now)).collect();
    let halted = rings
        .iter()
        .zip(&gates)
        .find(|(_, g)| g.halted())
        .map(|((r, _), _)| r.ring.clone());
    let mut open = halted.is_none();
    let mut steps = Vec::with_capacity(rings.len());
    for ((r, g), status) in rings.iter().zip(gates) {
        let capacity = if open { ring_capacity(r, g, now) } else { 0 };
        steps.push(RingStep {
            ring: r.ring.clone(),
            open,
            capacity,
            gate: status.clone(),
        });
        open = open && status.passed();
    }
    RingPlan { steps, halted }
}
