//! `feed export`: a full or incremental `*.pwb` bundle of the latest published catalog.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::Deserialize;

use super::workspace::{io_err, own_payload};
use super::{FeedError, Workspace};
use crate::feed::bundle::{BundleHeader, BundleMetadata, FORMAT, write_bundle};
use crate::feed::catalog::Catalog;
use crate::fsutil;
use crate::trust::roles::TimestampDoc;

/// What `export` wrote.
#[derive(Debug, Clone)]
pub struct ExportReport {
    pub path: PathBuf,
    pub catalog_version: u64,
    pub base: Option<u64>,
    pub root_versions: Vec<u64>,
    pub blobs: usize,
    pub blob_bytes: u64,
    pub bundle_bytes: u64,
}

#[derive(Deserialize)]
struct History {
    root_version: u64,
}

/// Writes a bundle of the latest catalog to `out`. With `base`, only blobs the base
/// catalog did not reference, and only roots newer than the one the base was published
/// under, are included. The file appears at `out` only when complete.
pub fn export(
    dir: &Path,
    out: &Path,
    base: Option<u64>,
    now: Timestamp,
) -> Result<ExportReport, FeedError> {
    let ws = Workspace::open(dir)?;
    let versions = ws.catalog_versions()?;
    let latest = *versions.last().ok_or(FeedError::NotPublished)?;
    let catalog_path = ws.catalog_file(latest);
    let catalog_bytes = fs::read(&catalog_path).map_err(io_err(&catalog_path))?;
    let catalog = parse_own_catalog(&catalog_path)?;
    let mut blobs = catalog.blobs();

    let mut first_root = 1;
    if let Some(b) = base {
        if !versions.contains(&b) {
            let available = versions.iter().map(u64::to_string).collect::<Vec<_>>();
            return Err(FeedError::UnknownBase {
                base: b,
                available: available.join(", "),
            });
        }
        let old = parse_own_catalog(&ws.catalog_file(b))?.blobs();
        blobs.retain(|sha, _| !old.contains_key(sha));
        // Without a record, include every root: the importer skips the ones it has.
        let hist = ws.path(&format!("history/{b}.json"));
        if let Ok(text) = fs::read(&hist)
            && let Ok(h) = serde_json::from_slice::<History>(&text)
        {
            first_root = h.root_version + 1;
        }
    }
    let mut roots = Vec::new();
    let mut root_versions = Vec::new();
    for v in ws.root_versions()? {
        if v >= first_root {
            let p = ws.root_file(v);
            roots.push(fs::read(&p).map_err(io_err(&p))?);
            root_versions.push(v);
        }
    }
    let ts_path = ws.path("public/timestamp.json");
    let timestamp = match fs::read(&ts_path) {
        Ok(bytes)
            if TimestampDoc::parse(&own_payload(&ts_path)?)?
                .catalog
                .version
                == latest =>
        {
            Some(bytes)
        }
        _ => None,
    };
    let meta = BundleMetadata {
        header: BundleHeader {
            format: FORMAT,
            feed: ws.config.name.clone(),
            base_catalog_version: base,
            created: now,
        },
        roots,
        catalog: catalog_bytes,
        timestamp,
    };

    let tmp = out.with_file_name(format!(
        ".{}.partial",
        out.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let result = write_to(&ws, &tmp, out, &meta, &blobs);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    let bundle_bytes = result?;
    Ok(ExportReport {
        path: out.to_path_buf(),
        catalog_version: latest,
        base,
        root_versions,
        blobs: blobs.len(),
        blob_bytes: blobs.values().sum(),
        bundle_bytes,
    })
}

fn write_to(
    ws: &Workspace,
    tmp: &Path,
    out: &Path,
    meta: &BundleMetadata,
    blobs: &BTreeMap<String, u64>,
) -> Result<u64, FeedError> {
    let file = File::create(tmp).map_err(io_err(tmp))?;
    let w = write_bundle(BufWriter::new(file), meta, blobs, |sha| {
        Ok(Box::new(File::open(ws.blob_path(sha))?) as Box<dyn Read>)
    })?;
    let file = w.into_inner().map_err(|e| io_err(tmp)(e.into_error()))?;
    file.sync_all().map_err(io_err(tmp))?;
    let len = file.metadata().map_err(io_err(tmp))?.len();
    fs::rename(tmp, out).map_err(io_err(out))?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsutil::sync_dir(parent).map_err(io_err(parent))?;
    }
    Ok(len)
}

fn parse_own_catalog(path: &Path) -> Result<Catalog, FeedError> {
    Catalog::parse(&own_payload(path)?).map_err(|e| FeedError::Config {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}
