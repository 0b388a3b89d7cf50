//! Lifecycle states on real data: the built-in snapshot holds the endoflife.date export's
//! values unchanged (`mirror/eol/trim-snapshot.py` only drops products and fields), and
//! a test below checks that against the full fixture when `../shared/fixtures` exists.

use jiff::civil::{Date, date};

use super::*;

fn d(s: &str) -> Date {
    s.parse().unwrap()
}

fn state(product: &str, cycle: &str, on: &str) -> State {
    Catalog::embedded()
        .lifecycle(product, cycle, d(on), 90)
        .state
}

#[test]
fn states_of_real_cycles_on_dates() {
    use State::*;
    // (product, cycle, date, expected). Dates from the export (commit a70eca3).
    let table = [
        // debian 10: eol 2022-09-10, LTS (eoes) until 2024-06-30.
        ("debian", "10", "2022-01-01", Supported),
        ("debian", "10", "2022-06-12", EolSoon), // 90 days before 2022-09-10
        ("debian", "10", "2022-06-11", Supported), // 91 days before
        ("debian", "10", "2022-09-09", EolSoon),
        ("debian", "10", "2022-09-10", ExtendedOnly), // on the eol date: over
        ("debian", "10", "2024-06-29", ExtendedOnly),
        ("debian", "10", "2024-06-30", Eol), // on the eoes date: over
        ("debian", "12", "2026-12-07", ExtendedOnly),
        ("debian", "13", "2026-12-07", Supported),
        // ubuntu 22.04: eoas 2024-09-30, eol 2027-04-01, eoes 2032-04-09.
        ("ubuntu", "22.04", "2024-09-29", Supported),
        ("ubuntu", "22.04", "2024-09-30", SecurityOnly),
        ("ubuntu", "22.04", "2027-01-01", EolSoon),
        ("ubuntu", "22.04", "2030-01-01", ExtendedOnly),
        // an interim release without extended support.
        ("ubuntu", "24.10", "2025-07-10", Eol),
        // centos 7: eoas 2020-08-06, eol 2024-06-30, no eoes.
        ("centos", "7", "2021-01-01", SecurityOnly),
        ("centos", "7", "2024-06-30", Eol),
        // rhel 7: paid ELS (eoes) until 2029-05-31.
        ("rhel", "7", "2026-12-07", ExtendedOnly),
        ("windows-server", "2012-r2", "2026-10-12", ExtendedOnly),
        ("windows-server", "2012-r2", "2026-10-13", Eol),
        ("windows-server", "2022", "2026-12-07", SecurityOnly),
        ("alpine-linux", "3.18", "2026-12-07", Eol),
        // netbsd 4: `eol: true` (ended, no date).
        ("netbsd", "4", "2000-01-01", Eol),
        // a cycle and a product the data does not have.
        ("debian", "99", "2026-12-07", Unknown),
        ("no-such-os", "1", "2026-12-07", Unknown),
    ];
    for (p, c, on, want) in table {
        assert_eq!(state(p, c, on), want, "{p} {c} on {on}");
    }
}

#[test]
fn booleans_are_honoured_in_both_spellings() {
    let doc = br#"{"source":"test","source_date":"2026-01-01","products":[
        {"product":"fm","releases":[
            {"releaseCycle":"1","eol":false},
            {"releaseCycle":"2","eol":true},
            {"releaseCycle":"3","eoas":true,"eol":false},
            {"releaseCycle":"4","eol":"2020-01-01","eoes":false},
            {"releaseCycle":"5","eol":"2020-01-01","eoes":true}]},
        {"product":"api","releases":[
            {"cycle":"1","support":true,"eol":false},
            {"cycle":"2","support":false,"eol":false},
            {"cycle":"3","eol":"2020-01-01","extendedSupport":true},
            {"cycle":"4","eol":"2020-01-01","extendedSupport":false},
            {"cycle":"5","eol":"2020-01-01","extendedSupport":"2030-01-01"}]}]}"#;
    let cat = Catalog::parse(doc).unwrap();
    let on = date(2026, 6, 1);
    let s = |p: &str, c: &str| cat.lifecycle(p, c, on, 90).state;
    assert_eq!(
        s("fm", "1"),
        State::Supported,
        "eol: false = no end planned"
    );
    assert_eq!(s("fm", "2"), State::Eol, "eol: true = ended");
    assert_eq!(
        s("fm", "3"),
        State::SecurityOnly,
        "eoas: true = active over"
    );
    assert_eq!(s("fm", "4"), State::Eol, "eoes: false = none offered");
    assert_eq!(s("fm", "5"), State::Eol, "eoes: true = extended over");
    assert_eq!(s("api", "1"), State::Supported, "support: true = running");
    assert_eq!(s("api", "2"), State::SecurityOnly, "support: false = over");
    assert_eq!(s("api", "3"), State::ExtendedOnly, "extendedSupport: true");
    assert_eq!(s("api", "4"), State::Eol);
    assert_eq!(s("api", "5"), State::ExtendedOnly);
    assert_eq!(cat.lifecycle("api", "3", on, 90).eol_date, None);
    assert_eq!(
        cat.lifecycle("api", "5", on, 90).eol_date,
        Some(date(2030, 1, 1))
    );
}

