//! A published feed directory as a transport (`file://` sources, and the layout every
//! HTTP source serves): `root/<N>.root.json`, `catalog/<N>.catalog.json`,
//! `catalog.json`, `timestamp.json`, `blobs/sha256/<hex>`.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::{ImportError, Progress, ProgressReader, Transport, layout};
use crate::store::{Sha256Hex, Staging};

/// Metadata files are small; anything larger is refused before it is read.
pub const MAX_METADATA_BYTES: u64 = 16 << 20;

/// Reads a published feed from a local directory.
pub struct DirTransport {
    root: PathBuf,
}

impl DirTransport {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// From a `file://` URL.
    pub fn from_url(url: &str) -> Option<Self> {
        url.strip_prefix("file://").map(|p| Self::new(Path::new(p)))
    }

    fn read_meta(&self, rel: &str) -> Result<Option<Vec<u8>>, ImportError> {
        let path = self.root.join(rel);
        let io = |source| ImportError::Io {
            what: format!("read {}", path.display()),
            cause: source,
        };
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
            Ok(m) if m.len() > MAX_METADATA_BYTES => {
                return Err(ImportError::Fetch {
                    what: path.display().to_string(),
                    reason: format!("{} bytes is more than metadata may be", m.len()),
                });
            }
            Ok(_) => {}
        }
        // Read through the bound too: the file may grow after the size check.
        let mut buf = Vec::new();
        let f = std::fs::File::open(&path).map_err(io)?;
        std::io::Read::read_to_end(
            &mut std::io::Read::take(f, MAX_METADATA_BYTES + 1),
            &mut buf,
        )
        .map_err(io)?;
        if buf.len() as u64 > MAX_METADATA_BYTES {
            return Err(ImportError::Fetch {
                what: path.display().to_string(),
                reason: "it grew past the metadata limit while being read".into(),
            });
        }
        Ok(Some(buf))
    }
}

impl Transport for DirTransport {
    fn describe(&self) -> String {
        format!("directory {}", self.root.display())
    }

    fn roots_after(&mut self, known: u64) -> Result<Vec<Vec<u8>>, ImportError> {
        let mut out = Vec::new();
        let mut v = known + 1;
        while let Some(bytes) = self.read_meta(&layout::root(v))? {
            out.push(bytes);
            v += 1;
        }
        Ok(out)
    }

    fn timestamp(&mut self) -> Result<Option<Vec<u8>>, ImportError> {
        self.read_meta(layout::TIMESTAMP)
    }

    fn catalog(&mut self, version: Option<u64>) -> Result<Vec<u8>, ImportError> {
        let rel = layout::catalog(version);
        self.read_meta(&rel)?.ok_or_else(|| ImportError::Fetch {
            what: self.root.join(&rel).display().to_string(),
            reason: "not found".into(),
        })
    }

    fn fetch_blobs(
        &mut self,
        needed: &BTreeMap<String, u64>,
        _all: &BTreeMap<String, u64>,
        staging: &Staging<'_>,
        progress: &dyn Progress,
    ) -> Result<u64, ImportError> {
        let mut bytes = 0;
        for (hash, size) in needed {
            let path = self.root.join(layout::blob(hash));
            let file = std::fs::File::open(&path).map_err(|source| ImportError::Io {
                what: format!("open {}", path.display()),
                cause: source,
            })?;
            let h = Sha256Hex::parse(hash)?;
            let mut r = ProgressReader {
                inner: file,
                progress,
            };
            staging.put(&h, *size, &mut r)?;
            bytes += size;
        }
        Ok(bytes)
    }
}
