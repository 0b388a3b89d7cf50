//! The rollout snapshot (`rollout::World`, with every patch's jobs) that the rollout
//! pages and a host's "why not yet" read, shared between requests.
//!
//! `World::load` parses every host's inventory: milliseconds for a small site, seconds
//! at 10,000 hosts (BENCHMARKS.md). A rollout page polls its rings every 5 s, and
//! several may be open, so a snapshot is reused while it is younger than five times
//! what it cost to load (at most a minute): a small site always sees fresh data, and a
//! large one spends at most about a sixth of one core on these pages however many
//! are open. Every change made on the pages drops the snapshot.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::rollout::{RolloutError, World};

struct Cached {
    db: PathBuf,
    at: Instant,
    cost: Duration,
    world: Arc<World>,
}

/// One snapshot per process (keyed by the database file, for tests that run several).
static CACHE: Mutex<Option<Cached>> = Mutex::new(None);

const MAX_AGE: Duration = Duration::from_secs(60);

/// A snapshot no older than five times its own load time.
/// End-of-life hosts are fenced as of the load (`World::fence_legacy`), like the
/// scheduler's own view.
pub(super) fn world(
    conn: &rusqlite::Connection,
    db: &std::path::Path,
    policy: &crate::policy::Policy,
    now: jiff::Timestamp,
) -> Result<Arc<World>, RolloutError> {
    if let Some(c) = CACHE.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
        && c.db == db
        && c.at.elapsed() < (c.cost * 5).min(MAX_AGE)
    {
        return Ok(c.world.clone());
    }
    let start = Instant::now();
    let mut w = World::load(conn)?;
    w.load_all_jobs(conn)?;
    w.fence_legacy(conn, now, &policy.legacy)?;
    let world = Arc::new(w);
    *CACHE.lock().unwrap_or_else(|p| p.into_inner()) = Some(Cached {
        db: db.to_path_buf(),
        at: Instant::now(),
        cost: start.elapsed(),
        world: world.clone(),
    });
    Ok(world)
}

/// Drops the snapshot (after a change made on the pages).
pub(super) fn invalidate() {
    *CACHE.lock().unwrap_or_else(|p| p.into_inner()) = None;
}
