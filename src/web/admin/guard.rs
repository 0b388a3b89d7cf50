//! The central checks in front of every admin route, so no page can forget one:
//! same-origin, session, forced password change, role, CSRF token. See the contract in
//! `web::admin`. The order matters: everything that can refuse a request without its
//! body runs before the one check that may read a (small, bounded) form body.

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::{Viewer, forbidden, unauthenticated};
use crate::auth::Role;
use crate::auth::session::{self, COOKIE};
use crate::web::AppState;

/// Paths reachable without a session.
fn is_public(path: &str) -> bool {
    path == "/login" || path.starts_with("/static/")
}

/// Paths an account may use while its password must be changed, and the only
/// state-changing paths open to auditors: their own password and sessions.
fn is_self_service(path: &str) -> bool {
    matches!(path, "/password" | "/logout" | "/logout-all")
}

/// Whether a method changes state (and so needs the CSRF token and same origin).
pub fn changes_state(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The signed-in session behind a request, for the handlers that end or use it.
#[derive(Debug, Clone)]
pub struct CurrentSession {
    pub token_hash: String,
    pub user_id: i64,
    pub must_change_password: bool,
}

/// Session refresh granularity: `last_seen` is written at most this often per session.
const TOUCH_EVERY_MS: i64 = 60_000;

/// The value of the cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The request's own origin, `https://host[:port]`, from the Host header (HTTP/1.1) or
/// the URI's authority (HTTP/2).
fn own_origin(req: &Request) -> Option<String> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))?;
    Some(format!("https://{}", host.to_ascii_lowercase()))
}

/// Checks that a state-changing request comes from a page of this site: `Origin` must
/// equal `own`, or without `Origin`, `Referer` must start with `own` + `/`.
pub fn same_origin(headers: &HeaderMap, own: &str) -> Result<(), &'static str> {
    if let Some(o) = headers.get(header::ORIGIN) {
        let o = o.to_str().unwrap_or("").to_ascii_lowercase();
        return if o == own {
            Ok(())
        } else {
            Err(
                "Refused: this request came from another site (its Origin is not this page's). \
                 Reload the page and try again.",
            )
        };
    }
    match headers.get(header::REFERER).and_then(|r| r.to_str().ok()) {
        Some(r) => {
            let r = r.to_ascii_lowercase();
            if r == own || r.starts_with(&format!("{own}/")) {
                Ok(())
            } else {
                Err(
                    "Refused: this request came from another site (its Referer is not this \
                     page). Reload the page and try again.",
                )
            }
        }
        None => Err(
            "Refused: the request carries neither Origin nor Referer, so it cannot be \
                     shown to come from this page. Browsers send them; API clients must send \
                     Origin.",
        ),
    }
}

const CSRF_REFUSED: &str = "Refused: the form's security token is missing or out of date \
                            (for example after signing in again elsewhere). Reload the page and \
                            try again.";

/// Whether the request's `Content-Type` is `ty` (parameters ignored).
fn content_type_is(req: &Request, ty: &str) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(ty))
}

/// The `csrf` parameter of the request's query.
fn query_token(req: &Request) -> Option<String> {
    req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned())
    })
}

/// Finds the CSRF token of a state-changing request and gives the request back. Only
/// a small urlencoded form is ever read for it (at most
/// [`limits::MAX_FORM_BYTES`](crate::web::limits::MAX_FORM_BYTES), and never on a
/// streamed route); a multipart form (a file upload, streamed and never buffered here)
/// carries it in its action URL's query instead (`?csrf=...`), so an upload works
/// without JavaScript too. The caller has already checked the session and the role, so
/// nobody who may not make the change gets a body read at all.
async fn body_token(req: Request) -> Result<(Request, Option<String>), Response> {
    let streamed = crate::web::limits::STREAMED.contains(&req.uri().path());
    if streamed || content_type_is(&req, "multipart/form-data") {
        let token = query_token(&req);
        return Ok((req, token));
    }
    if !content_type_is(&req, "application/x-www-form-urlencoded") {
        return Ok((req, None));
    }
    let (parts, body) = req.into_parts();
    let max = crate::web::limits::MAX_FORM_BYTES;
    let bytes = match axum::body::to_bytes(body, max).await {
        Ok(b) => b,
        Err(e) => {
            // Over the bound, or cut off: either way nothing is changed.
            let too_large = crate::web::limits::is_length_limit(&e);
            return Err(if too_large {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("The form is larger than {max} bytes; nothing was changed.\n"),
                )
                    .into_response()
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    format!("Cannot read the form: {e}; nothing was changed.\n"),
                )
                    .into_response()
            });
        }
    };
    let token = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned());
    Ok((Request::from_parts(parts, Body::from(bytes)), token))
}

