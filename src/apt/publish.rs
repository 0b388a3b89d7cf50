//! Publishing a ring's repository to disk, atomically and one publisher at a time.
//!
//! Layout under `<data_dir>/apt/` (the web handler maps URLs onto it):
//!
//! ```text
//! .publish.lock              flock: one publisher at a time (server task and CLI)
//! <ring>/by-hash/<sha256>    every index file ever published for the ring, by content
//! <ring>/gen/<n>/            one publish: InRelease, Release, Release.gpg and
//!                            main/binary-<arch>/Packages{,.gz,.xz} (hard links to by-hash)
//! <ring>/current -> gen/<n>  symlink; replacing it by rename is the one switching step
//! ```
//!
//! Order of a publish: (1) index files into `by-hash/` (temp + fsync + rename; an
//! existing one is only re-stamped), (2) a fresh `gen/<n>/` with the named index files
//! as hard links, `Release`, `Release.gpg`, and `InRelease` last, each fsynced, (3) the
//! `current` symlink replaced by rename, (4) clean-up: generations other than the current
//! and previous one, and by-hash files that no kept generation names and that are older
//! than the grace period. A crash before (3) leaves the previous generation serving,
//! whose InRelease names files that all still exist (its by-hash files and its own
//! hard links); leftovers of the crashed publish are removed by the next one.
//!
//! apt clients fetch `InRelease` and then the indexes **by hash** (`Acquire-By-Hash`),
//! so a client that read the old InRelease just before the switch still finds the old
//! indexes for the grace period.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use jiff::{SignedDuration, Timestamp};

use super::index::{self, IndexFile, PackageEntry, ReleaseMeta};
use super::{AptError, AptSettings, db, io_err};
use crate::db::Db;
use crate::fsutil;
use crate::trust::openpgp::AptSigningKey;

const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

/// The on-disk apt tree of a data directory.
#[derive(Debug, Clone)]
pub struct AptDir {
    pub root: PathBuf,
}

impl AptDir {
    pub fn new(root: impl Into<PathBuf>) -> AptDir {
        AptDir { root: root.into() }
    }
    /// `<data_dir>/apt`.
    pub fn of_data_dir(data_dir: &Path) -> AptDir {
        AptDir::new(data_dir.join("apt"))
    }
    pub fn ring(&self, ring: &str) -> PathBuf {
        self.root.join(ring)
    }
    pub fn by_hash(&self, ring: &str) -> PathBuf {
        self.ring(ring).join("by-hash")
    }
    pub fn current(&self, ring: &str) -> PathBuf {
        self.ring(ring).join("current")
    }
    fn gens(&self, ring: &str) -> PathBuf {
        self.ring(ring).join("gen")
    }

    /// The generation `current` points at, if any.
    pub fn current_generation(&self, ring: &str) -> Option<u64> {
        let target = fs::read_link(self.current(ring)).ok()?;
        target.file_name()?.to_str()?.parse().ok()
    }

    /// Takes the publisher lock (blocking until another publisher finishes). Released
    /// when the returned file is dropped, or when the process dies.
    pub fn lock(&self) -> Result<File, AptError> {
        fsutil::ensure_dir(&self.root, DIR_MODE).map_err(io_err("create", &self.root))?;
        let path = self.root.join(".publish.lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io_err("lock", &path)(e.into()))?;
        Ok(f)
    }
}

/// What one publish of one ring produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Published {
    pub ring: String,
    pub suite: String,
    pub generation: u64,
    pub packages: usize,
    pub files: Vec<String>,
    pub valid_until: String,
}

/// One rendered and signed suite.
#[derive(Debug, Clone)]
pub struct Suite {
    pub files: Vec<IndexFile>,
    pub meta: ReleaseMeta,
    pub release: Vec<u8>,
    pub release_gpg: Vec<u8>,
    pub inrelease: Vec<u8>,
}

/// Renders and signs one suite: the index files, `Release`, `Release.gpg` and
/// `InRelease`. Pure apart from the signature.
pub fn build_suite(
    settings: &AptSettings,
    key: &AptSigningKey,
    ring: &str,
    entries: &[PackageEntry],
    now: Timestamp,
) -> Result<Suite, AptError> {
    let files = index::build_indexes(entries, &settings.architectures, settings.xz_max_bytes);
    let valid = SignedDuration::try_from(settings.valid_until)
        .map_err(|e| AptError::Time(e.to_string()))?;
    let suite = settings.suite_of(ring);
    let meta = ReleaseMeta {
        origin: settings.origin.clone(),
        label: format!("{} {ring}", settings.label),
        suite: suite.clone(),
        codename: suite,
        date: now,
        valid_until: now
            .checked_add(valid)
            .map_err(|e| AptError::Time(e.to_string()))?,
        architectures: settings.architectures.clone(),
        description: format!("Patchward patches released to ring {ring}"),
    };
    let release = index::render_release(&meta, &files).into_bytes();
    let gpg = key.detached_armored(&release, now)?;
    let inrelease = key.clearsign(&release, now)?;
    Ok(Suite {
        files,
        meta,
        release,
        release_gpg: gpg,
        inrelease,
    })
}

