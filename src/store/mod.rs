//! The content-addressed blob store: every artifact the appliance holds, named by the
//! lowercase hex sha256 of its bytes.
//!
//! Layout under the store's root (the HTTP artifact endpoint and the apt pools serve
//! these files directly, so the layout is a format):
//!
//! ```text
//! <root>/sha256/<first two hex>/<64 hex>   complete, verified blobs (mode 0444)
//! <root>/tmp/                              in-progress writes; same file system, so the
//!                                          final rename is atomic
//! ```
//!
//! How the parts fit:
//! - [`Store::put`] streams into a temp file while hashing, checks size and hash against
//!   what the catalog says, `fsync`s, renames into place and `fsync`s the directory: a
//!   crash at any instruction leaves no blob or a complete, correctly named one. Temp
//!   files left by a crash are removed by the next [`Store::open`].
//! - A blob's mtime is the time it was last stored (set explicitly from the store's
//!   [`Clock`](crate::clock::Clock), refreshed when the same content is stored again or
//!   [`Store::touch`]ed); [`Store::gc`] removes unreferenced blobs older than a grace period.
//! - Usage is kept as in-memory counters, computed by one directory walk at open (see
//!   [`Store::usage`] for why).
//!
//! **Architecture Invariant:** nothing outside `put` creates files under `sha256/`, and a
//! file appears there only by `rename` of a complete, `fsync`ed, verified temp file.
//!
//! **Architecture Invariant:** the store trusts nothing about a stream: `put` verifies
//! size and hash itself. Whether the *expected* hash is trustworthy (it came from a
//! verified catalog) is `trust::`'s business, not the store's.

mod error;
mod gc;
mod hash;
mod layout;
mod put;
mod read;
mod space;
mod stage;
#[cfg(test)]
mod tests;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::clock::{SharedClock, SystemClock};
use crate::fsutil;

pub use error::{Bytes, StoreError};
pub use gc::{CorruptBlob, GcReport, VerifyReport};
pub use hash::Sha256Hex;
pub use put::PutOutcome;
pub use read::BlobFile;
pub use stage::Staging;

/// Mode of the store's directories: the daemon's user and its group only.
const DIR_MODE: u32 = 0o750;
/// Mode of a blob: read-only, because a blob's bytes are its name.
const BLOB_MODE: u32 = 0o444;

/// Settings that change the store's behaviour.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Bytes that must stay free on the store's file system: a `put` that would leave
    /// less is refused before it writes (the database, logs and the OS need room too).
    pub free_space_reserve: u64,
    /// Whether [`Store::read_verified`] re-hashes what it reads.
    pub verify_on_read: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            free_space_reserve: 2 << 30,
            verify_on_read: true,
        }
    }
}

/// How much the store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreUsage {
    pub blobs: u64,
    /// Sum of the blobs' sizes (not of the blocks they occupy).
    pub bytes: u64,
}

/// An open blob store; share it behind an `Arc` (all methods take `&self`).
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    /// `<root>/sha256`.
    blobs: PathBuf,
    /// `<root>/tmp`.
    tmp: PathBuf,
    opts: StoreOptions,
    clock: SharedClock,
    /// Held while a blob appears, is touched or disappears (put's final check + rename,
    /// gc's check + unlink), so a gc in this process never removes a blob that a put has
    /// just claimed as present. Guards the usage counters too. A std Mutex: held for a
    /// stat and a rename or unlink, never across a stream or an await.
    commit: Mutex<StoreUsage>,
    /// Makes temp file names unique within this process.
    tmp_seq: AtomicU64,
    /// Flush each blob (and its directory) before `put` returns. Off only for staging
    /// areas, whose commit flushes the whole file system once instead (see stage.rs).
    sync_each: bool,
}