#[test]
fn the_eol_date_is_the_end_of_the_last_support() {
    let cat = Catalog::embedded();
    let l = cat.lifecycle("Debian", "10", date(2026, 12, 7), 90);
    assert_eq!(l.state, State::Eol);
    assert_eq!(l.eol_date, Some(date(2024, 6, 30)));
    assert_eq!(l.security_end, Some(date(2022, 9, 10)));
    assert_eq!(l.codename.as_deref(), Some("Buster"));
    let c7 = cat.lifecycle("centos", "7", date(2026, 12, 7), 90);
    assert_eq!(c7.eol_date, Some(date(2024, 6, 30)));
}

#[test]
fn eol_soon_horizon_is_configurable() {
    let cat = Catalog::embedded();
    // debian 10's eol is 2022-09-10; 30 days before is 2022-08-11.
    let on = date(2022, 8, 10);
    assert_eq!(
        cat.lifecycle("debian", "10", on, 30).state,
        State::Supported
    );
    assert_eq!(cat.lifecycle("debian", "10", on, 31).state, State::EolSoon);
    assert_eq!(cat.lifecycle("debian", "10", on, 0).state, State::Supported);
}

#[test]
fn bad_catalogs_are_refused_with_the_reason() {
    let cases: [(&[u8], &str); 5] = [
        (b"not json", "not endoflife.date JSON"),
        (
            br#"{"source_date":"2026-01-01","products":[]}"#,
            "has no products",
        ),
        (
            br#"{"source_date":"2026-01-01","products":[{"product":"a","releases":[{"releaseCycle":"1"}]}]}"#,
            "cycle \"1\" has no `eol`",
        ),
        (
            br#"{"source_date":"2026-01-01","products":[{"product":"a","releases":[]},{"product":"A","releases":[]}]}"#,
            "names product \"a\" twice",
        ),
        (
            br#"{"source_date":"yesterday","products":[{"product":"a","releases":[]}]}"#,
            "not endoflife.date JSON",
        ),
    ];
    for (doc, want) in cases {
        let e = Catalog::parse(doc).unwrap_err().to_string();
        assert!(e.contains(want), "{e:?} should contain {want:?}");
    }
    let big = vec![b' '; MAX_CATALOG_BYTES + 1];
    assert!(matches!(
        Catalog::parse(&big),
        Err(CatalogError::TooLarge(_))
    ));
}

#[test]
fn the_snapshot_knows_the_fleet_s_operating_systems() {
    let cat = Catalog::embedded();
    assert_eq!(cat.version, date(2026, 8, 22));
    for p in [
        "debian",
        "ubuntu",
        "rhel",
        "centos",
        "centos-stream",
        "rocky-linux",
        "almalinux",
        "sles",
        "opensuse",
        "amazon-linux",
        "alpine-linux",
        "oracle-linux",
        "windows-server",
        "windows",
        "mssqlserver",
        "postgresql",
        "msexchange",
    ] {
        assert!(cat.product(p).is_some(), "{p} missing from the snapshot");
    }
}

/// The snapshot's values are the export's: every cycle it holds parses to the same
/// milestones from the full fixture. Needs `../shared/fixtures` (present in this
/// project's development and CI checkouts); without it there is nothing to compare.
#[test]
fn the_snapshot_matches_the_full_export() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/eol/endoflife-date-products.json");
    let Ok(bytes) = std::fs::read(&path) else {
        eprintln!("{} absent: snapshot not compared", path.display());
        return;
    };
    let full = Catalog::parse(&bytes).unwrap();
    assert_eq!(full.products.len(), 464);
    assert_eq!(full.cycles(), 8321);
    let snap = Catalog::embedded();
    assert_eq!(snap.version, full.version);
    for (name, p) in &snap.products {
        assert_eq!(Some(p), full.products.get(name), "{name}");
    }
}
