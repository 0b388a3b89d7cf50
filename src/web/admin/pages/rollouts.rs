//! `/rollouts`: every rollout with per-ring progress and gate status (the same
//! `rollout::views::views` as `patchward rollout list|show`), and halt / resume / abort
//! through `rollout::approvals::control`. The rings' section of a rollout's page is
//! also served alone (`/rollouts/{key}/rings`), which htmx polls every 5 s to update
//! it in place; without JavaScript the page shows the same section and a reload
//! refreshes it.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;

use super::patches::{approval_text, field, rollout_status};
use super::{Ctx, Flash, ago, done, error_page, internal, show};
use crate::fleet::standing::Standing;
use crate::policy::gate::GateReason;
use crate::policy::{Approval, GateStatus, Policy};
use crate::rollout::RolloutError;
use crate::rollout::approvals::Control;
use crate::rollout::views::{MemberView, RingView, RolloutView};
use crate::web::AppState;
use crate::web::admin::{AdminViewer, Viewer};

/// A ring's line with its gate spelled out.
pub(super) struct RingLine {
    pub v: RingView,
    pub gate: &'static str,
    pub reasons: Vec<String>,
    /// The gate's rules: "canary · 3 successes · 50 % · soak 24h · brake after 1 failure".
    pub rules: String,
}

/// The ring's hosts in one state, for the drill-down (at most [`MEMBERS_SHOWN`]).
pub(super) struct MemberGroup {
    pub state: Standing,
    pub total: usize,
    pub hosts: Vec<MemberView>,
}

/// How many hosts of one state a rollout page lists per ring.
const MEMBERS_SHOWN: usize = 200;

impl RingLine {
    pub fn pending(&self) -> usize {
        self.v.not_started()
    }

    /// The ring's hosts by state (failed first), each group with its host names.
    pub fn groups(&self) -> Vec<MemberGroup> {
        Standing::ALL
            .into_iter()
            .filter_map(|st| {
                let of: Vec<&MemberView> =
                    self.v.members.iter().filter(|m| m.state == st).collect();
                (!of.is_empty()).then(|| MemberGroup {
                    state: st,
                    total: of.len(),
                    hosts: of.into_iter().take(MEMBERS_SHOWN).cloned().collect(),
                })
            })
            .collect()
    }

    pub fn percent(&self) -> usize {
        (self.v.succeeded * 100)
            .checked_div(self.v.hosts)
            .unwrap_or(0)
    }
}

/// A rollout with its rings.
pub(super) struct RolloutLine {
    pub v: RolloutView,
    pub approval: String,
    pub rings: Vec<RingLine>,
}

fn reason_text(r: &GateReason, now: Timestamp, name: &dyn Fn(&str) -> String) -> String {
    match r {
        GateReason::Soaking { until } => {
            format!(
                "soaking until {} ({})",
                super::when_ts(*until),
                ago(now, *until)
            )
        }
        GateReason::Successes { have, need } => format!("{have} of {need} successes needed"),
        GateReason::TooManyFailures { failures, limit } => {
            format!("{failures} failures, more than the brake allows ({limit})")
        }
        other => crate::rollout::views::reason_text(other, name),
    }
}

fn lines(
    views: Vec<RolloutView>,
    world: &crate::rollout::World,
    policy: &Policy,
    now: Timestamp,
) -> Vec<RolloutLine> {
    views
        .into_iter()
        .map(|mut v| {
            let expedited = matches!(&v.approval, Approval::Approved { expedite: Some(_), .. });
            let rings = std::mem::take(&mut v.rings)
                .into_iter()
                .map(|r| {
                    let (gate, reasons) = match &r.gate {
                        GateStatus::Passed => ("passed", vec![]),
                        GateStatus::Waiting { reasons } => ("waiting", reasons.clone()),
                        GateStatus::Halted { reasons } => ("halted", reasons.clone()),
                    };
                    let rules = world.find_patch(&v.patch).ok().map(|p| {
                        let g =
                            crate::rollout::engine::rules_for(policy, p, &r.ring, expedited);
                        format!(
                            "{}at least {} success{} · {:.0} % of the ring · soak {:#} · brake after {} failures",
                            if g.canary { "canary first · " } else { "" },
                            g.min_successes,
                            if g.min_successes == 1 { "" } else { "es" },
                            g.success_ratio * 100.0,
                            g.soak,
                            g.max_failures
                        )
                    });
                    RingLine {
                        gate,
                        reasons: reasons
                            .iter()
                            .map(|x| reason_text(x, now, &crate::rollout::views::host_name(world)))
                            .collect(),
                        rules: rules.unwrap_or_default(),
                        v: r,
                    }
                })
                .collect();
            RolloutLine {
                approval: approval_text(&v.approval),
                rings,
                v,
            }
        })
        .collect()
}

