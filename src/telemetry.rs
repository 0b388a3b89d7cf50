//! Logging and metrics set-up.
//!
//! Logs go to stderr through `tracing`: human text by default, JSON lines on request.
//! Under systemd (`JOURNAL_STREAM` set) text logs drop timestamps and colours, because
//! journald stamps each line itself. Colours are only for a person at a terminal: when
//! stderr is a file, a pipe or a log collector, or `NO_COLOR` is set, lines carry no
//! ANSI escapes (they would end up in files and grep patterns as `^[[2m`). Metrics use one process-wide Prometheus recorder
//! with no listener of its own; `/metrics` renders it.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global tracing subscriber. Safe to call once per process.
pub fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = use_colours(
        std::io::stderr().is_terminal(),
        under_journald,
        std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text if under_journald => builder.without_time().with_target(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // A second call (tests) keeps the first subscriber.
    let _ = result;
}

/// Whether log lines may carry ANSI colours: only on a terminal, never for journald
/// or with `NO_COLOR` (<https://no-color.org>).
fn use_colours(stderr_is_terminal: bool, under_journald: bool, no_color: bool) -> bool {
    stderr_is_terminal && !under_journald && !no_color
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

#[cfg(test)]
mod tests {
    use super::use_colours;

    #[test]
    fn colours_only_for_a_person_at_a_terminal() {
        assert!(use_colours(true, false, false));
        assert!(!use_colours(false, false, false), "a pipe or a file");
        assert!(!use_colours(true, true, false), "journald");
        assert!(!use_colours(true, false, true), "NO_COLOR");
    }
}
