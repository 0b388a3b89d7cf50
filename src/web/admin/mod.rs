//! The local web admin page: sign-in, sessions, CSRF, roles, layout and assets, served
//! on the HTTPS listener only.
//!
//! # Contract for page modules (`pages/`)
//!
//! - Pages live in [`pages`], whose `pub fn routes() -> Router<AppState>` is merged into
//!   [`router`]. Every route there is behind the central guard ([`guard`]), so a page
//!   cannot forget any of these checks:
//!   - no valid session: GET/HEAD get `303 /login?next=<path>`, anything else (and every
//!     `/api/...` path) gets `401`;
//!   - password change pending: only `/password`, `/logout` and `/logout-all` are
//!     reachable (GET elsewhere redirects to `/password`, other methods get `403`);
//!   - POST/PUT/PATCH/DELETE need the session's CSRF token (form field `csrf` in an
//!     `application/x-www-form-urlencoded` body, or header `X-CSRF-Token`; multipart
//!     bodies must use the header) AND an `Origin` (or, without one, a `Referer`) equal
//!     to the page's own `https://host[:port]`; otherwise `403`;
//!   - role `auditor` gets `403` on every state-changing request except its own
//!     `/password`, `/logout` and `/logout-all`.
//! - Handlers take [`Viewer`] (any signed-in account) or [`AdminViewer`] (403 for
//!   auditors) as an extractor. Both only read what the guard resolved, so they cost
//!   nothing and fail closed when used outside the guard.
//! - Templates extend `base.html`. Their struct has the fields `viewer: Viewer` (the
//!   layout shows `viewer.user` and `viewer.role` and puts `viewer.csrf` into the
//!   sign-out form, a `<meta name="csrf-token">` and `hx-headers` on `<body>`, so htmx
//!   requests send `X-CSRF-Token` by themselves) and `nav: &'static str`, one of the keys
//!   of [`NAV`] (`"dashboard"`, `"hosts"`, `"patches"`, `"rollouts"`, `"windows"`,
//!   `"legacy"`, `"mirror"`, `"audit"`). Blocks: `title` and `content`. Render with [`render`].
//! - Plain HTML forms include `<input type="hidden" name="csrf" value="{{ viewer.csrf }}">`.
//! - Responses get the security headers of [`headers`] (CSP `default-src 'self'`, so
//!   no inline `<script>` or `style=""`; `Cache-Control: no-store` except `/static`).
//! - Static files are embedded ([`assets`]); link them with
//!   `{{ crate::web::admin::assets::url("app.css") }}`.

pub mod account;
pub mod assets;
pub mod guard;
pub mod headers;
pub mod not_found;
pub mod pages;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::AppState;

pub use crate::auth::Role;

/// The signed-in account of a request, as the guard resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// The account name (display it escaped; askama does).
    pub user: String,
    pub role: Role,
    /// This session's CSRF token, for forms and htmx.
    pub csrf: String,
    /// The header line of a printed page: site name and the time of the request by the
    /// appliance's clock (`static/app.css` shows it only in print).
    pub printed: String,
}

/// "Patchward on HOST · 2026-12-07 12:02 UTC": what a printed page says it is, from
/// where and as of when.
pub fn printed_line(now: jiff::Timestamp) -> String {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let host = HOST.get_or_init(crate::hostinfo::hostname);
    format!(
        "Patchward on {host} · printed {}",
        now.strftime("%Y-%m-%d %H:%M UTC")
    )
}

impl Viewer {
    pub fn is_admin(&self) -> bool {
        self.role.is_admin()
    }
}

/// A signed-in account with role `admin`; auditors get `403`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminViewer(pub Viewer);

/// One entry of the main navigation.
#[derive(Debug, Clone, Copy)]
pub struct NavItem {
    pub key: &'static str,
    pub label: &'static str,
    pub href: &'static str,
}

