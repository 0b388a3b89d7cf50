//! The admin commands for approvals, rollouts and explanations
//! (`patchward approve|decline|defer|expedite|rollout|explain`; `windows` is in
//! `windows_cli`, what `rollout list|show` prints in `views`). Parsing is
//! clap's; every command opens the appliance's database, calls `rollout`, and prints.

use std::fmt::Write as _;

use clap::{Args, Subcommand};
use jiff::Timestamp;

use super::approvals::{self, Control, Decided};
use super::engine;
use super::views::{print_views, unfinished, views};
use super::{RolloutError, World};
use crate::config::Config;
use crate::db::Db;
use crate::fleet::standing::Standing;
use crate::policy::Approval;
use crate::policy::approval::Decision;

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
    /// Rollouts in progress (active or halted) with their per-ring progress.
    List {
        #[arg(long)]
        json: bool,
        /// Also the finished ones (completed, aborted, superseded, rolled back).
        #[arg(long)]
        all: bool,
    },
    /// One rollout: its approval, each ring's gate and its hosts by state, by name.
    Show {
        patch: String,
        #[arg(long)]
        json: bool,
        /// Only hosts in this state, all of them: failed, rolled_back,
        /// awaiting_reboot, running, installed, not_started.
        #[arg(long)]
        state: Option<String>,
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
    if matches!(d.approval, Approval::Approved { .. }) {
        for w in no_host_warnings(db, config, now, Some(&d.patch))? {
            eprintln!("warning: {w}");
        }
    }
    Ok(())
}

/// A warning for each approved patch (only `only`, a `FEED:ID`, when given) whose
/// selectors match no enrolled host (`approve`, `expedite` and `patches list` print
/// them).
pub fn no_host_warnings(
    db: &Db,
    config: &Config,
    now: Timestamp,
    only: Option<&str>,
) -> Result<Vec<String>, RolloutError> {
    db.read_blocking(|conn| {
        let world = World::load_decisions(conn)?;
        let approved: Vec<&super::Patch> = world
            .patches
            .iter()
            .filter(|p| only.is_none_or(|k| k == p.key()))
            .filter(|p| matches!(world.approval(p).effective(now), Approval::Approved { .. }))
            .collect();
        if approved.is_empty() {
            return Ok(vec![]);
        }
        let planner = super::planner::Planner::new();
        // Loads the index with the hosts' legacy end-of-life flags as of `now`.
        planner.warm(conn, &config.policy, now)?;
        let cov = super::coverage::coverage(conn, &config.policy, &planner, &approved)?;
        Ok(approved
            .iter()
            .zip(&cov)
            .filter_map(|(p, c)| super::coverage::no_host_warning(&world, p, c, now))
            .collect())
    })
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
        RolloutCmd::List { json, all } => {
            let world = db.read_blocking(World::load)?;
            let mut v = views(&world, &config.policy, now, None)?;
            let finished = v.iter().filter(|r| !unfinished(&r.state)).count();
            if !*all {
                v.retain(|r| unfinished(&r.state));
            }
            if *json {
                let text = serde_json::to_string_pretty(&v)
                    .map_err(|e| RolloutError::Stored(e.to_string()))?;
                println!("{text}");
                return Ok(());
            }
            let mut s = print_views(&v, &world, false, None);
            if v.is_empty() && finished == 0 {
                s.push_str(
                    "no rollouts; approve a patch to start one (`patchward approve PATCH`)\n",
                );
            } else if !*all && finished > 0 {
                let _ = writeln!(
                    s,
                    "{finished} finished rollout(s) (completed, aborted, superseded, rolled back) not shown; --all lists them"
                );
            }
            print!("{s}");
            Ok(())
        }
        RolloutCmd::Show { patch, json, state } => {
            let state = match state.as_deref() {
                None => None,
                Some(x) => Some(
                    Standing::ALL
                        .into_iter()
                        .find(|s| s.as_str() == x)
                        .ok_or_else(|| {
                            RolloutError::Fleet(crate::fleet::FleetError::Invalid {
                                field: "--state".into(),
                                reason: format!(
                                    "{x:?} is not a host state (one of: {})",
                                    Standing::ALL.map(Standing::as_str).join(", ")
                                ),
                            })
                        })?,
                ),
            };
            let world = db.read_blocking(World::load)?;
            let key = world.find_patch(patch)?.key();
            let mut v = views(&world, &config.policy, now, Some(&key))?;
            if v.is_empty() {
                return Err(RolloutError::NoRollout(key));
            }
            if let Some(st) = state {
                for ring in &mut v[0].rings {
                    ring.members.retain(|m| m.state == st);
                }
            }
            if *json {
                let text = serde_json::to_string_pretty(&v[0])
                    .map_err(|e| RolloutError::Stored(e.to_string()))?;
                println!("{text}");
                return Ok(());
            }
            print!("{}", print_views(&v, &world, true, state));
            Ok(())
        }
    }
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
        let mut world = World::load(c)?;
        world.fence_legacy(c, now, &config.policy.legacy)?;
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
