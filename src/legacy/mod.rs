//! Legacy end-of-life hosts (DESIGN §5): servers that no longer get vendor patches.
//!
//! - [`catalog`]: the lifecycle catalog (endoflife.date's shape), pure: which product
//!   cycles are supported on a date; a snapshot ships inside the binary.
//! - [`mapping`]: from an agent's os-release (or a hand-typed cycle) to a catalog
//!   product and cycle, pure.
//! - [`active`]: the catalog in force (the one a signed feed brought, else the
//!   snapshot) and a host's lifecycle under it.
//! - [`decisions`]: includes and risk acceptances as recorded (read side).
//! - [`hosts`]: the combined view of agent and agentless legacy hosts.
//! - [`registry`] (with [`registry_csv`], [`registry_cli`]): agentless hosts, added,
//!   imported from CSV, removed.
//! - [`decide`]: recording them (include/exclude, accept/revoke, expiry), audited.
//! - [`cli`]: `patchward legacy ...`.
//! - [`monitor`]: watching legacy hosts from the network (issue [10]): pure state core,
//!   prober, cycle runner.
//! - [`flows`], [`nft`], [`netd`]: segmentation (issue [10]): the allow-list model, the
//!   `table inet patchward` renderer (with diff and CSV export), and the client and
//!   logic of the privileged `patchward-netd` helper.
//! - [`watch`]: the monitor's daemon edge (issue [10]): targets, added ports, views.
//!
//! A legacy host is either an enrolled agent host whose OS the catalog places in a
//! legacy state, or an agentless host registered by hand. Both are named the same way
//! everywhere ([`HostRef`]): the agentless name, or the agent host's id or hostname.

pub mod active;
pub mod catalog;
pub mod catalog_cli;
pub mod cli;
pub mod decide;
pub mod decide_cli;
pub mod decisions;
pub mod dns;
pub mod eol_import;
pub mod flows;
pub mod flows_cli;
pub mod flows_store;
pub mod hosts;
pub mod keeper;
pub mod mapping;
pub mod monitor;
pub mod netd;
pub mod nft;
mod nft_diff;
mod nft_elems;
mod nft_export;
pub mod offer;
pub mod registry;
pub mod registry_cli;
pub mod registry_csv;
pub mod segment;
pub mod segment_cli;
pub mod segment_input;
pub mod watch;
pub mod watch_blocked;
pub mod watch_cli;
pub mod watch_task;

use rusqlite::Connection;
use serde::Serialize;

use crate::error::{AuditError, DbError};
use crate::fleet::FleetError;
use crate::suggest::DidYouMean;

/// Why a legacy command was refused. Nothing changed when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    #[error(transparent)]
    Db(DbError),
    #[error(transparent)]
    Audit(AuditError),
    #[error(transparent)]
    Fleet(FleetError),
    #[error("no host {0:?} (neither a registered legacy host nor an enrolled one){1}")]
    NoSuchHost(String, DidYouMean),
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{0}")]
    Refused(String),
    /// A CSV import with bad rows: every one of them, by line number.
    #[error("nothing imported from {file}: {count} bad row(s)\n{rows}")]
    BadImport {
        file: String,
        count: usize,
        rows: String,
    },
}

impl LegacyError {
    /// The error of an import whose rows `problems` (line number, reason) are bad.
    pub fn bad_import(file: &str, problems: &[(u64, String)]) -> LegacyError {
        let rows = problems
            .iter()
            .map(|(line, why)| format!("  line {line}: {why}"))
            .collect::<Vec<_>>()
            .join("\n");
        LegacyError::BadImport {
            file: file.to_string(),
            count: problems.len(),
            rows,
        }
    }
}

impl From<DbError> for LegacyError {
    fn from(e: DbError) -> Self {
        LegacyError::Db(e)
    }
}

impl From<rusqlite::Error> for LegacyError {
    fn from(e: rusqlite::Error) -> Self {
        LegacyError::Db(DbError::from(e))
    }
}

impl From<AuditError> for LegacyError {
    fn from(e: AuditError) -> Self {
        LegacyError::Audit(e)
    }
}

impl From<FleetError> for LegacyError {
    fn from(e: FleetError) -> Self {
        LegacyError::Fleet(e)
    }
}

/// A host as the legacy commands name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HostRef {
    /// An enrolled host with an agent.
    Agent { id: String, hostname: String },
    /// A host registered by hand (`legacy add`/`import`).
    Agentless { name: String },
}

impl HostRef {
    /// The key the legacy tables store (`legacy_includes.host`, ...): the agent host's
    /// id, or the agentless host's name.
    pub fn key(&self) -> &str {
        match self {
            HostRef::Agent { id, .. } => id,
            HostRef::Agentless { name } => name,
        }
    }

    /// The name people see.
    pub fn display_name(&self) -> &str {
        match self {
            HostRef::Agent { hostname, .. } => hostname,
            HostRef::Agentless { name } => name,
        }
    }
}

/// Finds a host by agentless name, or by an enrolled host's id or hostname (in that
/// order: `legacy add` refuses a name an enrolled host already has).
pub fn resolve(conn: &Connection, needle: &str) -> Result<HostRef, LegacyError> {
    let name = needle.trim().to_ascii_lowercase();
    if crate::db::legacy::agentless_exists(conn, &name)? {
        return Ok(HostRef::Agentless { name });
    }
    match crate::fleet::hosts::find(conn, needle) {
        Ok(h) if h.revoked_at.is_none() => Ok(HostRef::Agent {
            id: h.id,
            hostname: h.hostname,
        }),
        Ok(_) | Err(FleetError::NoSuchHost(..)) => {
            let agentless = crate::db::legacy::agentless_names(conn)?;
            let enrolled = crate::db::fleet::host_names(conn)?;
            let hint = DidYouMean::among(
                needle,
                agentless
                    .iter()
                    .map(String::as_str)
                    .chain(enrolled.iter().map(|(_, n)| n.as_str())),
            );
            Err(LegacyError::NoSuchHost(needle.to_string(), hint))
        }
        Err(e) => Err(e.into()),
    }
}
