//! `/healthz` and `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

use super::AppState;

/// 200 when the database answers with the expected schema, 503 otherwise.
pub async fn healthz(State(st): State<AppState>) -> impl IntoResponse {
    match st.db.check().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"status": "ok", "database": "ok", "version": st.inner.version})),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unhealthy", "database": e.to_string(),
                            "version": st.inner.version})),
            )
        }
    }
}

/// Prometheus text exposition.
pub async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    st.inner.prometheus.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.inner.prometheus.render(),
    )
}
