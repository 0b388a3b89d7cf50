//! Reading blobs: an open file for serving (with Range), or a verified copy.

use std::fs::File;
use std::io::{self, Read, Write};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::{Sha256Hex, Store, StoreError};

/// An open blob, for serving. The handle stays valid if gc removes the blob meanwhile
/// (Linux unlink semantics: the bytes live until the last handle closes).
#[derive(Debug)]
pub struct BlobFile {
    pub hash: Sha256Hex,
    pub file: File,
    pub size: u64,
    /// When the blob was last stored (for `Last-Modified`).
    pub modified: SystemTime,
}

impl Store {
    /// Opens a blob for reading. Not verified here: serving with Range cannot re-hash
    /// per request; clients check the hash their signed ticket or Release names, and
    /// [`Store::verify_all`] scrubs the store.
    pub fn open_blob(&self, hash: &Sha256Hex) -> Result<BlobFile, StoreError> {
        let path = self.path(hash);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound { hash: hash.clone() });
            }
            Err(e) => return Err(StoreError::io("open", path, e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| StoreError::io("inspect", &path, e))?;
        Ok(BlobFile {
            hash: hash.clone(),
            file,
            size: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        })
    }

    /// Copies a whole blob to `out` and returns its size. With
    /// [`verify_on_read`](super::StoreOptions::verify_on_read) it re-hashes the bytes on
    /// the way and returns [`StoreError::Corrupt`] if they do not match the name; the
    /// bytes are already written by then, so the caller must discard its copy on error.
    pub fn read_verified(&self, hash: &Sha256Hex, out: &mut dyn Write) -> Result<u64, StoreError> {
        let mut blob = self.open_blob(hash)?;
        let path = self.path(hash);
        let verify = self.opts.verify_on_read;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = match blob.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::io("read", path, e)),
            };
            if verify {
                hasher.update(&buf[..n]);
            }
            out.write_all(&buf[..n])
                .map_err(|source| StoreError::Write {
                    hash: hash.clone(),
                    cause: source,
                })?;
            total += n as u64;
        }
        if verify {
            let actual = Sha256Hex::from_digest(&hasher.finalize().into());
            if actual != *hash {
                return Err(StoreError::Corrupt {
                    hash: hash.clone(),
                    actual,
                    size: total,
                    path,
                });
            }
        }
        Ok(total)
    }
}

/// Hashes a whole file; returns the hash and size.
pub(crate) fn hash_file(file: &mut File) -> io::Result<(Sha256Hex, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((Sha256Hex::from_digest(&hasher.finalize().into()), total))
}
