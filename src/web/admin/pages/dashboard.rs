//! `/`: the site at a glance. Hosts by state, legacy hosts by state and acceptance,
//! patches waiting for a decision by class
//! and severity (KEV marked), running rollouts with their rings' job counts, patches
//! past their SLA deadline, mirror freshness and recent failures.
//!
//! Everything here is read with light queries (no inventory is parsed), so the page
//! stays fast at 10,000 hosts and 1,000 patches (BENCHMARKS.md, "Admin pages"). The
//! rings' exact gate status, which needs every host's inventory, is on the rollout's
//! own page. Which hosts a patch applies to comes from the planner's fleet index
//! (`rollout::coverage`), so "waiting" and "overdue" count only patches some enrolled
//! host still lacks.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use jiff::Timestamp;

use super::hosts::all_hosts;
use super::{Ctx, Flash, ago, internal, show};
use crate::db::views::{self, JobLine};
use crate::feed::catalog::{PatchKind, Severity};
use crate::fleet::standing::Standing;
use crate::policy::{Approval, Policy};
use crate::rollout::World;
use crate::web::admin::Viewer;
use crate::web::{AppState, MirrorState};

/// How many overdue patches the dashboard lists.
const OVERDUE_SHOWN: usize = 15;

/// Hosts by state.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct HostCounts {
    /// Enrolled and not revoked.
    pub enrolled: usize,
    pub ok: usize,
    pub stale: usize,
    pub failing: usize,
    pub revoked: usize,
}

/// Waiting patches of one class: counts by severity (in `Severity::ALL` order), and
/// how many of them are on the KEV list.
pub(super) struct WaitingRow {
    pub kind: &'static str,
    pub counts: Vec<usize>,
    pub kev: usize,
    pub total: usize,
}

/// A waiting KEV or critical patch, listed by name.
pub(super) struct Urgent {
    pub key: String,
    pub title: String,
    pub severity: &'static str,
    pub kev: bool,
}

/// A ring's job counts within a rollout.
pub(super) struct RingCount {
    pub ring: String,
    pub hosts: usize,
    pub succeeded: u64,
    pub running: u64,
    /// Installed and verified, waiting for the host's reboot.
    pub awaiting_reboot: u64,
    pub failed: u64,
}

pub(super) struct ActiveRollout {
    pub key: String,
    pub title: String,
    pub state: String,
    pub note: String,
    pub rings: Vec<RingCount>,
}

pub(super) struct Overdue {
    pub key: String,
    pub title: String,
    pub severity: &'static str,
    pub kev: bool,
    pub due: String,
    pub late_by: String,
    pub approval: &'static str,
    /// Hosts that lack it past the deadline, of the hosts in scope.
    pub late_hosts: usize,
    pub hosts: usize,
}

pub(super) struct Freshness {
    pub name: String,
    pub age: String,
    pub expired: bool,
    pub last_success: String,
    pub last_error: Option<String>,
}

pub(super) struct Dashboard {
    pub hosts: HostCounts,
    pub severities: Vec<&'static str>,
    pub waiting: Vec<WaitingRow>,
    pub waiting_total: usize,
    pub urgent: Vec<Urgent>,
    pub rollouts: Vec<ActiveRollout>,
    pub overdue: Vec<Overdue>,
    /// All overdue patches (`overdue` holds the first [`OVERDUE_SHOWN`]).
    pub overdue_total: usize,
    pub mirror: Vec<Freshness>,
    pub failures: Vec<JobLine>,
}

/// A ring's job counts, read through the one reading of job states
/// (`JobState::standing`) that the rollout pages and the host page share.
fn count_jobs(counts: &BTreeMap<(Option<String>, String), u64>, ring: &str) -> RingCount {
    let mut c = RingCount {
        ring: ring.to_string(),
        hosts: 0,
        succeeded: 0,
        running: 0,
        awaiting_reboot: 0,
        failed: 0,
    };
    for ((r, state), n) in counts {
        if r.as_deref() != Some(ring) {
            continue;
        }
        match Standing::of(state) {
            Some(Standing::Installed) => c.succeeded += n,
            Some(Standing::Failed | Standing::RolledBack) => c.failed += n,
            Some(Standing::Running) => c.running += n,
            Some(Standing::AwaitingReboot) => c.awaiting_reboot += n,
            Some(Standing::NotStarted) | None => {}
        }
    }
    c
}

