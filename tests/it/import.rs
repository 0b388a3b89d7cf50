//! Feed -> bundle -> `patchward import` end to end, and the hostile-bundle suite: each
//! attack is refused with a clear error AND leaves database and store unchanged.

use jiff::{SignedDuration, Timestamp};
use patchward::feed::tools::{self, InitOptions, RotateOptions};
use tar::EntryType;

use crate::feedkit::{Feed, RawTar, Site, entries, pseudo_random, rebuild};
use crate::support::{stderr, stdout};

/// A bundle's entries (name, bytes), in order.
type Entries = Vec<(String, Vec<u8>)>;

fn now() -> Timestamp {
    Timestamp::now()
}

#[test]
fn feed_to_bundle_to_import_full_incremental_and_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let t = now();
    let mut feed = Feed::init(tmp.path(), "msp-main", t);
    feed.add("DSA-1/openssl", "high", "CVE-2021-44228", 300_000, 1);
    feed.add("DSA-2/curl", "medium", "CVE-2099-0001", 200_000, 2);
    feed.publish(t);
    let full = feed.export(&tmp.path().join("full.pwb"), None, t);

    let site = Site::new(tmp.path(), "a", &[&feed]);
    // The KEV catalog flags the log4shell CVE.
    let kev = run_ok(site.cmd(&["kev", "import", "tests/data/kev-slice.json"]));
    assert!(
        kev.contains("loaded 5 known exploited vulnerabilities"),
        "{kev}"
    );

    let out = site.import(&full);
    assert!(out.status.success(), "{}", stderr(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["catalog_version"], 1);
    assert_eq!(s["patches"]["new"], 2);
    assert_eq!(s["blobs_stored"], 2);
    assert_eq!(s["bytes_stored"], 500_000);

    let p = site.patches();
    let ids: Vec<&str> = p
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    let openssl = p
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "DSA-1/openssl")
        .unwrap();
    assert_eq!(openssl["kev"], true);
    assert_eq!(openssl["severity"], "high");
    assert_eq!(openssl["cvss"], 7.5);
    let curl = p
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "DSA-2/curl")
        .unwrap();
    assert_eq!(curl["kev"], false);

    // A second import of the same bundle is a no-op.
    let before = site.snapshot();
    let again = site.import(&full);
    assert!(again.status.success(), "{}", stderr(&again));
    let s: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(s["already_current"], true);
    assert_eq!(site.snapshot(), before);

    // Incremental: one changed patch, one new; the bundle carries only new blobs.
    feed.add("DSA-3/bash", "critical", "CVE-2099-0002", 100_000, 3);
    feed.publish(t);
    let inc = feed.export(&tmp.path().join("inc.pwb"), Some(1), t);
    let names: Vec<String> = entries(&inc).into_iter().map(|e| e.0).collect();
    assert_eq!(
        names.iter().filter(|n| n.starts_with("blobs/")).count(),
        1,
        "{names:?}"
    );
    let out = site.import(&inc);
    assert!(out.status.success(), "{}", stderr(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["catalog_version"], 2);
    assert_eq!(s["previous_version"], 1);
    assert_eq!(s["patches"]["new"], 1);
    assert_eq!(s["patches"]["unchanged"], 2);
    assert_eq!(s["bytes_stored"], 100_000);
    assert_eq!(site.patches().as_array().unwrap().len(), 3);

    // The same feed directory synced as a file:// source gives the same patches.
    let site_b = Site::new(tmp.path(), "b", &[&feed]);
    let out = crate::support::run(site_b.cmd(&["mirror", "sync"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let strip = |v: serde_json::Value| -> Vec<serde_json::Value> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.as_object_mut().unwrap().remove("first_seen");
                r.as_object_mut().unwrap().remove("kev");
                r.as_object_mut().unwrap().remove("kev_due");
                r
            })
            .collect()
    };
    assert_eq!(strip(site_b.patches()), strip(site.patches()));
    let status = run_ok(site_b.cmd(&["mirror", "status", "--json"]));
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["sources"][0]["catalog_version"], 2);
    assert!(status["sources"][0]["last_success"].is_string());

    // The running appliance reports the same through its API.
    let server = crate::support::Server::start_with(
        &site_b.data,
        &["--config", site_b.config.to_str().unwrap()],
    );
    let admin = crate::support::Admin::first_sign_in(&server, "a long new password");
    let api: serde_json::Value = admin.get("/api/v1/mirror").json().unwrap();
    assert_eq!(api["sources"][0]["name"], "msp-main");
    assert_eq!(api["sources"][0]["catalog_version"], 2);
    assert_eq!(api["sources"][0]["patches"], 3);
    assert_eq!(api["sources"][0]["expired"], false);
    assert_eq!(api["store_blobs"], 3);
    drop(server);

    // Withdraw a patch upstream: after the next sync its blob is unreferenced, and
    // `store gc` (grace 0 in this site's config) removes exactly that blob.
    let withdrawn = std::fs::read_dir(feed.dir.join("patches"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("DSA-2"))
        .unwrap()
        .path();
    std::fs::remove_file(withdrawn).unwrap();
    feed.publish(t);
    run_ok(site_b.cmd(&["mirror", "sync"]));
    assert_eq!(site_b.patches().as_array().unwrap().len(), 2);
    let gc: serde_json::Value =
        serde_json::from_str(&run_ok(site_b.cmd(&["store", "gc", "--json"]))).unwrap();
    assert_eq!(gc["removed"], 1, "{gc}");
    assert_eq!(gc["bytes_freed"], 200_000, "{gc}");
    let verify: serde_json::Value =
        serde_json::from_str(&run_ok(site_b.cmd(&["store", "verify", "--json"]))).unwrap();
    assert_eq!(verify["blobs_checked"], 2, "{verify}");
    assert_eq!(verify["referenced_missing"], serde_json::json!([]));
    let audit_b = run_ok(site_b.cmd(&["audit", "list", "--json"]));
    assert!(audit_b.contains("store.gc"), "{audit_b}");

    // Every import is in the audit trail, and the chain holds.
    let audit = run_ok(site.cmd(&["audit", "list", "--json"]));
    assert!(audit.matches("feed.imported").count() >= 2, "{audit}");
    run_ok(site.cmd(&["audit", "verify"]));
}

