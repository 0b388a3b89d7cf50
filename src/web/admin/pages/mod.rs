//! The admin pages (owned by the pages work; see the contract in `web::admin`).
//!
//! `/` is a placeholder dashboard until the real one replaces it.

use askama::Template;
use axum::Router;
use axum::response::Response;
use axum::routing::get;

use crate::web::AppState;
use crate::web::admin::{Viewer, render};

/// The pages' routes, merged into `web::admin::router` behind the guard.
pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(dashboard))
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    viewer: Viewer,
    nav: &'static str,
}

async fn dashboard(viewer: Viewer) -> Response {
    render(&Dashboard {
        viewer,
        nav: "dashboard",
    })
}
