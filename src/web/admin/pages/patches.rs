//! `/patches`: the catalog with filters and pages, one patch's page (CVEs, CVSS,
//! artifacts, dependencies, approval and rollout), and the decisions on it (approve,
//! decline, defer, expedite) through `rollout::approvals::decide`, the function behind
//! `patchward approve|decline|defer|expedite`.

use std::collections::BTreeMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use jiff::Timestamp;
use serde::Deserialize;

use super::{Ctx, Flash, PER_PAGE, Pager, done, error_page, internal, query_string, show};
use crate::db::feeds::PatchRow;
use crate::db::rollout::RolloutRow;
use crate::feed::catalog::PatchEntry;
use crate::policy::approval::Decision;
use crate::policy::sla::Standing;
use crate::policy::{Approval, Policy};
use crate::rollout::{Patch, RolloutError, World};
use crate::web::AppState;
use crate::web::admin::{AdminViewer, Viewer};

/// The approval state's name for lists and filters.
pub(super) fn approval_state(a: &Approval) -> &'static str {
    match a {
        Approval::New => "new",
        Approval::Approved {
            expedite: Some(_), ..
        } => "expedited",
        Approval::Approved { .. } => "approved",
        Approval::Declined { .. } => "declined",
        Approval::Deferred { .. } => "deferred",
    }
}

/// The approval as a phrase ("approved for pilot, broad").
pub(super) fn approval_text(a: &Approval) -> String {
    match a {
        Approval::New => "waiting for a decision".into(),
        Approval::Approved { rings, expedite } => format!(
            "{} for {}",
            if expedite.is_some() {
                "expedited"
            } else {
                "approved"
            },
            rings.join(", ")
        ),
        Approval::Declined { reason } => format!("declined: {reason}"),
        Approval::Deferred { until } => format!("deferred until {}", super::when_ts(*until)),
    }
}

/// The catalog's filters.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PatchFilter {
    /// Part of the id, title or a CVE.
    pub q: String,
    pub kind: String,
    pub severity: String,
    /// "yes": KEV only; "no": not on the KEV list.
    pub kev: String,
    /// new | approved | expedited | declined | deferred
    pub state: String,
    pub page: usize,
}

impl PatchFilter {
    fn query(&self) -> String {
        query_string(&[
            ("q", &self.q),
            ("kind", &self.kind),
            ("severity", &self.severity),
            ("kev", &self.kev),
            ("state", &self.state),
        ])
    }
}

/// One catalog row.
pub(super) struct CatalogRow {
    pub p: PatchRow,
    pub key: String,
    pub state: &'static str,
    pub rollout: Option<String>,
}

pub(super) struct Catalog {
    pub rows: Vec<CatalogRow>,
    pub pager: Pager,
}

pub(super) fn load_list(
    conn: &rusqlite::Connection,
    now: Timestamp,
    f: &PatchFilter,
) -> Result<Catalog, RolloutError> {
    let approvals: BTreeMap<(String, String), Approval> = crate::db::rollout::approvals(conn)?
        .into_iter()
        .filter_map(|(feed, id, json)| Some(((feed, id), serde_json::from_str(&json).ok()?)))
        .collect();
    let rollouts: BTreeMap<(String, String), RolloutRow> =
        crate::db::rollout::rollouts(conn, None)?
            .into_iter()
            .map(|r| ((r.feed.clone(), r.patch_id.clone()), r))
            .collect();
    let needle = f.q.trim().to_lowercase();
    let mut rows = Vec::new();
    for p in crate::db::feeds::list_patches(conn)? {
        let k = (p.feed.clone(), p.id.clone());
        let a = approvals
            .get(&k)
            .map_or(Approval::New, |a| a.effective(now));
        let state = approval_state(&a);
        let keep = (needle.is_empty()
            || p.id.to_lowercase().contains(&needle)
            || p.title.to_lowercase().contains(&needle)
            || p.cves.iter().any(|c| c.to_lowercase().contains(&needle)))
            && (f.kind.is_empty() || p.kind == f.kind)
            && (f.severity.is_empty() || p.severity == f.severity)
            && match f.kev.as_str() {
                "yes" => p.kev,
                "no" => !p.kev,
                _ => true,
            }
            && (f.state.is_empty() || f.state == state);
        if keep {
            rows.push(CatalogRow {
                key: format!("{}:{}", p.feed, p.id),
                state,
                rollout: rollouts.get(&k).map(|r| r.state.clone()),
                p,
            });
        }
    }
    let pager = Pager::new(f.page.max(1), rows.len(), f.query());
    let rows = rows
        .into_iter()
        .skip(pager.offset())
        .take(PER_PAGE)
        .collect();
    Ok(Catalog { rows, pager })
}