fn run_ok(c: std::process::Command) -> String {
    let out = crate::support::run(c);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// Writes `bytes` as a bundle file and imports it; asserts failure with `expected` in
/// the message and that nothing changed.
fn refused(site: &Site, dir: &std::path::Path, case: &str, bytes: &[u8], expected: &str) {
    let path = dir.join(format!("{case}.pwb"));
    std::fs::write(&path, bytes).unwrap();
    let before = site.snapshot();
    let out = site.import(&path);
    let err = stderr(&out);
    assert!(!out.status.success(), "{case}: import succeeded");
    assert!(
        err.contains(expected),
        "{case}: error {err:?} lacks {expected:?}"
    );
    assert_eq!(site.snapshot(), before, "{case}: state changed");
}

#[test]
fn hostile_bundles_are_refused_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let t = now();
    // A feed whose catalog role needs 2 of 2 keys.
    let opts = InitOptions {
        catalog_keys: 2,
        catalog_threshold: 2,
        ..Default::default()
    };
    let mut feed = Feed::init_with(tmp.path(), "msp", opts, t);
    feed.add("P-1", "high", "CVE-2099-1001", 40_000, 11);
    feed.add("P-2", "low", "CVE-2099-1002", 30_000, 12);
    feed.publish(t);
    let v1 = feed.export(&tmp.path().join("v1.pwb"), None, t);
    let site = Site::new(tmp.path(), "s", &[&feed]);

    // A good v1 is in place: hostile input must not disturb it.
    let ok = site.import(&v1);
    assert!(ok.status.success(), "{}", stderr(&ok));

    feed.add("P-3", "critical", "CVE-2099-1003", 20_000, 13);
    feed.publish(t);
    let v2 = feed.export(&tmp.path().join("v2.pwb"), None, t);
    let good = entries(&v2);
    let blob_idx = good.iter().position(|e| e.0.starts_with("blobs/")).unwrap();
    // The blob v2 adds (the others are already stored and only read past).
    let in_v1: Vec<String> = entries(&v1).into_iter().map(|e| e.0).collect();
    let new_idx = good
        .iter()
        .position(|e| e.0.starts_with("blobs/") && !in_v1.contains(&e.0))
        .unwrap();
    let d = tmp.path();

    let with = |f: &dyn Fn(&mut Entries)| {
        let mut e = good.clone();
        f(&mut e);
        rebuild(&e)
    };
    let raw_insert = |name: &str, ty: EntryType| {
        let mut t = RawTar::default();
        for (i, (n, data)) in good.iter().enumerate() {
            if i == blob_idx {
                t.raw(name, ty, b"", 0);
            }
            t.file(n, data);
        }
        t.finish()
    };

    refused(
        &site,
        d,
        "traversal",
        &with(&|e| e.insert(blob_idx, ("../evil".into(), b"x".to_vec()))),
        "contains `..` (path traversal)",
    );
    refused(
        &site,
        d,
        "absolute",
        &with(&|e| e.insert(blob_idx, ("/etc/evil".into(), b"x".to_vec()))),
        "has an absolute path",
    );
    let blob_name = good[blob_idx].0.clone();
    refused(
        &site,
        d,
        "symlink",
        &raw_insert(&blob_name, EntryType::Symlink),
        "is a symbolic link",
    );
    refused(
        &site,
        d,
        "hardlink",
        &raw_insert(&blob_name, EntryType::Link),
        "is a hard link",
    );
    refused(
        &site,
        d,
        "device",
        &raw_insert("dev-null", EntryType::Char),
        "is a character device",
    );
    refused(
        &site,
        d,
        "duplicate",
        &with(&|e| {
            let b = e[blob_idx].clone();
            e.insert(blob_idx, b);
        }),
        "duplicate entry",
    );
    refused(
        &site,
        d,
        "unknown",
        &with(&|e| e.insert(blob_idx, ("notes.txt".into(), b"hi".to_vec()))),
        "unknown entry \"notes.txt\"",
    );
    let stray = pseudo_random(5000, 99);
    let stray_name = format!(
        "blobs/sha256/{}",
        patchward::feed::hashing::sha256_hex(&stray)
    );
    refused(
        &site,
        d,
        "not-in-catalog",
        &with(&|e| e.push((stray_name.clone(), stray.clone()))),
        "is not referenced by the verified catalog",
    );
    refused(
        &site,
        d,
        "hash-mismatch",
        &with(&|e| e[new_idx].1[7] ^= 0xff),
        "tampered with; nothing was stored",
    );
    refused(
        &site,
        d,
        "size-mismatch",
        &with(&|e| e[new_idx].1.push(0)),
        "(size mismatch)",
    );
    let whole = std::fs::read(&v2).unwrap();
    refused(
        &site,
        d,
        "truncated",
        &whole[..whole.len() * 2 / 3],
        "truncated",
    );
    let bomb = {
        let mut t = RawTar::default();
        for (n, data) in &good {
            t.file(n, data);
        }
        t.0.extend(std::iter::repeat_n(0u8, 64 << 20));
        zstd::encode_all(&t.0[..], 3).unwrap()
    };
    refused(&site, d, "bomb", &bomb, "decompression bomb");

    // Signature attacks on catalog.json (timestamp left out: it would catch any change
    // to the catalog bytes first, which hides the check under test).
    let no_ts = |f: &dyn Fn(&mut patchward::trust::dsse::Envelope)| {
        with(&|e| {
            e.retain(|x| x.0 != "timestamp.json");
            let i = e.iter().position(|x| x.0 == "catalog.json").unwrap();
            let mut env = patchward::trust::dsse::Envelope::from_json(&e[i].1).unwrap();
            f(&mut env);
            e[i].1 = env.to_json();
        })
    };
    refused(
        &site,
        d,
        "below-threshold",
        &no_ts(&|env| {
            env.signatures.pop();
        }),
        "1 of 2 required signatures from the catalog role",
    );
    refused(
        &site,
        d,
        "one-key-twice",
        &no_ts(&|env| {
            let s = env.signatures[0].clone();
            env.signatures[1] = s;
        }),
        "signed more than once (counted once)",
    );

    // Another publisher with the same feed name but its own keys.
    let mut evil = Feed::init(&tmp.path().join("evil"), "msp", t);
    evil.add("P-1", "high", "CVE-2099-1001", 1000, 5);
    evil.publish(t);
    let evil_b = evil.export(&tmp.path().join("evil.pwb"), None, t);
    refused(
        &site,
        d,
        "wrong-signer",
        &std::fs::read(&evil_b).unwrap(),
        "which is not a timestamp key",
    );
    let evil_catalog_only = {
        let mut e = entries(&evil_b);
        e.retain(|x| x.0 != "timestamp.json");
        rebuild(&e)
    };
    refused(
        &site,
        d,
        "wrong-catalog-signer",
        &evil_catalog_only,
        "which is not a catalog key",
    );

    // An incremental bundle whose base this appliance never had.
    let fresh = Site::new(tmp.path(), "fresh", &[&feed]);
    let inc = feed.export(&tmp.path().join("inc.pwb"), Some(1), t);
    refused(
        &fresh,
        d,
        "missing-base",
        &std::fs::read(&inc).unwrap(),
        "incremental on catalog version 1 of feed \"msp\", but the appliance lacks content it needs (it has never imported this feed)",
    );

    // Now accept v2; then v1 again is a rollback.
    let ok = site.import(&v2);
    assert!(ok.status.success(), "{}", stderr(&ok));
    refused(
        &site,
        d,
        "rollback",
        &std::fs::read(&v1).unwrap(),
        "older than the accepted version 2 (rollback)",
    );

    // Expired: a feed whose catalog was signed 100 days ago (90-day expiry).
    let old_t = t - SignedDuration::from_hours(24 * 100);
    let mut old = Feed::init(tmp.path(), "old", old_t);
    old.add("O-1", "low", "CVE-2099-1009", 1000, 6);
    old.publish(old_t);
    let old_b = old.export(&tmp.path().join("old.pwb"), None, old_t);
    let old_site = Site::new(tmp.path(), "old", &[&old]);
    refused(
        &old_site,
        d,
        "expired",
        &std::fs::read(&old_b).unwrap(),
        "expired at",
    );

    // Skipped root: two rotations, the bundle leaves out root 2.
    let rot = RotateOptions {
        keep_root_keys: true,
        ..Default::default()
    };
    tools::rotate_root(&feed.dir, &rot, t).unwrap();
    tools::rotate_root(&feed.dir, &rot, t).unwrap();
    feed.publish(t);
    let v3 = feed.export(&tmp.path().join("v3.pwb"), None, t);
    let skipped = {
        let mut e = entries(&v3);
        e.retain(|x| x.0 != "root/2.root.json");
        rebuild(&e)
    };
    refused(
        &site,
        d,
        "skipped-root",
        &skipped,
        "root version 3 given but 2 expected next (skipped root)",
    );
    // The untouched v3 bundle (roots 2 and 3 in order) is accepted.
    let ok = site.import(&v3);
    assert!(ok.status.success(), "{}", stderr(&ok));
}
