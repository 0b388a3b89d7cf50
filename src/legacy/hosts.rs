//! The combined view of legacy hosts: enrolled agent hosts whose OS the catalog in
//! force places in a legacy state, and every agentless host registered by hand, each
//! with its lifecycle, include and risk acceptance. The CLI (`legacy list/show`), the
//! web pages and the dashboard all read this one view, so they cannot disagree about
//! which hosts are legacy or what state they are in.
//!
//! Every call evaluates at the `now` it is given (the appliance's clock, read by the
//! caller) under the catalog in force at that moment ([`super::active::load`]).
//! Reading is cheap: agent hosts' os-release and addresses are taken from
//! `inventory_facts` (kept with each inventory by triggers, migration 15) without
//! touching the inventory JSON, and includes and acceptances are read once per call.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use jiff::civil::Date;
use rusqlite::Connection;
use serde::Serialize;

use super::catalog::{Catalog, Lifecycle, State};
use super::decisions::{self, Acceptance, AcceptanceStatus, Include};
use super::{HostRef, LegacyError, active};
use crate::config::LegacyConfig;
use crate::db::legacy_registry::{self as q, AgentFacts, AgentlessRow};
use crate::fleet::inventory::OsRelease;

/// One legacy host as every view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LegacyHostView {
    /// Kind and key (agent host id, or agentless name).
    pub host: HostRef,
    /// Display name: the agent's hostname or the agentless name.
    pub name: String,
    pub addresses: Vec<String>,
    pub product: String,
    pub cycle: String,
    pub lifecycle: Lifecycle,
    /// Agentless hosts only; empty for agent hosts.
    pub owner: String,
    pub notes: String,
    pub include: Option<Include>,
    pub acceptance: Option<Acceptance>,
    /// Where the acceptance stands at the evaluation time.
    pub acceptance_status: AcceptanceStatus,
    /// Not offered rollouts: its state is excluded ([`active::excluded`]) and it has no
    /// include.
    pub excluded: bool,
    /// Agent hosts only.
    pub ring: Option<String>,
    pub last_seen: Option<String>,
    /// Agentless hosts only.
    pub added_at: Option<String>,
    pub added_by: Option<String>,
}

/// How many hosts are in each state and where they stand on acceptance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LegacyCounts {
    pub by_state: BTreeMap<State, usize>,
    pub accepted: usize,
    pub expired: usize,
    pub missing: usize,
    pub total: usize,
}

/// Sort rank of a state, most urgent first: end-of-life, then only paid extended
/// support left, then ending soon, then not in the catalog (nothing is known, so it
/// ranks below what is known to be bad), then the supported states.
pub fn severity(state: State) -> u8 {
    match state {
        State::Eol => 0,
        State::ExtendedOnly => 1,
        State::EolSoon => 2,
        State::Unknown => 3,
        State::SecurityOnly => 4,
        State::Supported => 5,
    }
}

/// Every agentless host and every enrolled, not revoked agent host whose state is
/// legacy ([`State::is_legacy`]) at `now`; most severe state first, then by name.
pub fn list(
    conn: &Connection,
    now: Timestamp,
    cfg: &LegacyConfig,
) -> Result<Vec<LegacyHostView>, LegacyError> {
    let catalog = active::load(conn)?.catalog;
    let day = active::day(now);
    let mut includes: HashMap<String, Include> = decisions::includes(conn)?.into_iter().collect();
    let mut acceptances: HashMap<String, Acceptance> =
        decisions::acceptances(conn)?.into_iter().collect();
    let mut bases = Vec::new();
    for row in q::agentless_all(conn)? {
        bases.push(agentless_base(&catalog, day, cfg, row)?);
    }
    for facts in q::active_agents(conn)? {
        // Most hosts are not legacy: only the legacy ones get a view built.
        let lifecycle = agent_lifecycle(&catalog, day, cfg, &facts);
        if lifecycle.state.is_legacy() {
            bases.push(agent_base(facts, lifecycle)?);
        }
    }
    let mut out: Vec<LegacyHostView> = bases
        .into_iter()
        .map(|base| {
            let key = base.host.key().to_string();
            finish(
                base,
                includes.remove(&key),
                acceptances.remove(&key),
                now,
                cfg,
            )
        })
        .collect();
    out.sort_by(|a, b| {
        (severity(a.lifecycle.state), &a.name, a.host.key()).cmp(&(
            severity(b.lifecycle.state),
            &b.name,
            b.host.key(),
        ))
    });
    Ok(out)
}

