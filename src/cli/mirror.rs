//! `patchward mirror status|sync`: each mirror source's freshness, and syncing now.
//! A sync that fails for any source exits 1 after trying every other source.

use std::process::ExitCode;

use clap::Subcommand;

use patchward::clock::{Clock, SystemClock};

use super::{Globals, invoking_user, load_config};

#[derive(Subcommand)]
pub enum MirrorCmd {
    /// Per source: last success, catalog version, content age, expiry, bytes, last error.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Sync now from one source (default: all configured sources).
    Sync {
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(g: &Globals, cmd: &MirrorCmd) -> anyhow::Result<ExitCode> {
    let config = load_config(g)?;
    let ctx = patchward::mirror::Context::open(&config)?;
    match cmd {
        MirrorCmd::Status { json } => {
            let status = ctx.status(SystemClock.now())?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", patchward::mirror::render_status(&status));
            }
            Ok(ExitCode::SUCCESS)
        }
        MirrorCmd::Sync { source, json } => {
            let results = ctx.sync(source.as_deref(), &invoking_user())?;
            if results.is_empty() && !*json {
                println!(
                    "no mirror source has a url to sync; bundle-only sources get their content \
                     by `patchward import`, the web page or the drop folder"
                );
            }
            let mut failed = false;
            for (name, r) in &results {
                match r {
                    Ok(summary) if *json => println!("{}", serde_json::to_string_pretty(summary)?),
                    Ok(summary) => print!("{}", patchward::mirror::render_summary(summary)),
                    Err(e) => {
                        failed = true;
                        eprintln!("{name}: sync failed: {e}");
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
