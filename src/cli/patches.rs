//! `patchward patches list`: the patches this appliance knows, with a warning (on stderr,
//! so the list stays machine-readable) for approved patches no enrolled host matches.

use std::process::ExitCode;

use clap::Subcommand;

use patchward::clock::{Clock, SystemClock};

use super::{Globals, open};

#[derive(Subcommand)]
pub enum PatchesCmd {
    /// List patches with kind, severity, CVSS, CVEs, KEV flag and release date.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(g: &Globals, cmd: &PatchesCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        PatchesCmd::List { json } => {
            let (config, db) = open(g)?;
            let rows = db.read_blocking(patchward::db::feeds::list_patches)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", patchward::mirror::render_patches(&rows));
            }
            // Approved patches no enrolled host matches (on stderr: the list stays clean).
            let now = SystemClock.now();
            for w in patchward::rollout::cli::no_host_warnings(&db, &config, now, None)? {
                eprintln!("warning: {w}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
