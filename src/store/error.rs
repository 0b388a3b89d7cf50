//! [`StoreError`]: what can go wrong in the blob store, worded for the operator.
//!
//! Every message says what happened to which blob or path and, where there is one, what
//! to do next. Errors from a failed `put` also say that nothing was stored, because that
//! is the question an operator asks first.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::Sha256Hex;

/// Errors from the content-addressed blob store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system operation on the store's own files failed.
    #[error("blob store: cannot {action} {path}: {cause}")]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: io::Error,
    },

    /// The stream being stored failed (network, bundle reader, decompressor).
    #[error("reading the content to store failed after {read} bytes: {cause}; nothing was stored")]
    Read { read: u64, cause: io::Error },

    /// The destination of [`Store::read_verified`](super::Store::read_verified) failed.
    #[error("writing blob {hash} to its destination failed: {cause}")]
    Write { hash: Sha256Hex, cause: io::Error },

    #[error("'{input}' is not a sha256: expected 64 lowercase hex digits")]
    InvalidHash { input: String },

    #[error(
        "blob {hash} is larger than the {expected} bytes the catalog says: stopped reading \
         after {read} bytes; nothing was stored (the source is corrupt or not what the catalog names)"
    )]
    TooLarge {
        hash: Sha256Hex,
        expected: u64,
        read: u64,
    },

    #[error(
        "blob {hash} ended after {actual} bytes but the catalog says {expected}: the download \
         or bundle is truncated; nothing was stored"
    )]
    TooShort {
        hash: Sha256Hex,
        expected: u64,
        actual: u64,
    },

    #[error(
        "content expected to be sha256 {expected} hashes to {actual} ({size} bytes): the \
         source is corrupt or was tampered with; nothing was stored"
    )]
    HashMismatch {
        expected: Sha256Hex,
        actual: Sha256Hex,
        size: u64,
    },

    #[error(
        "import needs {} but only {} is free above the {} reserve on {}; free space or lower \
         store.free_space_reserve_mb",
        Bytes(*.needed), Bytes(.available.saturating_sub(*.reserve)), Bytes(*.reserve), .path.display()
    )]
    NoSpace {
        needed: u64,
        available: u64,
        reserve: u64,
        path: PathBuf,
    },

    #[error(
        "import stopped after writing {} of a blob of unknown size: only {} is free on {}, \
         below the {} reserve; nothing was stored; free space or lower store.free_space_reserve_mb",
        Bytes(*.written), Bytes(*.available), .path.display(), Bytes(*.reserve)
    )]
    NoSpaceWhileWriting {
        written: u64,
        available: u64,
        reserve: u64,
        path: PathBuf,
    },

    #[error("blob {hash} is not in the store")]
    NotFound { hash: Sha256Hex },

    #[error(
        "blob {hash} is corrupt: {path} hashes to {actual} ({size} bytes); delete the file and \
         import the content that brings it again"
    )]
    Corrupt {
        hash: Sha256Hex,
        actual: Sha256Hex,
        size: u64,
        path: PathBuf,
    },

    #[error(
        "gc refused: the referenced set contains '{input}', which is not 64 lowercase hex \
         digits; nothing was removed (a caller bug: pass hashes as Sha256Hex::as_str gives them)"
    )]
    InvalidReference { input: String },
}

impl StoreError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io {
            action,
            path: path.into(),
            cause: source,
        }
    }
}

/// A byte count shown to people: `512 B`, `1.5 KiB`, `0.9 GiB`.
#[derive(Debug, Clone, Copy)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        let mut v = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while v >= 1024.0 && unit + 1 < UNITS.len() {
            v /= 1024.0;
            unit += 1;
        }
        // Whole numbers print without a decimal ("2 GiB"), others with one ("0.9 GiB").
        if (v - v.round()).abs() < 0.05 {
            write!(f, "{} {}", v.round(), UNITS[unit])
        } else {
            write!(f, "{v:.1} {}", UNITS[unit])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_like_an_operator_writes_them() {
        let gib = 1u64 << 30;
        for (n, s) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1536, "1.5 KiB"),
            (2 * gib, "2 GiB"),
            (gib * 12 / 10, "1.2 GiB"),
            (gib * 9 / 10, "921.6 MiB"),
            (u64::MAX, "16 EiB"),
        ] {
            assert_eq!(Bytes(n).to_string(), s);
        }
    }

    #[test]
    fn no_space_message_says_what_to_do() {
        let gib = 1u64 << 30;
        let e = StoreError::NoSpace {
            needed: gib * 12 / 10,
            available: 2 * gib + gib * 95 / 100,
            reserve: 2 * gib,
            path: "/var/lib/patchward".into(),
        };
        assert_eq!(
            e.to_string(),
            "import needs 1.2 GiB but only 972.8 MiB is free above the 2 GiB reserve on \
             /var/lib/patchward; free space or lower store.free_space_reserve_mb"
        );
    }
}
