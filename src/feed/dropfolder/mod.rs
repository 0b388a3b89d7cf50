//! The drop folder: bundles (`*.pwb`) that appear in `[import] drop_dir` (a USB mount
//! or a share) are imported once complete, then moved to `imported/` or `rejected/`
//! (with `<name>.reason.txt` in plain words).
//!
//! One dedicated thread owns everything: a `notify` watch (fast, but deaf on some
//! mounts and after the folder reappears) plus a periodic rescan that is the ground
//! truth. Imports run on that thread one at a time through
//! [`mirror::import_bundle_file`], the same code as `patchward import`, so the pipeline's
//! guarantees hold: a refused bundle changes nothing.
//!
//! Completeness is decided in [`complete`] (stability period, write/close events) plus a
//! best-effort open-for-writing check in `writers.rs`.
//!
//! The folder may vanish (USB unplugged) and come back, possibly as another filesystem
//! at the same path: each scan compares the folder's (device, inode) and re-establishes
//! the watch when it changed; while it is missing the thread polls every
//! [`POLL_UNAVAILABLE`] and logs that once. Files that were handled but could not be
//! moved (read-only media) are remembered by (name, size, mtime) and not imported again
//! while unchanged.
//!
//! Every outcome is audited with actor [`ACTOR`]: imports by the pipeline
//! (`feed.imported`), the rest here (`feed.import_unchanged`, `feed.import_rejected`).

pub mod complete;
mod place;
mod writers;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::audit::{self, NewEntry};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::db::Db;
use crate::feed::import::NoProgress;
use crate::mirror;
use crate::store::Store;
use complete::{Candidate, Stat};

/// The audit actor for everything the drop folder does.
pub const ACTOR: &str = "drop-folder";

/// How often a missing folder (or an unopenable store) is looked for again.
pub const POLL_UNAVAILABLE: Duration = Duration::from_secs(2);

/// Subfolders that receive handled files.
const IMPORTED: &str = "imported";
const REJECTED: &str = "rejected";

enum Msg {
    Fs(notify::Result<notify::Event>),
    Stop,
}

/// A running drop-folder watcher. Stops when [`DropFolder::stop`] is called or when it
/// is dropped (then without waiting).
pub struct DropFolder {
    tx: Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

/// Starts watching `config.import.drop_dir`; `None` when no drop folder is configured
/// (or the thread cannot be started, which is logged).
pub fn spawn(config: &Config, db: Db, clock: SharedClock) -> Option<DropFolder> {
    let dir = config.import.drop_dir.clone()?;
    let (tx, rx) = mpsc::channel();
    let setup = Setup {
        dir,
        config: config.clone(),
        db,
        clock,
        tx: tx.clone(),
        rx,
    };
    match std::thread::Builder::new()
        .name("drop-folder".into())
        .spawn(move || setup.run())
    {
        Ok(t) => Some(DropFolder {
            tx,
            thread: Some(t),
        }),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the drop folder watcher");
            None
        }
    }
}

impl DropFolder {
    /// Stops the watcher, letting a running import finish within `grace`. An import
    /// cut short later is harmless: nothing half-done becomes visible.
    pub async fn stop(mut self, grace: Duration) {
        let _ = self.tx.send(Msg::Stop);
        let Some(thread) = self.thread.take() else {
            return;
        };
        let join = tokio::task::spawn_blocking(move || thread.join());
        if tokio::time::timeout(grace, join).await.is_err() {
            tracing::warn!(
                "the drop folder is still importing after the grace period; stopping without \
                 it (the import leaves nothing half-done and is retried at the next start)"
            );
        }
    }
}

impl Drop for DropFolder {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
    }
}

/// What the thread starts with.
struct Setup {
    dir: PathBuf,
    config: Config,
    db: Db,
    clock: SharedClock,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
}

impl Setup {
    fn run(self) {
        let mut logged = false;
        let store = loop {
            match mirror::open_store(&self.config) {
                Ok(s) => break s,
                Err(e) => {
                    if !logged {
                        tracing::error!(error = %e, "drop folder: cannot open the content store; retrying");
                        logged = true;
                    }
                    if wait_for_stop(&self.rx, POLL_UNAVAILABLE * 5) {
                        return;
                    }
                }
            }
        };
        let stable = self.config.import.stable;
        Worker {
            dir: self.dir,
            config: self.config,
            db: self.db,
            clock: self.clock,
            store,
            tx: self.tx,
            rx: self.rx,
            stable,
            scan_every: (stable / 4).clamp(Duration::from_millis(250), Duration::from_secs(2)),
            watching: None,
            candidates: HashMap::new(),
            kept: HashMap::new(),
            missing_logged: false,
            stop: false,
        }
        .run();
    }
}

/// Waits up to `d`, ignoring file events; true when asked to stop.
fn wait_for_stop(rx: &Receiver<Msg>, d: Duration) -> bool {
    let until = Instant::now() + d;
    loop {
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return true,
            Ok(Msg::Fs(_)) => {}
            Err(RecvTimeoutError::Timeout) => return false,
        }
    }
}

