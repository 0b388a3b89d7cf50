//! `patchward jobs list|cancel`: jobs (one patch on one host) with their states, and
//! cancelling one its host has not started installing.

use std::process::ExitCode;

use clap::Subcommand;

use patchward::clock::{Clock, SystemClock};
use patchward::fleet::jobs;
use patchward::timefmt;

use super::{Globals, invoking_user, open};

#[derive(Subcommand)]
pub enum JobsCmd {
    /// Jobs with their state and last change; `--json` adds every event.
    List {
        /// Only this host's jobs (id or hostname).
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job the host has not started installing; audited with your reason.
    Cancel {
        /// The job id (`patchward jobs list`).
        job: String,
        /// Why, for the audit log.
        #[arg(long)]
        reason: String,
    },
}

pub fn run(g: &Globals, cmd: &JobsCmd) -> anyhow::Result<ExitCode> {
    let (_, db) = open(g)?;
    match cmd {
        JobsCmd::List { host, json } => {
            let rows = db.read_blocking(|c| jobs::list(c, host.as_deref()))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<20} {:<20} {:<32} {:<16} updated",
                    "id", "host", "patch", "state"
                );
                for j in &rows {
                    println!(
                        "{:<20} {:<20} {:<32} {:<16} {}",
                        j.id,
                        j.hostname,
                        j.patch_id,
                        j.state,
                        timefmt::display(&j.updated_at)
                    );
                }
            }
        }
        JobsCmd::Cancel { job, reason } => {
            let actor = invoking_user();
            let now = SystemClock.now();
            let row = db.write_blocking(|tx| jobs::cancel(tx, now, job, &actor, reason))?;
            println!(
                "cancelled job {} ({} on host {}); the agent will not start it",
                row.id, row.patch_id, row.host_id
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
