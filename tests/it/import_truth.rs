//! Truthful imports (issue [8] items 5, 6, 7, 8): a refused import leaves the store's
//! blob list byte for byte as it was, a broken copy of the current bundle is reported
//! broken (never "already current"), and signed integers the appliance cannot store or
//! ids that are not safe are refused with their reason.

use jiff::Timestamp;

use crate::feedkit::{Feed, Site, entries, rebuild};
use crate::support::{run, stderr, stdout};

/// Imports `bytes` as a bundle file; asserts it is refused with `expected` in the
/// message and that database rows and store files are exactly as before.
fn refused(site: &Site, dir: &std::path::Path, case: &str, bytes: &[u8], expected: &str) {
    let path = dir.join(format!("{case}.pwb"));
    std::fs::write(&path, bytes).unwrap();
    let before = site.snapshot();
    let out = site.import(&path);
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "{case}: import succeeded: {}",
        stdout(&out)
    );
    assert!(
        !stdout(&out).contains("already_current"),
        "{case}: {}",
        stdout(&out)
    );
    assert!(
        err.contains(expected),
        "{case}: error {err:?} lacks {expected:?}"
    );
    assert_eq!(site.snapshot(), before, "{case}: state changed");
}

/// Item 6: a bundle that lacks one of the blobs it must bring is refused, and the blobs
/// it did carry do not stay behind in the store.
#[test]
fn a_bundle_missing_a_blob_leaves_the_store_exactly_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let t = Timestamp::now();
    let mut feed = Feed::init(d, "msp", t);
    feed.add("P-1", "high", "CVE-2099-2001", 20_000, 21);
    feed.publish(t);
    let v1 = feed.export(&d.join("v1.pwb"), None, t);
    let site = Site::new(d, "s", &[&feed]);
    assert!(site.import(&v1).status.success());

    // Version 2 brings two new blobs; each broken bundle carries only one of them.
    feed.add("P-2", "high", "CVE-2099-2002", 30_000, 22);
    feed.add("P-3", "low", "CVE-2099-2003", 40_000, 23);
    feed.publish(t);
    let in_v1: Vec<String> = entries(&v1).into_iter().map(|e| e.0).collect();
    let drop_last_new = |bundle: &std::path::Path| {
        let mut e = entries(bundle);
        let last_new = e
            .iter()
            .rposition(|x| x.0.starts_with("blobs/") && !in_v1.contains(&x.0))
            .unwrap();
        e.remove(last_new);
        assert!(
            e.iter()
                .any(|x| x.0.starts_with("blobs/") && !in_v1.contains(&x.0)),
            "the broken bundle still carries one new blob"
        );
        rebuild(&e)
    };
    let full = feed.export(&d.join("v2.pwb"), None, t);
    refused(
        &site,
        d,
        "full-missing-one",
        &drop_last_new(&full),
        "the bundle is incomplete: it is a full bundle but lacks 1 blob(s)",
    );
    let inc = feed.export(&d.join("v2-inc.pwb"), Some(1), t);
    refused(
        &site,
        d,
        "incremental-missing-one",
        &drop_last_new(&inc),
        "1 blob(s) the catalog references are still missing",
    );
    // The intact bundle still imports afterwards.
    let out = site.import(&inc);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Item 7: re-importing the current version reads and checks the whole stream, so a
/// truncated, tampered or incomplete copy is refused (nothing changes) instead of being
/// reported as current; the intact copy is still "already current".
#[test]
fn a_broken_copy_of_the_current_bundle_is_reported_broken() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let t = Timestamp::now();
    let mut feed = Feed::init(d, "msp", t);
    feed.add("P-1", "high", "CVE-2099-3001", 300_000, 31);
    feed.add("P-2", "low", "CVE-2099-3002", 200_000, 32);
    feed.publish(t);
    let full = feed.export(&d.join("full.pwb"), None, t);
    let site = Site::new(d, "s", &[&feed]);
    assert!(site.import(&full).status.success());

    let whole = std::fs::read(&full).unwrap();
    refused(&site, d, "half", &whole[..whole.len() / 2], "truncated");
    refused(&site, d, "almost", &whole[..whole.len() - 20], "truncated");
    let good = entries(&full);
    let last_blob = good
        .iter()
        .rposition(|e| e.0.starts_with("blobs/"))
        .unwrap();
    let mut tampered = good.clone();
    tampered[last_blob].1[1000] ^= 0x55;
    refused(
        &site,
        d,
        "tampered",
        &rebuild(&tampered),
        "the bundle is damaged or was tampered with",
    );
    let mut short = good.clone();
    short.remove(last_blob);
    refused(
        &site,
        d,
        "incomplete",
        &rebuild(&short),
        "the bundle is incomplete",
    );

    // The human output says it too (not "already current").
    std::fs::write(d.join("cut.pwb"), &whole[..whole.len() / 2]).unwrap();
    let mut c = site.cmd(&["import"]);
    c.arg(d.join("cut.pwb"));
    let out = run(c);
    assert!(!out.status.success());
    assert!(
        !stdout(&out).contains("already current"),
        "{}",
        stdout(&out)
    );

    let before = site.snapshot();
    let out = site.import(&full);
    assert!(out.status.success(), "{}", stderr(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["already_current"], true, "{s}");
    assert_eq!(site.snapshot(), before);
}

