//! `patchward approve|expedite|decline|defer|rollout|explain`: patch decisions, rollout
//! control and the planner's reasons. The commands and their clap types live in the
//! library (`rollout::cli`); each wrapper here opens the appliance and passes the
//! system clock's time and the invoking account.

use std::process::ExitCode;

use patchward::clock::{Clock, SystemClock};
use patchward::rollout::cli::{
    self, ApproveArgs, DeclineArgs, DeferArgs, ExpediteArgs, ExplainArgs, RolloutCmd,
};

use super::{Globals, invoking_user, open};

pub fn approve(g: &Globals, a: &ApproveArgs) -> anyhow::Result<ExitCode> {
    let (config, db) = open(g)?;
    cli::approve(&db, &config, SystemClock.now(), a, &invoking_user())?;
    Ok(ExitCode::SUCCESS)
}

pub fn expedite(g: &Globals, a: &ExpediteArgs) -> anyhow::Result<ExitCode> {
    let (config, db) = open(g)?;
    cli::expedite(&db, &config, SystemClock.now(), a, &invoking_user())?;
    Ok(ExitCode::SUCCESS)
}

pub fn decline(g: &Globals, a: &DeclineArgs) -> anyhow::Result<ExitCode> {
    let (config, db) = open(g)?;
    cli::decline(&db, &config, SystemClock.now(), a, &invoking_user())?;
    Ok(ExitCode::SUCCESS)
}

pub fn defer(g: &Globals, a: &DeferArgs) -> anyhow::Result<ExitCode> {
    let (config, db) = open(g)?;
    cli::defer(&db, &config, SystemClock.now(), a, &invoking_user())?;
    Ok(ExitCode::SUCCESS)
}

pub fn rollout(g: &Globals, cmd: &RolloutCmd) -> anyhow::Result<ExitCode> {
    let (config, db) = open(g)?;
    cli::rollout(&db, &config, SystemClock.now(), cmd, &invoking_user())?;
    Ok(ExitCode::SUCCESS)
}

pub fn explain(g: &Globals, a: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let (config, db) = open(g)?;
    cli::explain(&db, &config, SystemClock.now(), a)?;
    Ok(ExitCode::SUCCESS)
}
