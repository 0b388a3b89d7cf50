//! `patchward deploy --patch P --host H`: create one signed job by hand (install one
//! patch on one host), the way rollouts create them, for testing a patch on one machine.

use std::process::ExitCode;

use clap::Args;

use patchward::clock::{Clock, SystemClock};
use patchward::fleet::jobs;

use super::{Globals, invoking_user, open};

#[derive(Args)]
pub struct DeployArgs {
    /// Patch id (`FEED:ID` when several feeds have it).
    #[arg(long)]
    patch: String,
    /// Host id or hostname.
    #[arg(long)]
    host: String,
    /// Earliest start (RFC 3339).
    #[arg(long, value_name = "TIME")]
    not_before: Option<jiff::Timestamp>,
    /// Latest start (RFC 3339); after it the job expires unstarted.
    #[arg(long, value_name = "TIME")]
    latest_start: Option<jiff::Timestamp>,
}

pub fn run(g: &Globals, a: &DeployArgs) -> anyhow::Result<ExitCode> {
    let (config, db) = open(g)?;
    let dir = patchward::appliance::DataDir::new(&config.data_dir);
    let key = patchward::trust::keys::Ed25519Key::load(&dir.ed25519_key())?;
    let (_, entry) = db.read_blocking(|c| jobs::find_patch(c, &a.patch))?;
    let req = jobs::NewJob {
        patch: a.patch.clone(),
        host: a.host.clone(),
        not_before: a.not_before,
        latest_start: a.latest_start,
        health_check: config.policy.classes.get(entry.kind).health_check,
        rollback_of: None,
    };
    let actor = invoking_user();
    let now = SystemClock.now();
    let (row, _) = db.write_blocking(|tx| jobs::create(tx, now, &key, &req, &actor))?;
    println!(
        "created job {} ({} on host {}); the agent receives it at its next check-in",
        row.id, row.patch_id, row.host_id
    );
    Ok(ExitCode::SUCCESS)
}
