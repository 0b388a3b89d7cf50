//! `patchward users ...`: the web admin page's accounts. The commands and their clap
//! types live in the library (`auth::cli`, shared with the tests); this wrapper opens the
//! appliance and hands them the terminal.

use std::process::ExitCode;

use patchward::auth::cli::UsersCmd;
use patchward::clock::{Clock, SystemClock};

use super::{Globals, invoking_user, open};

pub fn run(g: &Globals, cmd: &UsersCmd) -> anyhow::Result<ExitCode> {
    let (_, db) = open(g)?;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stdout();
    patchward::auth::cli::run(
        cmd,
        &db,
        SystemClock.now(),
        &invoking_user(),
        &mut input,
        &mut out,
    )?;
    Ok(ExitCode::SUCCESS)
}
