//! The fence and monitor state on the Legacy pages (issue [10], hW): the list's "Fence",
//! "Monitor" and "Last event" columns and its banner, the fence page
//! (`/legacy/segment`: status, the plan's diff, the Apply form, the export downloads)
//! and the dashboard's counts.
//!
//! The view models are pure functions of `legacy::segment::SegmentStatus`,
//! `legacy::watch::MonitorView` and the event rows, so their words and colours are
//! unit-tested without a database. `segment::{status, plan, apply}` talk to
//! `patchward-netd` over a blocking unix socket: they run in `spawn_blocking`. Every
//! page section reads with one query per section, never one per host.

use std::collections::BTreeMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;

use super::patches::field;
use super::{Ctx, Flash, done, error_page, internal, show, when};
use crate::config::{LegacyConfig, SegmentMode};
use crate::db::legacy_timeline::{self as tl, NamedEvent};
use crate::legacy::segment::{self, FenceState, HostFence, Plan, SegmentStatus};
use crate::legacy::watch::{self, MonitorView};
use crate::legacy::{LegacyError, hosts::LegacyHostView, nft, segment_input};
use crate::web::AppState;
use crate::web::admin::{AdminViewer, Viewer};

/// How many events the dashboard lists.
pub(super) const DASHBOARD_EVENTS: usize = 5;

/// A badge: its words and its colour class (`ok`, `warn`, `bad`, `grey`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Badge {
    pub text: &'static str,
    pub class: &'static str,
}

const fn badge(text: &'static str, class: &'static str) -> Badge {
    Badge { text, class }
}

/// The "Fence" cell of host `key`: the fence's state where it overrides the host's own
/// (export only, helper absent, drifted), else applied / pending / not fenced.
pub(super) fn fence_badge(s: &SegmentStatus, key: &str) -> Badge {
    let host = s.hosts.get(key).copied().unwrap_or(HostFence::NotFenced);
    match (&s.state, host) {
        (_, HostFence::NotFenced) => badge("not fenced", "grey"),
        (FenceState::ExportOnly, HostFence::Exported) => badge("exported", "ok"),
        (FenceState::ExportOnly, HostFence::Pending) => badge("pending export", "warn"),
        (FenceState::ExportOnly, _) => badge("export only", "grey"),
        (FenceState::HelperAbsent(_), _) => badge("helper absent", "bad"),
        (FenceState::Drifted, _) => badge("drifted", "bad"),
        (_, HostFence::Pending) => badge("pending", "warn"),
        (_, HostFence::Fenced | HostFence::Exported) => badge("applied", "ok"),
    }
}

/// The "Monitor" cell: UP / PENDING / DOWN / unwatched, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MonitorCell {
    pub b: Badge,
    pub since: Option<String>,
}

pub(super) fn monitor_cell(v: Option<&MonitorView>) -> MonitorCell {
    let Some(v) = v else {
        return MonitorCell {
            b: badge("unwatched", "grey"),
            since: None,
        };
    };
    let b = match v.state.as_str() {
        "up" => badge("UP", "ok"),
        "pending" => badge("PENDING", "warn"),
        "down" => badge("DOWN", "bad"),
        _ => badge("unwatched", "grey"),
    };
    MonitorCell {
        b,
        since: v.since.as_deref().map(when),
    }
}

/// The banner at the top of the Legacy pages when the fence needs someone: what is
/// wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Banner {
    pub title: &'static str,
    pub text: String,
}

pub(super) fn banner(s: &SegmentStatus) -> Option<Banner> {
    match &s.state {
        FenceState::HelperAbsent(why) => Some(Banner {
            title: "The fence helper is absent",
            text: format!("{why}."),
        }),
        FenceState::Drifted => Some(Banner {
            title: "The fence drifted",
            text: "The kernel's table inet patchward is not the one last applied (someone \
                   changed or removed it). Review the diff on the fence page and apply \
                   again, or run `patchward legacy segment apply --reason TEXT`."
                .into(),
        }),
        _ => None,
    }
}

