//! `patchward legacy ...`: end-of-life hosts. The commands live in the library
//! (`legacy::cli`); this wrapper opens the appliance for them.

use std::process::ExitCode;

use patchward::clock::{Clock, SystemClock};
use patchward::legacy::cli::{self, LegacyCmd};

use super::{Globals, invoking_user, open};

pub fn run(g: &Globals, cmd: &LegacyCmd) -> anyhow::Result<ExitCode> {
    let (config, db) = open(g)?;
    let mut out = std::io::stdout();
    cli::run(
        &db,
        &config,
        SystemClock.now(),
        cmd,
        &invoking_user(),
        &mut out,
    )?;
    Ok(ExitCode::SUCCESS)
}