/// The view of any host [`super::resolve`] finds, legacy or not (a supported agent
/// host shows state `supported`).
pub fn show(
    conn: &Connection,
    needle: &str,
    now: Timestamp,
    cfg: &LegacyConfig,
) -> Result<LegacyHostView, LegacyError> {
    let host = super::resolve(conn, needle)?;
    let catalog = active::load(conn)?.catalog;
    let day = active::day(now);
    let base = match &host {
        HostRef::Agentless { name } => {
            let row = q::agentless(conn, name)?.ok_or_else(|| gone(name))?;
            agentless_base(&catalog, day, cfg, row)?
        }
        HostRef::Agent { id, .. } => {
            let facts = q::active_agent(conn, id)?.ok_or_else(|| gone(id))?;
            let lifecycle = agent_lifecycle(&catalog, day, cfg, &facts);
            agent_base(facts, lifecycle)?
        }
    };
    let key = host.key();
    let include = decisions::include_of(conn, key)?;
    let acceptance = decisions::acceptance_of(conn, key)?;
    Ok(finish(base, include, acceptance, now, cfg))
}

/// Counts of `hosts` (pure).
pub fn counts(hosts: &[LegacyHostView]) -> LegacyCounts {
    let mut c = LegacyCounts {
        total: hosts.len(),
        ..LegacyCounts::default()
    };
    for h in hosts {
        *c.by_state.entry(h.lifecycle.state).or_default() += 1;
        match h.acceptance_status {
            AcceptanceStatus::Accepted => c.accepted += 1,
            AcceptanceStatus::Expired => c.expired += 1,
            AcceptanceStatus::Missing => c.missing += 1,
        }
    }
    c
}

/// A host that `resolve` found and that was gone a moment later cannot happen inside
/// one read; say so plainly if it does.
fn gone(key: &str) -> LegacyError {
    LegacyError::Refused(format!(
        "host {key:?} disappeared while it was read; try again"
    ))
}

fn addresses(key: &str, json: &str) -> Result<Vec<String>, LegacyError> {
    serde_json::from_str(json).map_err(|e| {
        LegacyError::Refused(format!(
            "the stored addresses of host {key:?} are damaged: {e}"
        ))
    })
}

fn agentless_base(
    catalog: &Catalog,
    day: Date,
    cfg: &LegacyConfig,
    row: AgentlessRow,
) -> Result<LegacyHostView, LegacyError> {
    let lifecycle = catalog.lifecycle(&row.product, &row.cycle, day, cfg.eol_soon_days);
    Ok(LegacyHostView {
        addresses: addresses(&row.name, &row.addresses)?,
        host: HostRef::Agentless {
            name: row.name.clone(),
        },
        name: row.name,
        product: row.product,
        cycle: row.cycle,
        lifecycle,
        owner: row.owner,
        notes: row.notes,
        include: None,
        acceptance: None,
        acceptance_status: AcceptanceStatus::Missing,
        excluded: false,
        ring: None,
        last_seen: None,
        added_at: Some(row.added_at),
        added_by: Some(row.added_by),
    })
}

fn agent_lifecycle(catalog: &Catalog, day: Date, cfg: &LegacyConfig, f: &AgentFacts) -> Lifecycle {
    let os = OsRelease {
        id: f.os_id.clone(),
        version_id: f.os_version_id.clone(),
        id_like: f.os_id_like.clone(),
    };
    active::of_os(catalog, &os, day, cfg)
}

fn agent_base(f: AgentFacts, lifecycle: Lifecycle) -> Result<LegacyHostView, LegacyError> {
    Ok(LegacyHostView {
        addresses: addresses(&f.id, &f.addresses)?,
        name: f.hostname.clone(),
        host: HostRef::Agent {
            id: f.id,
            hostname: f.hostname,
        },
        product: lifecycle.product.clone(),
        cycle: lifecycle.cycle.clone(),
        lifecycle,
        owner: String::new(),
        notes: String::new(),
        include: None,
        acceptance: None,
        acceptance_status: AcceptanceStatus::Missing,
        excluded: false,
        ring: f.ring,
        last_seen: f.last_seen,
        added_at: None,
        added_by: None,
    })
}

fn finish(
    mut v: LegacyHostView,
    include: Option<Include>,
    acceptance: Option<Acceptance>,
    now: Timestamp,
    cfg: &LegacyConfig,
) -> LegacyHostView {
    v.acceptance_status = AcceptanceStatus::of(acceptance.as_ref(), now);
    v.excluded = active::excluded(v.lifecycle.state, cfg) && include.is_none();
    v.include = include;
    v.acceptance = acceptance;
    v
}

#[cfg(test)]
#[path = "hosts_tests.rs"]
pub(crate) mod tests;
