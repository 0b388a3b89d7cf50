//! The body-size limit (413) and request timeout (408) of every route, with one
//! exception: the admin page's bundle upload, which streams to disk under its own cap
//! (`import.max_upload_mb`, checked while it streams) and gets a longer time bound.
//!
//! Same behaviour as tower-http's `RequestBodyLimitLayer` and `TimeoutLayer`: a
//! `Content-Length` over the limit is refused before the handler runs, and a body
//! without one is wrapped so that reading past the limit fails (axum's extractors
//! answer 413).

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Limits;

/// Paths whose handlers bound their own bodies: streamed uploads.
pub const STREAMED: &[&str] = &["/mirror/upload"];

/// How long a streamed upload (and its import) may take.
pub const STREAMED_TIMEOUT: Duration = Duration::from_secs(2 * 3600);

pub async fn enforce(State(l): State<Limits>, req: Request, next: Next) -> Response {
    if STREAMED.contains(&req.uri().path()) {
        return match tokio::time::timeout(STREAMED_TIMEOUT, next.run(req)).await {
            Ok(r) => r,
            Err(_) => StatusCode::REQUEST_TIMEOUT.into_response(),
        };
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > l.max_body_bytes as u64) {
        return (StatusCode::PAYLOAD_TOO_LARGE, "length limit exceeded").into_response();
    }
    let req = req.map(|b| Body::new(http_body_util::Limited::new(b, l.max_body_bytes)));
    match tokio::time::timeout(l.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => StatusCode::REQUEST_TIMEOUT.into_response(),
    }
}
