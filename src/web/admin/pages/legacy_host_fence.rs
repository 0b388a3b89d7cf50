//! A legacy host's page, issue [10] part (hW): its fence state, the flows editor (one
//! text field in the flow text form; `legacy::flows_store` validates and stores, so a
//! refused flow is the page's refusal and nothing is stored), the watched ports
//! (`legacy::watch`) and the event timeline (newest first, [`EVENTS_SHOWN`] at a
//! time, `?events=all` or `?page=N` for more).
//!
//! The store and watch functions write with `Db::write_blocking`: they run in
//! `spawn_blocking`, each in one transaction with its audit entry and event.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use jiff::Timestamp;

use super::legacy_fence::{Badge, EventLine, MonitorCell, blocking, event_line, monitor_cell};
use super::patches::field;
use super::{Ctx, done, enc, error_page, internal, when};
use crate::config::LegacyConfig;
use crate::db::legacy_timeline as tl;
use crate::legacy::watch::{self, WatchedPortView};
use crate::legacy::{HostRef, LegacyError, flows_store};
use crate::web::AppState;
use crate::web::admin::AdminViewer;

/// How many events a host's page lists at a time.
pub(super) const EVENTS_SHOWN: usize = 50;
/// `?events=all` lists at most this many (the rest stay in the database).
pub(super) const EVENTS_ALL: usize = 10_000;

/// The syntax shown beside the "Add flow" field.
pub(super) const FLOW_SYNTAX: &str = "DIRECTION PROTO PEER [port PORTS] [\"COMMENT\"], e.g. in tcp 192.0.2.0/24 port 22,443 \"admins\"; \
     DIRECTION in|out, PROTO tcp|udp|icmp, PEER an address, a CIDR, @set or a DNS name";

/// One stored flow as the editor lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FlowLine {
    /// The canonical text (what the Remove button sends).
    pub text: String,
    pub direction: String,
    pub proto: String,
    pub peer: String,
    pub ports: String,
    pub comment: String,
    pub added: String,
    pub added_by: String,
}

/// Which events a host's page shows (`?events=all`, `?page=N`, 1-based).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct EventsQuery {
    pub events: Option<String>,
    pub page: Option<usize>,
}

/// The [10] part of a host's page.
pub(super) struct HostExtra {
    pub fence: Badge,
    pub fenced: bool,
    pub flows: Vec<FlowLine>,
    pub monitor: MonitorCell,
    pub last_cycle: Option<String>,
    pub ports: Vec<WatchedPortView>,
    pub events: Vec<EventLine>,
    pub events_total: u64,
    /// The page of events shown (1-based), and the next one if there is more.
    pub events_page: usize,
    pub next_page: Option<usize>,
    pub prev_page: Option<usize>,
    pub all: bool,
    pub syntax: &'static str,
}

/// The fence cell of one host with flows but no segment status read (the host page
/// reads the status too, see [`load`]).
fn flow_lines(flows: &[flows_store::StoredFlow]) -> Vec<FlowLine> {
    flows
        .iter()
        .map(|f| FlowLine {
            text: f.text.clone(),
            direction: f.flow.direction.to_string(),
            proto: f.flow.proto.to_string(),
            peer: f.flow.peer.to_string(),
            ports: crate::legacy::flows::ports_text(&f.flow.ports),
            comment: f.flow.comment.clone(),
            added: when(&f.added_at),
            added_by: f.added_by.clone(),
        })
        .collect()
}

/// Reads the [10] part of `host`'s page (blocking: the fence status may ask netd).
pub(super) fn load(
    db: &crate::db::Db,
    cfg: &LegacyConfig,
    now: Timestamp,
    host: &HostRef,
    q: &EventsQuery,
) -> Result<HostExtra, LegacyError> {
    let status = crate::legacy::segment::status(db, cfg, now)?;
    let key = host.key().to_string();
    let all = q.events.as_deref() == Some("all");
    let page = q.page.unwrap_or(1).max(1);
    let (limit, offset) = if all {
        (EVENTS_ALL, 0)
    } else {
        (EVENTS_SHOWN, (page - 1).saturating_mul(EVENTS_SHOWN))
    };
    let (flows, view, (events, total)) = db.read_blocking(|c| {
        let flows = flows_store::flows_of(c, host)?;
        let mut views = watch::views(c, now, cfg)?;
        let events = tl::page_of(c, &key, limit, offset)?;
        Ok::<_, LegacyError>((flows, views.remove(&key), events))
    })?;
    let name = host.display_name();
    let shown_to = offset + events.len();
    Ok(HostExtra {
        fence: super::legacy_fence::fence_badge(&status, &key),
        fenced: !flows.is_empty(),
        flows: flow_lines(&flows),
        monitor: monitor_cell(view.as_ref()),
        last_cycle: view
            .as_ref()
            .and_then(|v| v.last_cycle.as_deref().map(when)),
        ports: view.map(|v| v.ports).unwrap_or_default(),
        events: events.iter().map(|e| event_line(e, name)).collect(),
        events_total: total,
        events_page: page,
        next_page: (!all && (shown_to as u64) < total).then_some(page + 1),
        prev_page: (!all && page > 1).then(|| page - 1),
        all,
        syntax: FLOW_SYNTAX,
    })
}

