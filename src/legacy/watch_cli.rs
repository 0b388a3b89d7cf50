//! `patchward legacy monitor add-port|remove-port|status` and `patchward legacy events`:
//! the monitor from the command line. Writes go through [`super::watch`] (one
//! transaction, audited); reads are one snapshot each.

use std::fmt::Write as _;
use std::io::Write;

use clap::{Args, Subcommand};
use jiff::Timestamp;
use serde::Serialize;

use super::watch::{self, HostWatch, MonitorView};
use super::{HostRef, LegacyError};
use crate::config::Config;
use crate::db::Db;
use crate::db::legacy_monitor as mq;
use crate::timefmt::{display, display_or};

/// The most events `legacy events` prints at once.
pub const MAX_EVENTS: usize = 1000;

/// `patchward legacy monitor`.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    #[command(subcommand)]
    pub cmd: MonitorCmd,
}

#[derive(Debug, Subcommand)]
pub enum MonitorCmd {
    /// Watch a TCP port of a host besides its `in` flows' ports.
    AddPort(AddPortArgs),
    /// Stop watching a port added with add-port.
    RemovePort(RemovePortArgs),
    /// Monitor state of every legacy host (or one), with its watched ports.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct AddPortArgs {
    /// Agentless name, or an enrolled host's id or hostname.
    pub host: String,
    /// TCP port (1-65535).
    pub port: u16,
    /// Read and hash the first line the server sends (default: on for 21, 22, 25, 587).
    #[arg(long, conflicts_with = "no_banner")]
    pub banner: bool,
    /// Do not read a banner on this port.
    #[arg(long)]
    pub no_banner: bool,
}

#[derive(Debug, Args)]
pub struct RemovePortArgs {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this host.
    pub host: Option<String>,
    #[arg(long)]
    pub json: bool,
}

/// `patchward legacy events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    pub host: String,
    /// At most this many, newest first (1 to 1000).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=MAX_EVENTS as i64))]
    pub limit: u16,
    #[arg(long)]
    pub json: bool,
}

fn write_out(out: &mut dyn Write, text: &str) -> Result<(), LegacyError> {
    out.write_all(text.as_bytes())
        .map_err(|e| LegacyError::Refused(format!("cannot write the output: {e}")))
}

fn json<T: Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("views serialise");
    s.push('\n');
    s
}

pub fn run(
    db: &Db,
    config: &Config,
    now: Timestamp,
    a: &MonitorArgs,
    actor: &str,
    out: &mut dyn Write,
) -> Result<(), LegacyError> {
    match &a.cmd {
        MonitorCmd::AddPort(a) => add_port(db, config, now, a, actor, out),
        MonitorCmd::RemovePort(a) => {
            let h = watch::remove_port(db, now, &a.host, a.port, actor)?;
            write_out(
                out,
                &format!(
                    "port {} of {} is no longer watched (unless a flow names it)\n",
                    a.port,
                    h.display_name()
                ),
            )
        }
        MonitorCmd::Status(a) => status(db, config, now, a, out),
    }
}

fn add_port(
    db: &Db,
    config: &Config,
    now: Timestamp,
    a: &AddPortArgs,
    actor: &str,
    out: &mut dyn Write,
) -> Result<(), LegacyError> {
    let banner = match (a.banner, a.no_banner) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    let h = watch::add_port(db, now, &a.host, a.port, banner, actor)?;
    let plan = db.read_blocking(|c| watch::plan(c, now, &config.legacy))?;
    let mine = plan.iter().find(|w| w.key == h.key());
    let on = mine
        .and_then(|w| w.ports.iter().find(|p| p.port == a.port))
        .is_some_and(|p| p.banner);
    let mut text = format!(
        "watching port {} of {} (banner {}); the monitor probes it from its next cycle\n",
        a.port,
        h.display_name(),
        if on { "on" } else { "off" }
    );
    match mine {
        None => {
            let _ = writeln!(
                text,
                "note: {} is not a legacy host now: the monitor watches legacy hosts only, \
                 so this port is probed once it is one",
                h.display_name()
            );
        }
        Some(w) if w.addr.is_none() => {
            let _ = writeln!(
                text,
                "note: {}",
                watch::unwatched_hint(w).unwrap_or_default()
            );
        }
        Some(_) => {}
    }
    write_out(out, &text)
}

