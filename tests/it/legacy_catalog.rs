//! The lifecycle catalog as a signed feed artifact (issue [9]): `feed add
//! --eol-catalog`, a bundle import that replaces the catalog in force, an older one
//! refused on its own, tampered or unparseable blobs refused by the pipeline with
//! nothing changed, and `legacy catalog [--json]`.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use patchward::feed::hashing::sha256_hex;

use crate::feedkit::{Feed, Site, entries, rebuild};
use crate::support::{patchward, run, stderr, stdout};

const SNAPSHOT: &str = include_str!("../../mirror/eol/snapshot.json");

/// The built-in snapshot with another export date, written to `dir`.
fn catalog_dated(dir: &Path, date: &str) -> PathBuf {
    let text = SNAPSHOT.replacen(
        "\"source_date\": \"2026-08-22\"",
        &format!("\"source_date\": \"{date}\""),
        1,
    );
    assert_ne!(
        text, SNAPSHOT,
        "the snapshot's source_date moved; update this test"
    );
    let p = dir.join(format!("eol-{date}.json"));
    std::fs::write(&p, text).unwrap();
    p
}

fn run_ok(c: std::process::Command) -> String {
    let out = run(c);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

fn catalog_json(site: &Site) -> serde_json::Value {
    serde_json::from_str(&run_ok(site.cmd(&["legacy", "catalog", "--json"]))).unwrap()
}

/// Everything an import could change, lifecycle catalog and audit log included.
fn state(site: &Site) -> (crate::feedkit::Snapshot, serde_json::Value, Vec<String>) {
    let conn = rusqlite::Connection::open(site.data.join("patchward.db")).unwrap();
    let mut st = conn
        .prepare("SELECT action || ' ' || subject || ' ' || details FROM audit_log ORDER BY seq")
        .unwrap();
    let audit = st
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    (site.snapshot(), catalog_json(site), audit)
}

fn import_ok(site: &Site, bundle: &Path) -> serde_json::Value {
    let out = site.import(bundle);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_fresh_appliance_shows_the_built_in_catalog() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    drop(crate::support::Server::start(&data));
    let today = jiff::tz::TimeZone::UTC.to_datetime(Timestamp::now()).date();
    let age = i64::from((today - jiff::civil::date(2026, 8, 22)).get_days());

    let mut c = patchward(&data);
    c.args(["legacy", "catalog", "--json"]);
    let j: serde_json::Value = serde_json::from_str(&run_ok(c)).unwrap();
    assert_eq!(j["version"], "2026-08-22");
    assert!(
        j["source"]
            .as_str()
            .unwrap()
            .starts_with("endoflife.date products/*.md front matter @ a70eca33"),
        "{j}"
    );
    // The test may straddle midnight UTC.
    let got = j["age_days"].as_i64().unwrap();
    assert!(got == age || got == age + 1, "{got} vs {age}");
    assert_eq!(j["origin"]["kind"], "built-in");
    assert_eq!(j["origin"]["sha256"], serde_json::Value::Null);
    let products = j["products"].as_array().unwrap();
    assert_eq!(
        j["product_count"].as_u64().unwrap() as usize,
        products.len()
    );
    let cycles: u64 = products.iter().map(|p| p["cycles"].as_u64().unwrap()).sum();
    assert_eq!(j["cycle_count"].as_u64().unwrap(), cycles);
    let debian = products.iter().find(|p| p["name"] == "debian").unwrap();
    assert_eq!(debian["title"], "Debian");
    assert_eq!(debian["category"], "os");
    assert!(debian["cycles"].as_u64().unwrap() >= 10, "{debian}");

    let mut c = patchward(&data);
    c.args(["legacy", "catalog"]);
    let text = run_ok(c);
    assert!(
        text.starts_with("Lifecycle catalog version 2026-08-22\n"),
        "{text}"
    );
    assert!(
        text.contains("  origin:   built into this binary"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "  contents: {} products, {cycles} cycles\n",
            products.len()
        )),
        "{text}"
    );
    assert!(text.contains("\nos ("), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("debian ") && l.contains("Debian (")),
        "{text}"
    );
}