/// What a flows/ports form asks for.
enum Edit {
    AddFlow(String),
    RemoveFlow(String),
    AddPort(u16, Option<bool>),
    RemovePort(u16),
}

impl Edit {
    fn title(&self) -> &'static str {
        match self {
            Edit::AddFlow(_) => "Flow not added",
            Edit::RemoveFlow(_) => "Flow not removed",
            Edit::AddPort(..) => "Port not watched",
            Edit::RemovePort(_) => "Port not removed",
        }
    }
}

fn parse_port(text: &str) -> Result<u16, LegacyError> {
    text.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| LegacyError::Invalid {
            field: "port".into(),
            reason: format!("{text:?} is not a port: give a number from 1 to 65535"),
        })
}

/// Runs one edit (one transaction with its audit entry and event); the flash text.
fn run(
    db: &crate::db::Db,
    cfg: &LegacyConfig,
    now: Timestamp,
    name: &str,
    edit: &Edit,
    actor: &str,
) -> Result<String, LegacyError> {
    Ok(match edit {
        Edit::AddFlow(text) => {
            let (h, f, added) = flows_store::add_flow_with(db, cfg, now, name, text, actor)?;
            let shown = h.display_name();
            if added {
                format!("Flow `{f}` added to {shown}; apply the fence to enforce it.")
            } else {
                format!("{shown} already has the flow `{f}`: nothing changed.")
            }
        }
        Edit::RemoveFlow(text) => {
            let (h, f) = flows_store::remove_flow(db, now, name, text, actor)?;
            format!(
                "Flow `{f}` removed from {}; apply the fence to enforce it.",
                h.display_name()
            )
        }
        Edit::AddPort(port, banner) => {
            let h = watch::add_port(db, now, name, *port, *banner, actor)?;
            format!("Port {port} of {} is watched.", h.display_name())
        }
        Edit::RemovePort(port) => {
            let h = watch::remove_port(db, now, name, *port, actor)?;
            format!("Port {port} of {} is no longer watched.", h.display_name())
        }
    })
}

async fn edit(
    st: AppState,
    viewer: crate::web::admin::Viewer,
    name: String,
    edit: Result<Edit, (LegacyError, &'static str)>,
) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let back = format!("/legacy/{}", enc(&name));
    let edit = match edit {
        Ok(e) => e,
        Err((e, title)) => {
            return error_page(
                viewer,
                "legacy",
                StatusCode::BAD_REQUEST,
                title,
                &e.to_string(),
                &back,
            );
        }
    };
    let title = edit.title();
    let (db, now, cfg, actor) = (
        ctx.db.clone(),
        ctx.now,
        super::legacy_fence::cfg(&st),
        super::actor(&viewer),
    );
    match blocking(move || run(&db, &cfg, now, &name, &edit, &actor)).await {
        Ok(text) => done(&back, true, &text),
        Err(e) => match super::legacy::refused(&e) {
            Some(status) => error_page(viewer, "legacy", status, title, &e.to_string(), &back),
            None => internal(viewer, "legacy", e),
        },
    }
}

/// `POST /legacy/{name}/flows` (field `flow`).
pub async fn add_flow(
    State(st): State<AppState>,
    AdminViewer(viewer): AdminViewer,
    Path(name): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let e = Edit::AddFlow(field(&form, "flow").trim().to_string());
    edit(st, viewer, name, Ok(e)).await
}

/// `POST /legacy/{name}/flows/remove` (field `flow`).
pub async fn remove_flow(
    State(st): State<AppState>,
    AdminViewer(viewer): AdminViewer,
    Path(name): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let e = Edit::RemoveFlow(field(&form, "flow").to_string());
    edit(st, viewer, name, Ok(e)).await
}

/// `POST /legacy/{name}/ports` (fields `port`, `banner` = on|off|empty for the default).
pub async fn add_port(
    State(st): State<AppState>,
    AdminViewer(viewer): AdminViewer,
    Path(name): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let banner = match field(&form, "banner") {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    };
    let e = parse_port(field(&form, "port"))
        .map(|p| Edit::AddPort(p, banner))
        .map_err(|e| (e, "Port not watched"));
    edit(st, viewer, name, e).await
}

/// `POST /legacy/{name}/ports/remove` (field `port`).
pub async fn remove_port(
    State(st): State<AppState>,
    AdminViewer(viewer): AdminViewer,
    Path(name): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let e = parse_port(field(&form, "port"))
        .map(Edit::RemovePort)
        .map_err(|e| (e, "Port not removed"));
    edit(st, viewer, name, e).await
}
