//! The server's per-source sync schedule: every configured mirror source is synced
//! shortly after start (with jitter) and then every `interval` (with jitter), until the
//! server shuts down.
//!
//! Each source has its own task and runs one sync at a time (the task awaits the sync
//! before it sleeps again), so a slow sync never overlaps itself. A failed sync (an
//! unreachable upstream is the usual case) is already recorded in `mirror_status` by
//! [`mirror::sync_source`]; here it is only logged, and the next tick tries again.
//! Syncs run on tokio's blocking pool because the import pipeline is synchronous.
//!
//! A source without a `url` is bundle-only (offline by design) and gets no task: there
//! is nothing to sync, and a sync that could only fail would show a permanent error.
//! Sync times come from the server's [`Clock`](crate::clock::Clock).

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::SharedClock;
use crate::config::{Config, MirrorSource};
use crate::db::Db;
use crate::feed::import::NoProgress;
use crate::mirror;
use crate::store::Store;

/// The actor recorded in the audit log for scheduled syncs.
pub const ACTOR: &str = "scheduler";

/// Starts one task per configured source with a URL; they stop when `shutdown` turns true (a sync
/// already running finishes on its blocking thread; the import is crash-safe anyway).
pub fn spawn(
    config: &Config,
    db: Db,
    store: Arc<Store>,
    clock: SharedClock,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    syncable(&config.mirror.sources)
        .cloned()
        .map(|src| {
            tokio::spawn(run_source(
                src,
                db.clone(),
                store.clone(),
                clock.clone(),
                shutdown.clone(),
            ))
        })
        .collect()
}

/// The sources the scheduler syncs: those with a URL.
fn syncable(sources: &[MirrorSource]) -> impl Iterator<Item = &MirrorSource> {
    sources.iter().filter(|s| s.url.is_some())
}

/// The first sync waits 2-10 s, so start-up is not slowed and appliances restarted
/// together do not call their upstream in the same second.
fn first_delay() -> Duration {
    Duration::from_millis(rand::thread_rng().gen_range(2_000..=10_000))
}

/// `interval` plus or minus 10 %.
fn next_delay(interval: Duration) -> Duration {
    let spread = interval.as_millis() as u64 / 10;
    let base = interval.as_millis() as u64 - spread;
    Duration::from_millis(base + rand::thread_rng().gen_range(0..=2 * spread))
}

async fn run_source(
    src: MirrorSource,
    db: Db,
    store: Arc<Store>,
    clock: SharedClock,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut wait = first_delay();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let (s, d, st, ck) = (src.clone(), db.clone(), store.clone(), clock.clone());
        let sync = tokio::task::spawn_blocking(move || {
            mirror::sync_source(&d, &st, &s, ACTOR, &NoProgress, ck.as_ref())
        });
        tokio::select! {
            r = sync => match r {
                Ok(Ok(summary)) => tracing::info!(
                    source = %src.name,
                    catalog_version = summary.catalog_version,
                    already_current = summary.already_current,
                    bytes = summary.bytes_stored,
                    "scheduled sync done"
                ),
                // sync_source logged and recorded the error already.
                Ok(Err(_)) => {}
                Err(e) => tracing::error!(source = %src.name, error = %e, "scheduled sync panicked"),
            },
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        wait = next_delay(src.interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue [8] item 21: a bundle-only source gets no sync task.
    #[test]
    fn bundle_only_sources_are_not_scheduled() {
        let src = |name: &str, url: Option<&str>| MirrorSource {
            name: name.into(),
            url: url.map(str::to_string),
            root: "/r.json".into(),
            interval: Duration::from_secs(3600),
        };
        let sources = [src("online", Some("https://f.example/")), src("usb", None)];
        let names: Vec<&str> = syncable(&sources).map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["online"]);
    }

    #[test]
    fn delays_stay_in_their_ranges() {
        for _ in 0..200 {
            let d = first_delay();
            assert!((Duration::from_secs(2)..=Duration::from_secs(10)).contains(&d));
            let d = next_delay(Duration::from_secs(3600));
            assert!((Duration::from_secs(3240)..=Duration::from_secs(3960)).contains(&d));
        }
    }
}
