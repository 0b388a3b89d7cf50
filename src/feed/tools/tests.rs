//! End to end on the MSP side: init, add, publish, export (full and incremental),
//! rotate-root; every bundle read back and verified as an appliance would.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use super::*;
use crate::feed::bundle::{BundleError, BundleReader};
use crate::feed::hashing::sha256_hex;
use crate::trust::state::TrustState;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn write_patch(dir: &Path, id: &str, artifact: &str, requires: &[&str]) -> (PathBuf, PathBuf) {
    let toml = format!(
        r#"
id = "{id}"
title = "Update for {id}"
kind = "security"
severity = "high"
cves = ["CVE-2025-12345"]
released = "2026-11-01T00:00:00Z"
install = "apt"
requires = {requires:?}
est_minutes = 5

[[applies_to]]
os = "debian"
version = "12"

[[artifacts]]
name = "{artifact}"
format = "deb"
"#
    );
    let p = dir.join(format!("{}.toml", artifact));
    std::fs::write(&p, toml).unwrap();
    let a = dir.join(artifact);
    std::fs::write(&a, format!("contents of {artifact}").repeat(1000)).unwrap();
    (p, a)
}

/// Reads a bundle as the import pipeline would; returns the blobs and the new state.
fn import(
    bundle: &Path,
    state: &TrustState,
    now: Timestamp,
) -> (BTreeMap<String, Vec<u8>>, TrustState) {
    let f = std::fs::File::open(bundle).unwrap();
    let mut r = BundleReader::new(f).unwrap();
    let meta = r.metadata().unwrap();
    let state = state.update_root_chain(&meta.roots).unwrap();
    let (tdoc, state) = state
        .verify_timestamp(meta.timestamp.as_ref().unwrap(), now)
        .unwrap();
    let (catalog, state) = state
        .verify_catalog(&meta.catalog, now, Some(&tdoc.catalog))
        .unwrap();
    let mut blobs = BTreeMap::new();
    r.blobs(&catalog.blobs(), |sha, _, rd: &mut dyn Read| {
        let mut buf = Vec::new();
        rd.read_to_end(&mut buf).map_err(BundleError::Io)?;
        assert_eq!(sha256_hex(&buf), sha);
        blobs.insert(sha.to_string(), buf);
        Ok::<_, BundleError>(())
    })
    .unwrap();
    (blobs, state)
}

#[test]
fn init_add_publish_export_full_and_incremental() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("example-msp");
    let work = tmp.path();
    let now = t("2026-11-20T10:00:00Z");
    let report = init(&feed, &InitOptions::default(), now).unwrap();
    assert_eq!(report.name, "example-msp");
    assert_eq!(report.root_key_files.len(), 3);
    assert!(
        report.root_key_files[0]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("OFFLINE-root-")
    );
    let mode = std::fs::metadata(feed.join("keys"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
    let e = init(&feed, &InitOptions::default(), now)
        .unwrap_err()
        .to_string();
    assert!(e.contains("already holds a feed"), "{e}");

    let (p1, a1) = write_patch(work, "DSA-1/openssl", "openssl_1_amd64.deb", &[]);
    let (p2, a2) = write_patch(work, "DSA-2/curl", "curl_2_amd64.deb", &["DSA-1/openssl"]);
    add_patch(&feed, &p1, std::slice::from_ref(&a1)).unwrap();
    let r = add_patch(&feed, &p2, std::slice::from_ref(&a2)).unwrap();
    assert!(!r.replaced);
    assert!(
        add_patch(&feed, &p2, std::slice::from_ref(&a2))
            .unwrap()
            .replaced
    );
    let e = add_patch(&feed, &p2, std::slice::from_ref(&a1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no file named \"curl_2_amd64.deb\""), "{e}");

    let p = publish(&feed, &[], now).unwrap();
    assert_eq!(
        (p.catalog_version, p.timestamp_version, p.patches),
        (1, 1, 2)
    );
    for f in [
        "public/catalog/1.catalog.json",
        "public/catalog.json",
        "public/timestamp.json",
    ] {
        assert!(feed.join(f).exists(), "{f}");
    }
    let full = work.join("full.pwb");
    let e1 = export(&feed, &full, None, now).unwrap();
    assert_eq!((e1.blobs, e1.root_versions.clone()), (2, vec![1]));

    let (p3, a3) = write_patch(work, "DSA-3/zlib", "zlib_3_amd64.deb", &[]);
    add_patch(&feed, &p3, std::slice::from_ref(&a3)).unwrap();
    let later = t("2026-11-21T10:00:00Z");
    assert_eq!(publish(&feed, &[], later).unwrap().catalog_version, 2);
    let incr = work.join("incr.pwb");
    let e2 = export(&feed, &incr, Some(1), later).unwrap();
    assert_eq!((e2.blobs, e2.root_versions.clone()), (1, vec![]));
    let e = export(&feed, &work.join("x.pwb"), Some(7), later)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "catalog version 7 was never published here (published: 1, 2); pick one of those as --base"
    );

    // The appliance pins root 1 and imports both bundles.
    let pinned = std::fs::read(feed.join("public/root/1.root.json")).unwrap();
    let state = TrustState::from_pinned_root(&pinned).unwrap();
    let site_now = t("2026-11-22T00:00:00Z");
    let (blobs1, state) = import(&full, &state, site_now);
    assert_eq!(blobs1.len(), 2);
    assert!(blobs1.values().any(|b| *b == std::fs::read(&a1).unwrap()));
    assert_eq!(state.catalog_version, Some(1));
    let (blobs2, state) = import(&incr, &state, site_now);
    assert_eq!(blobs2.len(), 1);
    assert_eq!(
        blobs2.values().next().unwrap(),
        &std::fs::read(&a3).unwrap()
    );
    assert_eq!(state.catalog_version, Some(2));

    // Rotation: new root keys, new catalog key; the old root keys are brought back
    // from "offline media" (another directory).
    let offline = work.join("usb");
    std::fs::create_dir(&offline).unwrap();
    for f in &report.root_key_files {
        std::fs::rename(f, offline.join(f.file_name().unwrap())).unwrap();
    }
    let e = rotate_root(&feed, &RotateOptions::default(), later)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("only 0 of the 2 needed current root keys are available"),
        "{e}"
    );
    let opts = RotateOptions {
        rotate_catalog: true,
        key_dirs: vec![offline.clone()],
        ..Default::default()
    };
    let rot = rotate_root(&feed, &opts, later).unwrap();
    assert_eq!(rot.version, 2);
    assert_eq!(
        rot.retired_keyids.len(),
        4,
        "3 root keys and the catalog key"
    );
    publish(&feed, &[], later).unwrap();
    let after = work.join("after-rotation.pwb");
    let e3 = export(&feed, &after, Some(2), later).unwrap();
    assert_eq!(e3.root_versions, vec![2]);
    let (_, state) = import(&after, &state, site_now);
    assert_eq!(state.root.version, 2);
    assert_eq!(state.catalog_version, Some(3));
}

