//! The window commands (`patchward windows add|remove|list|next`): the same
//! `rollout::windows` functions as the Windows page, so an entry added from a script is
//! checked against the effective policy and audited exactly like one added on the page.

use clap::{Args, Subcommand};
use jiff::Timestamp;

use super::RolloutError;
use crate::config::Config;
use crate::db::Db;
use crate::policy::Urgency;

/// `patchward windows add`: one entry, with the Windows page's fields.
#[derive(Debug, Args)]
pub struct WindowAddArgs {
    /// The window set (of `[policy.windows]`) it is added to.
    #[arg(long)]
    pub set: String,
    /// weekly | monthly | once | blackout
    #[arg(long)]
    pub kind: String,
    /// Only for expedited patches (the set's emergency window).
    #[arg(long)]
    pub emergency: bool,
    /// Weekly: days, comma-separated (mon,tue,...,sun).
    #[arg(long, value_delimiter = ',')]
    pub days: Vec<String>,
    /// Weekly and monthly: the local start time (22:00); once: date and time
    /// (2026-12-27T08:00), in the set's time zone.
    #[arg(long, default_value = "")]
    pub start: String,
    /// How long it lasts: 4h, 90m, "1d 2h".
    #[arg(long, default_value = "")]
    pub duration: String,
    /// Monthly: which weekday of the month, 1-4, or -1 for the last.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub nth: String,
    /// Monthly: mon ... sun.
    #[arg(long, default_value = "")]
    pub weekday: String,
    /// Monthly: days after (or before, negative) that weekday, -28..28.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub offset_days: String,
    /// Blackout: from this local date and time (2026-12-20T00:00).
    #[arg(long, default_value = "")]
    pub from: String,
    /// Blackout: until this local date and time.
    #[arg(long, default_value = "")]
    pub until: String,
    /// Blackout: why (shown with it).
    #[arg(long, default_value = "")]
    pub note: String,
    /// Why, for the audit log.
    #[arg(long)]
    pub reason: String,
    #[arg(long)]
    pub json: bool,
}

/// `patchward windows ...`.
#[derive(Debug, Subcommand)]
pub enum WindowsCmd {
    /// Adds a window entry (as the Windows page does, checked and audited).
    Add(Box<WindowAddArgs>),
    /// Removes a window entry added on the page or with `windows add` (audited).
    Remove {
        /// The entry's id (`windows list`).
        id: i64,
        /// Why, for the audit log.
        #[arg(long)]
        reason: String,
    },
    /// The window entries added on the page or with `windows add`, with any problem.
    List {
        #[arg(long)]
        json: bool,
    },
    /// The next openings of a ring's maintenance windows, in their local time.
    Next {
        #[arg(long)]
        ring: String,
        #[arg(long, default_value_t = 5)]
        count: usize,
        /// Include the emergency window (as an expedited patch may use it).
        #[arg(long)]
        expedited: bool,
    },
}

/// One entry in `windows list --json`.
#[derive(Debug, serde::Serialize)]
struct EntryJson<'a> {
    id: i64,
    set: &'a str,
    kind: &'a str,
    emergency: bool,
    /// The entry in the configuration file's TOML syntax.
    spec: &'a str,
    created_at: &'a str,
    created_by: &'a str,
    updated_at: &'a str,
    updated_by: &'a str,
    /// Why the entry is left out of the effective policy, if it is.
    problem: Option<&'a str>,
}

