//! `patchward-netd`: the privileged helper that applies `table inet patchward`. Parses
//! arguments, finds its socket, then calls `patchward::legacy::netd::server`; nothing
//! else lives here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use patchward::legacy::netd::{self, nft_cmd::Nft, peer, server};

#[derive(Parser)]
#[command(
    name = "patchward-netd",
    version,
    about = "Applies Patchward's legacy-segment nftables table (table inet patchward) and nothing else"
)]
struct Cli {
    /// Listen on this unix socket instead of the one systemd passes (patchward-netd.socket).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Besides root, members of this group may use the helper.
    #[arg(long, default_value = netd::DEFAULT_GROUP, value_name = "NAME")]
    group: String,
    /// The nft program.
    #[arg(long, default_value = "/usr/sbin/nft", value_name = "PATH")]
    nft: PathBuf,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("patchward-netd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let group = peer::lookup_group(&cli.group).map_err(anyhow::Error::msg)?;
    let listener = match (&cli.socket, server::listener_from_systemd()) {
        (Some(path), _) => server::bind(path, &group)
            .with_context(|| format!("cannot listen on {}", path.display()))?,
        (None, Some(l)) => l.context("the socket systemd passed")?,
        (None, None) => anyhow::bail!(
            "no socket: start patchward-netd through patchward-netd.socket (systemd) or pass --socket PATH"
        ),
    };
    let cfg = server::Config {
        nft: Nft { program: cli.nft },
        group,
        io_timeout: Duration::from_secs(10),
    };
    eprintln!(
        "patchward-netd: ready (group {}, nft {})",
        cfg.group.name,
        cfg.nft.program.display()
    );
    server::serve(listener, &cfg).context("accepting connections")
}
