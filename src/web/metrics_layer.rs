//! Per-route request metrics.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

/// Counts requests and records their latency, labelled by method, matched route template
/// (`unmatched` for 404s, so scanners cannot blow up label cardinality) and status.
pub async fn record(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("patchward_http_requests_total", &labels).increment(1);
    metrics::histogram!("patchward_http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    resp
}
