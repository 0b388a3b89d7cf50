//! Storing a blob: stream into a locked temp file while hashing, verify, `fsync`,
//! rename into place, `fsync` the directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use sha2::{Digest, Sha256};

use super::{BLOB_MODE, DIR_MODE, Sha256Hex, Store, StoreError, space};
use crate::fsutil;

/// Bytes read (and hashed, and written) per step. Measured with
/// `PATCHWARD_BENCH_DIR=/dev/shm cargo bench --bench store_put` (tmpfs, so CPU only):
/// 64 KiB and 1 MiB both put at 0.62x the in-memory sha256 rate, for 1 MiB and 64 MiB
/// blobs alike (BENCHMARKS.md). 1 MiB keeps syscalls few and is small enough to
/// allocate per put.
const BUF_SIZE: usize = 1 << 20;
/// How often (in bytes written) free space is checked again during a write.
const SPACE_CHECK_EVERY: u64 = 8 << 20;

/// What [`Store::put`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    pub hash: Sha256Hex,
    pub size: u64,
    /// The blob was already stored: nothing was written (its mtime was refreshed).
    pub already_present: bool,
}

impl Store {
    /// Stores the bytes `reader` yields and returns their name.
    ///
    /// With `expected` (the hash and size a verified catalog names):
    /// - if that blob is already stored, nothing is read or written; the blob's mtime is
    ///   refreshed and `already_present` is set. Whether to drain or drop the reader is
    ///   the caller's choice (better: ask [`Store::touch`] before fetching at all);
    /// - reading stops as soon as the stream passes `size` bytes (at most `size + 1`
    ///   bytes are read), and a short stream or a different hash is refused.
    ///
    /// Free space is checked before anything is written (expected size plus the
    /// reserve) and again every few MiB while writing, which is what guards a stream of
    /// unknown size. Any error leaves the store as it was: the temp file is removed and
    /// nothing becomes visible.
    pub fn put(
        &self,
        expected: Option<(&Sha256Hex, u64)>,
        reader: &mut dyn Read,
    ) -> Result<PutOutcome, StoreError> {
        let reserve = self.opts.free_space_reserve;
        if let Some((hash, size)) = expected {
            let commit = self.lock();
            match self.touch_locked(hash)? {
                Some(stored) if stored == size => {
                    return Ok(PutOutcome {
                        hash: hash.clone(),
                        size,
                        already_present: true,
                    });
                }
                Some(stored) => tracing::warn!(
                    %hash, stored, expected = size,
                    "blob store: stored blob has the wrong size; storing the stream and \
                     replacing it if the stream verifies"
                ),
                None => {}
            }
            drop(commit);
            space::check(&self.root, size, reserve)?;
        } else {
            space::check_unknown(&self.root, 0, reserve)?;
        }

        let mut tmp = TempBlob::create(self)?;
        let (hash, size) = self.stream(&mut tmp, reader, expected)?;
        if let Some((want, want_size)) = expected {
            if size < want_size {
                return Err(StoreError::TooShort {
                    hash: want.clone(),
                    expected: want_size,
                    actual: size,
                });
            }
            if hash != *want {
                return Err(StoreError::HashMismatch {
                    expected: want.clone(),
                    actual: hash,
                    size,
                });
            }
        }
        crash_point("before-sync");
        // The mtime is the time the blob was stored; gc's grace period counts from it.
        tmp.file
            .set_modified(self.now())
            .map_err(|e| StoreError::io("set the mtime of", &tmp.path, e))?;
        if self.sync_each {
            tmp.file
                .sync_all()
                .map_err(|e| StoreError::io("flush to disk", &tmp.path, e))?;
        }
        crash_point("after-sync");
        self.commit(tmp, hash, size)
    }

    /// Copies `reader` into the temp file, hashing; returns the hash and size.
    fn stream(
        &self,
        tmp: &mut TempBlob,
        reader: &mut dyn Read,
        expected: Option<(&Sha256Hex, u64)>,
    ) -> Result<(Sha256Hex, u64), StoreError> {
        let reserve = self.opts.free_space_reserve;
        let mut buf = vec![0u8; BUF_SIZE];
        let mut hasher = Sha256::new();
        let mut total: u64 = 0;
        let mut next_space_check = SPACE_CHECK_EVERY;
        loop {
            // Never ask for more than one byte past the expected size: a stream that
            // would yield 10 GiB for a 1 KiB blob costs 1 KiB + 1 byte of reading.
            let want = match expected {
                Some((_, size)) => usize::try_from((size - total).saturating_add(1))
                    .unwrap_or(usize::MAX)
                    .min(BUF_SIZE),
                None => BUF_SIZE,
            };
            let n = fill(reader, &mut buf[..want]).map_err(|(got, source)| StoreError::Read {
                read: total + got as u64,
                cause: source,
            })?;
            total += n as u64;
            if let Some((hash, size)) = expected
                && total > size
            {
                return Err(StoreError::TooLarge {
                    hash: hash.clone(),
                    expected: size,
                    read: total,
                });
            }
            hasher.update(&buf[..n]);
            tmp.file
                .write_all(&buf[..n])
                .map_err(|e| StoreError::io("write", &tmp.path, e))?;
            if total >= next_space_check {
                next_space_check = total + SPACE_CHECK_EVERY;
                match expected {
                    Some((_, size)) => space::check(&self.root, size - total, reserve)?,
                    None => space::check_unknown(&self.root, total, reserve)?,
                }
            }
            if n < want {
                break; // end of stream
            }
        }
        Ok((Sha256Hex::from_digest(&hasher.finalize().into()), total))
    }