pub(super) fn load(
    conn: &rusqlite::Connection,
    policy: &Policy,
    planner: &crate::rollout::planner::Planner,
    mirror: Option<&MirrorState>,
    now: Timestamp,
) -> Result<Dashboard, crate::rollout::RolloutError> {
    // Hosts.
    let hosts = all_hosts(conn, policy, now)?;
    let mut hc = HostCounts::default();
    let mut ring_sizes: BTreeMap<String, usize> = BTreeMap::new();
    for h in &hosts {
        if h.revoked {
            hc.revoked += 1;
            continue;
        }
        hc.enrolled += 1;
        if let Some(r) = &h.ring {
            *ring_sizes.entry(r.clone()).or_default() += 1;
        }
        match (h.stale, h.failing) {
            (false, false) => hc.ok += 1,
            (s, f) => {
                hc.stale += usize::from(s);
                hc.failing += usize::from(f);
            }
        }
    }

    // Patches waiting for a decision; SLA.
    let world = World::load_decisions(conn)?;
    let mut waiting: Vec<WaitingRow> = PatchKind::ALL
        .iter()
        .map(|k| WaitingRow {
            kind: k.as_str(),
            counts: vec![0; Severity::ALL.len()],
            kev: 0,
            total: 0,
        })
        .collect();
    let mut urgent = Vec::new();
    let mut overdue = Vec::new();
    let all: Vec<&crate::rollout::Patch> = world.patches.iter().collect();
    let coverage = crate::rollout::coverage::coverage(conn, policy, planner, &all)?;
    for (p, cov) in world.patches.iter().zip(&coverage) {
        let approval = world.approval(p).effective(now);
        // Replaced, applying to no enrolled host, or installed on every host it
        // applies to: nothing to decide, nothing overdue.
        let st = cov.standing(p, policy, now);
        if world.superseded_by(p).is_some() || !st.needed() {
            continue;
        }
        if approval == Approval::New {
            let k = PatchKind::ALL
                .iter()
                .position(|k| *k == p.entry.kind)
                .unwrap_or(0);
            let s = Severity::ALL
                .iter()
                .position(|s| *s == p.entry.severity)
                .unwrap_or(0);
            let row = &mut waiting[k];
            row.counts[s] += 1;
            row.total += 1;
            row.kev += usize::from(p.kev);
            if p.kev || p.entry.severity == Severity::Critical {
                urgent.push(Urgent {
                    key: p.key(),
                    title: p.entry.title.clone(),
                    severity: p.entry.severity.as_str(),
                    kev: p.kev,
                });
            }
        }
        let skip = matches!(approval, Approval::Declined { .. })
            || world
                .rollout(p)
                .is_some_and(|r| r.state == "superseded" || r.state == "aborted");
        if skip {
            continue;
        }
        if let Some(due) = st.due
            && st.overdue()
        {
            overdue.push(Overdue {
                key: p.key(),
                title: p.entry.title.clone(),
                severity: p.entry.severity.as_str(),
                kev: p.kev,
                due: super::when_ts(due),
                late_by: ago(now, due).trim_end_matches(" ago").to_string(),
                approval: super::patches::approval_state(&approval),
                late_hosts: st.late_hosts,
                hosts: st.hosts,
            });
        }
    }
    urgent.sort_by(|a, b| b.kev.cmp(&a.kev).then(a.severity.cmp(b.severity)));
    urgent.truncate(10);
    // The longest overdue first; the page lists the first OVERDUE_SHOWN.
    overdue.sort_by(|a, b| a.due.cmp(&b.due));
    let overdue_total = overdue.len();
    overdue.truncate(OVERDUE_SHOWN);
    let waiting_total = waiting.iter().map(|w| w.total).sum();

    // Rollouts that are running or halted.
    let mut rollouts = Vec::new();
    for p in &world.patches {
        let Some(r) = world.rollout(p) else { continue };
        if r.state != "active" && r.state != "halted" {
            continue;
        }
        let rings = match world.approval(p).effective(now) {
            Approval::Approved { rings, .. } => rings,
            _ => vec![],
        };
        let counts = views::job_counts(conn, &p.feed, &p.entry.id)?;
        rollouts.push(ActiveRollout {
            key: p.key(),
            title: p.entry.title.clone(),
            state: r.state.clone(),
            note: r.note.clone(),
            rings: rings
                .iter()
                .map(|ring| RingCount {
                    hosts: ring_sizes.get(ring).copied().unwrap_or(0),
                    ..count_jobs(&counts, ring)
                })
                .collect(),
        });
    }

    // Mirror freshness (no store scan: the catalogs' signed times).
    let mut fresh = Vec::new();
    for src in mirror.map_or(&[][..], |m| m.sources.as_slice()) {
        let st = crate::db::feeds::feed_status(conn, &src.name)?;
        let s = crate::mirror::SourceStatus::new(src, st, now);
        fresh.push(Freshness {
            name: s.name.clone(),
            age: s.content_age_hours.map_or_else(
                || "no content yet".into(),
                |h| {
                    if h < 48 {
                        format!("{h} h")
                    } else {
                        format!("{} days", h / 24)
                    }
                },
            ),
            expired: s.expired,
            // A bundle-only source is never synced; "never" would read as a fault.
            last_success: if s.bundle_only {
                "bundles only (offline by design)".into()
            } else {
                s.feed
                    .last_success
                    .as_deref()
                    .and_then(|t| t.parse().ok())
                    .map_or_else(|| "never".into(), |t| ago(now, t))
            },
            last_error: s.feed.last_error.clone(),
        });
    }

    Ok(Dashboard {
        hosts: hc,
        severities: Severity::ALL.iter().map(|s| s.as_str()).collect(),
        waiting,
        waiting_total,
        urgent,
        rollouts,
        overdue,
        overdue_total,
        mirror: fresh,
        failures: views::recent_failures(conn, 10)?,
    })
}