impl Store {
    /// Opens (creating if needed) the store at `root`, removes temp files left by an
    /// interrupted write, and counts what the store holds.
    ///
    /// Temp files that another live process is still writing (it holds a lock on them)
    /// are left alone, so the CLI may open the store while the server runs.
    pub fn open(root: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        let blobs = root.join("sha256");
        let tmp = root.join("tmp");
        for dir in [root, &blobs, &tmp] {
            fsutil::ensure_dir(dir, DIR_MODE)
                .map_err(|e| StoreError::io("create directory", dir, e))?;
        }
        let removed = layout::clean_tmp(&tmp)?;
        if removed > 0 {
            tracing::info!(
                removed,
                dir = %tmp.display(),
                "blob store: removed temp files left by an interrupted write"
            );
        }
        let usage = layout::count(&blobs)?;
        Ok(Store {
            root: root.to_path_buf(),
            blobs,
            tmp,
            opts,
            clock: Arc::new(SystemClock),
            commit: Mutex::new(usage),
            tmp_seq: AtomicU64::new(0),
            sync_each: true,
        })
    }

    /// Uses `clock` for the times stamped on stored blobs (tests use a manual clock).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob named `hash` lives (whether or not it is present).
    pub fn path(&self, hash: &Sha256Hex) -> PathBuf {
        self.blobs.join(hash.prefix()).join(hash.as_str())
    }

    /// Whether the blob is present. An importer that skips fetching on `true` should
    /// call [`Store::touch`] instead, so a concurrent gc cannot collect the blob before
    /// the import that references it commits.
    pub fn contains(&self, hash: &Sha256Hex) -> Result<bool, StoreError> {
        let path = self.path(hash);
        match fs::symlink_metadata(&path) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io("inspect", path, e)),
        }
    }

    /// If the blob is present, restamps its mtime with now (so gc keeps it for another
    /// grace period) and returns `true`; returns `false` if it is absent.
    pub fn touch(&self, hash: &Sha256Hex) -> Result<bool, StoreError> {
        let _commit = self.lock();
        Ok(self.touch_locked(hash)?.is_some())
    }

    /// How many blobs and bytes the store holds.
    ///
    /// Cheap: counters kept in memory, computed by a walk at open and updated by `put`
    /// and `gc`. The walk (readdir + stat per blob) measured ~40 ms per 10,000 blobs with
    /// a warm page cache (`rescan_10k_blobs` in `benches/store_put.rs`, BENCHMARKS.md):
    /// fine once at start, too much per metrics scrape for a store of 100,000 debs, and
    /// worse on a cold disk. Blobs that another process (the CLI) adds or removes are not
    /// seen until [`Store::rescan`] or the next open.
    pub fn usage(&self) -> StoreUsage {
        *self.lock()
    }

    /// Recounts the store by walking it, and returns the fresh usage.
    pub fn rescan(&self) -> Result<StoreUsage, StoreError> {
        let mut usage = self.lock();
        *usage = layout::count(&self.blobs)?;
        Ok(*usage)
    }

    fn lock(&self) -> MutexGuard<'_, StoreUsage> {
        // Counters are plain numbers: a panic elsewhere cannot leave them torn.
        self.commit.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> SystemTime {
        // jiff's range (years -9999..=9999) fits Linux's SystemTime: never the fallback.
        SystemTime::try_from(self.clock.now()).unwrap_or_else(|_| SystemTime::now())
    }

    /// Restamps a present blob's mtime; returns its size, or `None` if it is absent.
    /// The caller holds the commit lock.
    fn touch_locked(&self, hash: &Sha256Hex) -> Result<Option<u64>, StoreError> {
        let path = self.path(hash);
        // futimens needs ownership, not write access: a read-only handle is enough.
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("open", path, e)),
        };
        let size = file
            .metadata()
            .map_err(|e| StoreError::io("inspect", &path, e))?
            .len();
        file.set_modified(self.now())
            .map_err(|e| StoreError::io("set the mtime of", &path, e))?;
        Ok(Some(size))
    }
}
