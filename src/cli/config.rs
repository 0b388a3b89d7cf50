//! `patchward config check|show|defaults`: validate a configuration file, print the
//! effective configuration, or print the documented defaults as a starting point.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use patchward::config::Config;

use super::{Globals, load_config, overrides};

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Validate a config file (default: the --config file) and print what is wrong.
    Check { file: Option<PathBuf> },
    /// Print the effective configuration (defaults + file + environment + flags).
    Show,
    /// Print the embedded defaults, documented: a starting point for a config file.
    Defaults,
}

pub fn run(g: &Globals, cmd: &ConfigCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCmd::Check { file } => {
            let file = file.clone().or_else(|| g.config.clone());
            let config = Config::load(file.as_deref(), &overrides(g))?;
            patchward::appliance::preflight_data_dir(&config.data_dir)?;
            match file {
                Some(f) => println!("{}: configuration is valid", f.display()),
                None => println!("embedded defaults are valid"),
            }
        }
        ConfigCmd::Show => print!("{}", load_config(g)?.to_toml()),
        ConfigCmd::Defaults => print!("{}", patchward::config::DEFAULT_CONFIG),
    }
    Ok(ExitCode::SUCCESS)
}
