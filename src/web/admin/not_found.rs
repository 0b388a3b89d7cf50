//! Our own 404: for paths no route serves on the HTTPS listener.
//!
//! `/api/...` gets JSON (`{"error", "code": "not_found"}`), since its callers are
//! programs. A page gets HTML: the admin layout (navigation, account) when the request
//! carries a usable session, so a mistyped link leaves nobody stranded, and the plain
//! layout of the sign-in page otherwise, which names nothing about the appliance's
//! content. The guard lets a GET or HEAD of an unmatched path through without a
//! session and refuses changes there as everywhere.

use axum::Json;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::guard::CurrentSession;
use super::{Viewer, render};

/// `404` for a signed-in viewer, in the admin layout.
#[derive(askama::Template)]
#[template(path = "pages/not_found.html")]
struct SignedIn {
    viewer: Viewer,
    nav: &'static str,
    path: String,
}

/// `404` for everyone else, in the plain layout.
#[derive(askama::Template)]
#[template(path = "not_found_plain.html")]
struct Plain {
    path: String,
}

/// The fallback handler (the guard resolved the session, if any, and enforced nothing
/// for a GET or HEAD).
pub async fn page(req: Request) -> Response {
    let path = req.uri().path().to_owned();
    if path == "/api" || path.starts_with("/api/") {
        let body = serde_json::json!({
            "error": format!("no API endpoint {path}"),
            "code": "not_found",
        });
        return (StatusCode::NOT_FOUND, Json(body)).into_response();
    }
    // A pending password change keeps the account out of every page.
    let pending = req
        .extensions()
        .get::<CurrentSession>()
        .is_some_and(|s| s.must_change_password);
    let viewer = req
        .extensions()
        .get::<Viewer>()
        .filter(|_| !pending)
        .cloned();
    let page = match viewer {
        Some(viewer) => render(&SignedIn {
            viewer,
            nav: "",
            path,
        }),
        None => render(&Plain { path }),
    };
    (StatusCode::NOT_FOUND, page).into_response()
}