/// One line of `monitor status --json`.
#[derive(Debug, Serialize)]
struct StatusRow<'a> {
    key: &'a str,
    name: &'a str,
    address: Option<String>,
    #[serde(flatten)]
    view: MonitorView,
    /// Why it is unwatched and what to do.
    hint: Option<String>,
}

fn status(
    db: &Db,
    config: &Config,
    now: Timestamp,
    a: &StatusArgs,
    out: &mut dyn Write,
) -> Result<(), LegacyError> {
    let (plan, states, only) = db.read_blocking(|c| {
        let only: Option<HostRef> = a
            .host
            .as_deref()
            .map(|h| super::resolve(c, h))
            .transpose()?;
        let plan = watch::plan(c, now, &config.legacy)?;
        let states = mq::states_all(c)?;
        Ok::<_, LegacyError>((plan, states, only))
    })?;
    let plan: Vec<HostWatch> = match &only {
        None => plan,
        Some(h) => {
            let one: Vec<HostWatch> = plan.into_iter().filter(|w| w.key == h.key()).collect();
            if one.is_empty() {
                return Err(LegacyError::Refused(format!(
                    "{} is not a legacy host (its OS is supported), so the monitor does not \
                     watch it; see `patchward legacy show {}`",
                    h.display_name(),
                    h.display_name()
                )));
            }
            one
        }
    };
    let mut states: std::collections::HashMap<String, mq::StateRow> =
        states.into_iter().map(|s| (s.host.clone(), s)).collect();
    let rows: Vec<StatusRow<'_>> = plan
        .iter()
        .map(|w| StatusRow {
            key: &w.key,
            name: &w.display,
            address: w.addr.map(|a| a.to_string()),
            view: watch::view_of(w, states.remove(&w.key)),
            hint: watch::unwatched_hint(w),
        })
        .collect();
    if a.json {
        return write_out(out, &json(&rows));
    }
    if rows.is_empty() {
        return write_out(
            out,
            "no legacy hosts; register one with `patchward legacy add`\n",
        );
    }
    let mut text = format!(
        "{:<24} {:<10} {:<20} {:<20} {:<16} PORTS\n",
        "HOST", "STATE", "SINCE", "LAST CYCLE", "ADDRESS"
    );
    for r in &rows {
        let ports: Vec<String> = r
            .view
            .ports
            .iter()
            .map(|p| {
                let mut s = p.port.to_string();
                if p.source == "added" {
                    s.push_str("(added)");
                }
                if p.banner {
                    s.push_str("[banner]");
                }
                s
            })
            .collect();
        let _ = writeln!(
            text,
            "{:<24} {:<10} {:<20} {:<20} {:<16} {}",
            r.name,
            r.view.state,
            display_or(r.view.since.as_deref(), "-"),
            display_or(r.view.last_cycle.as_deref(), "-"),
            r.address.as_deref().unwrap_or("-"),
            if ports.is_empty() {
                "-".to_string()
            } else {
                ports.join(",")
            }
        );
        if let Some(h) = &r.hint {
            let _ = writeln!(text, "  {h}");
        }
    }
    write_out(out, &text)
}

/// One event of `legacy events --json`.
#[derive(Debug, Serialize)]
struct EventOut {
    id: i64,
    at: String,
    kind: String,
    text: String,
    detail: serde_json::Value,
}

pub fn events(db: &Db, a: &EventsArgs, out: &mut dyn Write) -> Result<(), LegacyError> {
    let (h, rows) = db.read_blocking(|c| {
        let h = super::resolve(c, &a.host)?;
        let rows = mq::events_of(c, h.key(), usize::from(a.limit))?;
        Ok::<_, LegacyError>((h, rows))
    })?;
    if a.json {
        let v: Vec<EventOut> = rows
            .into_iter()
            .map(|e| EventOut {
                detail: serde_json::from_str(&e.detail).unwrap_or(serde_json::Value::Null),
                id: e.id,
                at: e.at,
                kind: e.kind,
                text: e.text,
            })
            .collect();
        return write_out(out, &json(&v));
    }
    if rows.is_empty() {
        return write_out(out, &format!("no events for {} yet\n", h.display_name()));
    }
    let mut text = String::new();
    for e in &rows {
        let _ = writeln!(text, "{}  {:<15} {}", display(&e.at), e.kind, e.text);
    }
    write_out(out, &text)
}
