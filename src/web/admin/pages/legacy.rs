//! `/legacy`: end-of-life hosts (issue [9]). The list shows every legacy host (agent
//! and agentless, `legacy::hosts::list`) with its lifecycle state, end-of-life date and
//! how long ago that was, its risk acceptance and whether it is offered rollouts; one
//! host's page adds its facts, the acceptance, include and exclude forms (admins) and
//! its audit history.
//!
//! The page's view model ([`Row`]) is a pure function of a `LegacyHostView` and the
//! day, so the colours and "N days ago" texts are unit-tested without a database.
//! Changes go through `legacy::decide` (the same functions as the CLI), each in one
//! transaction with its audit entry, the signed-in account as the actor. Segmentation
//! is shown as "not segmented yet": part 2 (issue [10]) builds it, and until then the
//! page claims nothing about the network.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use jiff::Timestamp;
use jiff::civil::Date;

use super::patches::{field, fields};
use super::{Ctx, Flash, done, enc, error_page, internal, show, when_ts};
use crate::audit::AuditEntry;
use crate::config::LegacyConfig;
use crate::legacy::catalog::State as Lc;
use crate::legacy::decisions::AcceptanceStatus;
use crate::legacy::hosts::{self, LegacyCounts, LegacyHostView};
use crate::legacy::{HostRef, LegacyError, active, decide};
use crate::web::AppState;
use crate::web::admin::{AdminViewer, Viewer};

/// How many audit entries a host's page lists (newest first).
const HISTORY_SHOWN: u32 = 100;

/// "today", "1 day ago", "892 days ago", "in 12 days": `d` seen from `today`.
pub(super) fn days_from(today: Date, d: Date) -> String {
    let n = (d - today).get_days();
    match n {
        0 => "today".into(),
        1 => "in 1 day".into(),
        -1 => "1 day ago".into(),
        n if n < 0 => format!("{} days ago", -n),
        n => format!("in {n} days"),
    }
}

/// The badge class of a lifecycle state: red for eol, amber for the states that end
/// soon or cost money, grey for unknown, green for the rest.
pub(super) fn state_class(s: Lc) -> &'static str {
    match s {
        Lc::Eol => "bad",
        Lc::EolSoon | Lc::ExtendedOnly => "warn",
        Lc::Unknown => "grey",
        Lc::Supported | Lc::SecurityOnly => "ok",
    }
}

/// One legacy host as the pages show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Row {
    pub name: String,
    /// `/legacy/<key>` (the agent host's id or the agentless name).
    pub href: String,
    /// `agent` or `agentless`.
    pub kind: &'static str,
    pub state: &'static str,
    pub state_class: &'static str,
    /// "Debian 10", or the product and cycle as registered when the catalog does not
    /// know them.
    pub product: String,
    /// The codename, when the catalog has one.
    pub codename: Option<String>,
    pub eol_date: Option<String>,
    /// "892 days ago", "in 12 days", or why there is no date.
    pub eol_when: String,
    pub acceptance: &'static str,
    /// Expired or missing: shown red.
    pub acceptance_bad: bool,
    /// The day the acceptance ends (at its start, 00:00 UTC).
    pub until: Option<String>,
    /// "included", "excluded", "offered" or "no agent".
    pub rollouts: &'static str,
    pub rollouts_text: &'static str,
}

