//! The admin pages (see the contract in `web::admin`): dashboard, hosts, patches,
//! rollouts, windows, mirror and audit log.
//!
//! Every page is rendered on the server by askama (auto-escaping on; no `|safe` on
//! data). Every action is a plain form: `POST`, then `303` back to a page that shows a
//! one-time flash message (a short-lived cookie), so everything works without
//! JavaScript; htmx only refreshes the rollout progress in place. A refused action
//! renders an error page with a 4xx status that says what to fix, and changes nothing:
//! state changes go through the same domain functions as the CLI (`rollout::cli`,
//! `rollout::approvals`, `fleet`, `mirror`, `rollout::windows`), in one transaction
//! with their audit entry, with the signed-in account as the actor.
//!
//! Each module holds its page's view model, a `load` function that reads it (queries
//! in `db::views` and the domain modules; no SQL here) and the thin handlers.

mod audit;
mod dashboard;
mod hosts;
mod jobs;
mod legacy;
mod legacy_fence;
mod legacy_host_fence;
mod mirror;
mod patches;
mod rollouts;
mod windows;
mod world;

#[cfg(test)]
mod legacy_fence_tests;
#[cfg(test)]
mod legacy_tests;
#[cfg(test)]
mod sla_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_jobs;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use jiff::Timestamp;

use crate::policy::Policy;
use crate::web::AppState;
use crate::web::admin::Viewer;

/// The pages' routes, merged into `web::admin::router` behind the guard.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/hosts", get(hosts::list))
        .route("/hosts/tokens", post(hosts::create_token))
        .route("/hosts/{id}", get(hosts::detail))
        .route("/hosts/{id}/revoke", post(hosts::revoke))
        .route("/jobs/{id}", get(jobs::detail))
        .route("/patches", get(patches::list))
        .route("/patches/{key}", get(patches::detail))
        .route("/patches/{key}/decide", post(patches::decide))
        .route("/rollouts", get(rollouts::list))
        .route("/rollouts/{key}", get(rollouts::detail))
        .route("/rollouts/{key}/rings", get(rollouts::rings_fragment))
        .route("/rollouts/{key}/control", post(rollouts::control))
        .route("/windows", get(windows::list).post(windows::add))
        .route("/windows/{id}", get(windows::edit).post(windows::change))
        .route("/windows/{id}/remove", post(windows::remove))
        .route("/mirror", get(mirror::page))
        .route("/mirror/sync", post(mirror::sync))
        // The upload streams to disk under its own cap (`import.max_upload_mb`).
        .route(
            "/mirror/upload",
            post(mirror::upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/audit", get(audit::page))
        .route("/legacy", get(legacy::list))
        .route("/legacy/segment", get(legacy_fence::page))
        .route("/legacy/segment/apply", post(legacy_fence::apply))
        .route(
            "/legacy/segment/exported",
            post(legacy_fence::mark_exported),
        )
        .route("/legacy/segment/export/{file}", get(legacy_fence::export))
        .route("/legacy/{name}/flows", post(legacy_host_fence::add_flow))
        .route(
            "/legacy/{name}/flows/remove",
            post(legacy_host_fence::remove_flow),
        )
        .route("/legacy/{name}/ports", post(legacy_host_fence::add_port))
        .route(
            "/legacy/{name}/ports/remove",
            post(legacy_host_fence::remove_port),
        )
        .route("/legacy/{name}", get(legacy::detail))
        .route("/legacy/{name}/accept", post(legacy::accept))
        .route(
            "/legacy/{name}/revoke-acceptance",
            post(legacy::revoke_acceptance),
        )
        .route("/legacy/{name}/include", post(legacy::include))
        .route("/legacy/{name}/exclude", post(legacy::exclude))
}

/// Rows per page of the long lists.
pub(crate) const PER_PAGE: usize = 50;

/// What every page handler needs from the state.
pub(crate) struct Ctx {
    pub db: crate::db::Db,
    pub now: Timestamp,
    /// The effective policy (configuration plus the window entries added here).
    pub policy: Arc<Policy>,
    pub st: AppState,
}

impl Ctx {
    /// The error is the response to send (a handler returns it as it is).
    #[allow(clippy::result_large_err)]
    pub fn new(st: &AppState) -> Result<Ctx, Response> {
        let Some(fleet) = st.inner.fleet.as_ref() else {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "the appliance is starting\n",
            )
                .into_response());
        };
        Ok(Ctx {
            db: st.db.clone(),
            now: fleet.clock.now(),
            policy: fleet.scheduler.policy(),
            st: st.clone(),
        })
    }

    pub fn scheduler(&self) -> &crate::web::Scheduler {
        &self
            .st
            .inner
            .fleet
            .as_ref()
            .expect("checked in new")
            .scheduler
    }
}

