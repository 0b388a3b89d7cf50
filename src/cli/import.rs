//! `patchward import FILE`: import a signed offline bundle (e.g. from USB media) through
//! the same verifying pipeline as a sync, with a progress bar and a summary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{Globals, invoking_user, load_config};

#[derive(Args)]
pub struct ImportArgs {
    /// The bundle file.
    file: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(g: &Globals, a: &ImportArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(g)?;
    let ctx = patchward::mirror::Context::open(&config)?;
    let bar = patchward::mirror::progress_bar();
    let summary = ctx.import_bundle(&a.file, &invoking_user(), &bar)?;
    bar.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", patchward::mirror::render_summary(&summary));
    }
    Ok(ExitCode::SUCCESS)
}
