//! `patchward legacy add|import|list|show|remove`: the registry's commands. Parsing is
//! clap's; each handler opens one transaction (writes) or one read, calls
//! [`super::registry`] or [`super::hosts`], and prints text or `--json`.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::PathBuf;

use clap::Args;
use jiff::Timestamp;
use jiff::civil::Date;

use super::decisions::AcceptanceStatus;
use super::hosts::{self, LegacyHostView};
use super::registry::{self, MAX_IMPORT_BYTES, NewHost};
use super::{HostRef, LegacyError, active};
use crate::config::Config;
use crate::db::Db;
use crate::timefmt::{display, display_ts};

/// `patchward legacy add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// Host name (a DNS-style name; stored lower case).
    pub name: String,
    /// IP address(es), comma-separated (1 to 16).
    #[arg(long = "address", value_delimiter = ',', required = true)]
    pub addresses: Vec<String>,
    /// Catalog product (e.g. windows-server, debian; see `legacy catalog`).
    #[arg(long)]
    pub product: String,
    /// Release cycle (e.g. 2012-r2, "2012 R2", 10).
    #[arg(long)]
    pub cycle: String,
    /// Who looks after it.
    #[arg(long, default_value = "")]
    pub owner: String,
    #[arg(long, default_value = "")]
    pub notes: String,
    /// The catalog does not know this product or cycle (an appliance): register it
    /// anyway, with state `unknown`.
    #[arg(long)]
    pub unlisted: bool,
}

/// `patchward legacy import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// CSV file: header row with name,addresses,product,cycle[,owner,notes,unlisted].
    pub file: PathBuf,
}

/// `patchward legacy list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long)]
    pub json: bool,
}

/// `patchward legacy show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Agentless name, or an enrolled host's id or hostname.
    pub host: String,
    #[arg(long)]
    pub json: bool,
}

/// `patchward legacy remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The agentless host's name.
    pub name: String,
    /// Why, for the audit log (required).
    #[arg(long)]
    pub reason: String,
}

fn write_out(out: &mut dyn Write, text: &str) -> Result<(), LegacyError> {
    out.write_all(text.as_bytes())
        .map_err(|e| LegacyError::Refused(format!("cannot write the output: {e}")))
}

fn json<T: serde::Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("views serialise");
    s.push('\n');
    s
}

pub fn add(
    db: &Db,
    now: Timestamp,
    a: &AddArgs,
    actor: &str,
    out: &mut dyn Write,
) -> Result<(), LegacyError> {
    let req = NewHost {
        name: a.name.clone(),
        addresses: a.addresses.clone(),
        product: a.product.clone(),
        cycle: a.cycle.clone(),
        owner: a.owner.clone(),
        notes: a.notes.clone(),
        unlisted: a.unlisted,
    };
    let h = db.write_blocking(|tx| {
        let catalog = active::load(tx)?.catalog;
        registry::add(tx, now, &catalog, &req, actor)
    })?;
    write_out(
        out,
        &format!(
            "registered legacy host {} ({} {}); see `patchward legacy show {}`\n",
            h.name, h.product, h.cycle, h.name
        ),
    )
}

pub fn import(
    db: &Db,
    now: Timestamp,
    a: &ImportArgs,
    actor: &str,
    out: &mut dyn Write,
) -> Result<(), LegacyError> {
    let name = a.file.display().to_string();
    let cannot = |e: std::io::Error| LegacyError::Refused(format!("cannot read {name}: {e}"));
    let mut bytes = Vec::new();
    std::fs::File::open(&a.file)
        .map_err(cannot)?
        .take(MAX_IMPORT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    let n = db.write_blocking(|tx| {
        let catalog = active::load(tx)?.catalog;
        registry::import(tx, now, &catalog, &name, &bytes, actor)
    })?;
    write_out(out, &format!("imported {n} legacy host(s) from {name}\n"))
}

pub fn list(
    db: &Db,
    config: &Config,
    now: Timestamp,
    a: &ListArgs,
    out: &mut dyn Write,
) -> Result<(), LegacyError> {
    let v = db.read_blocking(|c| hosts::list(c, now, &config.legacy))?;
    if a.json {
        return write_out(out, &json(&v));
    }
    write_out(out, &table(&v, active::day(now)))
}

pub fn show(
    db: &Db,
    config: &Config,
    now: Timestamp,
    a: &ShowArgs,
    out: &mut dyn Write,
) -> Result<(), LegacyError> {
    let v = db.read_blocking(|c| hosts::show(c, &a.host, now, &config.legacy))?;
    if a.json {
        return write_out(out, &json(&v));
    }
    write_out(out, &detail(&v, active::day(now)))
}

pub fn remove(
    db: &Db,
    now: Timestamp,
    a: &RemoveArgs,
    actor: &str,
    out: &mut dyn Write,
) -> Result<(), LegacyError> {
    let name = db.write_blocking(|tx| registry::remove(tx, now, &a.name, &a.reason, actor))?;
    write_out(
        out,
        &format!("removed legacy host {name} (with its include and risk acceptance)\n"),
    )
}

fn kind(h: &HostRef) -> &'static str {
    match h {
        HostRef::Agent { .. } => "agent",
        HostRef::Agentless { .. } => "agentless",
    }
}