#[test]
fn a_signed_eol_catalog_replaces_the_active_one_and_an_older_one_is_refused_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let t = Timestamp::now();
    let d = tmp.path();
    let mut a = Feed::init(d, "msp-a", t);
    a.add("A-1", "high", "CVE-2099-2001", 10_000, 21);
    let oct = a.add_eol_catalog(&catalog_dated(d, "2026-10-01"));
    a.publish(t);
    let a1 = a.export(&d.join("a1.pwb"), None, t);
    assert!(
        entries(&a1)
            .iter()
            .any(|(n, _)| *n == format!("blobs/sha256/{oct}")),
        "the bundle carries the lifecycle catalog"
    );
    let mut b = Feed::init(d, "msp-b", t);
    b.add("B-1", "critical", "CVE-2099-2002", 10_000, 22);
    let snapshot = d.join("snapshot.json");
    std::fs::write(&snapshot, SNAPSHOT).unwrap();
    let old = b.add_eol_catalog(&snapshot);
    b.publish(t);
    let b1 = b.export(&d.join("b1.pwb"), None, t);
    let site = Site::new(d, "s", &[&a, &b]);

    // Newer than the built-in snapshot: replaces it in the import.
    let s = import_ok(&site, &a1);
    assert_eq!(s["eol_catalog"]["outcome"], "replaced", "{s}");
    assert_eq!(s["eol_catalog"]["active_version"], "2026-08-22");
    let j = catalog_json(&site);
    assert_eq!(j["version"], "2026-10-01");
    assert_eq!(j["origin"]["kind"], "feed");
    assert_eq!(j["origin"]["feed"], "msp-a");
    assert_eq!(j["origin"]["sha256"], oct.as_str());
    let text = run_ok(site.cmd(&["legacy", "catalog"]));
    assert!(
        text.contains(&format!(
            "  origin:   feed \"msp-a\", sha256 {oct}, imported "
        )),
        "{text}"
    );
    let (_, _, audit) = state(&site);
    let replaced: Vec<&String> = audit
        .iter()
        .filter(|l| l.starts_with("legacy.catalog_replaced eol-catalog "))
        .collect();
    assert_eq!(replaced.len(), 1, "{audit:?}");
    assert!(
        replaced[0].contains("\"from_version\":\"2026-08-22\"")
            && replaced[0].contains("\"to_version\":\"2026-10-01\"")
            && replaced[0].contains(&oct)
            && replaced[0].contains("\"feed\":\"msp-a\""),
        "{}",
        replaced[0]
    );

    // Another feed's older one: only the lifecycle catalog is refused; its patches land.
    let (_, before_catalog, _) = state(&site);
    let out = site.import(&b1);
    assert!(out.status.success(), "{}", stderr(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["patches"]["new"], 1, "{s}");
    assert_eq!(s["eol_catalog"]["outcome"], "refused_older", "{s}");
    let note = s["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .find(|n| n.contains("was refused"))
        .unwrap_or_else(|| panic!("no note in {s}"));
    assert!(
        note.contains("lifecycle catalog version 2026-08-22 from feed \"msp-b\" was refused")
            && note.contains("older than version 2026-10-01 in force")
            && note.contains("the rest of the import was not affected"),
        "{note}"
    );
    assert_eq!(
        catalog_json(&site),
        before_catalog,
        "the catalog in force changed"
    );
    let ids: Vec<String> = site
        .patches()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.contains(&"B-1".to_string()), "{ids:?}");
    let (_, _, audit) = state(&site);
    let refused: Vec<&String> = audit
        .iter()
        .filter(|l| l.starts_with("legacy.catalog_refused eol-catalog "))
        .collect();
    assert_eq!(refused.len(), 1, "{audit:?}");
    assert!(
        refused[0].contains(&old) && refused[0].contains("\"active_version\":\"2026-10-01\""),
        "{}",
        refused[0]
    );

    // A newer one through an incremental bundle: carried, verified and in force.
    let nov = a.add_eol_catalog(&catalog_dated(d, "2026-11-01"));
    a.publish(t);
    let a2 = a.export(&d.join("a2.pwb"), Some(1), t);
    let names: Vec<String> = entries(&a2).into_iter().map(|e| e.0).collect();
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("blobs/"))
            .collect::<Vec<_>>(),
        [&format!("blobs/sha256/{nov}")],
        "the incremental bundle carries only the new lifecycle catalog"
    );
    let s = import_ok(&site, &a2);
    assert_eq!(s["eol_catalog"]["outcome"], "replaced", "{s}");
    let j = catalog_json(&site);
    assert_eq!(
        (j["version"].as_str(), j["origin"]["sha256"].as_str()),
        (Some("2026-11-01"), Some(nov.as_str()))
    );
}

