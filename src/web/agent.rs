//! The agent API, `/api/agent/v1`: enrollment (authenticated by a token) and check-in
//! (authenticated by a signed request, see `agent_auth`). Handlers parse, call
//! `fleet::hosts`, render.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use axum::extract::Request;

use super::agent_auth::{authenticate_then, refusal};
use crate::fleet::FleetError;
use crate::fleet::hosts::{
    self, CheckinRequest, CheckinResponse, EnrollRequest, EnrollResponse, Presence,
};

fn fleet_error(e: FleetError) -> Response {
    let status = match &e {
        FleetError::Invalid { .. } => StatusCode::BAD_REQUEST,
        FleetError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        FleetError::Token(_) | FleetError::Revoked(_) | FleetError::NotYourJob(_) => {
            StatusCode::FORBIDDEN
        }
        FleetError::KeyInUse(_)
        | FleetError::DigestMismatch
        | FleetError::IllegalTransition { .. } => StatusCode::CONFLICT,
        FleetError::NoSuchHost(..) => StatusCode::UNAUTHORIZED,
        FleetError::NoSuchJob(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %e, "agent request failed");
    }
    let mut body = serde_json::json!({ "error": e.to_string(), "code": e.code() });
    if let Some(job) = e.job() {
        body["job_id"] = job.into();
    }
    (status, Json(body)).into_response()
}

/// Offers the host a new job if a rollout allows one now, inside a savepoint: a
/// scheduler failure must not lose the check-in's reports. Returns whether a job was
/// created.
fn schedule(
    tx: &rusqlite::Transaction<'_>,
    now: jiff::Timestamp,
    sched: &super::Scheduler,
    host: &str,
) -> Result<bool, crate::rollout::RolloutError> {
    if !crate::db::rollout::any_active(tx)? {
        return Ok(false);
    }
    let Some(plan) = sched.planner.fresh(tx, &sched.policy(), now)? else {
        return Ok(false);
    };
    tx.execute_batch("SAVEPOINT schedule")?;
    match crate::rollout::plan::offer(tx, now, &sched.policy(), &sched.key, &plan, host) {
        Ok(job) => {
            tx.execute_batch("RELEASE schedule")?;
            Ok(job.is_some())
        }
        Err(e) => {
            tx.execute_batch("ROLLBACK TO schedule; RELEASE schedule")?;
            Err(e)
        }
    }
}

/// Parses a JSON body; the error is the reason sent back with a 400.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("malformed request: {e}"))
}

/// `GET /api/agent/v1/appliance-key`: lets an agent check `--fingerprint` before it
/// spends a token use.
pub async fn appliance_key(State(st): State<AppState>) -> Response {
    let Some(fleet) = st.inner.fleet.as_ref() else {
        return refusal(StatusCode::SERVICE_UNAVAILABLE, "agent API not available");
    };
    Json(serde_json::json!({
        "appliance_key": fleet.appliance_key,
        "appliance_key_id": fleet.appliance_key_id,
    }))
    .into_response()
}

pub async fn enroll(State(st): State<AppState>, body: Bytes) -> Response {
    let Some(fleet) = st.inner.fleet.as_ref() else {
        return refusal(StatusCode::SERVICE_UNAVAILABLE, "agent API not available");
    };
    let req: EnrollRequest = match parse(&body) {
        Ok(r) => r,
        Err(why) => return refusal(StatusCode::BAD_REQUEST, why),
    };
    let now = fleet.clock.now();
    match st.db.write(move |tx| hosts::enroll(tx, now, &req)).await {
        Ok(host_id) => Json(EnrollResponse {
            host_id,
            appliance_key: fleet.appliance_key.clone(),
            appliance_key_id: fleet.appliance_key_id.clone(),
            poll_seconds: fleet.poll_seconds,
        })
        .into_response(),
        Err(e) => fleet_error(e),
    }
}