/// Writes one generation of `ring` and switches `current` to it. The caller holds the
/// publisher lock.
pub fn write_ring(
    dir: &AptDir,
    settings: &AptSettings,
    key: &AptSigningKey,
    ring: &str,
    entries: &[PackageEntry],
    now: Timestamp,
) -> Result<Published, AptError> {
    crate::fleet::validate_ring(ring)?;
    let Suite {
        files,
        meta,
        release,
        release_gpg: gpg,
        inrelease,
    } = build_suite(settings, key, ring, entries, now)?;
    let stamp = SystemTime::try_from(now).map_err(|e| AptError::Time(e.to_string()))?;

    // 1. by-hash files.
    let by_hash = dir.by_hash(ring);
    fsutil::ensure_dir(&dir.ring(ring), DIR_MODE).map_err(io_err("create", dir.ring(ring)))?;
    fsutil::ensure_dir(&by_hash, DIR_MODE).map_err(io_err("create", &by_hash))?;
    for f in &files {
        let p = by_hash.join(&f.sha256);
        let fresh = match File::open(&p) {
            Ok(existing)
                if existing
                    .metadata()
                    .is_ok_and(|m| m.len() == f.bytes.len() as u64) =>
            {
                existing.set_modified(stamp).map_err(io_err("touch", &p))?;
                false
            }
            _ => true,
        };
        if fresh {
            fsutil::write_atomic(&p, &f.bytes, FILE_MODE).map_err(io_err("write", &p))?;
            let _ = File::open(&p).and_then(|h| h.set_modified(stamp));
        }
    }

    // 2. A new generation directory.
    let gens = dir.gens(ring);
    fsutil::ensure_dir(&gens, DIR_MODE).map_err(io_err("create", &gens))?;
    let generation = list_generations(&gens)?.last().copied().unwrap_or(0) + 1;
    let gen_dir = gens.join(generation.to_string());
    if gen_dir.exists() {
        fs::remove_dir_all(&gen_dir).map_err(io_err("remove", &gen_dir))?;
    }
    for f in &files {
        let target = gen_dir.join(&f.path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_err("create", parent))?;
        }
        fs::hard_link(by_hash.join(&f.sha256), &target).map_err(io_err("link", &target))?;
    }
    for (name, bytes) in [
        ("Release", &release),
        ("Release.gpg", &gpg),
        ("InRelease", &inrelease),
    ] {
        let p = gen_dir.join(name);
        fsutil::write_atomic(&p, bytes, FILE_MODE).map_err(io_err("write", &p))?;
    }
    for f in &files {
        if let Some(parent) = gen_dir.join(&f.path).parent() {
            fsutil::sync_dir(parent).map_err(io_err("sync", parent))?;
        }
    }
    fsutil::sync_dir(&gens).map_err(io_err("sync", &gens))?;

    // 3. The switch.
    let previous = dir.current_generation(ring);
    let current = dir.current(ring);
    let tmp_link = dir.ring(ring).join(".current.tmp");
    let _ = fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(format!("gen/{generation}"), &tmp_link)
        .map_err(io_err("create", &tmp_link))?;
    fs::rename(&tmp_link, &current).map_err(io_err("replace", &current))?;
    fsutil::sync_dir(&dir.ring(ring)).map_err(io_err("sync", dir.ring(ring)))?;

    // 4. Clean-up (failures here are logged, never fatal: the publish is done).
    if let Err(e) = clean(dir, ring, generation, previous, settings.by_hash_grace, now) {
        tracing::warn!(ring, error = %e, "apt clean-up failed; it is retried on the next publish");
    }
    Ok(Published {
        ring: ring.into(),
        suite: meta.suite,
        generation,
        packages: entries.len(),
        files: files.iter().map(|f| f.path.clone()).collect(),
        valid_until: meta.valid_until.to_string(),
    })
}

fn list_generations(gens: &Path) -> Result<Vec<u64>, AptError> {
    let mut out = Vec::new();
    for e in fs::read_dir(gens).map_err(io_err("read", gens))? {
        let e = e.map_err(io_err("read", gens))?;
        if let Some(n) = e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Removes generations other than `keep` and `previous`, and by-hash files that neither
/// names once they are older than `grace`.
fn clean(
    dir: &AptDir,
    ring: &str,
    keep: u64,
    previous: Option<u64>,
    grace: Duration,
    now: Timestamp,
) -> Result<(), AptError> {
    let gens = dir.gens(ring);
    let kept: Vec<u64> = [Some(keep), previous].into_iter().flatten().collect();
    for g in list_generations(&gens)? {
        if !kept.contains(&g) {
            let p = gens.join(g.to_string());
            fs::remove_dir_all(&p).map_err(io_err("remove", &p))?;
        }
    }
    // Inodes of the kept generations' files: their by-hash twins stay regardless of age.
    let mut named = std::collections::BTreeSet::new();
    for g in &kept {
        collect_inodes(&gens.join(g.to_string()), &mut named, 0);
    }
    let cutoff = now.as_second() - grace.as_secs() as i64;
    let by_hash = dir.by_hash(ring);
    for e in fs::read_dir(&by_hash).map_err(io_err("read", &by_hash))? {
        let e = e.map_err(io_err("read", &by_hash))?;
        let Ok(m) = e.metadata() else { continue };
        if named.contains(&m.ino()) {
            continue;
        }
        if m.mtime() < cutoff || e.file_name().to_string_lossy().starts_with('.') {
            let _ = fs::remove_file(e.path());
        }
    }
    Ok(())
}

fn collect_inodes(dir: &Path, out: &mut std::collections::BTreeSet<u64>, depth: u32) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() && depth < 4 {
            collect_inodes(&e.path(), out, depth + 1);
        } else if m.is_file() {
            out.insert(m.ino());
        }
    }
}