#[test]
fn publish_refuses_an_invalid_catalog_and_missing_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("f");
    let now = t("2026-11-20T10:00:00Z");
    init(&feed, &InitOptions::default(), now).unwrap();
    let (p, a) = write_patch(tmp.path(), "x", "x.deb", &["absent"]);
    add_patch(&feed, &p, &[a]).unwrap();
    let e = publish(&feed, &[], now).unwrap_err().to_string();
    assert_eq!(
        e,
        "the feed's catalog would be invalid: patch \"x\" requires \"absent\", which is not in the catalog"
    );
    for entry in std::fs::read_dir(feed.join("keys")).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("catalog-")
        {
            std::fs::remove_file(p).unwrap();
        }
    }
    let e = publish(&feed, &[], now).unwrap_err().to_string();
    assert!(
        e.starts_with("only 0 of the 1 needed catalog keys are available"),
        "{e}"
    );
    assert!(!feed.join("public/timestamp.json").exists());
}

#[test]
fn the_shipped_example_patch_file_parses() {
    let text = include_str!("../../../mirror/examples/patch-example.toml");
    let src: PatchSource = toml::from_str(text).unwrap();
    assert_eq!(src.id, "DSA-5912-1/openssl");
    assert_eq!(src.artifacts.len(), 1);
}

#[test]
fn cli_parses_and_runs_init() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: crate::feed::cli::FeedCmd,
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("f");
    let cli = Cli::try_parse_from([
        "feed",
        "init",
        dir.to_str().unwrap(),
        "--root-keys",
        "3",
        "--root-threshold",
        "2",
    ])
    .unwrap();
    let mut out = Vec::new();
    crate::feed::cli::run(&cli.cmd, t("2026-11-20T10:00:00Z"), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("MOVE THESE ROOT KEYS OFFLINE NOW"), "{text}");
    assert_eq!(text.matches("OFFLINE-root-").count(), 3, "{text}");
    assert!(
        Cli::try_parse_from(["feed", "export", "d"]).is_err(),
        "--out is required"
    );
}

/// Every file under `dir` (relative path -> bytes), for "nothing changed" checks.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Issue [8] item 8 on the MSP side: `feed add` refuses an unsafe patch id before it
/// copies anything into the feed, and says what an id may be.
#[test]
fn feed_add_refuses_unsafe_patch_ids_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let feed = work.join("example-msp");
    init(&feed, &InitOptions::default(), t("2026-11-20T00:00:00Z")).unwrap();
    let before = tree(&feed);
    for (n, id) in ["../../x", "/etc/passwd", "a//b", "a/..", "-rf", "a\\u0001b"]
        .iter()
        .enumerate()
    {
        let (p, a) = write_patch(work, id, &format!("x{n}_1_amd64.deb"), &[]);
        let e = add_patch(&feed, &p, std::slice::from_ref(&a))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a safe patch id"), "{id}: {e}");
        assert!(e.contains("e.g. \"DSA-5912-1/openssl\""), "{id}: {e}");
        assert_eq!(tree(&feed), before, "{id}: the feed changed");
    }
    let (p, a) = write_patch(work, "vendor/fw-2.3.1", "fw_2.3.1_amd64.deb", &[]);
    add_patch(&feed, &p, std::slice::from_ref(&a)).unwrap();
}