/// The view model of one host on day `today`.
pub(super) fn row(v: &LegacyHostView, today: Date) -> Row {
    let l = &v.lifecycle;
    let product = match &l.title {
        Some(t) => format!("{t} {}", l.cycle),
        None => format!("{} {}", l.product, l.cycle),
    };
    let eol_when = match (l.eol_date, l.state) {
        (Some(d), _) => days_from(today, d),
        (None, Lc::Unknown) => "the lifecycle catalog does not know this product or cycle".into(),
        (None, Lc::Eol | Lc::ExtendedOnly) => "over; the catalog gives no date".into(),
        (None, _) => "no end date announced".into(),
    };
    let (rollouts, rollouts_text) = match (&v.host, &v.include, v.excluded) {
        (HostRef::Agentless { .. }, _, _) => ("no-agent", "no agent: never offered patches"),
        (_, Some(_), _) => ("included", "included in rollouts"),
        (_, None, true) => ("excluded", "not offered rollouts"),
        (_, None, false) => ("offered", "offered rollouts"),
    };
    Row {
        name: v.name.clone(),
        href: format!("/legacy/{}", enc(v.host.key())),
        kind: match v.host {
            HostRef::Agent { .. } => "agent",
            HostRef::Agentless { .. } => "agentless",
        },
        state: l.state.as_str(),
        state_class: state_class(l.state),
        product,
        codename: l.codename.clone(),
        eol_date: l.eol_date.map(|d| d.to_string()),
        eol_when,
        acceptance: v.acceptance_status.as_str(),
        acceptance_bad: v.acceptance_status != AcceptanceStatus::Accepted,
        until: v
            .acceptance
            .as_ref()
            .map(|a| active::day(a.until).to_string()),
        rollouts,
        rollouts_text,
    }
}

/// The counts at the top of the list and on the dashboard, by state in severity order.
pub(super) struct Counts {
    pub by_state: Vec<(&'static str, &'static str, usize)>,
    pub c: LegacyCounts,
}

pub(super) fn counts(hosts: &[LegacyHostView]) -> Counts {
    let c = hosts::counts(hosts);
    let order = [Lc::Eol, Lc::ExtendedOnly, Lc::EolSoon, Lc::Unknown];
    let by_state = order
        .into_iter()
        .chain(Lc::ALL.into_iter().filter(|s| !order.contains(s)))
        .filter_map(|s| {
            let n = c.by_state.get(&s).copied().unwrap_or(0);
            (n > 0).then(|| (s.as_str(), state_class(s), n))
        })
        .collect();
    Counts { by_state, c }
}

#[derive(Template)]
#[template(path = "pages/legacy.html")]
pub(super) struct ListPage {
    pub viewer: Viewer,
    pub nav: &'static str,
    pub flash: Option<Flash>,
    pub rows: Vec<Row>,
    pub counts: Counts,
    /// [10]: fence, monitor and last event per row, and the banner.
    pub x: super::legacy_fence::ListExtra,
}

fn cfg(st: &AppState) -> LegacyConfig {
    st.inner
        .fleet
        .as_ref()
        .map(|f| f.legacy.clone())
        .unwrap_or_default()
}

/// `GET /legacy`
pub async fn list(State(st): State<AppState>, viewer: Viewer, headers: HeaderMap) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (now, cfg) = (ctx.now, cfg(&st));
    let c2 = cfg.clone();
    let r = match ctx.db.read(move |c| hosts::list(c, now, &c2)).await {
        Ok(h) => super::legacy_fence::load_list_extra(&ctx, &cfg, &h)
            .await
            .map(|x| (h, x)),
        Err(e) => Err(e),
    };
    match r {
        Ok((hosts, x)) => {
            let today = active::day(now);
            let flash = Flash::from_headers(&headers);
            show(
                &ListPage {
                    viewer,
                    nav: "legacy",
                    flash: flash.clone(),
                    rows: hosts.iter().map(|h| row(h, today)).collect(),
                    counts: counts(&hosts),
                    x,
                },
                &flash,
            )
        }
        Err(e) => internal(viewer, "legacy", e),
    }
}

/// One audit entry of a host's history.
pub(super) struct HistoryLine {
    pub e: AuditEntry,
    pub when: String,
    pub details: Vec<(String, String)>,
}

/// One host's page data.
pub(super) struct HostPage {
    pub v: LegacyHostView,
    pub row: Row,
    pub history: Vec<HistoryLine>,
    /// The acceptance form's date bounds: tomorrow, and today + `max_acceptance_days`.
    pub min_until: String,
    pub max_until: String,
    pub max_days: u32,
    pub accepted_at: Option<String>,
    pub acceptance_ends: Option<String>,
}