#[derive(Template)]
#[template(path = "pages/patches.html")]
pub(super) struct PatchesPage {
    pub viewer: Viewer,
    pub nav: &'static str,
    pub flash: Option<Flash>,
    pub filter: PatchFilter,
    pub catalog: Catalog,
    pub kinds: Vec<&'static str>,
    pub severities: Vec<&'static str>,
    pub states: &'static [&'static str],
}

/// `GET /patches`
pub async fn list(
    State(st): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Query(filter): Query<PatchFilter>,
) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (now, f) = (ctx.now, filter.clone());
    match ctx.db.read(move |c| load_list(c, now, &f)).await {
        Ok(catalog) => {
            let flash = Flash::from_headers(&headers);
            show(
                &PatchesPage {
                    viewer,
                    nav: "patches",
                    flash: flash.clone(),
                    filter,
                    catalog,
                    kinds: crate::feed::catalog::PatchKind::ALL
                        .map(|k| k.as_str())
                        .to_vec(),
                    severities: crate::feed::catalog::Severity::ALL
                        .map(|s| s.as_str())
                        .to_vec(),
                    states: &["new", "approved", "expedited", "declined", "deferred"],
                },
                &flash,
            )
        }
        Err(e) => internal(viewer, "patches", e),
    }
}

/// A dependency with whether the catalogs have it.
pub(super) struct Dep {
    pub id: String,
    /// `FEED:ID` when a current catalog has it (for a link).
    pub key: Option<String>,
}

/// One patch's page data.
pub(super) struct PatchPage {
    pub patch: Patch,
    pub key: String,
    pub approval: Approval,
    pub stored: Option<(String, String)>,
    pub rollout: Option<RolloutRow>,
    pub first_seen: String,
    pub catalog_version: u64,
    pub requires: Vec<Dep>,
    pub supersedes: Vec<Dep>,
    pub conflicts: Vec<Dep>,
    pub superseded_by: Vec<String>,
    /// The SLA deadline and which enrolled hosts lack it (overdue is per host).
    pub standing: Standing,
    /// Approved, but its selectors match no enrolled host.
    pub no_host: Option<String>,
    pub rings: Vec<String>,
}

impl PatchPage {
    pub fn entry(&self) -> &PatchEntry {
        &self.patch.entry
    }
}

pub(super) fn load_patch(
    conn: &rusqlite::Connection,
    policy: &Policy,
    planner: &crate::rollout::planner::Planner,
    now: Timestamp,
    needle: &str,
) -> Result<PatchPage, RolloutError> {
    let world = World::load_decisions(conn)?;
    let p = world.find_patch(needle)?.clone();
    let key = p.key();
    let stored =
        crate::db::rollout::approval(conn, &p.feed, &p.entry.id)?.map(|(_, at, by)| (at, by));
    let (_, first_seen, catalog_version) =
        crate::db::views::patch(conn, &p.feed, &p.entry.id)?.unwrap_or_default();
    let deps = |ids: &[String]| -> Vec<Dep> {
        ids.iter()
            .map(|id| Dep {
                id: id.clone(),
                key: world.find_patch(id).ok().map(Patch::key),
            })
            .collect()
    };
    let superseded_by = world
        .patches
        .iter()
        .filter(|o| o.entry.supersedes.contains(&p.entry.id))
        .map(Patch::key)
        .collect();
    let cov = crate::rollout::coverage::coverage(conn, policy, planner, &[&p])?
        .pop()
        .unwrap_or_default();
    let standing = cov.standing(&p, policy, now);
    let no_host = crate::rollout::coverage::no_host_warning(&world, &p, &cov, now);
    Ok(PatchPage {
        approval: world.approval(&p).effective(now),
        rollout: world.rollout(&p).cloned(),
        requires: deps(&p.entry.requires),
        supersedes: deps(&p.entry.supersedes),
        conflicts: deps(&p.entry.conflicts),
        superseded_by,
        standing,
        no_host,
        first_seen,
        catalog_version,
        stored,
        rings: policy.ring_names().iter().map(|s| s.to_string()).collect(),
        key,
        patch: p,
    })
}

#[derive(Template)]
#[template(path = "pages/patch.html")]
pub(super) struct PatchTemplate {
    pub viewer: Viewer,
    pub nav: &'static str,
    pub flash: Option<Flash>,
    pub p: PatchPage,
    /// The default for the defer field: a week from now (UTC, `datetime-local` form).
    pub defer_default: String,
}

impl PatchTemplate {
    fn approved_for(&self, ring: &str) -> bool {
        match &self.p.approval {
            Approval::Approved { rings, .. } => rings.iter().any(|r| r == ring),
            _ => true,
        }
    }
}

