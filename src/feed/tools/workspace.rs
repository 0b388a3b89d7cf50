//! The feed directory: its configuration, paths, published versions and keys.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::FeedError;
use crate::trust::dsse::Envelope;
use crate::trust::keys::Ed25519Key;
use crate::trust::roles::{RoleKeys, Root};

/// `feed.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// The feed's name, written into every catalog and bundle.
    pub name: String,
    #[serde(default)]
    pub expiry: Expiry,
}

/// How long each role's metadata stays valid after signing, in days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Expiry {
    pub root_days: u32,
    /// Long, because offline sites import a bundle and then live on it for weeks.
    pub catalog_days: u32,
    /// Short: online freshness. Offline bundles do not depend on it.
    pub timestamp_days: u32,
}

impl Default for Expiry {
    fn default() -> Self {
        Self {
            root_days: 365,
            catalog_days: 90,
            timestamp_days: 7,
        }
    }
}

/// An opened feed directory.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub dir: PathBuf,
    pub config: FeedConfig,
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FeedError + '_ {
    move |source| FeedError::Io {
        path: path.to_path_buf(),
        cause: source,
    }
}

/// `now + days`.
pub(super) fn after_days(now: Timestamp, days: u32) -> Timestamp {
    now.saturating_add(SignedDuration::from_hours(i64::from(days) * 24))
        .expect("a day count cannot overflow a timestamp")
}

/// The payload of one of our own envelope files. The MSP trusts its own directory;
/// nothing here is a verification.
pub(super) fn own_payload(path: &Path) -> Result<Vec<u8>, FeedError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    Envelope::from_json(&bytes)
        .map(|e| e.payload)
        .map_err(|e| FeedError::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

impl Workspace {
    pub fn open(dir: &Path) -> Result<Self, FeedError> {
        let path = dir.join("feed.toml");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(FeedError::NotAFeed {
                    path: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let config = toml::from_str(&text).map_err(|e| FeedError::Config {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
        })
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.dir.join("blobs/sha256").join(sha256)
    }

    /// Published root versions, ascending.
    pub fn root_versions(&self) -> Result<Vec<u64>, FeedError> {
        versions_in(&self.path("public/root"), ".root.json")
    }

    /// Published catalog versions, ascending.
    pub fn catalog_versions(&self) -> Result<Vec<u64>, FeedError> {
        versions_in(&self.path("public/catalog"), ".catalog.json")
    }

    pub fn root_file(&self, version: u64) -> PathBuf {
        self.path(&format!("public/root/{version}.root.json"))
    }

    pub fn catalog_file(&self, version: u64) -> PathBuf {
        self.path(&format!("public/catalog/{version}.catalog.json"))
    }

    /// The newest root (as published by this feed).
    pub fn latest_root(&self) -> Result<Root, FeedError> {
        let v = *self
            .root_versions()?
            .last()
            .ok_or_else(|| FeedError::Config {
                path: self.path("public/root"),
                reason: "no root is published; the feed directory is damaged".into(),
            })?;
        let path = self.root_file(v);
        Root::parse(&own_payload(&path)?).map_err(|e| FeedError::Config {
            path,
            reason: e.to_string(),
        })
    }

    /// Every key file in `keys/` and in `extra` directories, by key id.
    pub fn load_keys(&self, extra: &[PathBuf]) -> Result<BTreeMap<String, Ed25519Key>, FeedError> {
        let mut keys = BTreeMap::new();
        for dir in std::iter::once(self.path("keys")).chain(extra.iter().cloned()) {
            for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
                let path = entry.map_err(io_err(&dir))?.path();
                if path.extension().is_some_and(|e| e == "ed25519") {
                    let k = Ed25519Key::load(&path)?;
                    keys.insert(k.key_id(), k);
                }
            }
        }
        Ok(keys)
    }
}

/// The keys available for a role, or an error naming how many are missing.
pub(super) fn signers<'a>(
    keys: &'a BTreeMap<String, Ed25519Key>,
    role: &RoleKeys,
    label: &str,
) -> Result<Vec<&'a Ed25519Key>, FeedError> {
    let have: Vec<&Ed25519Key> = role.keyids.iter().filter_map(|id| keys.get(id)).collect();
    if (have.len() as u64) < u64::from(role.threshold) {
        return Err(FeedError::MissingKeys {
            role: label.to_string(),
            have: have.len(),
            need: role.threshold,
        });
    }
    Ok(have)
}

/// The file name a key is saved under (root keys marked for offline storage).
pub(super) fn key_file_name(role: &str, key: &Ed25519Key) -> String {
    let id16 = &key.key_id()[..16];
    if role == "root" {
        format!("OFFLINE-root-{id16}.ed25519")
    } else {
        format!("{role}-{id16}.ed25519")
    }
}

fn versions_in(dir: &Path, suffix: &str) -> Result<Vec<u64>, FeedError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries {
        let name = entry.map_err(io_err(dir))?.file_name();
        if let Some(v) = name
            .to_str()
            .and_then(|n| n.strip_suffix(suffix))
            .and_then(|n| n.parse().ok())
        {
            out.push(v);
        }
    }
    out.sort_unstable();
    Ok(out)
}
