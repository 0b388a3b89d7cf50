//! `feed rotate-root`: publish root version N+1, signed by a threshold of the current
//! root keys (approval) and by all of the new root keys (possession).
//!
//! Use it when root keys change (lost, leaked, staff change), to replace a compromised
//! catalog or timestamp key, or with `--keep-root-keys` just to extend the root's expiry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use jiff::Timestamp;

use super::init::{check_threshold, make_root, new_keys};
use super::workspace::{after_days, io_err, signers};
use super::{FeedError, Workspace};
use crate::fsutil;
use crate::trust::dsse::Envelope;
use crate::trust::keys::Ed25519Key;
use crate::trust::roles::{ROOT_TYPE, RoleKeys, Root, to_payload};
use crate::trust::state::TrustState;

/// How to rotate.
#[derive(Debug, Clone, Default)]
pub struct RotateOptions {
    /// Number of new root keys (default: as many as now).
    pub root_keys: Option<usize>,
    /// New root threshold (default: as now).
    pub root_threshold: Option<u32>,
    /// Keep the root keys; only re-sign with a new version and expiry.
    pub keep_root_keys: bool,
    /// Replace the catalog keys (same count and threshold).
    pub rotate_catalog: bool,
    /// Replace the timestamp keys.
    pub rotate_timestamp: bool,
    /// Extra directories holding old root keys (offline media).
    pub key_dirs: Vec<PathBuf>,
}

/// What `rotate_root` did.
#[derive(Debug, Clone)]
pub struct RotateReport {
    pub version: u64,
    pub root_file: PathBuf,
    /// New key files; root ones must be moved offline.
    pub new_key_files: Vec<PathBuf>,
    /// Key ids no longer in the root: their files may be destroyed.
    pub retired_keyids: Vec<String>,
}

pub fn rotate_root(
    dir: &Path,
    opts: &RotateOptions,
    now: Timestamp,
) -> Result<RotateReport, FeedError> {
    let ws = Workspace::open(dir)?;
    let old = ws.latest_root()?;
    let keys = ws.load_keys(&opts.key_dirs)?;
    let old_signers = signers(&keys, &old.roles.root, "current root")?;
    let keys_dir = ws.path("keys");
    let mut new_files = Vec::new();

    let pubs_of = |role: &RoleKeys| -> Vec<VerifyingKey> {
        let all = old.verifying_keys().expect("published root is valid");
        role.keyids.iter().map(|id| all[id]).collect()
    };
    let (new_root_keys, new_root_pubs, root_threshold): (Vec<Ed25519Key>, Vec<VerifyingKey>, u32) =
        if opts.keep_root_keys {
            if opts.root_keys.is_some() || opts.root_threshold.is_some() {
                return Err(FeedError::Options(
                    "--keep-root-keys cannot be combined with --root-keys or --root-threshold"
                        .into(),
                ));
            }
            (vec![], pubs_of(&old.roles.root), old.roles.root.threshold)
        } else {
            let n = opts.root_keys.unwrap_or(old.roles.root.keyids.len());
            let t = opts.root_threshold.unwrap_or(old.roles.root.threshold);
            check_threshold("root", n, t)?;
            let (ks, files) = new_keys(&keys_dir, "root", n)?;
            new_files.extend(files);
            let pubs = ks.iter().map(|k| k.public()).collect();
            (ks, pubs, t)
        };
    let mut role_keys = |rotate: bool, role: &RoleKeys, name: &str| {
        if !rotate {
            return Ok::<_, FeedError>(pubs_of(role));
        }
        let (ks, files) = new_keys(&keys_dir, name, role.keyids.len())?;
        new_files.extend(files);
        Ok(ks.iter().map(|k| k.public()).collect())
    };
    let catalog_pubs = role_keys(opts.rotate_catalog, &old.roles.catalog, "catalog")?;
    let ts_pubs = role_keys(opts.rotate_timestamp, &old.roles.timestamp, "timestamp")?;

    let new = make_root(
        old.version + 1,
        after_days(now, ws.config.expiry.root_days),
        (&new_root_pubs, root_threshold),
        (&catalog_pubs, old.roles.catalog.threshold),
        (&ts_pubs, old.roles.timestamp.threshold),
    );
    // Old approvers, then the new keys (deduplicated when the keys are kept).
    let mut signing: BTreeMap<String, &Ed25519Key> = BTreeMap::new();
    for k in old_signers.iter().copied().chain(new_root_keys.iter()) {
        signing.entry(k.key_id()).or_insert(k);
    }
    let list: Vec<&Ed25519Key> = signing.into_values().collect();
    let env = Envelope::sign(ROOT_TYPE, &to_payload(&new), &list).to_json();

    // Check it the way an appliance will before publishing anything.
    self_check(&old, &env)?;
    let root_file = ws.root_file(new.version);
    fsutil::write_atomic(&root_file, &env, 0o644).map_err(io_err(&root_file))?;
    let retired_keyids = old
        .keys
        .keys()
        .filter(|id| !new.keys.contains_key(*id))
        .cloned()
        .collect();
    Ok(RotateReport {
        version: new.version,
        root_file,
        new_key_files: new_files,
        retired_keyids,
    })
}

fn self_check(old: &Root, env: &[u8]) -> Result<(), FeedError> {
    let state = TrustState {
        root: old.clone(),
        catalog_version: None,
        catalog_sha256: None,
        timestamp_version: None,
        timestamp_sha256: None,
        newest_signed_time: Timestamp::UNIX_EPOCH,
    };
    state.update_root_chain(&[env.to_vec()])?;
    Ok(())
}
