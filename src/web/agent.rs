//! The agent API, `/api/agent/v1`: enrollment (authenticated by a token) and check-in
//! (authenticated by a signed request, see `agent_auth`). Handlers parse, call
//! `fleet::hosts`, render.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::agent_auth::{AgentRequest, refusal};
use crate::fleet::FleetError;
use crate::fleet::hosts::{self, CheckinRequest, CheckinResponse, EnrollRequest, EnrollResponse};

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
        FleetError::NoSuchHost(_) => StatusCode::UNAUTHORIZED,
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
    tx.execute_batch("SAVEPOINT schedule")?;
    match crate::rollout::engine::offer(tx, now, &sched.policy, &sched.key, host) {
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

pub async fn checkin(State(st): State<AppState>, req: AgentRequest) -> Response {
    let Some(fleet) = st.inner.fleet.as_ref() else {
        return refusal(StatusCode::SERVICE_UNAVAILABLE, "agent API not available");
    };
    let body: CheckinRequest = match parse(&req.body) {
        Ok(r) => r,
        Err(why) => return refusal(StatusCode::BAD_REQUEST, why),
    };
    let now = fleet.clock.now();
    let host = req.host_id;
    let sched = fleet.scheduler.clone();
    match st
        .db
        .write(move |tx| {
            let jobs = hosts::checkin_with_jobs(tx, now, &host, body)?;
            match schedule(tx, now, &sched, &host) {
                Ok(true) => Ok(crate::fleet::jobs::open_tickets(tx, &host)?
                    .iter()
                    .map(serde_json::to_value)
                    .collect::<Result<_, _>>()?),
                Ok(false) => Ok(jobs),
                Err(e) => {
                    tracing::error!(error = %e, host = %host, "scheduler failed; no new job offered");
                    Ok(jobs)
                }
            }
        })
        .await
    {
        Ok(jobs) => Json(CheckinResponse {
            jobs,
            next_checkin_s: fleet.poll_seconds,
        })
        .into_response(),
        Err(e) => fleet_error(e),
    }
}