/// Item 5 on the publishing side: the MSP's tools refuse to sign a catalog version the
/// appliances could not store, and the largest storable version round-trips exactly
/// through import and `mirror status`.
#[test]
fn catalog_versions_are_range_checked_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let t = Timestamp::now();
    let mut feed = Feed::init(d, "msp", t);
    feed.add("P-1", "high", "CVE-2099-4001", 1000, 41);
    feed.publish(t);
    // Publishing takes the next version after the highest catalog file: plant one just
    // below the limit, so the next publish is i64::MAX exactly.
    let cat_dir = feed.public().join("catalog");
    std::fs::copy(
        cat_dir.join("1.catalog.json"),
        cat_dir.join(format!("{}.catalog.json", i64::MAX - 1)),
    )
    .unwrap();
    feed.publish(t);
    let bundle = feed.export(&d.join("max.pwb"), None, t);
    let site = Site::new(d, "s", &[&feed]);
    let out = site.import(&bundle);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = run(site.cmd(&["mirror", "status", "--json"]));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        status["sources"][0]["catalog_version"],
        i64::MAX as u64,
        "{status}"
    );

    // One more would be 2^63: refused on the MSP's machine, nothing written.
    let before = std::fs::read_dir(&cat_dir).unwrap().count();
    let e = patchward::feed::tools::publish(&feed.dir, &[], t)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("catalog version 9223372036854775808 is out of range"),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(&cat_dir).unwrap().count(), before);
}

/// Item 16: the Mirror page's store figures are the ones `mirror status` gives, also
/// after an import by another process (the CLI) while the server runs.
#[test]
fn the_mirror_page_counts_the_store_like_mirror_status() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let t = Timestamp::now();
    let mut feed = Feed::init(d, "msp", t);
    feed.add("P-1", "high", "CVE-2099-5001", 10_000, 51);
    feed.add("P-2", "low", "CVE-2099-5002", 20_000, 52);
    feed.publish(t);
    let full = feed.export(&d.join("full.pwb"), None, t);
    let site = Site::new(d, "s", &[&feed]);
    let server = crate::support::Server::start_with(
        &site.data,
        &["--config", site.config.to_str().unwrap()],
    );
    let admin = crate::support::Admin::first_sign_in(&server, "a long new password");
    let out = site.import(&full);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = run(site.cmd(&["mirror", "status", "--json"]));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["store_blobs"], 2, "{status}");
    let page = admin.get("/mirror").text().unwrap();
    assert!(
        page.contains("Content store: 2 blobs, 29.3 KiB."),
        "the page disagrees with mirror status: {page}"
    );
}

/// Item 21: a source without a url is bundle-only: accepted by the config, never synced
/// (no "last attempt failed"), its bundles import, and its status speaks of content age
/// and expiry.
#[test]
fn a_bundle_only_source_is_offline_by_design() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let t = Timestamp::now();
    let mut feed = Feed::init(d, "msp", t);
    feed.add("P-1", "high", "CVE-2099-6001", 10_000, 61);
    feed.publish(t);
    let full = feed.export(&d.join("full.pwb"), None, t);
    let site = Site::new(d, "s", &[&feed]);
    // The same site, its source without a url.
    let text = std::fs::read_to_string(&site.config).unwrap();
    let no_url: String = text
        .lines()
        .filter(|l| !l.starts_with("url = "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(text, no_url);
    std::fs::write(&site.config, &no_url).unwrap();
    let check = run(site.cmd(&["config", "check"]));
    assert!(check.status.success(), "{}", stderr(&check));

    let out = site.import(&full);
    assert!(out.status.success(), "{}", stderr(&out));
    let named = run(site.cmd(&["mirror", "sync", "--source", "msp"]));
    assert!(!named.status.success());
    assert!(
        stderr(&named).contains("has no url: it is bundle-only (offline by design)"),
        "{}",
        stderr(&named)
    );
    let all = run(site.cmd(&["mirror", "sync"]));
    assert!(all.status.success(), "{}", stderr(&all));
    assert!(
        stdout(&all).contains("no mirror source has a url to sync"),
        "{}",
        stdout(&all)
    );
    let status = run(site.cmd(&["mirror", "status", "--json"]));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let src = &status["sources"][0];
    assert_eq!(src["bundle_only"], true, "{status}");
    assert_eq!(src["url"], serde_json::Value::Null, "{status}");
    assert_eq!(src["catalog_version"], 1, "{status}");
    assert_eq!(src["expired"], false, "{status}");
    assert_eq!(src["last_error"], serde_json::Value::Null, "{status}");
    assert!(src["content_age_hours"].is_number(), "{status}");
    let human = stdout(&run(site.cmd(&["mirror", "status"])));
    assert!(human.contains("bundle-only"), "{human}");

    // The server schedules no sync for it; the page and dashboard say bundles only.
    let server = crate::support::Server::start_with(
        &site.data,
        &["--config", site.config.to_str().unwrap()],
    );
    let admin = crate::support::Admin::first_sign_in(&server, "a long new password");
    std::thread::sleep(std::time::Duration::from_secs(11));
    for path in ["/mirror", "/"] {
        let page = admin.get(path).text().unwrap();
        assert!(page.contains("offline by design"), "{path}: {page}");
        assert!(
            !page.to_lowercase().contains("last attempt"),
            "{path}: {page}"
        );
    }
    let audit = stdout(&run(site.cmd(&["audit", "list", "--json"])));
    assert!(!audit.contains("scheduler"), "{audit}");
}