#[derive(Template)]
#[template(path = "pages/dashboard.html")]
pub(super) struct DashboardPage {
    pub viewer: Viewer,
    pub nav: &'static str,
    pub flash: Option<Flash>,
    pub d: Dashboard,
    /// The system clock is not NTP-synchronised (`timesync`): windows, deadlines and
    /// signature expiry depend on it.
    pub clock_warning: Option<String>,
    /// Legacy hosts by state and acceptance (one `legacy::hosts::list`, a second read).
    pub legacy: super::legacy::Counts,
    /// [10]: hosts down, blocked flows in 24 h, the last events (three light queries).
    pub lx: super::legacy_fence::DashExtra,
}

/// `GET /`
pub async fn page(State(st): State<AppState>, viewer: Viewer, headers: HeaderMap) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (policy, now, s2) = (ctx.policy.clone(), ctx.now, st.clone());
    let planner = ctx.scheduler().planner.clone();
    let r = ctx
        .db
        .read(move |c| load(c, &policy, &planner, s2.inner.mirror.as_ref(), now))
        .await;
    let d = match r {
        Ok(d) => d,
        Err(e) => return internal(viewer, "dashboard", e),
    };
    let cfg = super::legacy::dashboard_cfg(&st);
    let legacy = ctx
        .db
        .read(move |c| {
            Ok::<_, crate::legacy::LegacyError>((
                super::legacy::dashboard_counts(c, now, &cfg)?,
                super::legacy_fence::dashboard_extra(c, now)?,
            ))
        })
        .await;
    match legacy {
        Ok((legacy, lx)) => {
            let flash = Flash::from_headers(&headers);
            show(
                &DashboardPage {
                    viewer,
                    nav: "dashboard",
                    flash: flash.clone(),
                    d,
                    clock_warning: crate::timesync::status().warning(),
                    legacy,
                    lx,
                },
                &flash,
            )
        }
        Err(e) => internal(viewer, "dashboard", e),
    }
}
