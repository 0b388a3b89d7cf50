//! Sign-in, password change and sign-out. Thin: parse the form, call `auth::users` on
//! the blocking pool (argon2 is CPU-heavy), render.

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use super::guard::CurrentSession;
use super::{Viewer, render};
use crate::auth::users::{self, SignIn};
use crate::auth::{AuthError, password, session};
use crate::web::AppState;

/// The client's IP address (for throttling and the audit trail).
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_else(|| "unknown".into()),
        ))
    }
}

/// Where to go after signing in: a local path only (never `//host` or a URL), else `/`.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && n.len() <= 2048
                && !n.chars().any(|c| c.is_control() || c == '\\')
                && n != "/login"
                && !n.starts_with("/login?") =>
        {
            n.to_owned()
        }
        _ => "/".into(),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    error: Option<String>,
    next: String,
    name: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// `GET /login`.
pub async fn login_form(
    viewer: Option<Extension<Viewer>>,
    Query(q): Query<LoginQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if viewer.is_some() {
        return Redirect::to(&next).into_response();
    }
    render(&LoginPage {
        error: None,
        next,
        name: String::new(),
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LoginForm {
    name: String,
    password: String,
    next: String,
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "account operation failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "The appliance cannot check accounts right now; try again in a moment.\n",
    )
        .into_response()
}

fn when(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `POST /login`.
pub async fn login(
    State(st): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let Some(admin) = st.inner.admin.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let next = safe_next(Some(&f.next));
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect::<String>());
    let (db, now, settings) = (st.db.clone(), admin.clock.now(), admin.settings);
    let (name, pw) = (f.name.clone(), f.password);
    let r = tokio::task::spawn_blocking(move || {
        users::sign_in(
            &db,
            now,
            &settings.sessions,
            &settings.throttle,
            &name,
            &pw,
            &addr,
            ua.as_deref(),
        )
    })
    .await;
    let (status, error) = match r {
        Ok(Ok(SignIn::Ok(s))) => {
            let to = if s.must_change_password {
                "/password".to_owned()
            } else {
                next
            };
            return (
                StatusCode::SEE_OTHER,
                [
                    (header::SET_COOKIE, session::set_cookie(&s.token)),
                    (header::LOCATION, to),
                ],
            )
                .into_response();
        }
        Ok(Ok(SignIn::Refused)) => (
            StatusCode::UNAUTHORIZED,
            "Sign-in failed: the user name or password is wrong, or the account is disabled."
                .to_owned(),
        ),
        Ok(Ok(SignIn::Throttled { until })) => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many failed sign-ins for this account or from this computer. Try again \
                 after {}.",
                when(until)
            ),
        ),
        Ok(Err(e)) => return unavailable(e),
        Err(e) => return unavailable(e),
    };
    let mut resp = render(&LoginPage {
        error: Some(error),
        next,
        name: f.name,
    });
    *resp.status_mut() = status;
    resp
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    viewer: Viewer,
    nav: &'static str,
    must_change: bool,
    error: Option<String>,
    min_len: usize,
}

/// `GET /password`.
pub async fn password_form(viewer: Viewer, Extension(s): Extension<CurrentSession>) -> Response {
    render(&PasswordPage {
        viewer,
        nav: "",
        must_change: s.must_change_password,
        error: None,
        min_len: password::MIN_LEN,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PasswordForm {
    current: String,
    new: String,
    repeat: String,
}

/// `POST /password`.
pub async fn change_password(
    State(st): State<AppState>,
    viewer: Viewer,
    Extension(s): Extension<CurrentSession>,
    ClientAddr(addr): ClientAddr,
    Form(f): Form<PasswordForm>,
) -> Response {
    let Some(admin) = st.inner.admin.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (db, now, rules) = (st.db.clone(), admin.clock.now(), admin.settings.throttle);
    let user = viewer.user.clone();
    let keep = s.token_hash.clone();
    let r = tokio::task::spawn_blocking(move || {
        users::change_own_password(
            &db, now, &rules, &user, &f.current, &f.new, &f.repeat, &keep, &addr,
        )
    })
    .await;
    let (status, error) = match r {
        Ok(Ok(())) => return Redirect::to("/").into_response(),
        Ok(Err(AuthError::Invalid(m))) => (StatusCode::BAD_REQUEST, m),
        Ok(Err(e @ AuthError::WrongPassword)) => (StatusCode::FORBIDDEN, e.to_string()),
        Ok(Err(AuthError::Throttled { until })) => (
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many wrong passwords. Try again after {}.", when(until)),
        ),
        Ok(Err(e)) => return unavailable(e),
        Err(e) => return unavailable(e),
    };
    let mut resp = render(&PasswordPage {
        viewer,
        nav: "",
        must_change: s.must_change_password,
        error: Some(error),
        min_len: password::MIN_LEN,
    });
    *resp.status_mut() = status;
    resp
}

fn signed_out() -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, session::clear_cookie()),
            (header::LOCATION, "/login".to_owned()),
        ],
    )
        .into_response()
}

/// `POST /logout`: ends this session.
pub async fn logout(
    State(st): State<AppState>,
    Extension(s): Extension<CurrentSession>,
) -> Response {
    let db = st.db.clone();
    match tokio::task::spawn_blocking(move || users::sign_out(&db, &s.token_hash)).await {
        Ok(Ok(())) => signed_out(),
        Ok(Err(e)) => unavailable(e),
        Err(e) => unavailable(e),
    }
}

/// `POST /logout-all`: ends every session of the account.
pub async fn logout_all(State(st): State<AppState>, viewer: Viewer) -> Response {
    let Some(admin) = st.inner.admin.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (db, now) = (st.db.clone(), admin.clock.now());
    match tokio::task::spawn_blocking(move || users::sign_out_everywhere(&db, now, &viewer.user))
        .await
    {
        Ok(Ok(_)) => signed_out(),
        Ok(Err(e)) => unavailable(e),
        Err(e) => unavailable(e),
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_is_a_local_path_or_the_dashboard() {
        for (given, want) in [
            (Some("/hosts?ring=pilot"), "/hosts?ring=pilot"),
            (Some("/"), "/"),
            (None, "/"),
            (Some(""), "/"),
            (Some("https://evil.example/"), "/"),
            (Some("//evil.example/"), "/"),
            (Some("/\\evil.example"), "/"),
            (Some("/a\\b"), "/"),
            (Some("/a\nb"), "/"),
            (Some("/login"), "/"),
            (Some("/login?next=/x"), "/"),
            (Some("hosts"), "/"),
        ] {
            assert_eq!(safe_next(given), want, "{given:?}");
        }
    }
}
