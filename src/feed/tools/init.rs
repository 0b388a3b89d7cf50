//! `feed init`: a new feed directory with fresh root, catalog and timestamp keys.

use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use jiff::Timestamp;

use super::workspace::{after_days, io_err, key_file_name};
use super::{Expiry, FeedConfig, FeedError};
use crate::fsutil;
use crate::trust::dsse::Envelope;
use crate::trust::keys::{Ed25519Key, key_id};
use crate::trust::roles::{
    KeyEntry, ROOT_TYPE, RoleKeys, Roles, Root, RootTag, SPEC_VERSION, to_payload,
};

/// Key counts and thresholds for a new feed.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Feed name; defaults to the directory's name.
    pub name: Option<String>,
    pub root_keys: usize,
    pub root_threshold: u32,
    pub catalog_keys: usize,
    pub catalog_threshold: u32,
    pub expiry: Expiry,
}

impl Default for InitOptions {
    /// 2 of 3 root keys (DESIGN §3), one catalog and one timestamp key.
    fn default() -> Self {
        Self {
            name: None,
            root_keys: 3,
            root_threshold: 2,
            catalog_keys: 1,
            catalog_threshold: 1,
            expiry: Expiry::default(),
        }
    }
}

/// What `init` created.
#[derive(Debug, Clone)]
pub struct InitReport {
    pub name: String,
    pub root_threshold: u32,
    /// Root key files: to be moved offline.
    pub root_key_files: Vec<PathBuf>,
    pub catalog_key_files: Vec<PathBuf>,
    pub timestamp_key_files: Vec<PathBuf>,
    /// `public/root/1.root.json`: the file appliances pin.
    pub root_file: PathBuf,
}

/// Checks a key count and threshold.
pub(super) fn check_threshold(role: &str, keys: usize, threshold: u32) -> Result<(), FeedError> {
    if keys == 0 || keys > 16 || threshold == 0 || threshold as usize > keys {
        return Err(FeedError::Options(format!(
            "{role}: {keys} keys with threshold {threshold}; need 1-16 keys and 1 <= threshold <= keys"
        )));
    }
    Ok(())
}

/// A root listing the given public keys per role.
pub(super) fn make_root(
    version: u64,
    expires: Timestamp,
    root: (&[VerifyingKey], u32),
    catalog: (&[VerifyingKey], u32),
    timestamp: (&[VerifyingKey], u32),
) -> Root {
    let mut keys = std::collections::BTreeMap::new();
    let mut role = |(list, threshold): (&[VerifyingKey], u32)| {
        for k in list {
            keys.insert(key_id(k), KeyEntry::ed25519(k));
        }
        RoleKeys {
            keyids: list.iter().map(key_id).collect(),
            threshold,
        }
    };
    let roles = Roles {
        root: role(root),
        catalog: role(catalog),
        timestamp: role(timestamp),
    };
    Root {
        tag: RootTag::Root,
        spec_version: SPEC_VERSION,
        version,
        expires,
        keys,
        roles,
    }
}

/// Generates `n` keys for `role`, saved in `keys_dir`.
pub(super) fn new_keys(
    keys_dir: &Path,
    role: &str,
    n: usize,
) -> Result<(Vec<Ed25519Key>, Vec<PathBuf>), FeedError> {
    let mut keys = Vec::new();
    let mut files = Vec::new();
    for _ in 0..n {
        let k = Ed25519Key::generate(&mut rand::rngs::OsRng);
        let path = keys_dir.join(key_file_name(role, &k));
        k.save(&path)?;
        keys.push(k);
        files.push(path);
    }
    Ok((keys, files))
}

/// Creates a feed in `dir` (which may exist but must not hold a feed).
pub fn init(dir: &Path, opts: &InitOptions, now: Timestamp) -> Result<InitReport, FeedError> {
    check_threshold("root", opts.root_keys, opts.root_threshold)?;
    check_threshold("catalog", opts.catalog_keys, opts.catalog_threshold)?;
    let config_path = dir.join("feed.toml");
    if config_path.exists() {
        return Err(FeedError::AlreadyExists {
            path: dir.to_path_buf(),
        });
    }
    let name = match &opts.name {
        Some(n) => n.clone(),
        // `file_name` is None for paths like `.` or `..`; those exist, so resolve them.
        None => dir
            .file_name()
            .map(PathBuf::from)
            .or_else(|| dir.canonicalize().ok())
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "feed".into()),
    };
    if name.is_empty() || name.len() > 100 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(FeedError::Options(format!(
            "feed name {name:?} must be 1-100 printable ASCII characters without spaces"
        )));
    }
    for (sub, mode) in [
        ("", 0o755),
        ("keys", 0o700),
        ("patches", 0o755),
        ("blobs/sha256", 0o755),
        ("history", 0o755),
        ("public/root", 0o755),
        ("public/catalog", 0o755),
        ("public/blobs/sha256", 0o755),
    ] {
        let p = dir.join(sub);
        fsutil::ensure_dir(&p, mode).map_err(io_err(&p))?;
    }
    let keys_dir = dir.join("keys");
    let (root_keys, root_key_files) = new_keys(&keys_dir, "root", opts.root_keys)?;
    let (catalog_keys, catalog_key_files) = new_keys(&keys_dir, "catalog", opts.catalog_keys)?;
    let (ts_keys, timestamp_key_files) = new_keys(&keys_dir, "timestamp", 1)?;
    let publics = |ks: &[Ed25519Key]| ks.iter().map(|k| k.public()).collect::<Vec<_>>();
    let root = make_root(
        1,
        after_days(now, opts.expiry.root_days),
        (&publics(&root_keys), opts.root_threshold),
        (&publics(&catalog_keys), opts.catalog_threshold),
        (&publics(&ts_keys), 1),
    );
    let signers: Vec<&Ed25519Key> = root_keys.iter().collect();
    let env = Envelope::sign(ROOT_TYPE, &to_payload(&root), &signers).to_json();
    let root_file = dir.join("public/root/1.root.json");
    fsutil::write_atomic(&root_file, &env, 0o644).map_err(io_err(&root_file))?;
    let config = FeedConfig {
        name: name.clone(),
        expiry: opts.expiry.clone(),
    };
    let text = format!(
        "# Patchward feed (MSP side). See `patchward feed --help`.\n{}",
        toml::to_string_pretty(&config).expect("config serialises")
    );
    // feed.toml last: its presence marks a complete feed directory.
    fsutil::write_atomic(&config_path, text.as_bytes(), 0o644).map_err(io_err(&config_path))?;
    Ok(InitReport {
        name,
        root_threshold: opts.root_threshold,
        root_key_files,
        catalog_key_files,
        timestamp_key_files,
        root_file,
    })
}
