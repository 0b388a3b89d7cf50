//! `patchward legacy ...`: end-of-life hosts from the command line. Each area keeps its
//! subcommands' arguments and handlers in its own module; this enum only lists them.

use std::io::Write;

use clap::Subcommand;
use jiff::Timestamp;

use super::LegacyError;
use crate::config::Config;
use crate::db::Db;

/// `patchward legacy <command>`.
#[derive(Debug, Subcommand)]
pub enum LegacyCmd {
    /// Show the lifecycle catalog in force: source, version, age, origin, products.
    Catalog(super::catalog_cli::CatalogArgs),
    /// Register a host without an agent (old Windows, an appliance, a printer).
    Add(super::registry_cli::AddArgs),
    /// Register hosts from a CSV file: all of them, or none if any row is bad.
    Import(super::registry_cli::ImportArgs),
    /// Legacy hosts: agent hosts on an end-of-life OS and every registered host.
    List(super::registry_cli::ListArgs),
    /// One host's lifecycle, include and risk acceptance (any host).
    Show(super::registry_cli::ShowArgs),
    /// Remove a registered host (with its include and risk acceptance).
    Remove(super::registry_cli::RemoveArgs),
    /// Offer rollouts to an agent host despite its lifecycle state (end of life).
    Include(super::decide_cli::IncludeArgs),
    /// Undo `include`: the host's lifecycle state decides again.
    Exclude(super::decide_cli::IncludeArgs),
    /// Record a risk acceptance (admins only): why, under which controls, until when.
    Accept(super::decide_cli::AcceptArgs),
    /// Remove a host's risk acceptance.
    RevokeAcceptance(super::decide_cli::RevokeArgs),
    /// The legacy segment's fence: plan, apply, export, status.
    Segment(super::segment_cli::SegmentArgs),
    /// A legacy host's allowed flows (the fence's allow-list): add, remove, list.
    Flow(super::flows_cli::FlowArgs),
    /// Named peer sets used by flows as @NAME: add, remove, list.
    Set(super::flows_cli::SetArgs),
    /// The legacy host monitor: watched ports (add-port, remove-port) and status.
    Monitor(super::watch_cli::MonitorArgs),
    /// A legacy host's events (monitor, blocked flows, fence), newest first.
    Events(super::watch_cli::EventsArgs),
}

/// Runs one `legacy` command as `actor` (the CLI's audit actor), writing to `out`.
pub fn run(
    db: &Db,
    config: &Config,
    now: Timestamp,
    cmd: &LegacyCmd,
    actor: &str,
    out: &mut dyn Write,
) -> Result<(), LegacyError> {
    use super::decide_cli as decide;
    use super::registry_cli as reg;
    match cmd {
        LegacyCmd::Catalog(args) => super::catalog_cli::run(db, now, args, out),
        LegacyCmd::Add(a) => reg::add(db, now, a, actor, out),
        LegacyCmd::Import(a) => reg::import(db, now, a, actor, out),
        LegacyCmd::List(a) => reg::list(db, config, now, a, out),
        LegacyCmd::Show(a) => reg::show(db, config, now, a, out),
        LegacyCmd::Remove(a) => reg::remove(db, now, a, actor, out),
        LegacyCmd::Include(a) => decide::include(db, now, a, actor, out),
        LegacyCmd::Exclude(a) => decide::exclude(db, now, a, actor, out),
        LegacyCmd::Accept(a) => decide::accept(db, config, now, a, actor, out),
        LegacyCmd::RevokeAcceptance(a) => decide::revoke(db, now, a, actor, out),
        LegacyCmd::Segment(a) => super::segment_cli::run(db, config, now, a, actor, out),
        LegacyCmd::Flow(a) => super::flows_cli::flow(db, config, now, a, actor, out),
        LegacyCmd::Set(a) => super::flows_cli::set(db, now, a, actor, out),
        LegacyCmd::Monitor(a) => super::watch_cli::run(db, config, now, a, actor, out),
        LegacyCmd::Events(a) => super::watch_cli::events(db, a, out),
    }
}