pub(super) fn rollout_status(e: &RolloutError) -> StatusCode {
    use crate::fleet::FleetError;
    match e {
        RolloutError::Fleet(FleetError::NoSuchPatch(..)) | RolloutError::NoRollout(_) => {
            StatusCode::NOT_FOUND
        }
        RolloutError::Fleet(FleetError::AmbiguousPatch(..) | FleetError::Invalid { .. })
        | RolloutError::Decision(_) => StatusCode::BAD_REQUEST,
        RolloutError::State { .. } => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `GET /patches/{key}`
pub async fn detail(
    State(st): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (policy, now) = (ctx.policy.clone(), ctx.now);
    let planner = ctx.scheduler().planner.clone();
    match ctx
        .db
        .read(move |c| load_patch(c, &policy, &planner, now, &key))
        .await
    {
        Ok(p) => {
            let flash = Flash::from_headers(&headers);
            let week = now
                .checked_add(jiff::SignedDuration::from_hours(24 * 7))
                .unwrap_or(now);
            show(
                &PatchTemplate {
                    viewer,
                    nav: "patches",
                    flash: flash.clone(),
                    p,
                    defer_default: week.strftime("%Y-%m-%dT%H:%M").to_string(),
                },
                &flash,
            )
        }
        Err(e) if rollout_status(&e).is_client_error() => error_page(
            viewer,
            "patches",
            rollout_status(&e),
            "No such patch",
            &e.to_string(),
            "/patches",
        ),
        Err(e) => internal(viewer, "patches", e),
    }
}

/// A form's value of `name` (the first), trimmed.
pub(super) fn field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.trim())
}

/// Every value of `name` (checkboxes).
pub(super) fn fields<'a>(form: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    form.iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .collect()
}

/// Parses a `datetime-local` value (read as UTC) or an RFC 3339 time.
pub(super) fn parse_time(s: &str) -> Result<Timestamp, String> {
    crate::timefmt::parse_instant(s).map_err(|e| e.to_string())
}

/// The decision a form asks for, checked for its shape (policy checks the rest).
fn parse_decision(
    form: &[(String, String)],
    policy: &Policy,
) -> Result<(Decision, String, &'static str), String> {
    let reason = field(form, "reason").to_string();
    let rings = || -> Result<Vec<String>, String> {
        let names = policy.ring_names();
        let picked = fields(form, "rings");
        if picked.is_empty() {
            return Err("choose at least one ring".into());
        }
        for r in &picked {
            if !names.contains(r) {
                return Err(format!(
                    "{r:?} is not a configured ring (rings: {})",
                    names.join(", ")
                ));
            }
        }
        // In rollout order, whatever order the form sent.
        Ok(names
            .iter()
            .filter(|n| picked.contains(n))
            .map(|n| n.to_string())
            .collect())
    };
    match field(form, "action") {
        "approve" => Ok((
            Decision::Approve {
                rings: rings()?,
                expedite: None,
            },
            reason,
            "approved",
        )),
        "expedite" => {
            if reason.is_empty() {
                return Err("expediting needs a reason".into());
            }
            Ok((
                Decision::Approve {
                    rings: rings()?,
                    expedite: Some(reason.clone()),
                },
                reason,
                "expedited",
            ))
        }
        "decline" => {
            if reason.is_empty() {
                return Err("declining needs a reason".into());
            }
            Ok((
                Decision::Decline {
                    reason: reason.clone(),
                },
                reason,
                "declined",
            ))
        }
        "defer" => {
            let until = parse_time(field(form, "until"))?;
            Ok((Decision::Defer { until }, reason, "deferred"))
        }
        other => Err(format!(
            "{other:?} is not a decision (approve, expedite, decline, defer)"
        )),
    }
}

/// `POST /patches/{key}/decide`
pub async fn decide(
    State(st): State<AppState>,
    AdminViewer(viewer): AdminViewer,
    Path(key): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let back = super::patch_href("/patches", &key);
    let (decision, reason, verb) = match parse_decision(&form, &ctx.policy) {
        Ok(d) => d,
        Err(e) => {
            return error_page(
                viewer,
                "patches",
                StatusCode::BAD_REQUEST,
                "No decision made",
                &e,
                &back,
            );
        }
    };
    let (policy, now, actor) = (ctx.policy.clone(), ctx.now, super::actor(&viewer));
    let r = ctx
        .db
        .write(move |tx| {
            crate::rollout::approvals::decide(tx, now, &policy, &key, &decision, &actor, &reason)
        })
        .await;
    match r {
        Ok(d) => {
            let mut text = format!("{} is {verb}.", d.patch);
            if !d.superseded.is_empty() {
                text.push_str(&format!(" It supersedes {}.", d.superseded.join(", ")));
            }
            let to = if verb == "approved" || verb == "expedited" {
                super::patch_href("/rollouts", &d.patch)
            } else {
                super::patch_href("/patches", &d.patch)
            };
            done(&to, true, &text)
        }
        Err(e) if rollout_status(&e).is_client_error() => error_page(
            viewer,
            "patches",
            rollout_status(&e),
            "No decision made",
            &e.to_string(),
            &back,
        ),
        Err(e) => internal(viewer, "patches", e),
    }
}