/// One event as the pages list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct EventLine {
    pub when: String,
    pub kind: String,
    pub class: &'static str,
    pub text: String,
    /// The host's name and page (the dashboard's list names the host).
    pub host: String,
    pub href: String,
}

/// The colour of an event kind (the vocabulary of `legacy_events.kind`).
pub(super) fn event_class(kind: &str) -> &'static str {
    match kind {
        "host_down" | "blocked_flow" | "fence_drifted" | "fence_failed" | "dns_failed" => "bad",
        "port_opened" | "port_closed" | "banner_changed" => "warn",
        "host_up" | "fence_applied" | "fence_restored" => "ok",
        _ => "grey",
    }
}

pub(super) fn event_line(e: &crate::db::legacy_monitor::EventRow, name: &str) -> EventLine {
    EventLine {
        when: when(&e.at),
        kind: e.kind.clone(),
        class: event_class(&e.kind),
        text: e.text.clone(),
        host: name.to_string(),
        href: format!("/legacy/{}", super::enc(&e.host)),
    }
}

/// The list's extra columns, one [`HostCells`] per row (same order), and the banner.
pub(super) struct ListExtra {
    pub banner: Option<Banner>,
    pub mode: &'static str,
    pub cells: Vec<HostCells>,
}

pub(super) struct HostCells {
    pub fence: Badge,
    pub monitor: MonitorCell,
    pub last: Option<EventLine>,
}

impl ListExtra {
    /// The cells of row `i` (askama's loop index).
    pub fn cell(&self, i: &usize) -> Option<&HostCells> {
        self.cells.get(*i)
    }
}

/// Builds the list's extra columns for `hosts` (pure).
pub(super) fn list_extra(
    hosts: &[LegacyHostView],
    s: &SegmentStatus,
    views: &BTreeMap<String, MonitorView>,
    last: &[NamedEvent],
) -> ListExtra {
    let last: BTreeMap<&str, &NamedEvent> = last.iter().map(|e| (e.e.host.as_str(), e)).collect();
    ListExtra {
        banner: banner(s),
        mode: s.mode.as_str(),
        cells: hosts
            .iter()
            .map(|h| {
                let key = h.host.key();
                HostCells {
                    fence: fence_badge(s, key),
                    monitor: monitor_cell(views.get(key)),
                    last: last.get(key).map(|e| event_line(&e.e, &h.name)),
                }
            })
            .collect(),
    }
}

pub(super) fn cfg(st: &AppState) -> LegacyConfig {
    super::legacy::dashboard_cfg(st)
}

/// Runs a blocking `segment`/`watch` call off the async runtime.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LegacyError> + Send + 'static,
) -> Result<T, LegacyError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(LegacyError::Refused(format!("the task failed: {e}"))))
}

/// The list's extra columns, read for the hosts the list shows.
pub(super) async fn load_list_extra(
    ctx: &Ctx,
    cfg: &LegacyConfig,
    hosts: &[LegacyHostView],
) -> Result<ListExtra, LegacyError> {
    let (db, now, cfg) = (ctx.db.clone(), ctx.now, cfg.clone());
    let (s, views, last) = blocking(move || {
        let s = segment::status(&db, &cfg, now)?;
        let (views, last): (_, Vec<NamedEvent>) = db.read_blocking(|c| {
            Ok::<_, LegacyError>((watch::views(c, now, &cfg)?, tl::last_per_host(c)?))
        })?;
        Ok((s, views, last))
    })
    .await?;
    Ok(list_extra(hosts, &s, &views, &last))
}

// ---- the fence page ----