fn load_host(
    conn: &rusqlite::Connection,
    now: Timestamp,
    cfg: &LegacyConfig,
    name: &str,
) -> Result<HostPage, LegacyError> {
    let v = hosts::show(conn, name, now, cfg)?;
    let f = crate::audit::Filter {
        subject: Some(v.host.key().to_string()),
        ..Default::default()
    };
    let (entries, _) = crate::audit::search(conn, &f, 0, HISTORY_SHOWN)?;
    let today = active::day(now);
    let plus = |days: i64| {
        today
            .checked_add(jiff::Span::new().days(days))
            .unwrap_or(today)
            .to_string()
    };
    Ok(HostPage {
        row: row(&v, today),
        history: entries
            .into_iter()
            .map(|e| HistoryLine {
                when: super::when(&e.at),
                details: super::audit::details(&e.details),
                e,
            })
            .collect(),
        min_until: plus(1),
        max_until: plus(i64::from(cfg.max_acceptance_days)),
        max_days: cfg.max_acceptance_days,
        accepted_at: v.acceptance.as_ref().map(|a| when_ts(a.accepted_at)),
        acceptance_ends: v.acceptance.as_ref().map(|a| when_ts(a.until)),
        v,
    })
}

#[derive(Template)]
#[template(path = "pages/legacy_host.html")]
pub(super) struct HostTemplate {
    pub viewer: Viewer,
    pub nav: &'static str,
    pub flash: Option<Flash>,
    pub h: HostPage,
    pub controls: &'static [(&'static str, &'static str)],
    /// [10]: flows, watched ports, events.
    pub x: super::legacy_host_fence::HostExtra,
}

impl HostTemplate {
    fn is_agent(&self) -> bool {
        matches!(self.h.v.host, HostRef::Agent { .. })
    }
}

/// The HTTP status of a refusal (nothing changed), or `None` for an internal failure.
pub(super) fn refused(e: &LegacyError) -> Option<StatusCode> {
    match e {
        LegacyError::NoSuchHost(..) => Some(StatusCode::NOT_FOUND),
        LegacyError::Invalid { .. } => Some(StatusCode::BAD_REQUEST),
        LegacyError::Refused(_) => Some(StatusCode::CONFLICT),
        _ => None,
    }
}

/// `GET /legacy/{name}`
pub async fn detail(
    State(st): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<super::legacy_host_fence::EventsQuery>,
) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (now, cfg, db) = (ctx.now, cfg(&st), ctx.db.clone());
    let r = super::legacy_fence::blocking(move || {
        let h = db.read_blocking(|c| load_host(c, now, &cfg, &name))?;
        let x = super::legacy_host_fence::load(&db, &cfg, now, &h.v.host, &q)?;
        Ok((h, x))
    });
    match r.await {
        Ok((h, x)) => {
            let flash = Flash::from_headers(&headers);
            show(
                &HostTemplate {
                    viewer,
                    nav: "legacy",
                    flash: flash.clone(),
                    h,
                    controls: decide::CONTROLS,
                    x,
                },
                &flash,
            )
        }
        Err(e) => match refused(&e) {
            Some(status) => error_page(
                viewer,
                "legacy",
                status,
                "No such host",
                &e.to_string(),
                "/legacy",
            ),
            None => internal(viewer, "legacy", e),
        },
    }
}

/// The decision a form asks for, checked for its shape (`legacy::decide` checks the
/// rest in the transaction).
enum Change {
    Accept(decide::AcceptRequest),
    Revoke(String),
    Include(String),
    Exclude(String),
}

impl Change {
    fn title(&self) -> &'static str {
        match self {
            Change::Accept(_) => "Risk not accepted",
            Change::Revoke(_) => "Acceptance not revoked",
            Change::Include(_) => "Host not included",
            Change::Exclude(_) => "Host not excluded",
        }
    }
}

