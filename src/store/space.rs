//! The free-space reserve: a put must never fill the file system the database, the
//! logs and the OS share with the store.

use std::path::Path;

use super::StoreError;

/// Bytes available to unprivileged writers on the file system holding `path`.
pub(crate) fn available(path: &Path) -> Result<u64, StoreError> {
    let st = rustix::fs::statvfs(path)
        .map_err(|e| StoreError::io("query free space of", path, e.into()))?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Refuses when writing `needed` more bytes would leave less than `reserve` free.
pub(crate) fn check(path: &Path, needed: u64, reserve: u64) -> Result<(), StoreError> {
    let available = available(path)?;
    if available < needed.saturating_add(reserve) {
        return Err(StoreError::NoSpace {
            needed,
            available,
            reserve,
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// During a write of unknown size: refuses once free space has dropped below `reserve`.
pub(crate) fn check_unknown(path: &Path, written: u64, reserve: u64) -> Result<(), StoreError> {
    let available = available(path)?;
    if available < reserve {
        return Err(StoreError::NoSpaceWhileWriting {
            written,
            available,
            reserve,
            path: path.to_path_buf(),
        });
    }
    Ok(())
}