#[derive(Template)]
#[template(path = "pages/legacy_segment.html")]
pub(super) struct SegmentPage {
    pub viewer: Viewer,
    pub nav: &'static str,
    pub flash: Option<Flash>,
    pub s: SegmentStatus,
    pub state: Badge,
    pub banner: Option<Banner>,
    pub plan: Plan,
    pub fenced: usize,
    pub pending: usize,
    pub exported: usize,
    pub exported_at: Option<String>,
    pub applied_at: Option<String>,
    /// Why the Apply form is disabled for this viewer or mode, if it is.
    pub apply_blocked: Option<&'static str>,
    pub files: &'static [&'static str],
}

pub(super) fn state_badge(s: &FenceState) -> Badge {
    let class = match s {
        FenceState::Applied => "ok",
        FenceState::ExportOnly | FenceState::NotApplied => "grey",
        FenceState::Drifted | FenceState::HelperAbsent(_) => "bad",
    };
    badge(s.label(), class)
}

/// Why `viewer` cannot apply in `mode`, if they cannot.
pub(super) fn apply_blocked(viewer: &Viewer, mode: SegmentMode) -> Option<&'static str> {
    if !viewer.is_admin() {
        Some(
            "Only an admin can apply the fence: your account can read everything but change nothing.",
        )
    } else if mode == SegmentMode::Export {
        Some(
            "segment_mode is export: the site's firewall fences; download the ruleset and the flows below and load them there (set legacy.segment_mode = \"enforce\" to apply here).",
        )
    } else {
        None
    }
}

/// `GET /legacy/segment`
pub async fn page(State(st): State<AppState>, viewer: Viewer, headers: HeaderMap) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (db, now, cfg) = (ctx.db.clone(), ctx.now, cfg(&st));
    let r = blocking(move || {
        Ok((
            segment::status(&db, &cfg, now)?,
            segment::plan(&db, &cfg, now)?,
        ))
    })
    .await;
    match r {
        Ok((s, plan)) => {
            let flash = Flash::from_headers(&headers);
            let count = |f: HostFence| s.hosts.values().filter(|h| **h == f).count();
            show(
                &SegmentPage {
                    nav: "legacy",
                    flash: flash.clone(),
                    state: state_badge(&s.state),
                    banner: banner(&s),
                    fenced: count(HostFence::Fenced),
                    pending: count(HostFence::Pending),
                    exported: count(HostFence::Exported),
                    exported_at: s.exported_at.as_deref().map(when),
                    applied_at: s.applied_at.as_deref().map(when),
                    apply_blocked: apply_blocked(&viewer, s.mode),
                    files: &segment::EXPORT_FILES,
                    plan,
                    s,
                    viewer,
                },
                &flash,
            )
        }
        Err(e) => internal(viewer, "legacy", e),
    }
}

/// `POST /legacy/segment/exported` (admins): the downloaded files were loaded into
/// the site's firewall. `input` names the flows the page showed (refused when they
/// changed since).
pub async fn mark_exported(
    State(st): State<AppState>,
    AdminViewer(viewer): AdminViewer,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let back = "/legacy/segment";
    let seen = field(&form, "input").trim().to_string();
    let (db, now, cfg, actor) = (ctx.db.clone(), ctx.now, cfg(&st), super::actor(&viewer));
    let to = "the site firewall (files downloaded from the admin page)";
    match blocking(move || segment::mark_exported(&db, &cfg, now, &actor, &seen, to)).await {
        Ok(sha) => done(
            back,
            true,
            &format!("Recorded: the site firewall holds this fence (sha256 {sha})."),
        ),
        Err(e) => match super::legacy::refused(&e) {
            Some(status) => error_page(
                viewer,
                "legacy",
                status,
                "Export not recorded",
                &e.to_string(),
                back,
            ),
            None => internal(viewer, "legacy", e),
        },
    }
}

