//! Staging: blobs that must all arrive before any becomes visible.
//!
//! A bundle is one stream: a problem in its last entry must not leave its first blobs
//! in the store ("a refused bundle changes nothing"). A [`Staging`] area is a private
//! store under `<root>/staging/<pid>-<n>` on the same file system. Blobs are verified
//! into it as they stream; [`Staging::commit`] then renames each into the real store
//! (atomic per blob, no copy). Dropping an uncommitted staging area deletes it, and
//! areas left by a killed process are deleted by the next one.
//!
//! The import pipeline owns the staging area of every transport (bundle, directory,
//! HTTP): it checks that everything the catalog needs arrived and that every package
//! is sound *before* [`Staging::commit`], so a refused import of any kind leaves the
//! store's blob list exactly as it was.
//!
//! Durability is batched: staged blobs are not flushed one by one (a thousand 1 MiB
//! blobs would cost a thousand fsyncs). `commit` flushes the file system once before
//! the renames (so no rename can expose unflushed bytes) and once after (so the renames
//! are durable before the caller commits the catalog that references them).

use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{PutOutcome, Sha256Hex, Store, StoreError};
use crate::fsutil;

/// A private area whose blobs join the store only on [`Staging::commit`]. All methods
/// take `&self`, so transport worker threads may stage blobs concurrently.
pub struct Staging<'a> {
    main: &'a Store,
    area: Option<Store>,
    dir: PathBuf,
    /// What was staged, in order (a std Mutex: held for a push or a lookup only).
    staged: Mutex<Vec<(Sha256Hex, u64)>>,
}

/// Numbers this process's staging areas (see [`Store::staging`]).
static STAGING_SEQ: AtomicU64 = AtomicU64::new(0);

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

impl Store {
    /// Opens a new staging area (and removes areas whose process is gone).
    pub fn staging(&self) -> Result<Staging<'_>, StoreError> {
        let base = self.root.join("staging");
        fsutil::ensure_dir(&base, super::DIR_MODE)
            .map_err(|e| StoreError::io("create directory", &base, e))?;
        if let Ok(rd) = fs::read_dir(&base) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
                if pid.is_some_and(|p| p != std::process::id() && !pid_alive(p)) {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        // Unique per process, not per handle: the server's drop folder, scheduler and
        // upload may each hold their own `Store` on the same root, and two imports must
        // never share (or remove) one area. `create_dir` refuses an existing one.
        let dir = loop {
            let n = STAGING_SEQ.fetch_add(1, Ordering::Relaxed);
            let dir = base.join(format!("{}-{n}", std::process::id()));
            match fs::create_dir(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(StoreError::io("create directory", &dir, e)),
            }
        };
        let mut area = Store::open(&dir, self.opts.clone())?.with_clock(self.clock.clone());
        area.sync_each = false;
        Ok(Staging {
            main: self,
            area: Some(area),
            dir,
            staged: Mutex::new(Vec::new()),
        })
    }
}

impl Staging<'_> {
    /// Verifies `reader` against `hash`/`size` into the staging area.
    pub fn put(
        &self,
        hash: &Sha256Hex,
        size: u64,
        reader: &mut dyn Read,
    ) -> Result<PutOutcome, StoreError> {
        let out = self.area().put(Some((hash, size)), reader)?;
        let mut staged = self.list();
        if !staged.iter().any(|(h, _)| h == hash) {
            staged.push((hash.clone(), size));
        }
        Ok(out)
    }

    /// Whether `hash` was staged here (it is not in the store until commit).
    pub fn contains(&self, hash: &Sha256Hex) -> bool {
        self.list().iter().any(|(h, _)| h == hash)
    }

    /// Where a staged blob's verified bytes are until commit, so they can be checked
    /// (a package's control data) before anything joins the store.
    pub fn staged_path(&self, hash: &Sha256Hex) -> Option<PathBuf> {
        self.contains(hash).then(|| self.area().path(hash))
    }

    fn area(&self) -> &Store {
        self.area
            .as_ref()
            .expect("staging area is open until commit")
    }

    fn list(&self) -> std::sync::MutexGuard<'_, Vec<(Sha256Hex, u64)>> {
        // A plain list: a panic elsewhere cannot leave it torn.
        self.staged.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves every staged blob into the store. A crash part-way leaves some blobs in
    /// the store (complete and verified, merely unreferenced until the import commits)
    /// and the rest in a staging area the next import removes.
    pub fn commit(mut self) -> Result<usize, StoreError> {
        let area = self.area.take().expect("commit once");
        let staged = std::mem::take(&mut *self.list());
        if staged.is_empty() {
            return Ok(0);
        }
        self.syncfs()?;
        let mut moved = 0;
        for (hash, size) in &staged {
            let from = area.path(hash);
            let dir = self.main.blobs.join(hash.prefix());
            if !dir.is_dir() {
                fsutil::ensure_dir(&dir, super::DIR_MODE)
                    .map_err(|e| StoreError::io("create directory", &dir, e))?;
            }
            let dest = dir.join(hash.as_str());
            let mut usage = self.main.lock();
            if self.main.touch_locked(hash)? == Some(*size) {
                continue;
            }
            fs::rename(&from, &dest).map_err(|e| StoreError::io("move into place", &dest, e))?;
            usage.blobs += 1;
            usage.bytes += size;
            moved += 1;
        }
        self.syncfs()?;
        Ok(moved)
    }

    /// Flushes the whole file system holding the store (one call for every staged
    /// file and directory entry).
    fn syncfs(&self) -> Result<(), StoreError> {
        let root = &self.main.root;
        let dir = fs::File::open(root).map_err(|e| StoreError::io("open", root, e))?;
        rustix::fs::syncfs(&dir)
            .map_err(|e| StoreError::io("flush to disk", root, std::io::Error::from(e)))
    }
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        self.area = None;
        let _ = fs::remove_dir_all(&self.dir);
    }
}
