//! Logging and metrics set-up.
//!
//! Logs go to stderr through `tracing`: human text by default, JSON lines on request.
//! Under systemd (`JOURNAL_STREAM` set) text logs drop timestamps and colours, because
//! journald stamps each line itself. Metrics use one process-wide Prometheus recorder
//! with no listener of its own; `/metrics` renders it.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global tracing subscriber. Safe to call once per process.
pub fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text if under_journald => builder
            .without_time()
            .with_ansi(false)
            .with_target(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // A second call (tests) keeps the first subscriber.
    let _ = result;
}

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus handle, installing the recorder on first use.
pub fn prometheus() -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ],
                )
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // If another recorder was installed first (embedding), ours still renders
            // what it was given; metrics just go to the other one.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