#[test]
fn a_tampered_or_unparseable_eol_catalog_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let t = Timestamp::now();
    let d = tmp.path();
    let mut feed = Feed::init(d, "msp", t);
    feed.add("P-1", "high", "CVE-2099-3001", 10_000, 31);
    feed.publish(t);
    let v1 = feed.export(&d.join("v1.pwb"), None, t);
    let site = Site::new(d, "s", &[&feed]);
    import_ok(&site, &v1);

    // Feed side: a file that is no lifecycle catalog is refused with the parse error.
    let bad = d.join("not-a-catalog.json");
    std::fs::write(&bad, "{\"products\": 7}").unwrap();
    let blobs_before = std::fs::read_dir(feed.dir.join("blobs/sha256"))
        .unwrap()
        .count();
    let mut c = patchward(&site.data);
    c.args(["feed", "add"])
        .arg(&feed.dir)
        .arg("--eol-catalog")
        .arg(&bad);
    let out = run(c);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{} is not a lifecycle catalog: ", bad.display()))
            && err.contains("the lifecycle catalog is not endoflife.date JSON"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(feed.dir.join("blobs/sha256"))
            .unwrap()
            .count(),
        blobs_before
    );
    assert!(!feed.dir.join("eol-catalog.toml").exists());

    // A good one, published; its blob changed in the bundle: the pipeline refuses it.
    let good = catalog_dated(d, "2026-10-01");
    let sha = sha256_hex(&std::fs::read(&good).unwrap());
    let mut c = patchward(&site.data);
    c.args(["feed", "add"])
        .arg(&feed.dir)
        .arg("--eol-catalog")
        .arg(&good);
    let said = run_ok(c);
    assert!(
        said.starts_with("recorded lifecycle catalog version 2026-10-01 (the feed's first): ")
            && said.contains(&format!(" bytes sha256 {sha}\n")),
        "{said}"
    );
    feed.publish(t);
    let v2 = feed.export(&d.join("v2.pwb"), None, t);
    let mut e = entries(&v2);
    let i = e
        .iter()
        .position(|(n, _)| *n == format!("blobs/sha256/{sha}"))
        .unwrap();
    let pos = e[i].1.len() / 2;
    e[i].1[pos] ^= 0x20;
    let tampered = d.join("tampered.pwb");
    std::fs::write(&tampered, rebuild(&e)).unwrap();
    let before = state(&site);
    let out = site.import(&tampered);
    assert!(
        !out.status.success(),
        "a tampered lifecycle catalog was imported"
    );
    let err = stderr(&out);
    assert!(err.contains("tampered with; nothing was stored"), "{err}");
    assert_eq!(state(&site), before, "a refused import changed something");
    assert_eq!(before.1["origin"]["kind"], "built-in");

    // Appliance side: a signed catalog naming a blob that is no lifecycle catalog (an
    // MSP that bypassed `feed add`) is refused whole, with nothing changed.
    let junk = b"{\"source_date\": \"2026-12-01\", \"products\": []}\n";
    let junk_sha = sha256_hex(junk);
    std::fs::write(feed.dir.join("blobs/sha256").join(&junk_sha), junk).unwrap();
    std::fs::write(
        feed.dir.join("eol-catalog.toml"),
        format!(
            "sha256 = {junk_sha:?}\nsize = {}\nversion = \"2026-12-01\"\n",
            junk.len()
        ),
    )
    .unwrap();
    feed.publish(t);
    let v3 = feed.export(&d.join("v3.pwb"), None, t);
    let out = site.import(&v3);
    assert!(
        !out.status.success(),
        "an unparseable lifecycle catalog was imported"
    );
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "the feed's lifecycle catalog (eol-catalog blob {junk_sha}) was refused: the \
             lifecycle catalog has no products; nothing was imported"
        )),
        "{err}"
    );
    assert_eq!(state(&site), before, "a refused import changed something");
}
