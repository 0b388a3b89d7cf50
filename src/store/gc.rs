//! Garbage collection with a grace period, and the scrub that re-hashes every blob.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::hash::is_sha256_hex;
use super::layout::{self, Found};
use super::read::hash_file;
use super::{Sha256Hex, Store, StoreError};

/// What [`Store::gc`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Unreferenced blobs older than the grace period, now removed.
    pub removed: u64,
    pub bytes_freed: u64,
    /// Unreferenced blobs kept because they were stored within the grace period.
    pub kept_in_grace: u64,
}

/// What [`Store::verify_all`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Blobs re-hashed.
    pub checked: u64,
    pub bytes: u64,
    /// Blobs whose bytes do not hash to their name.
    pub corrupt: Vec<CorruptBlob>,
    /// Entries under `sha256/` that are not validly named blobs in the right place
    /// (the store never creates them; someone copied or renamed files by hand).
    pub misnamed: Vec<PathBuf>,
}

/// A blob whose bytes do not match its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptBlob {
    pub hash: Sha256Hex,
    pub actual: Sha256Hex,
    pub size: u64,
    pub path: PathBuf,
}

impl Store {
    /// Removes every blob that is not in `referenced` and was stored (or last
    /// re-stored or touched) more than `grace` before `now`.
    ///
    /// The grace period protects blobs of an import in progress, which are stored before
    /// the catalog that references them commits. Removing a blob that is being served is
    /// safe: open handles keep reading the old bytes. Misnamed entries are left alone
    /// (see [`Store::verify_all`]). Refuses, removing nothing, if `referenced` holds a
    /// string that is not a lowercase hex sha256, since such a caller bug would
    /// otherwise delete referenced blobs.
    pub fn gc(
        &self,
        referenced: &HashSet<String>,
        grace: Duration,
        now: SystemTime,
    ) -> Result<GcReport, StoreError> {
        if let Some(bad) = referenced.iter().find(|h| !is_sha256_hex(h)) {
            return Err(StoreError::InvalidReference {
                input: bad.chars().take(80).collect(),
            });
        }
        let mut report = GcReport::default();
        layout::walk(&self.blobs, |found| {
            let Found::Blob { hash, path, .. } = found else {
                return Ok(());
            };
            if referenced.contains(hash.as_str()) {
                return Ok(());
            }
            // Re-check under the commit lock: a put or touch may have just refreshed it.
            let mut usage = self.lock();
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(StoreError::io("inspect", path, e)),
            };
            let mtime = meta
                .modified()
                .map_err(|e| StoreError::io("inspect", &path, e))?;
            // A blob from the future (clock stepped back) counts as just stored.
            let age = now.duration_since(mtime).unwrap_or(Duration::ZERO);
            if age <= grace {
                report.kept_in_grace += 1;
                return Ok(());
            }
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(StoreError::io("remove", path, e)),
            }
            usage.blobs = usage.blobs.saturating_sub(1);
            usage.bytes = usage.bytes.saturating_sub(meta.len());
            report.removed += 1;
            report.bytes_freed += meta.len();
            Ok(())
        })?;
        // Removals are not fsynced: one that a crash undoes is collected next time.
        Ok(report)
    }

    /// Re-hashes every blob and lists the corrupt and the misnamed ones. Reads the whole
    /// store (about 1.5 GB/s of hashing on this machine class, less on a cold disk):
    /// a scrub for a quiet hour, not for a request path. Changes nothing.
    pub fn verify_all(&self) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        layout::walk(&self.blobs, |found| {
            let (hash, path) = match found {
                Found::Blob { hash, path, .. } => (hash, path),
                Found::Stray { path } => {
                    report.misnamed.push(path);
                    return Ok(());
                }
            };
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()), // collected
                Err(e) => return Err(StoreError::io("open", path, e)),
            };
            let (actual, size) =
                hash_file(&mut file).map_err(|e| StoreError::io("read", &path, e))?;
            report.checked += 1;
            report.bytes += size;
            if actual != hash {
                report.corrupt.push(CorruptBlob {
                    hash,
                    actual,
                    size,
                    path,
                });
            }
            Ok(())
        })?;
        report.misnamed.sort();
        report.corrupt.sort_by(|a, b| a.hash.cmp(&b.hash));
        Ok(report)
    }
}
