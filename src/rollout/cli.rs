//! The admin commands for approvals, rollouts, windows and explanations
//! (`patchward approve|decline|defer|expedite|rollout|windows|explain`). Parsing is
//! clap's; every command opens the appliance's database, calls `rollout`, and prints.

use std::fmt::Write as _;

use clap::{Args, Subcommand};
use jiff::Timestamp;

use super::approvals::{self, Control, Decided};
use super::engine;
use super::{RolloutError, World};
use crate::config::Config;
use crate::db::Db;
use crate::policy::approval::Decision;
use crate::policy::{Approval, Urgency};

/// `patchward approve`.
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// Patch id (`FEED:ID` when several feeds have it).
    pub patch: String,
    /// The rings to approve it for, comma-separated [default: every ring].
    #[arg(long, value_delimiter = ',')]
    pub rings: Vec<String>,
    /// Why, for the audit log.
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// `patchward expedite`.
#[derive(Debug, Args)]
pub struct ExpediteArgs {
    /// Patch id; it must be critical or on the KEV list.
    pub patch: String,
    /// Why it cannot wait (required, audited).
    #[arg(long)]
    pub reason: String,
    /// The rings [default: every ring].
    #[arg(long, value_delimiter = ',')]
    pub rings: Vec<String>,
}

/// `patchward decline`.
#[derive(Debug, Args)]
pub struct DeclineArgs {
    pub patch: String,
    #[arg(long)]
    pub reason: String,
}