/// The middleware: resolves the session, then enforces the rules of the contract.
pub async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(admin) = st.inner.admin.as_ref() else {
        return (StatusCode::NOT_FOUND, "the admin page is not served here\n").into_response();
    };
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let changing = changes_state(&method);
    if changing {
        let Some(own) = own_origin(&req) else {
            return forbidden("Refused: the request names no host.");
        };
        if let Err(why) = same_origin(req.headers(), &own) {
            return forbidden(why);
        }
    }

    let now = admin.clock.now();
    let now_ms = session::millis(now);
    let row = match session_of(&st, req.headers(), now_ms).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let mut req = req;
    // A path no route serves reaches the 404 fallback, which has no `MatchedPath`.
    // Reading it needs no session (it must not send anyone to sign in for a page that
    // does not exist); changing anything there is refused like everywhere else.
    let unknown = req.extensions().get::<MatchedPath>().is_none();
    if is_public(&path) || (unknown && !changing) {
        if let Some(r) = &row {
            insert_session(&mut req, r, now);
        }
        return next.run(req).await;
    }
    let htmx = req.headers().contains_key("hx-request");
    let Some(row) = row else {
        return unauthenticated(&method, req.uri(), htmx).into_response();
    };
    if row.must_change_password && !is_self_service(&path) {
        return if method == Method::GET || method == Method::HEAD {
            Redirect::to("/password").into_response()
        } else {
            forbidden("Choose a new password first (/password).")
        };
    }
    if changing {
        // The role first: an auditor is refused before anything of its body is read.
        if row.role == Role::Auditor && !is_self_service(&path) {
            return forbidden(
                "Your account has the auditor role: it can read everything but change nothing.",
            );
        }
        let header_token = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (r, token) = match header_token {
            Some(t) => (req, Some(t)),
            None => match body_token(req).await {
                Ok(x) => x,
                Err(resp) => return resp,
            },
        };
        req = r;
        if !token.is_some_and(|t| session::secrets_equal(&t, &row.csrf)) {
            return forbidden(CSRF_REFUSED);
        }
    }
    touch(&st, &row, now_ms).await;
    insert_session(&mut req, &row, now);
    next.run(req).await
}

/// The usable session the request's cookie names, if any (read only: nothing is
/// enforced here). `Err` is the answer when the database cannot say.
async fn session_of(
    st: &AppState,
    headers: &HeaderMap,
    now_ms: i64,
) -> Result<Option<crate::db::users::SessionRow>, Response> {
    let Some(admin) = st.inner.admin.as_ref() else {
        return Ok(None);
    };
    let Some(token) = cookie(headers, COOKIE).filter(|t| session::plausible_token(t)) else {
        return Ok(None);
    };
    let hash = session::token_hash(token);
    match st
        .db
        .read(move |c| crate::db::users::session(c, &hash))
        .await
    {
        Ok(r) => Ok(r.filter(|r| session::usable(r, now_ms, &admin.settings.sessions))),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the session");
            Err((StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response())
        }
    }
}

/// The [`Viewer`] of a usable session at `now`.
fn viewer_of(row: &crate::db::users::SessionRow, now: jiff::Timestamp) -> Viewer {
    Viewer {
        user: row.user.clone(),
        role: row.role,
        csrf: row.csrf.clone(),
        printed: super::printed_line(now),
    }
}

fn insert_session(req: &mut Request, row: &crate::db::users::SessionRow, now: jiff::Timestamp) {
    req.extensions_mut().insert(viewer_of(row, now));
    req.extensions_mut().insert(CurrentSession {
        token_hash: row.token_sha256.clone(),
        user_id: row.user_id,
        must_change_password: row.must_change_password,
    });
}

/// Moves the session's `last_seen` forward, at most once a minute per session (so a
/// page with many requests costs one small write).
async fn touch(st: &AppState, row: &crate::db::users::SessionRow, now_ms: i64) {
    if now_ms - row.last_seen_ms < TOUCH_EVERY_MS {
        return;
    }
    let hash = row.token_sha256.clone();
    if let Err(e) = st
        .db
        .write(move |tx| crate::db::users::touch_session(tx, &hash, now_ms))
        .await
    {
        tracing::warn!(error = %e, "cannot record session activity");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const OWN: &str = "https://pw.example:8443";

    #[test]
    fn origin_must_be_our_own() {
        let ok = |h: &[(&'static str, &str)]| same_origin(&headers(h), OWN).is_ok();
        assert!(ok(&[("origin", "https://pw.example:8443")]));
        assert!(ok(&[("origin", "HTTPS://PW.example:8443")]));
        assert!(!ok(&[("origin", "https://evil.example")]));
        assert!(
            !ok(&[("origin", "http://pw.example:8443")]),
            "scheme counts"
        );
        assert!(!ok(&[("origin", "https://pw.example:8444")]), "port counts");
        assert!(!ok(&[("origin", "https://pw.example:8443.evil.example")]));
        assert!(!ok(&[("origin", "null")]));
        // Origin wins over a matching Referer.
        assert!(!ok(&[
            ("origin", "https://evil.example"),
            ("referer", "https://pw.example:8443/hosts")
        ]));
        // Referer only when Origin is missing; it must be a page of this origin.
        assert!(ok(&[("referer", "https://pw.example:8443/hosts?x=1")]));
        assert!(ok(&[("referer", "https://pw.example:8443")]));
        assert!(!ok(&[("referer", "https://pw.example:8443.evil.example/")]));
        assert!(!ok(&[(
            "referer",
            "https://evil.example/https://pw.example:8443/"
        )]));
        assert!(!ok(&[]), "neither header: refused");
    }

    #[test]
    fn cookies_are_found_among_others() {
        let h = headers(&[("cookie", "a=1; __Host-patchward_session=tok; b=2")]);
        assert_eq!(cookie(&h, COOKIE), Some("tok"));
        let h = headers(&[("cookie", "a=1"), ("cookie", "__Host-patchward_session=t2")]);
        assert_eq!(cookie(&h, COOKIE), Some("t2"));
        assert_eq!(
            cookie(
                &headers(&[("cookie", "x__Host-patchward_session=t")]),
                COOKIE
            ),
            None
        );
    }

    #[test]
    fn methods_and_paths() {
        assert!(changes_state(&Method::POST));
        assert!(changes_state(&Method::DELETE));
        assert!(changes_state(&Method::PATCH));
        assert!(changes_state(&Method::PUT));
        assert!(!changes_state(&Method::GET));
        assert!(is_public("/login") && is_public("/static/app.css"));
        assert!(!is_public("/login/x") && !is_public("/"));
        assert!(is_self_service("/password") && !is_self_service("/hosts"));
    }
}
