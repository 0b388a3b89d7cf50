//! `GET /api/v1/mirror`: per source last success, catalog version, content age, expiry,
//! bytes and last error (the same data as `patchward mirror status --json`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;

pub async fn status(State(st): State<AppState>) -> Response {
    let Some(m) = st.inner.mirror.as_ref() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "mirror not available").into_response();
    };
    let db = st.db.clone();
    let store = m.store.clone();
    let sources = m.sources.clone();
    let now = m.clock.now();
    let r = tokio::task::spawn_blocking(move || crate::mirror::status(&db, &store, &sources, now))
        .await;
    match r {
        Ok(Ok(s)) => Json(s).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
