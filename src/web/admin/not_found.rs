//! Our own 404: for paths no route serves on the HTTPS listener.
//!
//! `/api/...` gets JSON (`{"error", "code": "not_found"}`), since its callers are
//! programs. A page gets HTML: the admin layout (navigation, account) when the request
//! carries a usable session, so a mistyped link leaves nobody stranded, and the plain
//! layout of the sign-in page otherwise, which names nothing about the appliance's
//! content. The handler sits outside the guard, so it only reads the session.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{Viewer, guard, render};
use crate::web::AppState;

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

/// The fallback handler.
pub async fn page(State(st): State<AppState>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    if path == "/api" || path.starts_with("/api/") {
        let body = serde_json::json!({
            "error": format!("no API endpoint {path}"),
            "code": "not_found",
        });
        return (StatusCode::NOT_FOUND, Json(body)).into_response();
    }
    let viewer = match st.inner.admin.as_ref() {
        Some(admin) => {
            let now = admin.clock.now();
            let ms = crate::auth::session::millis(now);
            match guard::session_of(&st, req.headers(), ms).await {
                // A pending password change keeps the account out of every page.
                Ok(Some(row)) if !row.must_change_password => Some(guard::viewer_of(&row, now)),
                Ok(_) => None,
                Err(resp) => return resp,
            }
        }
        None => None,
    };
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
