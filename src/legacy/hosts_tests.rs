use jiff::SignedDuration;

use super::*;
use crate::db::Db;
use crate::fleet::tokens::NewToken;
use crate::trust::keys::Ed25519Key;

pub(crate) fn now() -> Timestamp {
    "2026-12-07T12:00:00Z".parse().unwrap()
}

pub(crate) fn db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("t.db"), Default::default()).unwrap();
    (dir, db)
}

/// Enrolls an agent host reporting `os id`/`version`; returns its id.
pub(crate) fn enroll(db: &Db, hostname: &str, os_id: &str, version: &str) -> String {
    db.write_blocking(|tx| {
        let t = crate::fleet::tokens::create(
            tx,
            now(),
            "test",
            &NewToken {
                ring: Some("pilot".into()),
                labels: crate::fleet::parse_labels("").unwrap(),
                expires_in: SignedDuration::from_hours(1),
                max_uses: 1,
            },
        )?;
        let mut inventory = crate::fleet::inventory::sample(hostname);
        inventory.os.id = os_id.into();
        inventory.os.version_id = version.into();
        crate::fleet::hosts::enroll(
            tx,
            now(),
            &crate::fleet::hosts::EnrollRequest {
                token: t.token,
                hostname: hostname.into(),
                public_key: Ed25519Key::generate(&mut rand::rngs::OsRng).public_hex(),
                inventory,
            },
        )
    })
    .unwrap()
}

pub(crate) fn agentless(db: &Db, name: &str, product: &str, cycle: &str) {
    db.write_blocking(|tx| {
        q::insert_agentless(
            tx,
            &AgentlessRow {
                name: name.into(),
                addresses: r#"["192.0.2.10"]"#.into(),
                product: product.into(),
                cycle: cycle.into(),
                owner: "ops".into(),
                notes: String::new(),
                added_at: now().to_string(),
                added_by: "admin".into(),
            },
        )
    })
    .unwrap();
}

fn decide(db: &Db, sql: &str, key: &str) {
    db.write_blocking(|tx| tx.execute(sql, [key]).map_err(crate::error::DbError::from))
        .unwrap();
}

fn include(db: &Db, key: &str) {
    decide(
        db,
        "INSERT INTO legacy_includes (host, reason, at, actor)
         VALUES (?1, 'patched by hand', '2026-12-01T00:00:00Z', 'admin')",
        key,
    );
}

fn accept(db: &Db, key: &str, until: &str) {
    decide(
        db,
        &format!(
            "INSERT INTO legacy_acceptances (host, reason, controls, accepted_at, until, actor)
             VALUES (?1, 'vendor appliance', '[\"segmented\"]', '2026-11-01T00:00:00Z', '{until}', 'admin')"
        ),
        key,
    );
}

#[test]
fn list_combines_legacy_agent_hosts_and_every_agentless_host() {
    let (_d, db) = db();
    let cfg = LegacyConfig::default();
    let old = enroll(&db, "buster", "debian", "10");
    enroll(&db, "trixie", "debian", "13");
    let ext = enroll(&db, "bookworm", "debian", "12");
    agentless(&db, "printer", "windows-server", "2012");
    agentless(&db, "appliance", "acme-os", "7");
    include(&db, &old);
    accept(&db, "printer", "2027-06-01T00:00:00Z");
    accept(&db, "appliance", "2026-12-01T00:00:00Z");

    let hosts = db.read_blocking(|c| list(c, now(), &cfg)).unwrap();
    let rows: Vec<(&str, State, AcceptanceStatus, bool)> = hosts
        .iter()
        .map(|h| {
            (
                h.name.as_str(),
                h.lifecycle.state,
                h.acceptance_status,
                h.excluded,
            )
        })
        .collect();
    // The supported agent host (debian 13) is not listed; eol first, then by name.
    assert_eq!(
        rows,
        vec![
            ("buster", State::Eol, AcceptanceStatus::Missing, false),
            ("printer", State::Eol, AcceptanceStatus::Accepted, true),
            (
                "bookworm",
                State::ExtendedOnly,
                AcceptanceStatus::Missing,
                false
            ),
            (
                "appliance",
                State::Unknown,
                AcceptanceStatus::Expired,
                false
            ),
        ]
    );
    let buster = &hosts[0];
    assert_eq!(
        buster.host,
        HostRef::Agent {
            id: old.clone(),
            hostname: "buster".into()
        }
    );
    assert_eq!(
        (buster.product.as_str(), buster.cycle.as_str()),
        ("debian", "10")
    );
    assert_eq!(
        buster.lifecycle.eol_date,
        Some(jiff::civil::date(2024, 6, 30))
    );
    assert_eq!(buster.include.as_ref().unwrap().reason, "patched by hand");
    assert_eq!(buster.addresses, vec!["10.0.0.5/24".to_string()]);
    assert_eq!(buster.ring.as_deref(), Some("pilot"));
    assert!(buster.last_seen.is_some() && buster.added_at.is_none());
    let printer = &hosts[1];
    assert_eq!(printer.host.key(), "printer");
    assert_eq!(printer.addresses, vec!["192.0.2.10".to_string()]);
    assert_eq!(
        (printer.owner.as_str(), printer.added_by.as_deref()),
        ("ops", Some("admin"))
    );
    assert_eq!(
        printer.acceptance.as_ref().unwrap().controls,
        vec!["segmented"]
    );
    assert_eq!(hosts[2].host.key(), ext);

    let c = counts(&hosts);
    assert_eq!((c.total, c.accepted, c.expired, c.missing), (4, 1, 1, 2));
    assert_eq!(
        c.by_state.into_iter().collect::<Vec<_>>(),
        vec![
            (State::ExtendedOnly, 1),
            (State::Eol, 2),
            (State::Unknown, 1)
        ]
    );

    // `unknown_is_eol` excludes the unknown host too.
    let strict = LegacyConfig {
        unknown_is_eol: true,
        ..cfg
    };
    let hosts = db.read_blocking(|c| list(c, now(), &strict)).unwrap();
    assert!(
        hosts
            .iter()
            .find(|h| h.name == "appliance")
            .unwrap()
            .excluded
    );
}