/// The audit actor of a change made on these pages: `web:<account>`, as the sign-in
/// and account events name it.
pub(crate) fn actor(v: &Viewer) -> String {
    format!("web:{}", v.user)
}

// ---- flash messages (POST-redirect-GET) ----

const FLASH: &str = "pw_flash";

/// A one-time message shown on the page a form redirects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Flash {
    pub ok: bool,
    pub text: String,
}

fn pct(s: &str) -> String {
    crate::web::admin::encode_next(s)
}

fn unpct(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        if b[i] == b'%'
            && let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Flash {
    /// The flash a request carries, if any.
    pub fn from_headers(h: &HeaderMap) -> Option<Flash> {
        let cookies = h.get_all(header::COOKIE);
        for v in cookies.iter().filter_map(|v| v.to_str().ok()) {
            for c in v.split(';') {
                if let Some(val) = c
                    .trim()
                    .strip_prefix(FLASH)
                    .and_then(|r| r.strip_prefix('='))
                {
                    let (ok, text) = match val.split_once('.') {
                        Some(("ok", t)) => (true, t),
                        Some((_, t)) => (false, t),
                        None => continue,
                    };
                    let text = unpct(text);
                    // At most a sentence or two; never more than the cookie held.
                    return Some(Flash {
                        ok,
                        text: text.chars().take(1000).collect(),
                    });
                }
            }
        }
        None
    }
}

fn flash_cookie(value: &str, max_age: u32) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{FLASH}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("pw_flash=; Path=/; Max-Age=0"))
}

/// `303 See Other` to `to`, with a one-time message for the page there.
pub(crate) fn done(to: &str, ok: bool, text: &str) -> Response {
    if ok {
        // Something changed: the shared rollout snapshot is out of date.
        world::invalidate();
    }
    let text: String = text.chars().take(600).collect();
    let value = format!("{}.{}", if ok { "ok" } else { "err" }, pct(&text));
    let mut r = Redirect::to(to).into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, flash_cookie(&value, 60));
    r
}

/// Like [`done`], for a request made by htmx (it navigates on `HX-Redirect`) as well
/// as for a plain form.
pub(crate) fn done_htmx(headers: &HeaderMap, to: &str, ok: bool, text: &str) -> Response {
    let mut r = done(to, ok, text);
    if headers.contains_key("hx-request") {
        *r.status_mut() = StatusCode::OK;
        r.headers_mut().remove(header::LOCATION);
        if let Ok(v) = HeaderValue::from_str(to) {
            r.headers_mut().insert("hx-redirect", v);
        }
    }
    r
}

/// Renders a page; when the request carried a flash (now shown), clears it.
pub(crate) fn show<T: Template>(t: &T, flash: &Option<Flash>) -> Response {
    let mut r = crate::web::admin::render(t);
    if flash.is_some() {
        r.headers_mut()
            .append(header::SET_COOKIE, flash_cookie("", 0));
    }
    r
}

// ---- error pages ----

#[derive(Template)]
#[template(path = "pages/error.html")]
struct ErrorPage<'a> {
    viewer: Viewer,
    nav: &'static str,
    title: &'a str,
    message: &'a str,
    back: &'a str,
}

/// A page that says what went wrong and links back, with `status`.
pub(crate) fn error_page(
    viewer: Viewer,
    nav: &'static str,
    status: StatusCode,
    title: &str,
    message: &str,
    back: &str,
) -> Response {
    let mut r = crate::web::admin::render(&ErrorPage {
        viewer,
        nav,
        title,
        message,
        back,
    });
    *r.status_mut() = status;
    r
}

/// An internal failure: logged, and a page that names no internals.
pub(crate) fn internal(viewer: Viewer, nav: &'static str, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "admin page failed");
    error_page(
        viewer,
        nav,
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The appliance could not complete this request. The details are in its log.",
        "/",
    )
}

// ---- small formatting helpers for templates ----

/// A stored RFC 3339 time as "2026-11-27 16:32 UTC" (the text itself if it does not parse).
pub(crate) fn when(s: impl AsRef<str>) -> String {
    let s = s.as_ref();
    match s.parse::<Timestamp>() {
        Ok(t) => when_ts(t),
        Err(_) => s.to_string(),
    }
}

