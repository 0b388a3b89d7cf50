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
    /// Offer rollouts to an agent host despite its lifecycle state (end of life).
    Include(super::decide_cli::IncludeArgs),
    /// Undo `include`: the host's lifecycle state decides again.
    Exclude(super::decide_cli::IncludeArgs),
    /// Record a risk acceptance (admins only): why, under which controls, until when.
    Accept(super::decide_cli::AcceptArgs),
    /// Remove a host's risk acceptance.
    RevokeAcceptance(super::decide_cli::RevokeArgs),
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
    match cmd {
        LegacyCmd::Include(a) => decide::include(db, now, a, actor, out),
        LegacyCmd::Exclude(a) => decide::exclude(db, now, a, actor, out),
        LegacyCmd::Accept(a) => decide::accept(db, config, now, a, actor, out),
        LegacyCmd::RevokeAcceptance(a) => decide::revoke(db, now, a, actor, out),
    }
}