fn parse_accept(form: &[(String, String)]) -> Result<Change, LegacyError> {
    let controls = decide::parse_controls(&fields(form, "controls").join(","))?;
    let until = field(form, "until");
    let until: Date = until.parse().map_err(|_| LegacyError::Invalid {
        field: "until".into(),
        reason: format!("{until:?} is not a date; use YYYY-MM-DD"),
    })?;
    Ok(Change::Accept(decide::AcceptRequest {
        reason: field(form, "reason").to_string(),
        controls,
        until,
    }))
}

/// Resolves the host and applies the change in one transaction; the flash text.
async fn apply(
    st: AppState,
    viewer: Viewer,
    name: String,
    change: Result<Change, LegacyError>,
    title: &'static str,
) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let back = format!("/legacy/{}", enc(&name));
    let change = match change {
        Ok(c) => c,
        Err(e) => {
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
    let title = change.title();
    let (now, cfg, actor) = (ctx.now, cfg(&st), super::actor(&viewer));
    let r = ctx
        .db
        .write(move |tx| {
            let host = crate::legacy::resolve(tx, &name)?;
            let shown = host.display_name().to_string();
            let text = match &change {
                Change::Accept(req) => {
                    decide::accept(tx, now, &cfg, &host, req, &actor)?;
                    format!(
                        "Risk accepted for {shown} until {} (under {}).",
                        req.until,
                        req.controls.join(", ")
                    )
                }
                Change::Revoke(reason) => {
                    decide::revoke_acceptance(tx, now, &host, reason, &actor)?;
                    format!("The risk acceptance of {shown} is revoked.")
                }
                Change::Include(reason) => {
                    decide::include(tx, now, &host, reason, &actor)?;
                    format!("{shown} is included: it is offered rollouts despite its state.")
                }
                Change::Exclude(reason) => {
                    decide::exclude(tx, now, &host, reason, &actor)?;
                    format!("{shown} is no longer included in rollouts.")
                }
            };
            Ok::<_, LegacyError>(text)
        })
        .await;
    match r {
        Ok(text) => done(&back, true, &text),
        Err(e) => match refused(&e) {
            Some(status) => error_page(viewer, "legacy", status, title, &e.to_string(), &back),
            None => internal(viewer, "legacy", e),
        },
    }
}

/// `POST /legacy/{name}/accept`
pub async fn accept(
    State(st): State<AppState>,
    AdminViewer(viewer): AdminViewer,
    Path(name): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    apply(st, viewer, name, parse_accept(&form), "Risk not accepted").await
}

/// `POST /legacy/{name}/revoke-acceptance`
pub async fn revoke_acceptance(
    State(st): State<AppState>,
    AdminViewer(viewer): AdminViewer,
    Path(name): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let c = Change::Revoke(field(&form, "reason").to_string());
    apply(st, viewer, name, Ok(c), "Acceptance not revoked").await
}

/// `POST /legacy/{name}/include`
pub async fn include(
    State(st): State<AppState>,
    AdminViewer(viewer): AdminViewer,
    Path(name): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let c = Change::Include(field(&form, "reason").to_string());
    apply(st, viewer, name, Ok(c), "Host not included").await
}

/// `POST /legacy/{name}/exclude`
pub async fn exclude(
    State(st): State<AppState>,
    AdminViewer(viewer): AdminViewer,
    Path(name): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let c = Change::Exclude(field(&form, "reason").to_string());
    apply(st, viewer, name, Ok(c), "Host not excluded").await
}

/// The dashboard's panel: legacy hosts by state and acceptance (one `hosts::list`).
pub(super) fn dashboard_counts(
    conn: &rusqlite::Connection,
    now: Timestamp,
    cfg: &LegacyConfig,
) -> Result<Counts, LegacyError> {
    Ok(counts(&hosts::list(conn, now, cfg)?))
}

pub(super) fn dashboard_cfg(st: &AppState) -> LegacyConfig {
    cfg(st)
}