#[test]
fn revoked_agent_hosts_are_not_listed() {
    let (_d, db) = db();
    enroll(&db, "buster", "debian", "10");
    db.write_blocking(|tx| crate::fleet::hosts::revoke(tx, "buster", now(), "admin", "gone"))
        .unwrap();
    let hosts = db
        .read_blocking(|c| list(c, now(), &LegacyConfig::default()))
        .unwrap();
    assert!(hosts.is_empty(), "{hosts:?}");
    assert_eq!(counts(&hosts), LegacyCounts::default());
}

#[test]
fn show_finds_any_host_even_a_supported_one() {
    let (_d, db) = db();
    let cfg = LegacyConfig::default();
    let id = enroll(&db, "trixie", "debian", "13");
    agentless(&db, "printer", "windows-server", "2012");
    let v = db
        .read_blocking(|c| show(c, "trixie", now(), &cfg))
        .unwrap();
    assert_eq!(
        (v.host.key(), v.lifecycle.state),
        (id.as_str(), State::Supported)
    );
    assert!(!v.excluded);
    let v = db.read_blocking(|c| show(c, &id, now(), &cfg)).unwrap();
    assert_eq!(v.name, "trixie");
    let v = db
        .read_blocking(|c| show(c, "PRINTER", now(), &cfg))
        .unwrap();
    assert_eq!(
        (v.name.as_str(), v.lifecycle.state),
        ("printer", State::Eol)
    );
    assert!(v.excluded);
    let e = db
        .read_blocking(|c| show(c, "printr", now(), &cfg))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "no host \"printr\" (neither a registered legacy host nor an enrolled one) \
         (did you mean \"printer\"?)"
    );
}

#[test]
fn the_view_serializes_for_json_output() {
    let (_d, db) = db();
    agentless(&db, "printer", "windows-server", "2012");
    let v = db
        .read_blocking(|c| show(c, "printer", now(), &LegacyConfig::default()))
        .unwrap();
    let j = serde_json::to_value(&v).unwrap();
    assert_eq!(j["host"]["kind"], "agentless");
    assert_eq!(j["lifecycle"]["state"], "eol");
    assert_eq!(j["acceptance_status"], "missing");
    let c = serde_json::to_value(counts(&[v])).unwrap();
    assert_eq!(c["by_state"]["eol"], 1);
}

#[test]
fn the_view_follows_each_new_inventory_reported_at_check_in() {
    let (_d, db) = db();
    let cfg = LegacyConfig::default();
    let id = enroll(&db, "web1", "debian", "13");
    let view = |db: &Db| db.read_blocking(|c| show(c, &id, now(), &cfg)).unwrap();
    let v = view(&db);
    assert_eq!(
        (v.cycle.as_str(), v.lifecycle.state, v.addresses.clone()),
        ("13", State::Supported, vec!["10.0.0.5/24".to_string()])
    );
    assert!(
        db.read_blocking(|c| list(c, now(), &cfg))
            .unwrap()
            .is_empty()
    );
    // The host is reinstalled with an old release and moves; its next check-in says so.
    let mut inv = crate::fleet::inventory::sample("web1");
    inv.os.version_id = "10".into();
    inv.addresses = vec!["192.0.2.44/24".into()];
    db.write_blocking(|tx| crate::fleet::hosts::checkin(tx, now(), &id, inv))
        .unwrap();
    let v = view(&db);
    assert_eq!(
        (v.cycle.as_str(), v.lifecycle.state, v.addresses.clone()),
        ("10", State::Eol, vec!["192.0.2.44/24".to_string()])
    );
    let listed = db.read_blocking(|c| list(c, now(), &cfg)).unwrap();
    assert_eq!(listed, vec![v]);
}