/// `patchward defer`.
#[derive(Debug, Args)]
pub struct DeferArgs {
    pub patch: String,
    /// Until when: a date (2027-01-15, meaning 00:00 UTC that day), a date and time in
    /// UTC (2027-01-15T08:00) or RFC 3339 with an offset (2027-01-15T09:00:00+01:00).
    #[arg(long, value_parser = crate::timefmt::parse_instant)]
    pub until: Timestamp,
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// `patchward rollout ...`.
#[derive(Debug, Subcommand)]
pub enum RolloutCmd {
    /// Rollouts with their state and per-ring progress.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One rollout: its approval, each ring's hosts and gate.
    Show {
        patch: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop new offers until resumed.
    Halt {
        patch: String,
        #[arg(long)]
        reason: String,
    },
    /// Offer again; failures so far are acknowledged (no longer count for the brake).
    Resume {
        patch: String,
        #[arg(long)]
        reason: String,
    },
    /// Stop for good; jobs not yet started are cancelled.
    Abort {
        patch: String,
        #[arg(long)]
        reason: String,
    },
    /// Undo it: stop for good, cancel jobs not yet started, and give every host that
    /// installed it a rollback job (run at its next check-in, windows or not).
    Rollback {
        patch: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
}

/// `patchward windows ...`.
#[derive(Debug, Subcommand)]
pub enum WindowsCmd {
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

/// `patchward explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Host id or hostname.
    #[arg(long)]
    pub host: String,
    /// Only this patch (default: every patch that applies to the host).
    #[arg(long)]
    pub patch: Option<String>,
    #[arg(long)]
    pub json: bool,
}

fn rings_or_all(config: &Config, rings: &[String]) -> Vec<String> {
    if rings.is_empty() {
        config
            .policy
            .ring_names()
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        rings.to_vec()
    }
}

fn print_decided(d: &Decided) {
    let what = match &d.approval {
        Approval::Approved { rings, expedite } => format!(
            "approved for {}{}",
            rings.join(", "),
            if expedite.is_some() {
                " (expedited)"
            } else {
                ""
            }
        ),
        Approval::Declined { .. } => "declined".into(),
        Approval::Deferred { until } => {
            format!("deferred until {}", crate::timefmt::display_ts(*until))
        }
        Approval::New => "new".into(),
    };
    println!("{}: {what}", d.patch);
    for s in &d.superseded {
        println!("  the rollout of {s} is superseded by it");
    }
}

/// A decision by hand (`approve`, `expedite`, `decline`, `defer`).
fn decide(
    db: &Db,
    config: &Config,
    now: Timestamp,
    patch: &str,
    decision: Decision,
    actor: &str,
    reason: &str,
) -> Result<(), RolloutError> {
    let d = db.write_blocking(|tx| {
        approvals::decide(tx, now, &config.policy, patch, &decision, actor, reason)
    })?;
    print_decided(&d);
    Ok(())
}

pub fn approve(
    db: &Db,
    config: &Config,
    now: Timestamp,
    a: &ApproveArgs,
    actor: &str,
) -> Result<(), RolloutError> {
    let decision = Decision::Approve {
        rings: rings_or_all(config, &a.rings),
        expedite: None,
    };
    decide(db, config, now, &a.patch, decision, actor, &a.reason)
}

pub fn expedite(
    db: &Db,
    config: &Config,
    now: Timestamp,
    a: &ExpediteArgs,
    actor: &str,
) -> Result<(), RolloutError> {
    let decision = Decision::Approve {
        rings: rings_or_all(config, &a.rings),
        expedite: Some(a.reason.clone()),
    };
    decide(db, config, now, &a.patch, decision, actor, &a.reason)
}

pub fn decline(
    db: &Db,
    config: &Config,
    now: Timestamp,
    a: &DeclineArgs,
    actor: &str,
) -> Result<(), RolloutError> {
    let decision = Decision::Decline {
        reason: a.reason.clone(),
    };
    decide(db, config, now, &a.patch, decision, actor, &a.reason)
}

pub fn defer(
    db: &Db,
    config: &Config,
    now: Timestamp,
    a: &DeferArgs,
    actor: &str,
) -> Result<(), RolloutError> {
    let decision = Decision::Defer { until: a.until };
    decide(db, config, now, &a.patch, decision, actor, &a.reason)
}

/// One ring's line in `rollout list|show`.
#[derive(Debug, serde::Serialize)]
pub struct RingView {
    pub ring: String,
    pub hosts: usize,
    pub succeeded: usize,
    pub in_progress: usize,
    pub failed: usize,
    pub gate: crate::policy::GateStatus,
}

/// One rollout in `rollout list|show`.
#[derive(Debug, serde::Serialize)]
pub struct RolloutView {
    pub patch: String,
    pub title: String,
    pub state: String,
    pub note: String,
    pub approval: Approval,
    pub started_at: String,
    pub rings: Vec<RingView>,
}

/// Every rollout (only `only`, a `FEED:ID`, when given) with each approved ring's
/// progress and gate: what `rollout list|show` prints and the web page shows.
pub fn views(
    world: &World,
    policy: &crate::policy::Policy,
    now: Timestamp,
    only: Option<&str>,
) -> Result<Vec<RolloutView>, RolloutError> {
    use crate::policy::gate::HostOutcome;
    let mut out = Vec::new();
    for p in &world.patches {
        let Some(r) = world.rollout(p) else { continue };
        if only.is_some_and(|k| k != p.key()) {
            continue;
        }
        let approval = world.approval(p);
        let (rings, expedited) = match approval.effective(now) {
            Approval::Approved { rings, expedite } => (rings, expedite.is_some()),
            _ => (vec![], false),
        };
        let mut rv = Vec::new();
        for ring in &rings {
            let res = engine::ring_results(world, policy, p, ring);
            let base = policy
                .rings
                .iter()
                .find(|x| &x.name == ring)
                .map(|x| x.gate.clone())
                .unwrap_or_default();
            let rules = policy
                .classes
                .get(p.entry.kind)
                .gate_rules(&base, expedited);
            let count = |f: &dyn Fn(&HostOutcome) -> bool| {
                res.hosts.iter().filter(|h| f(&h.outcome)).count()
            };
            rv.push(RingView {
                ring: ring.clone(),
                hosts: res.hosts.len(),
                succeeded: count(&|o| matches!(o, HostOutcome::Succeeded { .. })),
                in_progress: count(&|o| matches!(o, HostOutcome::InProgress { .. })),
                failed: count(&|o| {
                    matches!(
                        o,
                        HostOutcome::Failed { .. } | HostOutcome::RolledBack { .. }
                    )
                }),
                gate: crate::policy::gate(&res, &rules, now),
            });
        }
        out.push(RolloutView {
            patch: p.key(),
            title: p.entry.title.clone(),
            state: r.state.clone(),
            note: r.note.clone(),
            approval,
            started_at: r.started_at.clone(),
            rings: rv,
        });
    }
    Ok(out)
}

fn gate_text(g: &crate::policy::GateStatus) -> String {
    use crate::policy::GateStatus;
    let list = |r: &[crate::policy::gate::GateReason]| {
        r.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    };
    match g {
        GateStatus::Passed => "gate passed".into(),
        GateStatus::Waiting { reasons } => format!("waiting: {}", list(reasons)),
        GateStatus::Halted { reasons } => format!("HALTED: {}", list(reasons)),
    }
}

/// `rollout list|show|halt|resume|abort|rollback`.
pub fn rollout(
    db: &Db,
    config: &Config,
    now: Timestamp,
    cmd: &RolloutCmd,
    actor: &str,
) -> Result<(), RolloutError> {
    let ctl = |patch: &str, what: Control, reason: &str| -> Result<(), RolloutError> {
        let cancelled =
            db.write_blocking(|tx| approvals::control(tx, now, patch, what, actor, reason))?;
        let verb = match what {
            Control::Halt => "halted",
            Control::Resume => "resumed",
            Control::Abort => "aborted",
        };
        println!("rollout of {patch} {verb}");
        for j in cancelled {
            println!("  cancelled job {j}");
        }
        Ok(())
    };
    match cmd {
        RolloutCmd::Halt { patch, reason } => ctl(patch, Control::Halt, reason),
        RolloutCmd::Resume { patch, reason } => ctl(patch, Control::Resume, reason),
        RolloutCmd::Abort { patch, reason } => ctl(patch, Control::Abort, reason),
        RolloutCmd::Rollback {
            patch,
            reason,
            json,
        } => {
            let dir = crate::appliance::DataDir::new(&config.data_dir);
            let key = crate::trust::keys::Ed25519Key::load(&dir.ed25519_key())
                .map_err(|e| RolloutError::Stored(format!("the appliance key: {e}")))?;
            let out =
                db.write_blocking(|tx| approvals::rollback(tx, now, &key, patch, actor, reason))?;
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&out).expect("serialisable")
                );
                return Ok(());
            }
            println!("rollout of {patch} rolled back");
            for j in &out.cancelled {
                println!("  cancelled job {j}");
            }
            for (h, j) in &out.rollback_jobs {
                println!("  rollback job {j} for host {h} (runs at its next check-in)");
            }
            for h in &out.still_running {
                println!(
                    "  host {h} is still installing it; run `patchward rollout rollback` again once it has finished"
                );
            }
            Ok(())
        }
        RolloutCmd::List { json } | RolloutCmd::Show { json, .. } => {
            let world = db.read_blocking(World::load)?;
            let only = match cmd {
                RolloutCmd::Show { patch, .. } => Some(world.find_patch(patch)?.key()),
                _ => None,
            };
            let v = views(&world, &config.policy, now, only.as_deref())?;
            if let (Some(k), true) = (&only, v.is_empty()) {
                return Err(RolloutError::NoRollout(k.clone()));
            }
            if *json {
                let text = if only.is_some() {
                    serde_json::to_string_pretty(&v[0])
                } else {
                    serde_json::to_string_pretty(&v)
                };
                println!("{}", text.map_err(|e| RolloutError::Stored(e.to_string()))?);
                return Ok(());
            }
            let mut s = String::new();
            for r in &v {
                let _ = writeln!(s, "{}  {}  ({})", r.patch, r.state, r.note);
                for ring in &r.rings {
                    let _ = writeln!(
                        s,
                        "  {:<10} {:>3} hosts  {:>3} ok  {:>3} running  {:>3} failed  {}",
                        ring.ring,
                        ring.hosts,
                        ring.succeeded,
                        ring.in_progress,
                        ring.failed,
                        gate_text(&ring.gate)
                    );
                }
            }
            if v.is_empty() {
                s.push_str(
                    "no rollouts; approve a patch to start one (`patchward approve PATCH`)\n",
                );
            }
            print!("{s}");
            Ok(())
        }
    }
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
    } = cmd;
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

/// `explain`.
pub fn explain(
    db: &Db,
    config: &Config,
    now: Timestamp,
    a: &ExplainArgs,
) -> Result<(), RolloutError> {
    let (host, mut world, policy) = db.read_blocking(|c| {
        let host = crate::fleet::hosts::find(c, &a.host)?;
        let world = World::load(c)?;
        let policy = super::windows::effective(c, &config.policy)?.policy;
        Ok::<_, RolloutError>((host, world, policy))
    })?;
    db.read_blocking(|c| world.load_all_jobs(c))?;
    let patch = match &a.patch {
        Some(p) => Some(world.find_patch(p)?.clone()),
        None => None,
    };
    let lines = engine::explain(&world, &policy, &host.id, patch.as_ref(), now);
    if a.json {
        let text = serde_json::to_string_pretty(&lines)
            .map_err(|e| RolloutError::Stored(e.to_string()))?;
        println!("{text}");
        return Ok(());
    }
    println!("host {} ({})", host.hostname, host.id);
    if lines.is_empty() {
        println!("  no patch in the current catalogs applies to this host");
    }
    for l in lines {
        println!("  {}:{}  {}", l.feed, l.patch, l.sentence);
    }
    Ok(())
}
