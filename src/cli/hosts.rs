//! `patchward hosts ...`: enrolled hosts (list, show, revoke), the machines that fetch a
//! ring's apt index with or without an agent, and enrollment tokens.

use std::process::ExitCode;

use clap::Subcommand;

use patchward::clock::{Clock, SystemClock};
use patchward::timefmt;

use super::{Globals, invoking_user, open};

#[derive(Subcommand)]
pub enum HostsCmd {
    /// Enrolled hosts: id, hostname, ring, labels, OS, last seen, stale flag.
    List {
        /// List the machines that fetched a ring's apt index instead (with or without
        /// an agent): address, ring, user agent, requests, first and last seen.
        #[arg(long)]
        apt_clients: bool,
        #[arg(long)]
        json: bool,
    },
    /// One host (by id or hostname): latest inventory and recent changes.
    Show {
        host: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a host: its next signed request is refused (403).
    Revoke {
        host: String,
        /// Why, for the audit log.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Enrollment tokens.
    #[command(subcommand)]
    Token(TokenCmd),
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create a token and print it (only its sha256 is stored).
    Create {
        /// Ring the enrolled hosts join.
        #[arg(long)]
        ring: Option<String>,
        /// Labels for the enrolled hosts: k=v,k2=v2.
        #[arg(long, default_value = "")]
        labels: String,
        /// Lifetime: 30m, 12h, 7d.
        #[arg(long, default_value = "7d")]
        expires: String,
        /// How many hosts may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        #[arg(long)]
        json: bool,
    },
    /// Tokens with their expiry and uses (never the secret).
    List {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(g: &Globals, cmd: &HostsCmd) -> anyhow::Result<ExitCode> {
    use patchward::fleet::{hosts, tokens};
    let (config, db) = open(g)?;
    let now = SystemClock.now();
    match cmd {
        HostsCmd::List {
            apt_clients: true,
            json,
        } => {
            let rows = db.read_blocking(patchward::apt::clients::list)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!(
                    "no machine has fetched a ring's apt index yet (apt clients are written \
                     every few seconds)"
                );
            } else {
                println!(
                    "{:<40} {:<10} {:<20} {:>8} {:<20} {:<20} user agent",
                    "address", "ring", "enrolled host", "requests", "first seen", "last seen"
                );
                for c in &rows {
                    println!(
                        "{:<40} {:<10} {:<20} {:>8} {:<20} {:<20} {}",
                        c.address,
                        c.ring,
                        c.host.as_deref().unwrap_or("(no agent)"),
                        c.requests,
                        timefmt::display(&c.first_seen),
                        timefmt::display(&c.last_seen),
                        c.user_agent
                    );
                }
            }
        }
        HostsCmd::List { json, .. } => {
            let rows = db.read_blocking(|c| hosts::list(c, now))?;
            // The ring the scheduler puts each host in, not only the one assigned at
            // enrollment (a host without one is in a labelled or the catch-all ring).
            let ring_of = |h: &hosts::HostSummary| {
                config
                    .policy
                    .ring_name_of(&h.id, h.ring.as_deref(), &h.labels)
                    .map(str::to_owned)
            };
            if *json {
                let mut out = Vec::with_capacity(rows.len());
                for h in &rows {
                    let mut v = serde_json::to_value(h)?;
                    v["effective_ring"] = ring_of(h).into();
                    out.push(v);
                }
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "{:<20} {:<24} {:<10} {:<16} {:<20} status",
                    "id", "hostname", "ring", "os", "last seen"
                );
                for h in &rows {
                    let status = if h.revoked_at.is_some() {
                        "revoked"
                    } else if h.stale {
                        "STALE"
                    } else {
                        "ok"
                    };
                    println!(
                        "{:<20} {:<24} {:<10} {:<16} {:<20} {status}",
                        h.id,
                        h.hostname,
                        ring_of(h).unwrap_or_else(|| "(none)".into()),
                        h.os.as_deref().unwrap_or("-"),
                        timefmt::display_or(h.last_seen.as_deref(), "never"),
                    );
                }
            }
        }
        HostsCmd::Show { host, json } => {
            let d = db.read_blocking(|c| hosts::show(c, host, now))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                let s = &d.summary;
                println!("host        {} ({})", s.hostname, s.id);
                let ring = config
                    .policy
                    .ring_name_of(&s.id, s.ring.as_deref(), &s.labels)
                    .unwrap_or("(none)");
                println!("ring        {ring}");
                println!("labels      {}", serde_json::to_string(&s.labels)?);
                println!("key id      {}", d.public_key_id);
                println!("enrolled    {}", timefmt::display(&s.enrolled_at));
                println!(
                    "last seen   {}{}",
                    timefmt::display_or(s.last_seen.as_deref(), "never"),
                    if s.stale { " (STALE)" } else { "" }
                );
                if let Some(r) = &s.revoked_at {
                    println!("revoked     {}", timefmt::display(r));
                }
                if let Some(i) = &d.inventory {
                    println!("os          {} {}", i.os.id, i.os.version_id);
                    println!("kernel      {} ({})", i.kernel, i.arch);
                    println!("addresses   {}", i.addresses.join(" "));
                    println!("packages    {}", i.packages.as_ref().map_or(0, Vec::len));
                    println!("uptime      {} s", i.uptime_s);
                    println!("reboot req. {}", i.reboot_required);
                }
                println!("recent changes:");
                for c in &d.recent_changes {
                    println!("  {}  {}", timefmt::display(&c.at), c.fields.join(", "));
                }
            }
        }
        HostsCmd::Revoke { host, reason } => {
            let actor = invoking_user();
            let id = db.write_blocking(|tx| hosts::revoke(tx, host, now, &actor, reason))?;
            println!("revoked host {id}; its next request will be refused");
        }
        HostsCmd::Token(TokenCmd::Create {
            ring,
            labels,
            expires,
            uses,
            json,
        }) => {
            let new = tokens::NewToken {
                ring: ring.clone(),
                labels: patchward::fleet::parse_labels(labels)?,
                expires_in: tokens::parse_duration(expires)?,
                max_uses: *uses,
            };
            let actor = invoking_user();
            let t = db.write_blocking(|tx| tokens::create(tx, now, &actor, &new))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                println!("{}", t.token);
                eprintln!(
                    "token {} valid until {} for {} enrollment(s); it is shown only now",
                    t.id,
                    timefmt::display(&t.expires_at.to_string()),
                    t.max_uses
                );
            }
        }
        HostsCmd::Token(TokenCmd::List { json }) => {
            let rows = db.read_blocking(tokens::list)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:>4} {:<10} {:<26} {:>9} labels",
                    "id", "ring", "expires", "uses"
                );
                for t in &rows {
                    println!(
                        "{:>4} {:<10} {:<26} {:>4}/{:<4} {}",
                        t.id,
                        t.ring.as_deref().unwrap_or("-"),
                        timefmt::display(&t.expires_at.to_string()),
                        t.uses,
                        t.max_uses,
                        t.labels
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
