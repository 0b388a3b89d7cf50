//! Authentication of signed agent requests (format in `fleet::signing`).
//!
//! [`AgentRequest`] is an axum extractor: it buffers the body (the router's body limit
//! applies), checks the date against the server's `Clock`, looks the host up, verifies
//! the signature with `verify_strict`, refuses a signature that host had accepted before
//! (this run or an earlier one, see `agent_replay`), and takes one of the host's request
//! tokens (`agent_rate`). The replay and rate checks are per verified host, so one
//! host's traffic cannot deny another's. A refusal is 401 (403 for a revoked host, 429
//! over the host's rate, 503 while replay memory is full or for a request signed before
//! a restart; 429 and 503 carry `Retry-After`) with `{"error": reason}`; nothing is
//! written on refusal.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use rusqlite::Connection;

use super::AppState;
pub use super::agent_rate::RateLimiter;
use super::agent_replay::Remembered;
pub use super::agent_replay::ReplayGuard;
use crate::fleet::signing::{self, AuthError};

fn header<'a>(
    h: &'a HeaderMap,
    name: &'static str,
    label: &'static str,
) -> Result<&'a str, AuthError> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError::Header(label))
}

/// An authenticated request's host, and what must be committed before it is acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub host_id: String,
    /// The request is dated past the stored replay horizon: this host's floor must be
    /// committed first (`agent_replay::store_floor`).
    pub needs_floor: Option<Timestamp>,
}

/// Authenticates a request. Replays are refused before the host's rate is charged, so
/// that replaying captured requests cannot use up an honest host's tokens; a request
/// refused for its rate is not remembered (it is bounded by the rate, and the agent
/// signs its retry afresh).
#[allow(clippy::too_many_arguments)]
pub fn authenticate(
    conn: &Connection,
    replay: &ReplayGuard,
    rate: &RateLimiter,
    now: Timestamp,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Authenticated, AuthError> {
    let host = header(headers, signing::HOST_HEADER, "Patchward-Host")?;
    let date = header(headers, signing::DATE_HEADER, "Patchward-Date")?;
    let sig = signing::decode_signature(header(
        headers,
        signing::SIGNATURE_HEADER,
        "Patchward-Signature",
    )?)?;
    let date_t = signing::check_date(date, now)?;
    let row = crate::db::fleet::host(conn, host)
        .map_err(|_| AuthError::Internal)?
        .ok_or(AuthError::UnknownHost)?;
    let public =
        crate::fleet::hosts::parse_public_key(&row.public_key).map_err(|_| AuthError::Internal)?;
    signing::verify(&public, method, path, date, &sig, body)?;
    if row.revoked_at.is_some() {
        return Err(AuthError::Revoked);
    }
    replay.check(&row.id, &sig, date_t)?;
    rate.take(&row.id, now)
        .map_err(|retry_after_s| AuthError::RateLimited { retry_after_s })?;
    let needs_floor = match replay.remember(&row.id, sig, date_t, now)? {
        Remembered::Done => None,
        Remembered::NeedsFloor(t) => Some(t),
    };
    Ok(Authenticated {
        host_id: row.id,
        needs_floor,
    })
}

/// An authenticated agent request: the host, the raw body it signed, and the request's
/// headers (for handlers that read conditional or range headers).
pub struct AgentRequest {
    pub host_id: String,
    pub body: Bytes,
    pub headers: HeaderMap,
}

/// A refusal as the agent sees it.
pub fn refusal(status: StatusCode, reason: impl ToString) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": reason.to_string() })),
    )
        .into_response()
}

