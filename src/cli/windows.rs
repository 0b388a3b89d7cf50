//! `patchward windows add|remove|list|next`: maintenance windows. The commands live in
//! the library (`rollout::windows_cli`); this wrapper opens the appliance for them.

use std::process::ExitCode;

use patchward::clock::{Clock, SystemClock};
use patchward::rollout::windows_cli::{self, WindowsCmd};

use super::{Globals, invoking_user, open};

pub fn run(g: &Globals, cmd: &WindowsCmd) -> anyhow::Result<ExitCode> {
    let (config, db) = open(g)?;
    windows_cli::window_entries(&db, &config, SystemClock.now(), cmd, &invoking_user())?;
    Ok(ExitCode::SUCCESS)
}