/// Every rollout (or only `only`), newest first.
pub(super) fn load(
    conn: &rusqlite::Connection,
    db: &std::path::Path,
    policy: &Policy,
    now: Timestamp,
    only: Option<&str>,
) -> Result<Vec<RolloutLine>, RolloutError> {
    let world = super::world::world(conn, db, policy, now)?;
    let only = match only {
        Some(k) => Some(world.find_patch(k)?.key()),
        None => None,
    };
    let mut v = crate::rollout::views::views(&world, policy, now, only.as_deref())?;
    if let (Some(k), true) = (&only, v.is_empty()) {
        return Err(RolloutError::NoRollout(k.clone()));
    }
    // Rollouts in progress first, then the finished ones; newest first in each.
    v.sort_by(|a, b| {
        let finished = |r: &RolloutView| !crate::rollout::views::unfinished(&r.state);
        (finished(a), &b.started_at).cmp(&(finished(b), &a.started_at))
    });
    Ok(lines(v, &world, policy, now))
}

#[derive(Template)]
#[template(path = "pages/rollouts.html")]
pub(super) struct RolloutsPage {
    pub viewer: Viewer,
    pub nav: &'static str,
    pub flash: Option<Flash>,
    pub rollouts: Vec<RolloutLine>,
}

/// `GET /rollouts`
pub async fn list(State(st): State<AppState>, viewer: Viewer, headers: HeaderMap) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (policy, now, path) = (ctx.policy.clone(), ctx.now, ctx.db.path().to_path_buf());
    match ctx
        .db
        .read(move |c| load(c, &path, &policy, now, None))
        .await
    {
        Ok(rollouts) => {
            let flash = Flash::from_headers(&headers);
            show(
                &RolloutsPage {
                    viewer,
                    nav: "rollouts",
                    flash: flash.clone(),
                    rollouts,
                },
                &flash,
            )
        }
        Err(e) => internal(viewer, "rollouts", e),
    }
}

#[derive(Template)]
#[template(path = "pages/rollout.html")]
pub(super) struct RolloutPage {
    pub viewer: Viewer,
    pub nav: &'static str,
    pub flash: Option<Flash>,
    pub r: RolloutLine,
    pub href: String,
    pub updated: String,
}

/// The rings' section alone (htmx polls it).
#[derive(Template)]
#[template(path = "pages/rollout_rings.html")]
pub(super) struct RingsFragment {
    pub r: RolloutLine,
    pub href: String,
    pub updated: String,
}

async fn one(
    st: &AppState,
    key: String,
) -> Result<(Ctx, Result<RolloutLine, RolloutError>), Response> {
    let ctx = Ctx::new(st)?;
    let (policy, now, path) = (ctx.policy.clone(), ctx.now, ctx.db.path().to_path_buf());
    let r = ctx
        .db
        .read(move |c| load(c, &path, &policy, now, Some(&key)))
        .await
        .map(|mut v| v.remove(0));
    Ok((ctx, r))
}

/// `GET /rollouts/{key}`
pub async fn detail(
    State(st): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    let (ctx, r) = match one(&st, key).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match r {
        Ok(r) => {
            let flash = Flash::from_headers(&headers);
            show(
                &RolloutPage {
                    viewer,
                    nav: "rollouts",
                    flash: flash.clone(),
                    href: super::patch_href("/rollouts", &r.v.patch),
                    updated: ctx.now.strftime("%H:%M:%S UTC").to_string(),
                    r,
                },
                &flash,
            )
        }
        Err(e) if rollout_status(&e).is_client_error() => error_page(
            viewer,
            "rollouts",
            rollout_status(&e),
            "No such rollout",
            &e.to_string(),
            "/rollouts",
        ),
        Err(e) => internal(viewer, "rollouts", e),
    }
}

