//! Walking the store's directories: the blob tree and the temp directory.

use std::fs::{self, File, Metadata, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

use super::hash::is_sha256_hex;
use super::{Sha256Hex, StoreError, StoreUsage};

/// Something found under `sha256/`.
pub(crate) enum Found {
    /// A regular file with a valid name in the right fan-out directory.
    Blob {
        hash: Sha256Hex,
        path: PathBuf,
        meta: Metadata,
    },
    /// Anything else: a badly named file, a file in the wrong fan-out directory, a
    /// directory or link where a blob should be. The store never creates these.
    Stray { path: PathBuf },
}

/// Calls `visit` for every entry of the blob tree. Entries that vanish during the walk
/// (a concurrent gc) are skipped.
pub(crate) fn walk(
    blobs: &Path,
    mut visit: impl FnMut(Found) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    for fanout in read_dir(blobs)? {
        let (name, path, ftype) = fanout;
        let good_dir = ftype.is_dir()
            && name.len() == 2
            && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !good_dir {
            visit(Found::Stray { path })?;
            continue;
        }
        for entry in read_dir(&path)? {
            let (blob_name, blob_path, ftype) = entry;
            if !(ftype.is_file() && is_sha256_hex(&blob_name) && blob_name.starts_with(&name)) {
                visit(Found::Stray { path: blob_path })?;
                continue;
            }
            let meta = match fs::symlink_metadata(&blob_path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("inspect", blob_path, e)),
            };
            let hash = Sha256Hex::parse(&blob_name)?;
            visit(Found::Blob {
                hash,
                path: blob_path,
                meta,
            })?;
        }
    }
    Ok(())
}

/// Counts the blobs and their bytes.
pub(crate) fn count(blobs: &Path) -> Result<StoreUsage, StoreError> {
    let mut usage = StoreUsage::default();
    walk(blobs, |found| {
        if let Found::Blob { meta, .. } = found {
            usage.blobs += 1;
            usage.bytes += meta.len();
        }
        Ok(())
    })?;
    Ok(usage)
}

/// Removes temp files that no live writer holds (a writer keeps an exclusive `flock` on
/// its temp file until it is renamed or removed; the kernel drops the lock when the
/// writer dies). Returns how many were removed.
pub(crate) fn clean_tmp(tmp: &Path) -> Result<u64, StoreError> {
    let mut removed = 0;
    for entry in read_dir(tmp)? {
        let (_, path, ftype) = entry;
        if ftype.is_dir() {
            tracing::warn!(path = %path.display(), "blob store: unexpected directory in tmp/, left alone");
            continue;
        }
        if ftype.is_file() {
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("open", path, e)),
            };
            match file.try_lock() {
                Ok(()) => {}
                // A live writer in another process: not a leftover.
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(e)) => return Err(StoreError::io("lock", path, e)),
            }
            // Unlinked while we hold the lock, so a writer that raced us to the lock
            // sees the file gone (see `put::TempBlob::create`) and starts over.
            remove(&path)?;
            drop(file);
        } else {
            remove(&path)?;
        }
        removed += 1;
    }
    Ok(removed)
}

fn remove(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::io("remove", path, e)),
        _ => Ok(()),
    }
}

type Entry = (String, PathBuf, fs::FileType);

/// The entries of `dir` as (name, path, type), without those that vanished meanwhile.
/// Names that are not UTF-8 come back lossily converted, which makes them strays.
fn read_dir(dir: &Path) -> Result<Vec<Entry>, StoreError> {
    let rd = fs::read_dir(dir).map_err(|e| StoreError::io("list", dir, e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| StoreError::io("list", dir, e))?;
        let ftype = match entry.file_type() {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io("inspect", entry.path(), e)),
        };
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
            ftype,
        ));
    }
    Ok(out)
}
