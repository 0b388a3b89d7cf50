//! Authentication of signed agent requests (format in `fleet::signing`).
//!
//! [`AgentRequest`] is an axum extractor: it buffers the body (the router's body limit
//! applies), checks the date against the server's `Clock`, looks the host up, verifies
//! the signature with `verify_strict`, and refuses a signature already accepted within
//! the skew window. A refusal is 401 (403 for a revoked host) with `{"error": reason}`;
//! nothing is written on refusal.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use rusqlite::Connection;

use super::AppState;
use crate::fleet::signing::{self, AuthError, MAX_SKEW};

/// Signatures accepted within the skew window (a replay older than that fails the date
/// check anyway). Bounded: when full of live entries, new requests get 503.
pub struct ReplayGuard {
    // std Mutex: a short map operation, never held across an await.
    seen: Mutex<HashMap<[u8; 64], Timestamp>>,
    capacity: usize,
}

impl ReplayGuard {
    pub fn new(capacity: usize) -> Self {
        Self {
            seen: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// Remembers `sig` (dated `date`) unless it was seen before.
    pub fn check_and_remember(
        &self,
        sig: [u8; 64],
        date: Timestamp,
        now: Timestamp,
    ) -> Result<(), AuthError> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains_key(&sig) {
            return Err(AuthError::Replay);
        }
        if seen.len() >= self.capacity {
            let oldest_live = now.checked_sub(MAX_SKEW).unwrap_or(now);
            seen.retain(|_, d| *d >= oldest_live);
            if seen.len() >= self.capacity {
                return Err(AuthError::Busy);
            }
        }
        seen.insert(sig, date);
        Ok(())
    }
}

fn header<'a>(
    h: &'a HeaderMap,
    name: &'static str,
    label: &'static str,
) -> Result<&'a str, AuthError> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError::Header(label))
}

/// Authenticates a request; returns the host id.
pub fn authenticate(
    conn: &Connection,
    replay: &ReplayGuard,
    now: Timestamp,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, AuthError> {
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
    replay.check_and_remember(sig, date_t, now)?;
    Ok(row.id)
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

impl FromRequest<AppState> for AgentRequest {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        authenticate_then(req, state, |_, _| ())
            .await
            .map(|(r, ())| r)
    }
}

/// Authenticates `req` as the [`AgentRequest`] extractor does, then runs `then` on the
/// same reader connection: one trip to the blocking pool for handlers whose common case
/// is a read (a quiet check-in). `then` runs only for an authenticated request.
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
    let replay = fleet.replay.clone();
    let r = state
        .db
        .read(move |c| {
            let host_id = match authenticate(c, &replay, now, &method, &path, &headers, &body) {
                Ok(h) => h,
                Err(e) => return Ok::<_, crate::error::DbError>(Err(e)),
            };
            let req = AgentRequest {
                host_id,
                body,
                headers,
            };
            let out = then(c, &req);
            Ok(Ok((req, out)))
        })
        .await;
    match r {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(e)) => {
            let status = match e {
                AuthError::Revoked => StatusCode::FORBIDDEN,
                AuthError::Busy => StatusCode::SERVICE_UNAVAILABLE,
                AuthError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::UNAUTHORIZED,
            };
            Err(refusal(status, e))
        }
        Err(e) => Err(refusal(StatusCode::INTERNAL_SERVER_ERROR, e)),
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
        let auth = |h: &signing::SignedHeaders, body: &[u8], at: Timestamp| {
            db.read_blocking(|c| {
                Ok::<_, crate::error::DbError>(authenticate(
                    c,
                    &guard,
                    at,
                    "POST",
                    PATH,
                    &headers(h),
                    body,
                ))
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
            Ok::<_, crate::error::DbError>(authenticate(c, &guard, now, "POST", PATH, &m, b"{}"))
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
    fn replay_guard_is_bounded_and_prunes_by_time() {
        let g = ReplayGuard::new(2);
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        g.check_and_remember([1; 64], now, now).unwrap();
        g.check_and_remember([2; 64], now, now).unwrap();
        assert_eq!(
            g.check_and_remember([3; 64], now, now),
            Err(AuthError::Busy)
        );
        let later = now + SignedDuration::from_secs(301);
        g.check_and_remember([3; 64], later, later).unwrap();
        assert_eq!(
            g.check_and_remember([3; 64], later, later),
            Err(AuthError::Replay)
        );
    }
}