/// Decides which rings are due and publishes them; used by the server's background
/// task and by `patchward apt publish`.
#[derive(Debug, Clone)]
pub struct Publisher {
    pub db: Db,
    pub key: AptSigningKey,
    pub dir: AptDir,
    pub settings: AptSettings,
}

impl Publisher {
    /// What the content digest also covers: a changed setting republishes every ring.
    fn fingerprint(&self) -> String {
        format!("{:?}", self.settings)
    }

    /// Publishes every ring that is due at `now` (or every ring with `force`): content
    /// or settings changed, marked dirty, the scheduled re-sign reached, or nothing on
    /// disk yet. Holds the publisher lock throughout. A ring that fails is recorded
    /// (`apt status`) and the others still publish; the first error is returned after.
    pub fn publish_due(&self, now: Timestamp, force: bool) -> Result<Vec<Published>, AptError> {
        let _lock = self.dir.lock()?;
        let rings = self
            .db
            .read_blocking(|c| db::ring_names(c, &self.settings.rings))?;
        let mut done = Vec::new();
        let mut first_err = None;
        for ring in rings {
            match self.publish_if_due(&ring, now, force) {
                Ok(Some(p)) => done.push(p),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(ring, error = %e, "publishing the apt repository failed");
                    let msg = e.to_string();
                    let _ = self
                        .db
                        .write_blocking(|tx| db::mark_failed(tx, &ring, &msg));
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }

    fn publish_if_due(
        &self,
        ring: &str,
        now: Timestamp,
        force: bool,
    ) -> Result<Option<Published>, AptError> {
        let (entries, state) = self.db.read_blocking(|c| {
            Ok::<_, AptError>((db::ring_entries(c, ring)?, db::ring_state(c, ring)?))
        })?;
        let digest = db::content_digest(&entries, &self.fingerprint());
        let resign_due = state
            .published_at
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .is_none_or(|at| {
                now.as_second() - at.as_second() >= self.settings.resign_every.as_secs() as i64
            });
        let due = force
            || state.dirty
            || resign_due
            || state.published_digest.as_deref() != Some(digest.as_str())
            || self.dir.current_generation(ring).is_none();
        if !due {
            return Ok(None);
        }
        let published = write_ring(&self.dir, &self.settings, &self.key, ring, &entries, now)?;
        let valid_until: Timestamp = published
            .valid_until
            .parse()
            .map_err(|e: jiff::Error| AptError::Time(e.to_string()))?;
        self.db.write_blocking(|tx| {
            db::mark_published(
                tx,
                ring,
                state.changed_at.as_deref(),
                now,
                valid_until,
                &digest,
                published.generation,
            )
        })?;
        tracing::info!(
            ring,
            generation = published.generation,
            packages = published.packages,
            "published apt repository"
        );
        Ok(Some(published))
    }

    /// Every known ring's state, with its current package count.
    pub fn status(&self) -> Result<Vec<db::RingState>, AptError> {
        self.db.read_blocking(|c| {
            let mut out = Vec::new();
            for ring in db::ring_names(c, &self.settings.rings)? {
                let mut s = db::ring_state(c, &ring)?;
                s.packages = db::ring_entries(c, &ring)?.len();
                out.push(s);
            }
            Ok(out)
        })
    }
}

/// How often the server's publisher looks for due rings.
pub const POLL: Duration = Duration::from_secs(2);

/// The server's publisher task: publishes due rings every [`POLL`] (changes made by
/// another process, such as the CLI, are seen at the next tick) until `stop`.
pub fn spawn(
    publisher: Publisher,
    clock: crate::clock::SharedClock,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let publisher = std::sync::Arc::new(publisher);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let p = publisher.clone();
            let now = clock.now();
            match tokio::task::spawn_blocking(move || p.publish_due(now, false)).await {
                Ok(Ok(_)) => {}
                // Already logged per ring and recorded for `apt status`.
                Ok(Err(_)) => {}
                Err(e) => tracing::error!(error = %e, "the apt publisher task failed"),
            }
        }
    })
}