/// `windows add|remove|list`: the same `rollout::windows` functions as the Windows page,
/// checked against the effective policy and audited with `actor`. A running server
/// uses a change from its next minute tick.
pub fn window_entries(
    db: &Db,
    config: &Config,
    now: Timestamp,
    cmd: &WindowsCmd,
    actor: &str,
) -> Result<(), RolloutError> {
    match cmd {
        WindowsCmd::Add(a) => {
            let input = super::windows::WindowInput {
                set: a.set.clone(),
                kind: a.kind.clone(),
                emergency: a.emergency,
                days: a.days.clone(),
                start: a.start.clone(),
                duration: a.duration.clone(),
                nth: a.nth.clone(),
                weekday: a.weekday.clone(),
                offset_days: a.offset_days.clone(),
                from: a.from.clone(),
                until: a.until.clone(),
                note: a.note.clone(),
            };
            if a.reason.trim().is_empty() {
                return Err(reason_required());
            }
            let id = db.write_blocking(|tx| {
                super::windows::add(tx, now, &config.policy, &input, actor, a.reason.trim())
            })?;
            if a.json {
                println!("{}", serde_json::json!({ "id": id, "set": a.set.trim() }));
                return Ok(());
            }
            println!(
                "window entry {id} added to the set {}; a running server uses it within a minute",
                a.set.trim()
            );
            let policy = db
                .read_blocking(|c| super::windows::effective(c, &config.policy))?
                .policy;
            if let Some(ws) = policy.windows.get(a.set.trim()) {
                for o in super::windows::next_local(ws, now, 1, Urgency::Normal) {
                    println!(
                        "  the set's next opening: {} -> {}  ({})",
                        o.start, o.end, o.length
                    );
                }
            }
            Ok(())
        }
        WindowsCmd::Remove { id, reason } => {
            if reason.trim().is_empty() {
                return Err(reason_required());
            }
            db.write_blocking(|tx| super::windows::remove(tx, now, *id, actor, reason.trim()))?;
            println!("window entry {id} removed; a running server stops using it within a minute");
            Ok(())
        }
        WindowsCmd::List { json } => {
            let l = db.read_blocking(|c| super::windows::effective(c, &config.policy))?;
            if *json {
                let v: Vec<EntryJson<'_>> = l
                    .entries
                    .iter()
                    .map(|e| EntryJson {
                        id: e.row.id,
                        set: &e.row.window_set,
                        kind: &e.row.kind,
                        emergency: e.row.emergency,
                        spec: &e.row.spec,
                        created_at: &e.row.created_at,
                        created_by: &e.row.created_by,
                        updated_at: &e.row.updated_at,
                        updated_by: &e.row.updated_by,
                        problem: e.problem.as_deref(),
                    })
                    .collect();
                let text = serde_json::to_string_pretty(&v)
                    .map_err(|e| RolloutError::Stored(e.to_string()))?;
                println!("{text}");
                return Ok(());
            }
            if l.entries.is_empty() {
                println!(
                    "no window entries; the configuration's [policy.windows] apply (`patchward windows add` adds one)"
                );
            }
            for e in &l.entries {
                let spec = e.row.spec.trim().replace('\n', ", ");
                println!(
                    "{:>4}  {:<12} {:<9}{} {spec}  (by {} at {})",
                    e.row.id,
                    e.row.window_set,
                    e.row.kind,
                    if e.row.emergency { " emergency" } else { "" },
                    e.row.updated_by,
                    e.row.updated_at
                );
                if let Some(p) = &e.problem {
                    println!("      left out: {p}");
                }
            }
            Ok(())
        }
        WindowsCmd::Next { .. } => windows(db, config, now, cmd),
    }
}

fn reason_required() -> RolloutError {
    RolloutError::Window(super::windows::WindowError::Invalid {
        field: "--reason".into(),
        reason: "give a reason; it goes into the audit log".into(),
    })
}

/// `windows next`: the configured windows with those added on the web page.
pub fn windows(
    db: &Db,
    config: &Config,
    now: Timestamp,
    cmd: &WindowsCmd,
) -> Result<(), RolloutError> {
    let WindowsCmd::Next {
        ring,
        count,
        expedited,
    } = cmd
    else {
        return Err(RolloutError::Stored("not `windows next`".into()));
    };
    let policy = db
        .read_blocking(|c| super::windows::effective(c, &config.policy))?
        .policy;
    let Some(r) = policy.rings.iter().find(|r| &r.name == ring) else {
        return Err(RolloutError::Fleet(crate::fleet::FleetError::Invalid {
            field: "ring".into(),
            reason: format!(
                "{ring:?} is not a configured ring (rings: {})",
                policy.ring_names().join(", ")
            ),
        }));
    };
    let ws = policy
        .windows
        .get(&r.windows)
        .ok_or_else(|| RolloutError::Stored(format!("window set {} is missing", r.windows)))?;
    let urgency = if *expedited {
        Urgency::Expedited
    } else {
        Urgency::Normal
    };
    let openings = super::windows::next_local(ws, now, *count, urgency);
    let tz_name = ws.tz.iana_name().unwrap_or("UTC");
    println!("ring {ring}: window set {} ({tz_name})", r.windows);
    if openings.is_empty() {
        println!("  no opening within the next three years");
    }
    for o in openings {
        println!("  {} -> {}  ({})", o.start, o.end, o.length);
    }
    Ok(())
}
