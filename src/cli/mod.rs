//! The `patchward` command groups, one file per group (cargo's `src/bin/cargo/commands/`
//! is the model): each file holds a group's clap types next to the handler that runs
//! them, so reading or changing a command means reading one file. `main.rs` only parses
//! and dispatches. Groups whose commands live in the library (`rollout::cli`,
//! `rollout::windows_cli`, `feed::cli`, `auth::cli`) get a thin wrapper here that opens
//! the appliance and calls them.
//!
//! This module holds what every group shares: the global flags, loading the
//! configuration, the audit actor and the async runtime.

pub mod apt;
pub mod audit;
pub mod config;
pub mod deploy;
pub mod feed;
pub mod hosts;
pub mod import;
pub mod jobs;
pub mod kev;
pub mod keys;
pub mod legacy;
pub mod mirror;
pub mod patches;
pub mod rollout;
pub mod serve;
pub mod store;
pub mod users;
pub mod windows;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use patchward::appliance::Appliance;
use patchward::config::{Config, Overrides};
use patchward::db::Db;

// The flags every command accepts (`global = true`), flattened into the top-level parser.
// (A plain comment: a doc comment here would become the commands' help text.)
#[derive(Args)]
pub struct Globals {
    /// Configuration file (TOML), laid over the embedded defaults.
    #[arg(long, global = true, env = "PATCHWARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (database, keys, content); overrides `data_dir`.
    #[arg(long, global = true, env = "PATCHWARD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format: text or json; overrides `log.format`.
    #[arg(
        long,
        global = true,
        env = "PATCHWARD_LOG_FORMAT",
        value_name = "FORMAT"
    )]
    pub log_format: Option<String>,
    /// Log filter, e.g. info or patchward=debug; overrides `log.level`.
    #[arg(long, global = true, env = "PATCHWARD_LOG", value_name = "FILTER")]
    pub log_level: Option<String>,
}

/// The global flags as configuration overrides; only `serve` adds listen addresses.
pub fn overrides(g: &Globals) -> Overrides {
    Overrides {
        data_dir: g.data_dir.clone(),
        listen: None,
        tls_listen: None,
        log_format: g.log_format.clone(),
        log_level: g.log_level.clone(),
    }
}

/// The effective configuration: embedded defaults, the `--config` file, then flags.
pub fn load_config(g: &Globals) -> anyhow::Result<Config> {
    Ok(Config::load(g.config.as_deref(), &overrides(g))?)
}

/// The configuration and the existing appliance it names: what most commands start with.
pub fn open(g: &Globals) -> anyhow::Result<(Config, Db)> {
    let config = load_config(g)?;
    let db = Appliance::open_existing(&config)?;
    Ok((config, db))
}

/// `patchward` with the `--config` and `--data-dir` this process was given, so
/// commands printed for the operator act on the same appliance.
pub fn cli_command(g: &Globals) -> String {
    let quote = |p: &Path| {
        let s = p.display().to_string();
        if s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:=@".contains(&b))
        {
            s
        } else {
            format!("'{}'", s.replace('\'', "'\\''"))
        }
    };
    let mut c = String::from("patchward");
    if let Some(f) = &g.config {
        c.push_str(&format!(" --config {}", quote(f)));
    }
    if let Some(d) = &g.data_dir {
        c.push_str(&format!(" --data-dir {}", quote(d)));
    }
    c
}

/// The audit actor: the real account, from the kernel's view (see `auth::actor`).
pub fn invoking_user() -> String {
    patchward::auth::actor::cli_actor()
}

/// A multi-threaded tokio runtime for the commands that talk to the network.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
