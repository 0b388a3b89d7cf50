//! `patchward kev import FILE`: load CISA's Known Exploited Vulnerabilities catalog,
//! which flags patches (and lets them be expedited).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{Globals, invoking_user, load_config};

#[derive(Subcommand)]
pub enum KevCmd {
    /// Load a KEV catalog JSON file (known_exploited_vulnerabilities.json).
    Import { file: PathBuf },
}

pub fn run(g: &Globals, cmd: &KevCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        KevCmd::Import { file } => {
            let config = load_config(g)?;
            let ctx = patchward::mirror::Context::open(&config)?;
            let n = ctx.import_kev(file, &invoking_user())?;
            println!(
                "loaded {n} known exploited vulnerabilities from {}",
                file.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
