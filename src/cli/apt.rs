//! `patchward apt ...`: the signed apt repository per ring (`/apt/<ring>/`): the
//! deb822 sources file servers install, publishing now, status, and putting a patch's
//! debs into a ring (or taking them out) by hand until rollouts do it.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use patchward::appliance::Appliance;
use patchward::clock::{Clock, SystemClock};
use patchward::config::Config;
use patchward::timefmt;

use super::{Globals, invoking_user, load_config};

#[derive(Subcommand)]
pub enum AptCmd {
    /// Print the deb822 .sources file for a ring (key embedded) with install instructions.
    ClientConfig {
        /// The ring whose repository the server should use.
        #[arg(long)]
        ring: String,
        /// The appliance's URL as servers reach it (default: from `server.listen`).
        #[arg(long)]
        url: Option<String>,
    },
    /// Publish (re-sign) every ring's repository now.
    Publish {
        #[arg(long)]
        json: bool,
    },
    /// Each ring's repository: packages, last publish, Valid-Until, errors.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Put a patch's debs into a ring's repository (until the rollout engine does it).
    Release {
        #[arg(long)]
        ring: String,
        /// Patch id (`FEED:ID` when several feeds have it).
        #[arg(long)]
        patch: String,
    },
    /// Take a patch's debs out of a ring's repository.
    Withdraw {
        #[arg(long)]
        ring: String,
        #[arg(long)]
        patch: String,
    },
}

fn apt_publisher(config: &Config) -> anyhow::Result<patchward::apt::Publisher> {
    let db = Appliance::open_existing(config)?;
    let dir = patchward::appliance::DataDir::new(&config.data_dir);
    let secret = patchward::trust::keys::read_secret_file(&dir.apt_key())?;
    let key = patchward::trust::openpgp::AptSigningKey::from_armored_secret(&secret)
        .with_context(|| format!("cannot load {}", dir.apt_key().display()))?;
    Ok(patchward::apt::Publisher {
        db,
        key,
        dir: patchward::apt::publish::AptDir::of_data_dir(&config.data_dir),
        settings: config.apt.clone(),
    })
}

/// The URL servers use when `--url` is not given: the listen address, or this
/// machine's host name when it listens on every address.
fn default_url(config: &Config) -> String {
    let addr = config.server.listen;
    if addr.ip().is_unspecified() {
        format!("http://{}:{}", patchward::hostinfo::hostname(), addr.port())
    } else {
        format!("http://{addr}")
    }
}

pub fn run(g: &Globals, cmd: &AptCmd) -> anyhow::Result<ExitCode> {
    use patchward::apt;
    let config = load_config(g)?;
    match cmd {
        AptCmd::ClientConfig { ring, url } => {
            patchward::fleet::validate_ring(ring)?;
            let p = apt_publisher(&config)?;
            let url = url.clone().unwrap_or_else(|| default_url(&config));
            print!(
                "{}",
                apt::client::sources(
                    &url,
                    ring,
                    &config.apt.suite_of(ring),
                    p.key.public_key_armored(),
                    &p.key.fingerprint()
                )
            );
        }
        AptCmd::Publish { json } => {
            let p = apt_publisher(&config)?;
            let done = p.publish_due(SystemClock.now(), true)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&done)?);
            } else {
                for d in &done {
                    println!(
                        "published ring {} (suite {}, generation {}): {} packages, valid until {}",
                        d.ring,
                        d.suite,
                        d.generation,
                        d.packages,
                        timefmt::display(&d.valid_until.to_string())
                    );
                }
            }
        }
        AptCmd::Status { json } => {
            let p = apt_publisher(&config)?;
            let rows = p.status()?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<16} {:>8} {:>5} {:<6} {:<22} {:<22} error",
                    "ring", "packages", "gen", "dirty", "published", "valid until"
                );
                for r in &rows {
                    println!(
                        "{:<16} {:>8} {:>5} {:<6} {:<22} {:<22} {}",
                        r.ring,
                        r.packages,
                        r.generation,
                        r.dirty,
                        timefmt::display_or(r.published_at.as_deref(), "never"),
                        timefmt::display_or(r.valid_until.as_deref(), "-"),
                        r.last_error.as_deref().unwrap_or("")
                    );
                }
            }
        }
        AptCmd::Release { ring, patch } | AptCmd::Withdraw { ring, patch } => {
            let release = matches!(cmd, AptCmd::Release { .. });
            let db = Appliance::open_existing(&config)?;
            let actor = invoking_user();
            let now = SystemClock.now();
            let (feed, id, n) = db.write_blocking(|tx| {
                let (feed, id) = apt::db::resolve_patch(tx, patch)?;
                let n = if release {
                    apt::release_to_ring(tx, now, ring, &feed, &id, &actor)?
                } else {
                    apt::withdraw_from_ring(tx, now, ring, &feed, &id, &actor)?
                };
                Ok::<_, apt::AptError>((feed, id, n))
            })?;
            if release {
                println!(
                    "released {feed}:{id} ({n} deb file(s)) to ring {ring}; the running \
                     appliance republishes within seconds (or run `patchward apt publish`)"
                );
            } else {
                println!("withdrew {feed}:{id} from ring {ring} ({n} deb file(s))");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