/// `POST /legacy/segment/apply` (admins; reason required).
pub async fn apply(
    State(st): State<AppState>,
    AdminViewer(viewer): AdminViewer,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let back = "/legacy/segment";
    let reason = field(&form, "reason").trim().to_string();
    if reason.is_empty() {
        return error_page(
            viewer,
            "legacy",
            StatusCode::BAD_REQUEST,
            "Fence not applied",
            "invalid reason: say why the fence changes (it goes into the audit log)",
            back,
        );
    }
    let (db, now, cfg, actor) = (ctx.db.clone(), ctx.now, cfg(&st), super::actor(&viewer));
    match blocking(move || segment::apply(&db, &cfg, now, &actor, &reason)).await {
        Ok(o) if o.changed => done(
            back,
            true,
            &format!("The fence is applied (sha256 {}).", &o.sha256),
        ),
        Ok(_) => done(
            back,
            true,
            "Nothing changed: the kernel already holds this fence.",
        ),
        Err(e) => match super::legacy::refused(&e) {
            Some(status) => error_page(
                viewer,
                "legacy",
                status,
                "Fence not applied",
                &e.to_string(),
                back,
            ),
            None => internal(viewer, "legacy", e),
        },
    }
}

/// The export file `name` (one of `segment::EXPORT_FILES`), rendered from the wanted
/// fence as `segment export` writes it (pure of the database's snapshot).
fn export_file(
    conn: &rusqlite::Connection,
    now: Timestamp,
    cfg: &LegacyConfig,
    name: &str,
) -> Result<String, LegacyError> {
    let input = segment_input::load(conn, now, cfg)?;
    match name {
        "patchward.nft" => segment::render(&input, &segment_input::dns_answers(conn, now)?),
        "flows.csv" => Ok(nft::flows_csv(&input.segment_hosts())),
        "sets.csv" => Ok(nft::sets_csv(&input.named_sets()?)),
        other => Err(LegacyError::Invalid {
            field: "file".into(),
            reason: format!("{other:?} is not an export file"),
        }),
    }
}

/// `GET /legacy/segment/export/{file}`: a download (any signed-in role).
pub async fn export(
    State(st): State<AppState>,
    viewer: Viewer,
    Path(file): Path<String>,
) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !segment::EXPORT_FILES.contains(&file.as_str()) {
        return error_page(
            viewer,
            "legacy",
            StatusCode::NOT_FOUND,
            "No such export file",
            &format!(
                "{file:?} is not an export file; there are {}",
                segment::EXPORT_FILES.join(", ")
            ),
            "/legacy/segment",
        );
    }
    let (now, cfg, name) = (ctx.now, cfg(&st), file.clone());
    match ctx.db.read(move |c| export_file(c, now, &cfg, &name)).await {
        Ok(body) => {
            let ctype = if file.ends_with(".csv") {
                "text/csv; charset=utf-8"
            } else {
                "text/plain; charset=utf-8"
            };
            (
                [
                    (header::CONTENT_TYPE, ctype.to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{file}\""),
                    ),
                ],
                body,
            )
                .into_response()
        }
        Err(e) => match super::legacy::refused(&e) {
            Some(status) => error_page(
                viewer,
                "legacy",
                status,
                "Export failed",
                &e.to_string(),
                "/legacy/segment",
            ),
            None => internal(viewer, "legacy", e),
        },
    }
}

// ---- the dashboard ----

/// The dashboard's fence and monitor counts (three light queries, none per host).
pub(super) struct DashExtra {
    pub down: u64,
    pub blocked_24h: u64,
    pub events: Vec<EventLine>,
}

pub(super) fn dashboard_extra(
    conn: &rusqlite::Connection,
    now: Timestamp,
) -> Result<DashExtra, LegacyError> {
    let since = now
        .checked_sub(jiff::SignedDuration::from_hours(24))
        .unwrap_or(now);
    Ok(DashExtra {
        down: tl::hosts_in_state(conn, "down")?,
        blocked_24h: tl::count_since(conn, "blocked_flow", &since.to_string())?,
        events: tl::recent_named(conn, DASHBOARD_EVENTS)?
            .iter()
            .map(|e| event_line(&e.e, &e.name))
            .collect(),
    })
}
