//! `patchward-agent`: runs on each managed server, talks to the appliance. Parses
//! arguments, then calls `patchward::agent`; nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use patchward::agent;
use patchward::clock::{Clock, SystemClock};

#[derive(Parser)]
#[command(
    name = "patchward-agent",
    version,
    about = "Patchward agent for managed servers"
)]
struct Cli {
    /// Where the host key and state live.
    #[arg(long, global = true, default_value = agent::DEFAULT_STATE_DIR, value_name = "DIR")]
    state_dir: PathBuf,
    /// Never reboot: a job that needs a reboot stays `reboot_pending` until this host
    /// has been rebooted by someone else.
    #[arg(long, global = true, conflicts_with = "reboot_command")]
    no_reboot: bool,
    /// The command that reboots this host after a job that needs it, split on
    /// whitespace [default: shutdown -r +1 "patchward: rebooting to finish a patch"].
    #[arg(long, global = true, value_name = "CMD")]
    reboot_command: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

impl Cli {
    fn options(&self) -> agent::Options {
        let reboot = if self.no_reboot {
            agent::jobs::RebootPolicy::Never
        } else if let Some(cmd) = &self.reboot_command {
            agent::jobs::RebootPolicy::Command(cmd.split_whitespace().map(str::to_string).collect())
        } else {
            agent::jobs::RebootPolicy::default()
        };
        agent::Options { reboot }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Enroll this host with an appliance using a token from `patchward hosts token create`.
    Enroll {
        /// The appliance's URL, e.g. http://patchward.lan:8080
        #[arg(long)]
        server: String,
        #[arg(long)]
        token: String,
        /// The appliance key id to expect (`patchward keys show`); enrollment fails otherwise.
        #[arg(long)]
        fingerprint: Option<String>,
        /// Report this hostname instead of the kernel's.
        #[arg(long)]
        hostname: Option<String>,
    },
    /// One signed check-in with a fresh inventory.
    Once,
    /// Check in every poll interval (jittered) until SIGTERM or SIGINT.
    Run,
}

fn stop_channel() -> anyhow::Result<std::sync::mpsc::Receiver<()>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        });
        let _ = tx.send(());
    });
    Ok(rx)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let opts = cli.options();
    match cli.command {
        Cmd::Enroll {
            server,
            token,
            fingerprint,
            hostname,
        } => {
            let st = agent::enroll(
                &cli.state_dir,
                &server,
                &token,
                fingerprint.as_deref(),
                hostname.as_deref(),
                SystemClock.now(),
            )?;
            println!("enrolled as host {}", st.host_id);
            println!("appliance key id {}", st.appliance_key_id);
            println!("check-in every {} s", st.poll_seconds);
        }
        Cmd::Once => {
            let r = agent::once(&cli.state_dir, &opts, &mut |m| println!("{m}"))?;
            println!(
                "checked in: {} job(s); next check-in in {} s",
                r.jobs.len(),
                r.next_checkin_s
            );
        }
        Cmd::Run => {
            let stop = stop_channel()?;
            agent::run(&cli.state_dir, &opts, &stop, |m| eprintln!("{m}"))?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    patchward::tls::install_crypto_provider();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
