//! `feed add DIR --eol-catalog FILE`: record the lifecycle catalog the feed ships.
//!
//! The file is checked with the very parser the appliance uses
//! (`legacy::catalog::Catalog::parse`), so an MSP cannot sign a lifecycle catalog its
//! appliances would refuse. It is stored as a blob like any artifact, and
//! `eol-catalog.toml` records its reference; every later `feed publish` names it in the
//! signed catalog (`eol_catalog`), until another `--eol-catalog` replaces it.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::workspace::io_err;
use super::{FeedError, Workspace};
use crate::feed::catalog::EolCatalogRef;
use crate::feed::hashing::sha256_hex;
use crate::fsutil;
use crate::legacy::catalog::{Catalog, MAX_CATALOG_BYTES};

/// The record of the lifecycle catalog in the feed directory.
const RECORD: &str = "eol-catalog.toml";

/// What `add --eol-catalog` recorded.
#[derive(Debug, Clone)]
pub struct EolAddReport {
    pub reference: EolCatalogRef,
    /// The lifecycle catalog recorded before, if any (`None`: the first one).
    pub previous: Option<EolCatalogRef>,
    pub products: usize,
    pub source: String,
    pub record: PathBuf,
}

/// Checks `file` and records it as the feed's lifecycle catalog. A file that does not
/// parse, or whose version (export date) is older than the one recorded, is refused and
/// nothing is stored.
pub fn add_eol_catalog(dir: &Path, file: &Path) -> Result<EolAddReport, FeedError> {
    let ws = Workspace::open(dir)?;
    let previous = recorded(&ws)?;
    let mut bytes = Vec::new();
    // One byte over the limit is enough for the parser to name the size problem.
    fs::File::open(file)
        .and_then(|f| f.take(MAX_CATALOG_BYTES as u64 + 1).read_to_end(&mut bytes))
        .map_err(io_err(file))?;
    let catalog = Catalog::parse(&bytes).map_err(|cause| FeedError::EolCatalog {
        path: file.to_path_buf(),
        cause,
    })?;
    if let Some(p) = &previous
        && catalog.version < p.version
    {
        return Err(FeedError::Options(format!(
            "{} is lifecycle catalog version {}, older than version {} this feed already \
             ships; appliances refuse an older one, so it was not recorded",
            file.display(),
            catalog.version,
            p.version
        )));
    }
    let reference = EolCatalogRef {
        sha256: sha256_hex(&bytes),
        size: bytes.len() as u64,
        version: catalog.version,
    };
    let blob = ws.blob_path(&reference.sha256);
    fsutil::write_atomic(&blob, &bytes, 0o644).map_err(io_err(&blob))?;
    let record = ws.path(RECORD);
    let text = toml::to_string_pretty(&reference).expect("a reference serialises");
    fsutil::write_atomic(&record, text.as_bytes(), 0o644).map_err(io_err(&record))?;
    Ok(EolAddReport {
        reference,
        previous,
        products: catalog.products.len(),
        source: catalog.source,
        record,
    })
}

/// The lifecycle catalog recorded in the feed directory, if any.
pub(super) fn recorded(ws: &Workspace) -> Result<Option<EolCatalogRef>, FeedError> {
    let path = ws.path(RECORD);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    toml::from_str(&text)
        .map(Some)
        .map_err(|e| FeedError::Config {
            path,
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::tools::{InitOptions, init, publish};

    const SNAPSHOT: &[u8] = include_bytes!("../../../mirror/eol/snapshot.json");

    fn feed(tmp: &Path) -> PathBuf {
        let f = tmp.join("feed");
        init(
            &f,
            &InitOptions::default(),
            "2026-11-20T10:00:00Z".parse().unwrap(),
        )
        .unwrap();
        f
    }

    fn blobs(feed: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(feed.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_lifecycle_catalog_is_stored_and_published_by_reference() {
        let tmp = tempfile::tempdir().unwrap();
        let f = feed(tmp.path());
        let file = tmp.path().join("eol.json");
        fs::write(&file, SNAPSHOT).unwrap();
        let r = add_eol_catalog(&f, &file).unwrap();
        assert_eq!(r.reference.version, jiff::civil::date(2026, 8, 22));
        assert_eq!(r.reference.sha256, sha256_hex(SNAPSHOT));
        assert_eq!(r.reference.size, SNAPSHOT.len() as u64);
        assert!(r.previous.is_none());
        assert_eq!(
            fs::read(f.join("blobs/sha256").join(&r.reference.sha256)).unwrap(),
            SNAPSHOT
        );

        let p = publish(&f, &[], "2026-11-21T10:00:00Z".parse().unwrap()).unwrap();
        assert_eq!(p.blobs, 1);
        let ws = Workspace::open(&f).unwrap();
        let env = super::super::workspace::own_payload(&ws.catalog_file(1)).unwrap();
        let cat = crate::feed::catalog::Catalog::parse(&env).unwrap();
        assert_eq!(cat.eol_catalog, Some(r.reference.clone()));
        assert!(
            ws.path(&format!("public/blobs/sha256/{}", r.reference.sha256))
                .exists()
        );
    }

    #[test]
    fn a_file_that_is_no_lifecycle_catalog_or_an_older_one_is_refused_and_nothing_stored() {
        let tmp = tempfile::tempdir().unwrap();
        let f = feed(tmp.path());
        let bad = tmp.path().join("bad.json");
        fs::write(&bad, br#"{"products": "no"}"#).unwrap();
        let e = add_eol_catalog(&f, &bad).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{} is not a lifecycle catalog: ", bad.display()))
                && e.contains("not endoflife.date JSON"),
            "{e}"
        );
        assert!(blobs(&f).is_empty());
        assert!(!f.join(RECORD).exists());

        let newer = tmp.path().join("newer.json");
        fs::write(
            &newer,
            crate::legacy::eol_import::dated_snapshot("2026-10-01"),
        )
        .unwrap();
        add_eol_catalog(&f, &newer).unwrap();
        let before = (blobs(&f), fs::read(f.join(RECORD)).unwrap());
        let older = tmp.path().join("older.json");
        fs::write(&older, SNAPSHOT).unwrap();
        let e = add_eol_catalog(&f, &older).unwrap_err().to_string();
        assert!(
            e.contains("is lifecycle catalog version 2026-08-22, older than version 2026-10-01"),
            "{e}"
        );
        assert_eq!((blobs(&f), fs::read(f.join(RECORD)).unwrap()), before);
    }
}
