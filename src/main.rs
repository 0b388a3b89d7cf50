//! `patchward`: the appliance daemon and its admin CLI. This file only parses the
//! arguments and dispatches each command group to its file in `cli/` (clap types and
//! handler side by side); adding a group is a variant here and an arm in `run`.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use patchward::{auth, feed, rollout};

#[derive(Parser)]
#[command(
    name = "patchward",
    version,
    about = "Patchward patch appliance and admin CLI"
)]
struct Cli {
    #[command(flatten)]
    globals: cli::Globals,
    #[command(subcommand)]
    command: Command,
}

/// One variant per command group; its doc comment is the group's line in `--help`.
#[derive(Subcommand)]
enum Command {
    /// Run the appliance (creates the data directory, keys, HTTPS certificate and the
    /// first admin account on first start).
    Serve(cli::serve::ServeArgs),
    /// Create the data directory, keys, HTTPS certificate and the admin account if
    /// missing (what `serve` does at first start), and print where to sign in.
    Init(cli::serve::InitArgs),
    /// Accounts of the web admin page.
    #[command(subcommand)]
    Users(auth::cli::UsersCmd),
    /// Exit 0 if a running appliance answers /healthz with 200, else 1.
    Healthcheck(cli::serve::HealthcheckArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(cli::config::ConfigCmd),
    /// The audit trail.
    #[command(subcommand)]
    Audit(cli::audit::AuditCmd),
    /// Show the appliance's key fingerprints.
    #[command(subcommand)]
    Keys(cli::keys::KeysCmd),
    /// Import a signed offline bundle (*.pwb), e.g. from USB media.
    Import(cli::import::ImportArgs),
    /// Patches known to this appliance.
    #[command(subcommand)]
    Patches(cli::patches::PatchesCmd),
    /// Mirror sources: status and sync.
    #[command(subcommand)]
    Mirror(cli::mirror::MirrorCmd),
    /// The CISA Known Exploited Vulnerabilities catalog used to flag patches.
    #[command(subcommand)]
    Kev(cli::kev::KevCmd),
    /// The content store: usage, integrity scrub, garbage collection.
    #[command(subcommand)]
    Store(cli::store::StoreCmd),
    /// Enrolled hosts and enrollment tokens.
    #[command(subcommand)]
    Hosts(cli::hosts::HostsCmd),
    /// Create a job: install one patch on one host (until rollouts create jobs).
    Deploy(cli::deploy::DeployArgs),
    /// Jobs and their states.
    #[command(subcommand)]
    Jobs(cli::jobs::JobsCmd),
    /// Approve a patch for rings (all by default); its rollout starts (audited).
    Approve(rollout::cli::ApproveArgs),
    /// Approve a critical or KEV patch with a shorter soak and the emergency window.
    Expedite(rollout::cli::ExpediteArgs),
    /// Decline a patch: it is never offered (a running rollout is aborted).
    Decline(rollout::cli::DeclineArgs),
    /// Defer a patch until a date (a running rollout is halted until then).
    Defer(rollout::cli::DeferArgs),
    /// Rollouts: progress per ring, gates, halt/resume/abort.
    #[command(subcommand)]
    Rollout(rollout::cli::RolloutCmd),
    /// Maintenance windows.
    #[command(subcommand)]
    Windows(rollout::windows_cli::WindowsCmd),
    /// Why a host has (not yet) been offered a patch.
    Explain(rollout::cli::ExplainArgs),
    /// MSP-side tools that build and publish a signed feed (never on the appliance's data).
    #[command(subcommand)]
    Feed(feed::cli::FeedCmd),
    /// The apt repositories per ring (`/apt/<ring>/`).
    #[command(subcommand)]
    Apt(cli::apt::AptCmd),
    /// End-of-life ("legacy") hosts: the lifecycle catalog, hosts without an agent,
    /// decisions about them.
    #[command(subcommand)]
    Legacy(patchward::legacy::cli::LegacyCmd),
}

fn main() -> ExitCode {
    let args = Cli::parse();
    patchward::tls::install_crypto_provider();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Cli) -> anyhow::Result<ExitCode> {
    let g = &args.globals;
    match &args.command {
        Command::Serve(a) => cli::serve::serve(g, a),
        Command::Init(a) => cli::serve::init(g, a),
        Command::Users(cmd) => cli::users::run(g, cmd),
        Command::Healthcheck(a) => cli::serve::healthcheck(g, a),
        Command::Config(cmd) => cli::config::run(g, cmd),
        Command::Audit(cmd) => cli::audit::run(g, cmd),
        Command::Keys(cmd) => cli::keys::run(g, cmd),
        Command::Import(a) => cli::import::run(g, a),
        Command::Patches(cmd) => cli::patches::run(g, cmd),
        Command::Mirror(cmd) => cli::mirror::run(g, cmd),
        Command::Kev(cmd) => cli::kev::run(g, cmd),
        Command::Store(cmd) => cli::store::run(g, cmd),
        Command::Hosts(cmd) => cli::hosts::run(g, cmd),
        Command::Deploy(a) => cli::deploy::run(g, a),
        Command::Jobs(cmd) => cli::jobs::run(g, cmd),
        Command::Approve(a) => cli::rollout::approve(g, a),
        Command::Expedite(a) => cli::rollout::expedite(g, a),
        Command::Decline(a) => cli::rollout::decline(g, a),
        Command::Defer(a) => cli::rollout::defer(g, a),
        Command::Rollout(cmd) => cli::rollout::rollout(g, cmd),
        Command::Windows(cmd) => cli::windows::run(g, cmd),
        Command::Explain(a) => cli::rollout::explain(g, a),
        Command::Feed(cmd) => cli::feed::run(cmd),
        Command::Apt(cmd) => cli::apt::run(g, cmd),
        Command::Legacy(cmd) => cli::legacy::run(g, cmd),
    }
}
