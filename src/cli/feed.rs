//! `patchward feed ...`: the MSP-side tools that build and publish a signed feed. They
//! live in the library (`feed::cli`) and never touch the appliance's data directory, so
//! this wrapper passes only the clock and stdout.

use std::process::ExitCode;

use patchward::clock::{Clock, SystemClock};
use patchward::feed::cli::FeedCmd;

pub fn run(cmd: &FeedCmd) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout();
    patchward::feed::cli::run(cmd, SystemClock.now(), &mut out)?;
    Ok(ExitCode::SUCCESS)
}