/// What the reader connection decided about a check-in.
enum Checkin {
    Malformed(String),
    Failed(FleetError),
    /// Nothing durable changes: the open jobs' tickets.
    Quiet(Vec<serde_json::Value>),
    /// Needs a write transaction.
    Write(CheckinRequest),
}

pub async fn checkin(State(st): State<AppState>, req: Request) -> Response {
    let Some(fleet) = st.inner.fleet.as_ref() else {
        return refusal(StatusCode::SERVICE_UNAVAILABLE, "agent API not available");
    };
    let now = fleet.clock.now();
    let p = fleet.presence.clone();
    let sched = fleet.scheduler.clone();
    // Authentication and, for a quiet check-in, the whole check-in on one reader
    // connection: a quiet check-in needs no write transaction.
    let decided = authenticate_then(req, &st, move |c, req| {
        let body: CheckinRequest = match parse(&req.body) {
            Ok(r) => r,
            Err(why) => return Checkin::Malformed(why),
        };
        // A check-in the plan could offer a job to is a write; every other unchanged
        // check-in stays on this read-only path, also while rollouts run.
        let offerable = match sched.planner.current() {
            Some(plan)
                if crate::db::rollout::rollout_generation(c).ok() == Some(plan.generation) =>
            {
                plan.may_offer(&sched.policy(), &req.host_id, now)
            }
            // Approvals or rollouts changed since the plan (or no plan yet while a
            // rollout is active): plan anew here, on this reader, so that an approval
            // does not send every check-in to the writer. Only one check-in rebuilds;
            // meanwhile, and before the planner task's first index load, the others
            // are offered nothing this time.
            stale => {
                let active = stale.is_some() || crate::db::rollout::any_active(c).unwrap_or(true);
                active
                    && match sched.planner.fresh(c, &sched.policy(), now) {
                        Ok(Some(plan)) => plan.may_offer(&sched.policy(), &req.host_id, now),
                        Ok(None) => false,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot plan rollouts; no offer this time");
                            false
                        }
                    }
            }
        };
        if offerable || !Presence::may_be_quiet(&body) {
            return Checkin::Write(body);
        }
        match hosts::quiet_checkin(c, &p, now, &req.host_id, &body) {
            Ok(Some(jobs)) => Checkin::Quiet(jobs),
            Ok(None) => Checkin::Write(body),
            Err(e) => Checkin::Failed(e),
        }
    })
    .await;
    let (req, decided) = match decided {
        Ok(d) => d,
        Err(refused) => return refused,
    };
    let respond = |jobs| {
        Json(CheckinResponse {
            jobs,
            next_checkin_s: fleet.poll_seconds,
        })
        .into_response()
    };
    let body = match decided {
        Checkin::Malformed(why) => return refusal(StatusCode::BAD_REQUEST, why),
        Checkin::Failed(e) => return fleet_error(e),
        Checkin::Quiet(jobs) => {
            metrics::counter!("patchward_checkins_total", "path" => "quiet").increment(1);
            return respond(jobs);
        }
        Checkin::Write(body) => body,
    };
    metrics::counter!("patchward_checkins_total", "path" => "write").increment(1);
    let host = req.host_id;
    let (p, h) = (fleet.presence.clone(), host.clone());
    let sched = fleet.scheduler.clone();
    let written = st
        .db
        .write(move |tx| {
            let jobs = hosts::checkin_and_note(tx, now, &h, body, Some(&p))?;
            match schedule(tx, now, &sched, &h) {
                Ok(true) => Ok(crate::fleet::jobs::open_tickets(tx, &h)?
                    .iter()
                    .map(serde_json::to_value)
                    .collect::<Result<_, _>>()?),
                Ok(false) => Ok(jobs),
                Err(e) => {
                    tracing::error!(error = %e, host = %h, "scheduler failed; no new job offered");
                    Ok(jobs)
                }
            }
        })
        .await;
    match written {
        Ok(jobs) => respond(jobs),
        Err(e) => {
            fleet.presence.forget(&host);
            fleet_error(e)
        }
    }
}