/// The folder as currently watched.
struct Watching {
    /// (device, inode) of the folder: a change means it was replaced or remounted.
    id: (u64, u64),
    /// None when notify could not watch it (rescans still work).
    _watcher: Option<RecommendedWatcher>,
}

struct Worker {
    dir: PathBuf,
    config: Config,
    db: Db,
    clock: SharedClock,
    store: Store,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    stable: Duration,
    scan_every: Duration,
    watching: Option<Watching>,
    candidates: HashMap<String, Candidate>,
    /// Handled files that could not be moved away (read-only media), by what they were.
    kept: HashMap<String, Stat>,
    missing_logged: bool,
    stop: bool,
}

/// True for names the drop folder imports: `*.pwb`, not hidden. Temporary names
/// (`x.pwb.part`, `x.tmp`) do not end in `.pwb`.
pub fn wanted(name: &str) -> bool {
    !name.starts_with('.') && name.len() > 4 && name.to_ascii_lowercase().ends_with(".pwb")
}

impl Worker {
    fn run(mut self) {
        let mut next = Instant::now();
        loop {
            let wait = next.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Msg::Fs(ev)) => self.on_event(ev, &mut next),
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Checked after every message too, so a flood of events cannot starve scans.
            if Instant::now() >= next {
                let available = self.tick();
                if self.stop {
                    return;
                }
                let pause = if available {
                    self.scan_every
                } else {
                    POLL_UNAVAILABLE
                };
                next = Instant::now() + pause;
            }
        }
    }

    /// Applies a file event to what is known; may bring the next scan forward.
    fn on_event(&mut self, ev: notify::Result<notify::Event>, next: &mut Instant) {
        let now = Instant::now();
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::debug!(error = %e, "drop folder watch error; rescanning");
                *next = now;
                return;
            }
        };
        if ev.need_rescan() {
            *next = now;
        }
        for path in &ev.paths {
            if path == &self.dir {
                // The folder itself was removed or moved: look now.
                *next = now;
                continue;
            }
            if path.parent() != Some(self.dir.as_path()) {
                continue;
            }
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !wanted(name) {
                continue;
            }
            match ev.kind {
                EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) => {
                    self.candidate(name, now).written(now);
                }
                EventKind::Access(AccessKind::Close(AccessMode::Write))
                | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
                    self.candidate(name, now).closed(now);
                    // Observe it after the close soon (fast path).
                    *next = (*next).min(now + Duration::from_millis(50));
                }
                EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                    self.candidates.remove(name);
                }
                _ => {}
            }
        }
    }

    fn candidate(&mut self, name: &str, now: Instant) -> &mut Candidate {
        self.candidates
            .entry(name.to_string())
            .or_insert_with(|| Candidate::new(now))
    }

    /// One round: check the folder, (re)watch it, scan, import what is complete.
    /// Returns false while the folder is not available.
    fn tick(&mut self) -> bool {
        let id = match fs::metadata(&self.dir) {
            Ok(m) if m.is_dir() => (m.dev(), m.ino()),
            _ => {
                self.missing();
                return false;
            }
        };
        if self.missing_logged {
            tracing::info!(dir = %self.dir.display(), "drop folder is available again");
            self.missing_logged = false;
        }
        if self.watching.as_ref().map(|w| w.id) != Some(id) {
            self.watch(id);
        }
        let Some(ready) = self.scan() else {
            self.missing();
            return false;
        };
        for name in ready {
            if self.drain() {
                self.stop = true;
                return true;
            }
            let path = self.dir.join(&name);
            if writers::open_for_writing(&path) {
                tracing::debug!(file = %name, "still open for writing; waiting");
                continue;
            }
            let seen = self.candidates.remove(&name).and_then(|c| c.stat());
            self.handle(&name, &path, seen);
        }
        true
    }

    fn missing(&mut self) {
        if !self.missing_logged {
            tracing::warn!(
                "drop folder {} is not available; waiting for it",
                self.dir.display()
            );
            self.missing_logged = true;
        }
        self.watching = None;
        self.candidates.clear();
    }

    fn watch(&mut self, id: (u64, u64)) {
        // Drop the old watch first: it may still point at the replaced folder.
        self.watching = None;
        self.candidates.clear();
        let tx = self.tx.clone();
        let watcher = notify::recommended_watcher(move |ev| {
            let _ = tx.send(Msg::Fs(ev));
        })
        .and_then(|mut w| w.watch(&self.dir, RecursiveMode::NonRecursive).map(|()| w));
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    dir = %self.dir.display(), error = %e,
                    "cannot watch the drop folder for changes; finding files by rescanning only"
                );
                None
            }
        };
        tracing::info!(dir = %self.dir.display(), "watching the drop folder for *.pwb bundles");
        self.watching = Some(Watching {
            id,
            _watcher: watcher,
        });
    }

    /// Observes every wanted file; returns the complete ones (sorted), or None when the
    /// folder cannot be read.
    fn scan(&mut self) -> Option<Vec<String>> {
        let entries = fs::read_dir(&self.dir).ok()?;
        let now = Instant::now();
        let mut present = HashSet::new();
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !wanted(&name) {
                continue;
            }
            // Not following symlinks: only regular files placed here are imported.
            let Some(stat) = entry.metadata().ok().filter(|m| m.is_file()).map(stat_of) else {
                continue;
            };
            if let Some(k) = self.kept.get(&name) {
                if *k == stat {
                    continue;
                }
                self.kept.remove(&name);
            }
            self.candidate(&name, now).observe(stat, now);
            present.insert(name);
        }
        self.candidates.retain(|n, _| present.contains(n));
        let mut ready: Vec<String> = self
            .candidates
            .iter()
            .filter(|(_, c)| c.complete(now, self.stable))
            .map(|(n, _)| n.clone())
            .collect();
        ready.sort();
        Some(ready)
    }

    /// Applies queued events; true when asked to stop.
    fn drain(&mut self) -> bool {
        let mut ignored = Instant::now();
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Stop => return true,
                Msg::Fs(ev) => self.on_event(ev, &mut ignored),
            }
        }
        false
    }

    /// Imports one complete file and moves it where it belongs.
    fn handle(&mut self, name: &str, path: &Path, seen: Option<Stat>) {
        let at = self.clock.now();
        let result = mirror::import_bundle_file(
            &self.db,
            &self.store,
            &self.config,
            path,
            at,
            ACTOR,
            &NoProgress,
        );
        let at_s = at.to_string();
        match result {
            Ok(s) => {
                tracing::info!(
                    file = name, feed = %s.feed, catalog_version = s.catalog_version,
                    already_current = s.already_current, "drop folder: bundle imported"
                );
                let note = if s.already_current {
                    let details = serde_json::json!({
                        "feed": s.feed,
                        "catalog_version": s.catalog_version,
                        "file": path.display().to_string(),
                    });
                    self.audit("feed.import_unchanged", name, details);
                    Some(place::already_current_text(name, &s, &at_s))
                } else {
                    None
                };
                self.put_away(name, path, seen, IMPORTED, note);
            }
            Err(e) if !path.exists() => {
                // Unplugged mid-import: not the bundle's fault; tried again when back.
                tracing::warn!(
                    file = name, error = %e,
                    "drop folder: the bundle disappeared during its import (media removed?); \
                     nothing changed, it is imported when it is back"
                );
            }
            Err(e) => {
                tracing::warn!(file = name, error = %e, "drop folder: bundle rejected");
                let details = serde_json::json!({
                    "reason": e.to_string(),
                    "file": path.display().to_string(),
                    "size": seen.map(|s| s.size),
                });
                self.audit("feed.import_rejected", name, details);
                let note = place::rejection_text(name, &e, &at_s);
                self.put_away(name, path, seen, REJECTED, Some(note));
            }
        }
    }

    /// Moves a handled file into `sub/` with its note; on failure (read-only media)
    /// leaves it and remembers it so it is not imported again while unchanged.
    fn put_away(
        &mut self,
        name: &str,
        path: &Path,
        seen: Option<Stat>,
        sub: &str,
        note: Option<String>,
    ) {
        match place::move_into(path, &self.dir.join(sub)) {
            Ok(to) => {
                if let Some(text) = note
                    && let Err(e) = place::write_note(&to, &text)
                {
                    tracing::warn!(file = %to.display(), error = %e, "cannot write the drop folder note");
                }
            }
            Err(e) => {
                tracing::warn!(
                    file = name, error = %e,
                    "cannot move the bundle into {sub}/ (read-only media?); leaving it in \
                     place and not importing it again while it is unchanged"
                );
                let now = fs::metadata(path).ok().map(stat_of);
                if let Some(stat) = now.or(seen) {
                    self.kept.insert(name.to_string(), stat);
                }
            }
        }
    }

    fn audit(&self, action: &str, subject: &str, details: serde_json::Value) {
        let at = self.clock.now();
        let r = self.db.write_blocking(|tx| {
            audit::append(
                tx,
                at,
                &NewEntry {
                    actor: ACTOR,
                    action,
                    subject,
                    details,
                },
            )
        });
        if let Err(e) = r {
            tracing::error!(action, subject, error = %e, "cannot write the audit entry");
        }
    }
}

fn stat_of(m: fs::Metadata) -> Stat {
    Stat {
        size: m.len(),
        mtime: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    }
}

#[cfg(test)]
mod tests {
    use super::wanted;

    #[test]
    fn only_visible_pwb_files_are_wanted() {
        for (name, want) in [
            ("bundle.pwb", true),
            ("BUNDLE.PWB", true),
            ("a.pwb.part", false),
            ("a.pwb.tmp", false),
            (".a.pwb", false),
            (".pwb", false),
            ("notes.txt", false),
            ("imported", false),
        ] {
            assert_eq!(wanted(name), want, "{name}");
        }
    }
}
