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
use crate::fleet::standing::Standing;
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
    /// Until when (RFC 3339, e.g. 2026-12-01T00:00:00Z).
    #[arg(long)]
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
    Add(WindowAddArgs),
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
        Approval::Deferred { until } => format!("deferred until {until}"),
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

/// One ring's line in `rollout list|show`. The counts come from
/// [`crate::fleet::jobs::JobState::standing`], the same reading as the host page.
#[derive(Debug, serde::Serialize)]
pub struct RingView {
    pub ring: String,
    pub hosts: usize,
    pub succeeded: usize,
    pub in_progress: usize,
    /// Installed and verified, waiting for the host's reboot (`reboot_pending`).
    pub awaiting_reboot: usize,
    /// Failed or rolled back.
    pub failed: usize,
    pub gate: crate::policy::GateStatus,
    /// The ring's hosts by name with their state (failed first, not started last).
    pub members: Vec<MemberView>,
}

impl RingView {
    /// Hosts of the ring with no job for the patch yet.
    pub fn not_started(&self) -> usize {
        self.hosts
            .saturating_sub(self.succeeded + self.in_progress + self.awaiting_reboot + self.failed)
    }
}

/// One host of a ring in `rollout show` (and the rollout page's drill-down).
#[derive(Debug, Clone, serde::Serialize)]
pub struct MemberView {
    pub id: String,
    pub hostname: String,
    pub state: Standing,
    /// Its latest job for the patch (none when not started).
    pub job: Option<String>,
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
    /// When every host of every approved ring had the patch (state `completed`).
    pub completed_at: Option<String>,
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
            let members = engine::ring_hosts(world, policy, p, ring);
            let res = engine::ring_results(world, policy, p, ring);
            let rules = engine::rules_for(policy, p, ring, expedited);
            let count = |s: &[Standing]| members.iter().filter(|h| s.contains(&h.standing)).count();
            let mut list: Vec<MemberView> = members
                .iter()
                .map(|h| MemberView {
                    id: h.id.to_string(),
                    hostname: h.host.hostname.clone(),
                    state: h.standing,
                    job: h
                        .job
                        .filter(|_| h.standing != Standing::NotStarted)
                        .map(|j| j.id.clone()),
                })
                .collect();
            let order = |s: Standing| Standing::ALL.iter().position(|x| *x == s);
            list.sort_by(|a, b| {
                (order(a.state), &a.hostname, &a.id).cmp(&(order(b.state), &b.hostname, &b.id))
            });
            rv.push(RingView {
                ring: ring.clone(),
                hosts: members.len(),
                succeeded: count(&[Standing::Installed]),
                in_progress: count(&[Standing::Running]),
                awaiting_reboot: count(&[Standing::AwaitingReboot]),
                failed: count(&[Standing::Failed, Standing::RolledBack]),
                gate: crate::policy::gate(&res, &rules, now),
                members: list,
            });
        }
        out.push(RolloutView {
            patch: p.key(),
            title: p.entry.title.clone(),
            state: r.state.clone(),
            note: r.note.clone(),
            approval,
            started_at: r.started_at.clone(),
            completed_at: (r.state == "completed").then(|| r.updated_at.clone()),
            rings: rv,
        });
    }
    Ok(out)
}

/// A gate reason as a person reads it: hosts by name (ids stay in the JSON).
pub fn reason_text(r: &crate::policy::gate::GateReason, name: &dyn Fn(&str) -> String) -> String {
    use crate::policy::gate::GateReason;
    let names = |hosts: &[String]| hosts.iter().map(|h| name(h)).collect::<Vec<_>>().join(", ");
    match r {
        GateReason::NotCheckingIn { hosts } => {
            format!("not checking in since success: {}", names(hosts))
        }
        GateReason::RolledBack { hosts } => format!("rolled back on {}", names(hosts)),
        other => other.to_string(),
    }
}

/// A host id's name in `world` (the id itself for a host that is gone).
pub fn host_name(world: &World) -> impl Fn(&str) -> String + '_ {
    |id: &str| {
        world
            .hosts
            .get(id)
            .map_or_else(|| id.to_string(), |h| h.hostname.clone())
    }
}

fn gate_text(g: &crate::policy::GateStatus, name: &dyn Fn(&str) -> String) -> String {
    use crate::policy::GateStatus;
    let list = |r: &[crate::policy::gate::GateReason]| {
        r.iter()
            .map(|x| reason_text(x, name))
            .collect::<Vec<_>>()
            .join("; ")
    };
    match g {
        GateStatus::Passed => "gate passed".into(),
        GateStatus::Waiting { reasons } => format!("waiting: {}", list(reasons)),
        GateStatus::Halted { reasons } => format!("HALTED: {}", list(reasons)),
    }
}

/// How many host names `rollout show` prints per state before "and N more".
const NAMES_SHOWN: usize = 50;

/// `rollout list|show` as text; `show` also lists each ring's hosts by state (only
/// those in `state` when given, then all of them).
pub(crate) fn print_views(
    v: &[RolloutView],
    world: &World,
    show: bool,
    state: Option<Standing>,
) -> String {
    let name = host_name(world);
    let mut s = String::new();
    for r in v {
        let _ = writeln!(s, "{}  {}  ({})", r.patch, r.state, r.note);
        if let Some(at) = &r.completed_at {
            let _ = writeln!(
                s,
                "  completed at {at}: every host of every approved ring has it"
            );
        }
        for ring in &r.rings {
            let _ = writeln!(
                s,
                "  {:<10} {:>3} hosts  {:>3} ok  {:>3} running  {:>3} waiting for reboot  {:>3} failed  {:>3} not started  {}",
                ring.ring,
                ring.hosts,
                ring.succeeded,
                ring.in_progress,
                ring.awaiting_reboot,
                ring.failed,
                ring.not_started(),
                gate_text(&ring.gate, &name)
            );
            if !show {
                continue;
            }
            for st in Standing::ALL {
                if state.is_some_and(|x| x != st) {
                    continue;
                }
                let of: Vec<&MemberView> = ring.members.iter().filter(|m| m.state == st).collect();
                if of.is_empty() {
                    continue;
                }
                let cap = if state.is_some() {
                    of.len()
                } else {
                    NAMES_SHOWN
                };
                let mut names: Vec<String> = of
                    .iter()
                    .take(cap)
                    .map(|m| match &m.job {
                        Some(j) => format!("{} (job {j})", m.hostname),
                        None => m.hostname.clone(),
                    })
                    .collect();
                if of.len() > cap {
                    names.push(format!(
                        "and {} more (--state {} lists them all)",
                        of.len() - cap,
                        st.as_str()
                    ));
                }
                let _ = writeln!(s, "    {}: {}", st.label(), names.join(", "));
            }
        }
    }
    s
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

/// Whether a rollout state is still in progress (`active` or `halted`); the others
/// (`completed`, `aborted`, `superseded`, `rolled_back`) are finished.
pub fn unfinished(state: &str) -> bool {
    matches!(state, "active" | "halted")
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
