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
    let _ = (config, actor);
    match cmd {
        LegacyCmd::Catalog(args) => super::catalog_cli::run(db, now, args, out),
    }
}