    /// Moves a verified, flushed temp file into place, unless the blob is already there.
    fn commit(
        &self,
        mut tmp: TempBlob,
        hash: Sha256Hex,
        size: u64,
    ) -> Result<PutOutcome, StoreError> {
        let dir = self.blobs.join(hash.prefix());
        self.ensure_fanout(&dir)?;
        let dest = dir.join(hash.as_str());
        {
            let mut usage = self.lock();
            let replaced = match self.touch_locked(&hash)? {
                // Same name, same size: the same bytes. Drop the temp file (on return).
                Some(stored) if stored == size => {
                    return Ok(PutOutcome {
                        hash,
                        size,
                        already_present: true,
                    });
                }
                // A stored blob whose size differs from its verified content is corrupt:
                // replace it (an open handle on the old one keeps its bytes).
                Some(stored) => {
                    tracing::warn!(%hash, stored, size, "blob store: replacing a corrupt blob");
                    Some(stored)
                }
                None => None,
            };
            // Across processes two puts of one blob may both get here; rename replaces
            // atomically, and both files hold the same verified bytes.
            fs::rename(&tmp.path, &dest)
                .map_err(|e| StoreError::io("move into place", &dest, e))?;
            tmp.keep = true;
            crash_point("after-rename");
            match replaced {
                Some(old) => usage.bytes = usage.bytes - old + size,
                None => {
                    usage.blobs += 1;
                    usage.bytes += size;
                }
            }
        }
        if self.sync_each {
            fsutil::sync_dir(&dir).map_err(|e| StoreError::io("flush to disk", &dir, e))?;
        }
        Ok(PutOutcome {
            hash,
            size,
            already_present: false,
        })
    }

    /// Creates a fan-out directory on first use, durably.
    fn ensure_fanout(&self, dir: &Path) -> Result<(), StoreError> {
        match fs::create_dir(dir) {
            Ok(()) => {
                fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
                    .map_err(|e| StoreError::io("set permissions of", dir, e))?;
                fsutil::sync_dir(&self.blobs)
                    .map_err(|e| StoreError::io("flush to disk", &self.blobs, e))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(StoreError::io("create directory", dir, e)),
        }
    }
}

/// An in-progress write in `tmp/`, locked against [`Store::open`]'s cleanup in other
/// processes and removed on drop unless it was renamed into place.
struct TempBlob {
    path: PathBuf,
    file: File,
    keep: bool,
}

impl TempBlob {
    fn create(store: &Store) -> Result<TempBlob, StoreError> {
        loop {
            let seq = store.tmp_seq.fetch_add(1, Ordering::Relaxed);
            let path = store.tmp.join(format!("put-{}-{seq}", std::process::id()));
            let file = match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(BLOB_MODE)
                .open(&path)
            {
                Ok(f) => f,
                // A leftover of a dead process that had our pid: pick the next name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(StoreError::io("create", path, e)),
            };
            file.lock().map_err(|e| StoreError::io("lock", &path, e))?;
            // Another process's cleanup may have locked and unlinked the file between
            // our create and our lock; it unlinks while holding the lock, so now we know.
            let nlink = file
                .metadata()
                .map_err(|e| StoreError::io("inspect", &path, e))?
                .nlink();
            if nlink == 0 {
                continue;
            }
            return Ok(TempBlob {
                path,
                file,
                keep: false,
            });
        }
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Reads until `buf` is full or the stream ends; returns how many bytes it read. On
/// error, also says how many bytes it had read before.
fn fill(reader: &mut dyn Read, buf: &mut [u8]) -> Result<usize, (usize, io::Error)> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((filled, e)),
        }
    }
    Ok(filled)
}

/// Test-only fault injection: the crash test runs `put` in a child process that kills
/// itself with SIGKILL at the named point, then checks what a crash there leaves.
#[cfg(test)]
pub(crate) fn crash_point(point: &str) {
    if std::env::var("PATCHWARD_STORE_CRASH_AT").as_deref() == Ok(point) {
        // SAFETY: kill(2) on our own pid with a valid signal number.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

#[cfg(not(test))]
#[inline(always)]
fn crash_point(_point: &str) {}
