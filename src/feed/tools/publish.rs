//! `feed publish`: sign a new catalog and timestamp into `public/`.
//!
//! Order is what keeps readers safe: blobs first, then the versioned catalog, then
//! `catalog.json`, and `timestamp.json` last by atomic rename. A client that reads the
//! timestamp therefore always finds the catalog and blobs it names.

use std::fs;
use std::path::Path;

use jiff::Timestamp;

use super::workspace::{after_days, io_err, own_payload, signers};
use super::{FeedError, Workspace};
use crate::feed::catalog::{Catalog, CatalogTag, PatchEntry};
use crate::feed::hashing::sha256_hex;
use crate::fsutil;
use crate::trust::dsse::Envelope;
use crate::trust::roles::{
    CATALOG_TYPE, SPEC_VERSION, TIMESTAMP_TYPE, TimestampDoc, TimestampMeta, TimestampTag,
    to_payload,
};

/// What `publish` wrote.
#[derive(Debug, Clone)]
pub struct PublishReport {
    pub catalog_version: u64,
    pub timestamp_version: u64,
    pub root_version: u64,
    pub patches: usize,
    pub blobs: usize,
    pub expires: Timestamp,
}

/// Signs catalog version N+1 (all of `patches/`) and a new timestamp. `key_dirs` are
/// extra places to look for keys (e.g. offline media holding the catalog key).
pub fn publish(
    dir: &Path,
    key_dirs: &[std::path::PathBuf],
    now: Timestamp,
) -> Result<PublishReport, FeedError> {
    let ws = Workspace::open(dir)?;
    let root = ws.latest_root()?;
    let keys = ws.load_keys(key_dirs)?;
    let catalog_signers = signers(&keys, &root.roles.catalog, "catalog")?;
    let ts_signers = signers(&keys, &root.roles.timestamp, "timestamp")?;

    let mut patches = read_patches(&ws)?;
    patches.sort_by(|a, b| a.id.cmp(&b.id));
    // Saturating: a version at u64::MAX is refused by `validate` below, not a panic.
    let version = ws
        .catalog_versions()?
        .last()
        .copied()
        .unwrap_or(0)
        .saturating_add(1);
    let catalog = Catalog {
        tag: CatalogTag::Catalog,
        spec_version: SPEC_VERSION,
        version,
        issued: now,
        expires: after_days(now, ws.config.expiry.catalog_days),
        feed: ws.config.name.clone(),
        patches,
        eol_catalog: super::eol::recorded(&ws)?,
    };
    catalog.validate()?;

    let blobs = catalog.blobs();
    for (sha256, &size) in &blobs {
        let src = ws.blob_path(sha256);
        if fs::metadata(&src).map(|m| m.len()).ok() != Some(size) {
            return Err(FeedError::MissingBlob {
                sha256: sha256.clone(),
            });
        }
        let dest = ws.path("public/blobs/sha256").join(sha256);
        if !dest.exists() {
            copy_atomic(&src, &dest)?;
        }
    }

    let catalog_env =
        Envelope::sign(CATALOG_TYPE, &to_payload(&catalog), &catalog_signers).to_json();
    let versioned = ws.catalog_file(version);
    fsutil::write_atomic(&versioned, &catalog_env, 0o644).map_err(io_err(&versioned))?;
    let history = ws.path(&format!("history/{version}.json"));
    let record = serde_json::json!({
        "catalog_version": version,
        "root_version": root.version,
        "published": now,
    });
    fsutil::write_atomic(&history, record.to_string().as_bytes(), 0o644)
        .map_err(io_err(&history))?;
    let latest = ws.path("public/catalog.json");
    fsutil::write_atomic(&latest, &catalog_env, 0o644).map_err(io_err(&latest))?;

    let ts_path = ws.path("public/timestamp.json");
    let ts_version = if ts_path.exists() {
        TimestampDoc::parse(&own_payload(&ts_path)?)?.version + 1
    } else {
        1
    };
    let ts = TimestampDoc {
        tag: TimestampTag::Timestamp,
        spec_version: SPEC_VERSION,
        version: ts_version,
        issued: now,
        expires: after_days(now, ws.config.expiry.timestamp_days),
        catalog: TimestampMeta {
            version,
            sha256: sha256_hex(&catalog_env),
            size: catalog_env.len() as u64,
        },
    };
    let ts_env = Envelope::sign(TIMESTAMP_TYPE, &to_payload(&ts), &ts_signers).to_json();
    fsutil::write_atomic(&ts_path, &ts_env, 0o644).map_err(io_err(&ts_path))?;
    Ok(PublishReport {
        catalog_version: version,
        timestamp_version: ts_version,
        root_version: root.version,
        patches: catalog.patches.len(),
        blobs: blobs.len(),
        expires: catalog.expires,
    })
}

/// Every entry in `patches/*.toml`.
fn read_patches(ws: &Workspace) -> Result<Vec<PatchEntry>, FeedError> {
    let dir = ws.path("patches");
    let mut out = Vec::new();
    for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
        let path = entry.map_err(io_err(&dir))?.path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = fs::read_to_string(&path).map_err(io_err(&path))?;
        out.push(toml::from_str(&text).map_err(|e| FeedError::PatchFile {
            path: path.clone(),
            reason: e.to_string(),
        })?);
    }
    Ok(out)
}

/// Hard-links `src` to `dest` (blobs are immutable), or copies through a temp file.
fn copy_atomic(src: &Path, dest: &Path) -> Result<(), FeedError> {
    if fs::hard_link(src, dest).is_ok() {
        return Ok(());
    }
    let tmp = dest.with_file_name(format!(".copy.{}", std::process::id()));
    let result = (|| {
        fs::copy(src, &tmp)?;
        fs::File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err(dest))
}