/// `GET /rollouts/{key}/rings`: the rings' section (for htmx).
pub async fn rings_fragment(
    State(st): State<AppState>,
    viewer: Viewer,
    Path(key): Path<String>,
) -> Response {
    let (ctx, r) = match one(&st, key).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match r {
        Ok(r) => crate::web::admin::render(&RingsFragment {
            href: super::patch_href("/rollouts", &r.v.patch),
            updated: ctx.now.strftime("%H:%M:%S UTC").to_string(),
            r,
        }),
        Err(e) if rollout_status(&e).is_client_error() => {
            (rollout_status(&e), format!("{e}\n")).into_response()
        }
        Err(e) => internal(viewer, "rollouts", e),
    }
}

/// `POST /rollouts/{key}/control`: halt, resume or abort, with a reason.
pub async fn control(
    State(st): State<AppState>,
    AdminViewer(viewer): AdminViewer,
    Path(key): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let back = super::patch_href("/rollouts", &key);
    let unchanged = |viewer: Viewer, why: &str| {
        error_page(
            viewer,
            "rollouts",
            StatusCode::BAD_REQUEST,
            "Rollout unchanged",
            why,
            &back,
        )
    };
    let action = field(&form, "action");
    let what = match action {
        "halt" => Some(Control::Halt),
        "resume" => Some(Control::Resume),
        "abort" => Some(Control::Abort),
        "rollback" => None,
        other => {
            return unchanged(
                viewer,
                &format!("{other:?} is not an action (halt, resume, abort, rollback)"),
            );
        }
    };
    let reason = field(&form, "reason").to_string();
    if reason.is_empty() {
        return unchanged(viewer, "Give a reason: it goes into the audit log.");
    }
    let Some(what) = what else {
        return rollback(ctx, viewer, key, reason, back).await;
    };
    let (now, actor) = (ctx.now, super::actor(&viewer));
    let k = key.clone();
    let r = ctx
        .db
        .write(move |tx| crate::rollout::approvals::control(tx, now, &k, what, &actor, &reason))
        .await;
    match r {
        Ok(cancelled) => {
            let verb = match what {
                Control::Halt => "halted: no new offers until it is resumed",
                Control::Resume => "resumed; failures so far are acknowledged",
                Control::Abort => "aborted",
            };
            let mut text = format!("The rollout of {key} is {verb}.");
            if !cancelled.is_empty() {
                text.push_str(&format!(
                    " Cancelled {} job(s) not yet started.",
                    cancelled.len()
                ));
            }
            done(&back, true, &text)
        }
        Err(e) => refused(viewer, e, &back),
    }
}

/// The `rollback` action of `POST /rollouts/{key}/control`: the same
/// `approvals::rollback` as `patchward rollout rollback`.
async fn rollback(ctx: Ctx, viewer: Viewer, key: String, reason: String, back: String) -> Response {
    let st = ctx.st.clone();
    let (now, actor) = (ctx.now, super::actor(&viewer));
    let k = key.clone();
    let r = ctx
        .db
        .write(move |tx| {
            let Some(fleet) = st.inner.fleet.as_ref() else {
                return Err(crate::rollout::RolloutError::Stored(
                    "the agent API is not running".into(),
                ));
            };
            let signer = &fleet.scheduler.key;
            crate::rollout::approvals::rollback(tx, now, signer, &k, &actor, &reason)
        })
        .await;
    match r {
        Ok(out) => {
            let mut text = format!(
                "The rollout of {key} is rolled back: {} host(s) get a rollback job at their next check-in.",
                out.rollback_jobs.len()
            );
            if !out.cancelled.is_empty() {
                text.push_str(&format!(
                    " Cancelled {} job(s) not yet started.",
                    out.cancelled.len()
                ));
            }
            if !out.still_running.is_empty() {
                text.push_str(&format!(
                    " Still installing: {}; roll back again once they have finished.",
                    out.still_running.join(", ")
                ));
            }
            done(&back, true, &text)
        }
        Err(e) => refused(viewer, e, &back),
    }
}

/// A refused rollout change: its own status and message when the operator can act on
/// it, else the internal error page.
fn refused(viewer: Viewer, e: RolloutError, back: &str) -> Response {
    let status = rollout_status(&e);
    if status.is_client_error() {
        error_page(
            viewer,
            "rollouts",
            status,
            "Rollout unchanged",
            &e.to_string(),
            back,
        )
    } else {
        internal(viewer, "rollouts", e)
    }
}