/// The main navigation, in order; a page's `nav` field names its `key`.
pub const NAV: &[NavItem] = &[
    NavItem {
        key: "dashboard",
        label: "Dashboard",
        href: "/",
    },
    NavItem {
        key: "hosts",
        label: "Hosts",
        href: "/hosts",
    },
    NavItem {
        key: "patches",
        label: "Patches",
        href: "/patches",
    },
    NavItem {
        key: "rollouts",
        label: "Rollouts",
        href: "/rollouts",
    },
    NavItem {
        key: "windows",
        label: "Windows",
        href: "/windows",
    },
    NavItem {
        key: "legacy",
        label: "Legacy",
        href: "/legacy",
    },
    NavItem {
        key: "mirror",
        label: "Mirror",
        href: "/mirror",
    },
    NavItem {
        key: "audit",
        label: "Audit",
        href: "/audit",
    },
];

/// Why a request without a usable session is turned away.
pub enum Unauthenticated {
    /// A page: go and sign in, then come back to `next`.
    SignIn { next: String },
    /// An API call, an htmx request or a form post: `401`.
    Status,
}

impl IntoResponse for Unauthenticated {
    fn into_response(self) -> Response {
        match self {
            Unauthenticated::SignIn { next } => {
                Redirect::to(&format!("/login?next={}", encode_next(&next))).into_response()
            }
            Unauthenticated::Status => (
                StatusCode::UNAUTHORIZED,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "Sign in first: your session is missing or has expired.\n",
            )
                .into_response(),
        }
    }
}

/// Percent-encodes a local path for the `next` query parameter.
pub(crate) fn encode_next(next: &str) -> String {
    let mut out = String::with_capacity(next.len());
    for b in next.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How to turn away a request that has no session (used by the guard and the
/// extractors): pages are redirected to the sign-in form, everything else gets `401`.
pub(crate) fn unauthenticated(
    method: &Method,
    parts_uri: &axum::http::Uri,
    htmx: bool,
) -> Unauthenticated {
    let path = parts_uri.path();
    let is_page =
        (method == Method::GET || method == Method::HEAD) && !htmx && !path.starts_with("/api/");
    if is_page {
        let next = parts_uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        Unauthenticated::SignIn { next }
    } else {
        Unauthenticated::Status
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Unauthenticated;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Viewer>() {
            Some(v) => Ok(v.clone()),
            None => Err(unauthenticated(
                &parts.method,
                &parts.uri,
                parts.headers.contains_key("hx-request"),
            )),
        }
    }
}

impl FromRequestParts<AppState> for AdminViewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let v = Viewer::from_request_parts(parts, st)
            .await
            .map_err(IntoResponse::into_response)?;
        if v.role != Role::Admin {
            return Err(forbidden(
                "Your account has the auditor role: it can read everything but change nothing.",
            ));
        }
        Ok(AdminViewer(v))
    }
}

/// A `403` with a plain message.
pub fn forbidden(message: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// Renders an askama template into an HTML response (a `500` that names no internals
/// if rendering fails, which compile-time checked templates make a bug).
pub fn render<T: askama::Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "page rendering failed\n").into_response()
        }
    }
}

/// The admin page's routes (sign-in, password, sign-out, static files, the admin API
/// `/api/v1/...` and every page of [`pages`]) behind the guard and the security
/// headers. `web::tls_router` merges them with the routes both listeners serve.
pub fn router(state: AppState) -> Router<AppState> {
    // The 404 fallback is behind the guard too: reading it needs no session (the guard
    // lets GET/HEAD of an unmatched path through), changing anything there is refused.
    guarded(
        own_routes()
            .merge(pages::routes())
            .fallback(not_found::page),
        state,
    )
}

/// Puts `routes` behind the guard and the security headers.
fn guarded(routes: Router<AppState>, state: AppState) -> Router<AppState> {
    routes
        .layer(axum::middleware::from_fn_with_state(state, guard::guard))
        .layer(axum::middleware::from_fn(headers::security_headers))
}

/// The routes this module serves itself.
fn own_routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(account::login_form).post(account::login))
        .route(
            "/password",
            get(account::password_form).post(account::change_password),
        )
        .route("/logout", post(account::logout))
        .route("/logout-all", post(account::logout_all))
        .route("/static/{file}", get(assets::serve))
        .route("/api/v1/mirror", get(super::mirror::status))
}

#[cfg(test)]
mod tests;
