//! An offline bundle (`*.pwb`) as a transport. The bundle is one stream: its metadata
//! is read when the transport is opened, and its blobs are streamed into the store in
//! bundle order after the pipeline has verified the catalog. Every blob the bundle
//! carries is hashed, staged or not, and the stream is read to its end.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use super::{ImportError, Progress, ProgressReader, Transport};
use crate::feed::bundle::{BundleError, BundleMetadata, BundleReader};
use crate::store::{Sha256Hex, Staging};
use sha2::{Digest, Sha256};

/// A bundle file opened for import.
pub struct BundleTransport {
    path: PathBuf,
    reader: Option<BundleReader<BufReader<File>>>,
    meta: BundleMetadata,
}

impl From<BundleError> for ImportError {
    fn from(e: BundleError) -> Self {
        ImportError::Bundle(e.to_string())
    }
}

impl BundleTransport {
    /// Opens `path` and reads (only) its metadata entries.
    pub fn open(path: &Path) -> Result<Self, ImportError> {
        let file = File::open(path).map_err(|source| ImportError::Io {
            what: format!("open bundle {}", path.display()),
            cause: source,
        })?;
        // Name the file when it is not a bundle at all: "x.deb is not a Patchward bundle".
        let named = |e: BundleError| match e {
            BundleError::NotABundle(reason) => ImportError::NotABundle {
                file: path.display().to_string(),
                reason,
            },
            e => e.into(),
        };
        let mut reader =
            BundleReader::new_read_ahead(BufReader::with_capacity(1 << 20, file)).map_err(named)?;
        let meta = reader.metadata().map_err(named)?;
        Ok(Self {
            path: path.to_path_buf(),
            reader: Some(reader),
            meta,
        })
    }

    /// The feed the bundle's (unsigned) header names.
    pub fn feed(&self) -> &str {
        &self.meta.header.feed
    }
}

impl Transport for BundleTransport {
    fn describe(&self) -> String {
        format!("bundle {}", self.path.display())
    }

    fn claimed_feed(&self) -> Option<String> {
        Some(self.meta.header.feed.clone())
    }

    fn base_catalog_version(&self) -> Option<u64> {
        self.meta.header.base_catalog_version
    }

    fn offline(&self) -> bool {
        true
    }

    fn roots_after(&mut self, known: u64) -> Result<Vec<Vec<u8>>, ImportError> {
        // The bundle carries the chain since some version; the ones this appliance
        // already has are skipped by version (each still verified when first seen).
        let mut out = Vec::new();
        for r in &self.meta.roots {
            let env = crate::trust::dsse::Envelope::from_json(r)?;
            #[derive(serde::Deserialize)]
            struct V {
                version: u64,
            }
            let v: V = serde_json::from_slice(&env.payload).map_err(|e| {
                ImportError::Bundle(format!("a root in the bundle has no version: {e}"))
            })?;
            if v.version > known {
                out.push(r.clone());
            }
        }
        Ok(out)
    }

    fn timestamp(&mut self) -> Result<Option<Vec<u8>>, ImportError> {
        Ok(self.meta.timestamp.clone())
    }

    fn catalog(&mut self, _version: Option<u64>) -> Result<Vec<u8>, ImportError> {
        Ok(self.meta.catalog.clone())
    }

    fn fetch_blobs(
        &mut self,
        needed: &BTreeMap<String, u64>,
        all: &BTreeMap<String, u64>,
        staging: &Staging<'_>,
        progress: &dyn Progress,
    ) -> Result<u64, ImportError> {
        let reader = self.reader.take().ok_or(ImportError::Bundle(
            "the bundle's blobs were already read".into(),
        ))?;
        // The whole stream is read to its end-of-archive marker, also when nothing in it
        // is needed: a truncated copy fails here, never passes as "already current".
        let mut stored = 0u64;
        let summary = reader.blobs(all, |hash, size, r| {
            if needed.contains_key(hash) {
                let h = Sha256Hex::parse(hash)?;
                let mut pr = ProgressReader { inner: r, progress };
                staging.put(&h, size, &mut pr)?;
                stored += size;
            } else {
                // Already stored: the bundle's copy is hashed all the same (the stream
                // has no seek, and a tampered copy must be reported as such).
                check_copy(hash, r)?;
            }
            Ok::<_, ImportError>(())
        })?;
        // A full bundle carries every blob its catalog references; one that lacks some
        // is an incomplete copy even if this appliance happens to have them.
        if self.meta.header.base_catalog_version.is_none() {
            let lacking: Vec<String> = all
                .keys()
                .filter(|h| !summary.blobs.contains_key(*h))
                .cloned()
                .collect();
            if !lacking.is_empty() {
                return Err(BundleError::Incomplete {
                    count: lacking.len(),
                    list: super::short_list(&lacking),
                }
                .into());
            }
        }
        Ok(stored)
    }
}

/// Hashes a blob the store already has as the bundle carries it; a mismatch means the
/// bundle is damaged or was tampered with.
fn check_copy(hash: &str, r: &mut dyn io::Read) -> Result<(), ImportError> {
    let mut hasher = Sha256::new();
    io::copy(r, &mut hasher).map_err(|cause| ImportError::Io {
        what: "read bundle".into(),
        cause,
    })?;
    let actual = hex::encode(hasher.finalize());
    if actual != hash {
        return Err(BundleError::BlobHash {
            sha256: hash.to_string(),
            actual,
        }
        .into());
    }
    Ok(())
}