/// `2024-06-30 (890 days ago)`, `2027-01-12 (in 36 days)`, `-` when undated.
pub fn eol_text(eol: Option<Date>, today: Date) -> String {
    let Some(d) = eol else {
        return "-".to_string();
    };
    let days = (d - today).get_days();
    match days {
        0 => format!("{d} (today)"),
        1 => format!("{d} (tomorrow)"),
        -1 => format!("{d} (yesterday)"),
        n if n > 0 => format!("{d} (in {n} days)"),
        n => format!("{d} ({} days ago)", -n),
    }
}

/// `accepted until ...`, `expired ...`, `missing`.
pub fn acceptance_text(v: &LegacyHostView) -> String {
    match (&v.acceptance, v.acceptance_status) {
        (Some(a), AcceptanceStatus::Accepted) => format!("accepted until {}", display_ts(a.until)),
        (Some(a), AcceptanceStatus::Expired) => format!("expired {}", display_ts(a.until)),
        _ => "missing".to_string(),
    }
}

fn table(v: &[LegacyHostView], today: Date) -> String {
    if v.is_empty() {
        return "no legacy hosts: every enrolled host's OS is supported and none is \
                registered by hand (`patchward legacy add`)\n"
            .to_string();
    }
    let rows: Vec<[String; 7]> = v
        .iter()
        .map(|h| {
            [
                h.name.clone(),
                kind(&h.host).to_string(),
                h.lifecycle.state.to_string(),
                format!("{} {}", h.product, h.cycle).trim().to_string(),
                eol_text(h.lifecycle.eol_date, today),
                acceptance_text(h),
                if h.include.is_some() { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    let head = [
        "NAME",
        "KIND",
        "STATE",
        "PRODUCT",
        "END OF LIFE",
        "ACCEPTANCE",
        "INCLUDED",
    ];
    let mut width = head.map(str::len);
    for r in &rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut s = String::new();
    let line = |s: &mut String, cells: &[&str]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            let _ = write!(l, "{c:<w$}  ", w = width[i]);
        }
        let _ = writeln!(s, "{}", l.trim_end());
    };
    line(&mut s, &head);
    for r in &rows {
        line(&mut s, &r.iter().map(String::as_str).collect::<Vec<_>>());
    }
    s
}

fn detail(h: &LegacyHostView, today: Date) -> String {
    let mut s = String::new();
    let l = &h.lifecycle;
    let _ = writeln!(s, "name:         {}", h.name);
    let _ = writeln!(s, "kind:         {}", kind(&h.host));
    if let HostRef::Agent { id, .. } = &h.host {
        let _ = writeln!(s, "host id:      {id}");
    }
    let _ = writeln!(s, "addresses:    {}", h.addresses.join(", "));
    let title = l.title.as_deref().unwrap_or(&h.product);
    let codename = l
        .codename
        .as_deref()
        .map(|c| format!(" ({c})"))
        .unwrap_or_default();
    let _ = writeln!(s, "product:      {title} {}{codename}", h.cycle);
    let _ = writeln!(s, "state:        {}", l.state);
    let _ = writeln!(s, "security end: {}", eol_text(l.security_end, today));
    let _ = writeln!(s, "end of life:  {}", eol_text(l.eol_date, today));
    let _ = writeln!(
        s,
        "rollouts:     {}",
        if matches!(h.host, HostRef::Agentless { .. }) {
            "never offered (no agent: nothing can install patches on it)".to_string()
        } else if h.excluded {
            format!(
                "not offered ({} and not included; `patchward legacy include` opts it in)",
                l.state
            )
        } else {
            "offered".to_string()
        }
    );
    match &h.include {
        Some(i) => {
            let _ = writeln!(
                s,
                "included:     yes, by {} at {}: {}",
                i.actor,
                display(&i.at),
                i.reason
            );
        }
        None => {
            let _ = writeln!(s, "included:     no");
        }
    }
    let _ = writeln!(s, "acceptance:   {}", acceptance_text(h));
    if let Some(a) = &h.acceptance {
        let _ = writeln!(
            s,
            "              by {} at {}: {} (controls: {})",
            a.actor,
            display_ts(a.accepted_at),
            a.reason,
            a.controls.join(", ")
        );
    }
    if let Some(r) = &h.ring {
        let _ = writeln!(s, "ring:         {r}");
    }
    if let Some(t) = &h.last_seen {
        let _ = writeln!(s, "last seen:    {}", display(t));
    }
    if !h.owner.is_empty() {
        let _ = writeln!(s, "owner:        {}", h.owner);
    }
    if let (Some(at), Some(by)) = (&h.added_at, &h.added_by) {
        let _ = writeln!(s, "added:        {} by {by}", display(at));
    }
    if !h.notes.is_empty() {
        let _ = writeln!(s, "notes:");
        for line in h.notes.lines() {
            let _ = writeln!(s, "  {line}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_of_life_dates_say_how_far_they_are() {
        let today = jiff::civil::date(2026, 12, 7);
        let d = |y, m, day| Some(jiff::civil::date(y, m, day));
        assert_eq!(eol_text(None, today), "-");
        assert_eq!(eol_text(d(2026, 12, 7), today), "2026-12-07 (today)");
        assert_eq!(eol_text(d(2026, 12, 8), today), "2026-12-08 (tomorrow)");
        assert_eq!(eol_text(d(2026, 12, 6), today), "2026-12-06 (yesterday)");
        assert_eq!(eol_text(d(2027, 1, 12), today), "2027-01-12 (in 36 days)");
        assert_eq!(eol_text(d(2024, 6, 30), today), "2024-06-30 (890 days ago)");
    }
}