pub(crate) fn when_ts(t: impl std::borrow::Borrow<Timestamp>) -> String {
    t.borrow().strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// "5 min ago", "3 h ago", "2 d ago", "in 4 h".
pub(crate) fn ago(now: Timestamp, t: Timestamp) -> String {
    let secs = now.duration_since(t).as_secs();
    let (future, s) = (secs < 0, secs.unsigned_abs());
    let text = if s < 90 {
        format!("{s} s")
    } else if s < 90 * 60 {
        format!("{} min", s / 60)
    } else if s < 36 * 3600 {
        format!("{} h", s / 3600)
    } else {
        format!("{} d", s / 86400)
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// Pagination state for a list.
#[derive(Debug, Clone)]
pub(crate) struct Pager {
    pub page: usize,
    pub pages: usize,
    pub total: usize,
    /// The list's query string without `page` (already URL-encoded), for the links.
    pub query: String,
}

impl Pager {
    pub fn new(page: usize, total: usize, query: String) -> Pager {
        let pages = total.div_ceil(PER_PAGE).max(1);
        Pager {
            page: page.clamp(1, pages),
            pages,
            total,
            query,
        }
    }

    pub fn offset(&self) -> usize {
        (self.page - 1) * PER_PAGE
    }

    pub fn first_row(&self) -> usize {
        if self.total == 0 {
            0
        } else {
            self.offset() + 1
        }
    }

    pub fn last_row(&self) -> usize {
        (self.offset() + PER_PAGE).min(self.total)
    }

    pub fn href(&self, page: impl std::borrow::Borrow<usize>) -> String {
        let page = *page.borrow();
        if self.query.is_empty() {
            format!("?page={page}")
        } else {
            format!("?{}&page={page}", self.query)
        }
    }
}

/// Builds a query string from the non-empty pairs (values URL-encoded).
pub(crate) fn query_string(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes a value for a URL (path segment or query).
pub(crate) fn enc(s: impl AsRef<str>) -> String {
    let s = s.as_ref();
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The first 16 characters of a hash.
#[allow(clippy::ptr_arg)] // askama passes `&String`
pub(crate) fn short(s: &String) -> &str {
    s.get(..16).unwrap_or(s)
}

/// The date part of a stored RFC 3339 time.
#[allow(clippy::ptr_arg)] // askama passes `&String`
pub(crate) fn day(s: &String) -> &str {
    s.get(..10).unwrap_or(s)
}

pub(crate) fn patches_state(a: &crate::policy::Approval) -> &'static str {
    patches::approval_state(a)
}

pub(crate) fn patches_text(a: &crate::policy::Approval) -> String {
    patches::approval_text(a)
}

pub(crate) fn artifact_format(a: &crate::feed::catalog::Artifact) -> String {
    format!("{:?}", a.format).to_lowercase()
}

/// "apt, about 5 min, reboots, backup first".
pub(crate) fn install_text(e: &crate::feed::catalog::PatchEntry) -> String {
    let mut s = format!(
        "{}, about {} min",
        if e.install == crate::feed::catalog::InstallMethod::Apt {
            "apt"
        } else {
            "script"
        },
        e.est_minutes
    );
    if e.reboot {
        s.push_str(", reboots");
    }
    if e.needs_backup() {
        s.push_str(", backup first");
    }
    s
}

/// `FEED:ID` in a path segment: the patch id may contain `/`, so links encode it.
pub(crate) fn patch_href(prefix: &str, key: impl AsRef<str>) -> String {
    format!("{prefix}/{}", enc(key.as_ref()))
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn flash_round_trips_through_the_cookie() {
        let text = "Approved acme:DSA-1/openssl <script>\"x\"; ünïcode";
        let r = done("/x", true, text);
        let set = r
            .headers()
            .get(header::SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        let value = set.split(';').next().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=b; {value}")).unwrap(),
        );
        assert_eq!(
            Flash::from_headers(&h),
            Some(Flash {
                ok: true,
                text: text.into()
            })
        );
    }

    #[test]
    fn pager_clamps_and_links_keep_the_filters() {
        let p = Pager::new(9, 120, query_string(&[("q", "a b&c"), ("ring", "")]));
        assert_eq!(
            (p.page, p.pages, p.first_row(), p.last_row()),
            (3, 3, 101, 120)
        );
        assert_eq!(p.href(2), "?q=a%20b%26c&page=2");
        assert_eq!(Pager::new(0, 0, String::new()).first_row(), 0);
    }

    #[test]
    fn ages() {
        let now: Timestamp = "2026-11-27T12:00:00Z".parse().unwrap();
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(ago(now, t("2026-11-27T11:59:30Z")), "30 s ago");
        assert_eq!(ago(now, t("2026-11-27T09:00:00Z")), "3 h ago");
        assert_eq!(ago(now, t("2026-11-20T12:00:00Z")), "7 d ago");
        assert_eq!(ago(now, t("2026-11-27T16:00:00Z")), "in 4 h");
    }
}
