//! Writing a bundle: metadata entries, then every blob, streamed and re-hashed.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use serde::Deserialize;
use tar::{EntryType, Header};

use super::{BLOB_PREFIX, BundleError, BundleMetadata, CATALOG_NAME, HEADER_NAME, TIMESTAMP_NAME};
use crate::feed::hashing::HashingReader;
use crate::trust::dsse::Envelope;

/// zstd level 3: fast to write and about as fast to read as any level; artifacts are
/// mostly compressed already, so higher levels buy little.
const ZSTD_LEVEL: i32 = 3;

/// Writes a bundle to `out`: the metadata, then each blob in `blobs` (sha256 -> size),
/// opened with `open_blob`. Each blob is hashed as it is copied; a blob whose content
/// does not match its address or size is an error (a corrupt feed store must not leave
/// the MSP as a bundle). Returns `out` after the zstd frame is finished.
pub fn write_bundle<W: Write>(
    out: W,
    meta: &BundleMetadata,
    blobs: &BTreeMap<String, u64>,
    mut open_blob: impl FnMut(&str) -> io::Result<Box<dyn Read>>,
) -> Result<W, BundleError> {
    let mtime = meta.header.created.as_second().max(0) as u64;
    let enc = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL).map_err(BundleError::Write)?;
    let mut tar = tar::Builder::new(enc);
    let add = |tar: &mut tar::Builder<_>, name: &str, bytes: &[u8]| {
        tar.append(&header(name, bytes.len() as u64, mtime), bytes)
            .map_err(BundleError::Write)
    };
    let header_json = serde_json::to_vec_pretty(&meta.header).expect("header serialises");
    add(&mut tar, HEADER_NAME, &header_json)?;
    for root in &meta.roots {
        let version = root_version(root)?;
        add(&mut tar, &format!("root/{version}.root.json"), root)?;
    }
    add(&mut tar, CATALOG_NAME, &meta.catalog)?;
    if let Some(ts) = &meta.timestamp {
        add(&mut tar, TIMESTAMP_NAME, ts)?;
    }
    for (sha256, &size) in blobs {
        let source_err = |reason: String| BundleError::BlobSource {
            sha256: sha256.clone(),
            reason,
        };
        let file = open_blob(sha256).map_err(|e| source_err(e.to_string()))?;
        // Take one byte more than promised so a longer file is noticed, not cut.
        let mut reader = HashingReader::new(file.take(size + 1));
        let name = format!("{BLOB_PREFIX}{sha256}");
        tar.append(&header(&name, size, mtime), &mut reader)
            .map_err(BundleError::Write)?;
        let (found, len) = reader.finish();
        if len != size || found != *sha256 {
            return Err(source_err(format!(
                "its content is {len} bytes with sha256 {found}, not {size} bytes (store corrupt?)"
            )));
        }
    }
    let enc = tar.into_inner().map_err(BundleError::Write)?;
    enc.finish().map_err(BundleError::Write)
}

fn header(name: &str, size: u64, mtime: u64) -> Header {
    let mut h = Header::new_ustar();
    h.set_path(name)
        .expect("bundle entry names are short and relative");
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(EntryType::Regular);
    h.set_cksum();
    h
}

/// The version of a root envelope, for its entry name.
fn root_version(bytes: &[u8]) -> Result<u64, BundleError> {
    #[derive(Deserialize)]
    struct V {
        version: u64,
    }
    let env = Envelope::from_json(bytes).map_err(|e| BundleError::Corrupt(e.to_string()))?;
    serde_json::from_slice::<V>(&env.payload)
        .map(|v| v.version)
        .map_err(|e| BundleError::Corrupt(format!("root payload has no version: {e}")))
}