/// A refusal the agent should retry after `seconds` (429 or 503).
pub fn retry_later(status: StatusCode, reason: impl ToString, seconds: u64) -> Response {
    let mut r = refusal(status, reason);
    if let Ok(v) = HeaderValue::from_str(&seconds.max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// The answer for a refused authentication.
pub fn auth_refusal(e: AuthError) -> Response {
    match e {
        AuthError::RateLimited { retry_after_s } => {
            retry_later(StatusCode::TOO_MANY_REQUESTS, e, retry_after_s)
        }
        AuthError::SignedBeforeRestart { retry_after_s } => {
            retry_later(StatusCode::SERVICE_UNAVAILABLE, e, retry_after_s)
        }
        AuthError::Busy => retry_later(StatusCode::SERVICE_UNAVAILABLE, e, 5),
        AuthError::Revoked => refusal(StatusCode::FORBIDDEN, e),
        AuthError::Internal => refusal(StatusCode::INTERNAL_SERVER_ERROR, e),
        _ => refusal(StatusCode::UNAUTHORIZED, e),
    }
}

impl FromRequest<AppState> for AgentRequest {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        authenticate_then(req, state, |_, _| ())
            .await
            .map(|(r, ())| r)
    }
}

/// What the reader connection made of a request.
enum Read<T, F> {
    Done(AgentRequest, T),
    /// Authenticated, but the host's replay floor must be committed before `then` runs.
    Floor(AgentRequest, F, Timestamp),
}

/// Authenticates `req` as the [`AgentRequest`] extractor does, then runs `then` on the
/// same reader connection: one trip to the blocking pool for handlers whose common case
/// is a read (a quiet check-in). `then` runs only for an authenticated request, and only
/// after the host's replay floor is committed when the request needs one (rare: a host
/// whose clock runs ahead of the stored horizon).
pub async fn authenticate_then<T, F>(
    req: Request,
    state: &AppState,
    then: F,
) -> Result<(AgentRequest, T), Response>
where
    F: FnOnce(&Connection, &AgentRequest) -> T + Send + 'static,
    T: Send + 'static,
{
    let Some(fleet) = state.inner.fleet.as_ref() else {
        return Err(refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "agent API not available",
        ));
    };
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let headers = req.headers().clone();
    let body = Bytes::from_request(req, state)
        .await
        .map_err(|e| refusal(e.status(), e.body_text()))?;
    let now = fleet.clock.now();
    let (replay, rate) = (fleet.replay.clone(), fleet.rate.clone());
    let r = state
        .db
        .read(move |c| {
            let auth = match authenticate(c, &replay, &rate, now, &method, &path, &headers, &body) {
                Ok(a) => a,
                Err(e) => return Ok::<_, crate::error::DbError>(Err(e)),
            };
            let req = AgentRequest {
                host_id: auth.host_id,
                body,
                headers,
            };
            Ok(Ok(match auth.needs_floor {
                Some(date) => Read::Floor(req, then, date),
                None => {
                    let out = then(c, &req);
                    Read::Done(req, out)
                }
            }))
        })
        .await;
    let internal = |e: crate::error::DbError| {
        tracing::error!(error = %e, "agent request failed");
        refusal(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    };
    match r {
        Ok(Ok(Read::Done(req, out))) => Ok((req, out)),
        Ok(Ok(Read::Floor(req, then, date))) => {
            let host = req.host_id.clone();
            state
                .db
                .write(move |tx| super::agent_replay::store_floor(tx, &host, date))
                .await
                .map_err(internal)?;
            state
                .db
                .read(move |c| {
                    let out = then(c, &req);
                    Ok::<_, crate::error::DbError>((req, out))
                })
                .await
                .map_err(internal)
        }
        Ok(Err(e)) => Err(auth_refusal(e)),
        Err(e) => Err(internal(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::hosts::tests_support::enrolled;
    use crate::trust::keys::Ed25519Key;
    use jiff::SignedDuration;

    const PATH: &str = "/api/agent/v1/checkin";

    fn headers(h: &signing::SignedHeaders) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in h.pairs() {
            m.insert(k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn signed_request_rules() {
        let d = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&d.path().join("t.db"), Default::default()).unwrap();
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let key = Ed25519Key::generate(&mut rand::rngs::OsRng);
        let id = enrolled(&db, now, &key);
        let other = Ed25519Key::generate(&mut rand::rngs::OsRng);
        let other_id = enrolled(&db, now, &other);
        let guard = ReplayGuard::new(1000);
        let rate = RateLimiter::new(600, 100);
        let auth = |h: &signing::SignedHeaders, body: &[u8], at: Timestamp| {
            db.read_blocking(|c| {
                Ok::<_, crate::error::DbError>(
                    authenticate(c, &guard, &rate, at, "POST", PATH, &headers(h), body)
                        .map(|a| a.host_id),
                )
            })
            .unwrap()
        };
        // Good.
        let good = signing::sign(&key, &id, "POST", PATH, now, b"{}");
        assert_eq!(auth(&good, b"{}", now), Ok(id.clone()));
        // Replayed.
        assert_eq!(auth(&good, b"{}", now), Err(AuthError::Replay));
        // Forged: another key claims this host.
        let forged = signing::sign(&other, &id, "POST", PATH, now, b"{}");
        assert_eq!(auth(&forged, b"{}", now), Err(AuthError::BadSignature));
        // Body changed after signing.
        let h = signing::sign(&key, &id, "POST", PATH, now, b"{}");
        assert_eq!(auth(&h, b"{\"x\":1}", now), Err(AuthError::BadSignature));
        // Wrong host: signed by this key, sent as the other host.
        let wrong = signing::sign(&key, &other_id, "POST", PATH, now, b"{}");
        assert_eq!(auth(&wrong, b"{}", now), Err(AuthError::BadSignature));
        let unknown = signing::sign(&key, "h-nobody", "POST", PATH, now, b"{}");
        assert_eq!(auth(&unknown, b"{}", now), Err(AuthError::UnknownHost));
        // Skewed, both ways.
        let old = signing::sign(
            &key,
            &id,
            "POST",
            PATH,
            now - SignedDuration::from_secs(301),
            b"{}",
        );
        assert_eq!(auth(&old, b"{}", now), Err(AuthError::Skew));
        let future = signing::sign(
            &key,
            &id,
            "POST",
            PATH,
            now + SignedDuration::from_secs(301),
            b"{}",
        );
        assert_eq!(auth(&future, b"{}", now), Err(AuthError::Skew));
        // Missing header.
        let mut m = headers(&good);
        m.remove(signing::SIGNATURE_HEADER);
        let r = db.read_blocking(|c| {
            Ok::<_, crate::error::DbError>(authenticate(
                c, &guard, &rate, now, "POST", PATH, &m, b"{}",
            ))
        });
        assert!(matches!(r.unwrap(), Err(AuthError::Header(_))));
        // Revoked: refused at once.
        db.write_blocking(|tx| crate::fleet::hosts::revoke(tx, &id, now, "test", ""))
            .unwrap();
        let fresh = signing::sign(
            &key,
            &id,
            "POST",
            PATH,
            now + SignedDuration::from_secs(1),
            b"{}",
        );
        assert_eq!(auth(&fresh, b"{}", now), Err(AuthError::Revoked));
    }

    #[test]
    fn one_host_over_its_rate_or_replay_memory_leaves_the_others_alone() {
        let d = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&d.path().join("t.db"), Default::default()).unwrap();
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let (ka, kb) = (
            Ed25519Key::generate(&mut rand::rngs::OsRng),
            Ed25519Key::generate(&mut rand::rngs::OsRng),
        );
        let (a, b) = (enrolled(&db, now, &ka), enrolled(&db, now, &kb));
        // Replay memory for 8 signatures per host, and a rate of 5 at once.
        let guard = ReplayGuard::new(8);
        let rate = RateLimiter::new(60, 5);
        let auth = |h: &signing::SignedHeaders| {
            db.read_blocking(|c| {
                Ok::<_, crate::error::DbError>(
                    authenticate(c, &guard, &rate, now, "POST", PATH, &headers(h), b"{}")
                        .map(|a| a.host_id),
                )
            })
            .unwrap()
        };
        let signed = |k: &Ed25519Key, host: &str, i: i64| {
            signing::sign(
                k,
                host,
                "POST",
                PATH,
                now + SignedDuration::from_millis(i),
                b"{}",
            )
        };
        let first = signed(&ka, &a, 0);
        assert_eq!(auth(&first), Ok(a.clone()));
        // Replays are refused without spending a's tokens.
        for _ in 0..10 {
            assert_eq!(auth(&first), Err(AuthError::Replay));
        }
        for i in 1..5 {
            assert_eq!(auth(&signed(&ka, &a, i)), Ok(a.clone()));
        }
        // a is over its rate: 429 with the wait; b is not.
        let over = auth(&signed(&ka, &a, 5));
        assert_eq!(over, Err(AuthError::RateLimited { retry_after_s: 1 }));
        let r = auth_refusal(over.unwrap_err());
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(auth(&signed(&kb, &b, 0)), Ok(b.clone()));
        // A rate-limited request is not remembered: a's memory holds its 5 accepted.
        assert_eq!(guard.remembered(&a), 5);
        assert_eq!(guard.remembered(&b), 1);
        // A full memory refuses only its own host (here with a generous rate).
        let generous = RateLimiter::new(6000, 1000);
        let busy = |h: &signing::SignedHeaders| {
            db.read_blocking(|c| {
                Ok::<_, crate::error::DbError>(
                    authenticate(c, &guard, &generous, now, "POST", PATH, &headers(h), b"{}")
                        .map(|a| a.host_id),
                )
            })
            .unwrap()
        };
        for i in 10..13 {
            assert_eq!(busy(&signed(&ka, &a, i)), Ok(a.clone()));
        }
        assert_eq!(busy(&signed(&ka, &a, 13)), Err(AuthError::Busy));
        assert_eq!(busy(&signed(&kb, &b, 1)), Ok(b.clone()));
    }
}
