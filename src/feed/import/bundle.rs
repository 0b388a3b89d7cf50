//! An offline bundle (`*.pwb`) as a transport. The bundle is one stream: its metadata
//! is read when the transport is opened, and its blobs are streamed into the store in
//! bundle order after the pipeline has verified the catalog.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use super::{ImportError, Progress, ProgressReader, Transport};
use crate::feed::bundle::{BundleError, BundleMetadata, BundleReader};
use crate::store::{Sha256Hex, Store};

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
        let mut reader = BundleReader::new_read_ahead(BufReader::with_capacity(1 << 20, file))?;
        let meta = reader.metadata()?;
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
        store: &Store,
        progress: &dyn Progress,
    ) -> Result<u64, ImportError> {
        let reader = self.reader.take().ok_or(ImportError::Bundle(
            "the bundle's blobs were already read".into(),
        ))?;
        // Blobs are verified into a staging area and join the store only once the whole
        // bundle has been read without fault: a refused bundle leaves the store as it was.
        let mut staging = store.staging()?;
        let mut stored = 0u64;
        reader.blobs(all, |hash, size, r| {
            if needed.contains_key(hash) {
                let h = Sha256Hex::parse(hash)?;
                let mut pr = ProgressReader { inner: r, progress };
                staging.put(&h, size, &mut pr)?;
                stored += size;
            } else {
                // Already stored: read past it (the stream has no seek).
                io::copy(r, &mut io::sink()).map_err(|source| ImportError::Io {
                    what: "read bundle".into(),
                    cause: source,
                })?;
            }
            Ok::<_, ImportError>(())
        })?;
        staging.commit()?;
        Ok(stored)
    }
}
