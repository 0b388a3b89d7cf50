//! The offline bundle (`*.pwb`): a tar stream compressed with zstd (DESIGN §3 "Bundle").
//!
//! Entries, in this order, all regular files, no directory entries:
//!
//! ```text
//! patchward-bundle.json   {format: 1, feed, base_catalog_version|null, created}
//! root/<N>.root.json      DSSE roots, ascending (the chain the importer may lack)
//! catalog.json            DSSE catalog
//! timestamp.json          DSSE timestamp (optional)
//! blobs/sha256/<hex>      artifact contents
//! ```
//!
//! Metadata comes first so that the importer can verify the catalog before a single
//! blob byte is accepted: [`BundleReader::metadata`] stops at the first blob, and only
//! [`BundleReader::blobs`], given the verified catalog's blob list, streams the rest.
//! The reader is written for hostile input (see `read`); the writer is in `write`.

mod ahead;
mod read;
mod write;

#[cfg(test)]
mod tests;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use read::{BlobsSummary, BundleReader};
pub use write::write_bundle;

/// The only bundle format this binary reads and writes.
pub const FORMAT: u32 = 1;
/// Largest single metadata entry (a catalog of thousands of patches is a few MiB).
pub const MAX_METADATA_ENTRY: u64 = 16 << 20;
/// Largest total of all metadata entries, so a long root chain cannot exhaust memory.
pub const MAX_METADATA_TOTAL: u64 = 64 << 20;
/// Decompressed bytes allowed beyond the blobs' sizes: per-entry headers and padding,
/// the end-of-archive marker and record padding some tar writers add.
pub const TAR_SLACK: u64 = 1 << 20;

pub const HEADER_NAME: &str = "patchward-bundle.json";
pub const CATALOG_NAME: &str = "catalog.json";
pub const TIMESTAMP_NAME: &str = "timestamp.json";
pub const BLOB_PREFIX: &str = "blobs/sha256/";

/// `patchward-bundle.json`: what the bundle is for. Unsigned, so only informational
/// and for early, friendly errors ("this bundle needs catalog 4 as its base"); every
/// decision rests on the signed catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleHeader {
    pub format: u32,
    pub feed: String,
    /// `None` for a full bundle; otherwise the catalog version whose blobs it omits.
    pub base_catalog_version: Option<u64>,
    pub created: Timestamp,
}

/// The metadata entries of a bundle, as raw bytes for `trust::state` to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleMetadata {
    pub header: BundleHeader,
    /// Root envelopes in ascending version order.
    pub roots: Vec<Vec<u8>>,
    pub catalog: Vec<u8>,
    pub timestamp: Option<Vec<u8>>,
}

/// Why a bundle was refused or could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read bundle: {0}")]
    Io(std::io::Error),
    /// The input is some other kind of file (a `.deb`, a tarball, text, an empty file):
    /// said in those words, so nobody hunts for corruption in the wrong file.
    #[error("not a Patchward bundle (*.pwb): {0}")]
    NotABundle(String),
    #[error("bundle is corrupt: {0}")]
    Corrupt(String),
    #[error("bundle is truncated: {0}")]
    Truncated(String),
    #[error(
        "bundle decompresses to more than {cap} bytes, more than its catalog's sizes allow \
         (decompression bomb?)"
    )]
    TooLarge { cap: u64 },
    #[error("entry {name:?} has an absolute path (path traversal)")]
    AbsolutePath { name: String },
    #[error("entry {name:?} contains `..` (path traversal)")]
    Traversal { name: String },
    #[error("entry name {name:?} is not UTF-8")]
    NotUtf8 { name: String },
    #[error("entry {name:?} is a {kind}; bundles contain only regular files")]
    NotRegular { name: String, kind: String },
    #[error("unknown entry {name:?} (not part of the bundle format)")]
    Unknown { name: String },
    #[error("duplicate entry {name:?}")]
    Duplicate { name: String },
    #[error("entry {name:?} is out of order: {reason}")]
    OutOfOrder { name: String, reason: String },
    #[error("entry {name:?} is {size} bytes, over the {max}-byte metadata limit")]
    MetadataTooLarge { name: String, size: u64, max: u64 },
    #[error("bundle has no catalog.json")]
    NoCatalog,
    #[error("patchward-bundle.json is invalid: {0}")]
    Header(String),
    #[error("blob {sha256} is not referenced by the verified catalog")]
    NotInCatalog { sha256: String },
    #[error(
        "blob {sha256} is {found} bytes in the bundle but the catalog says {expected} (size mismatch)"
    )]
    SizeMismatch {
        sha256: String,
        found: u64,
        expected: u64,
    },
    #[error(
        "blob {sha256} was not read to its end ({left} bytes left); the importer must hash every byte"
    )]
    BlobNotConsumed { sha256: String, left: u64 },
    #[error(
        "blob {sha256} in the bundle hashes to {actual}: the bundle is damaged or was \
         tampered with; copy it again from the original"
    )]
    BlobHash { sha256: String, actual: String },
    #[error(
        "the bundle is incomplete: it is a full bundle but lacks {count} blob(s) its catalog \
         references ({list}); copy it again from the original"
    )]
    Incomplete { count: usize, list: String },
    #[error("bundle reader misuse: {0}")]
    Misuse(&'static str),
    #[error("cannot write bundle: {0}")]
    Write(std::io::Error),
    #[error("blob {sha256} cannot be bundled: {reason}")]
    BlobSource { sha256: String, reason: String },
}
