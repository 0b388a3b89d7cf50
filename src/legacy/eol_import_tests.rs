//! The replace / refuse-older / no-op rules on a real database.

use super::*;
use crate::db::Db;
use crate::feed::hashing::sha256_hex;

const SNAPSHOT: &[u8] = include_bytes!("../../mirror/eol/snapshot.json");

fn reference(body: &[u8], version: &str) -> EolCatalogRef {
    EolCatalogRef {
        sha256: sha256_hex(body),
        size: body.len() as u64,
        version: version.parse().unwrap(),
    }
}

fn run(db: &Db, feed: &str, body: &[u8], version: &str) -> EolImport {
    let r = reference(body, version);
    let c = check(&r, body).unwrap();
    let now: Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
    db.write_blocking(|tx| apply(tx, now, feed, &r, &c, body, "tester"))
        .unwrap()
}

fn audit(db: &Db) -> Vec<(String, String)> {
    db.read_blocking(|c| {
        let mut st = c.prepare("SELECT action, details FROM audit_log ORDER BY seq")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(crate::error::DbError::from)
    })
    .unwrap()
}

#[test]
fn newer_replaces_older_is_refused_and_the_same_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("t.db"), Default::default()).unwrap();
    let oct = super::dated_snapshot("2026-10-01");
    let r = run(&db, "msp-a", &oct, "2026-10-01");
    assert_eq!(r.outcome, Outcome::Replaced);
    assert_eq!(
        (r.active_version.as_str(), r.active_origin.as_str()),
        ("2026-08-22", "built-in snapshot")
    );
    let active = db.read_blocking(super::super::active::load).unwrap();
    assert_eq!(active.catalog.version.to_string(), "2026-10-01");
    assert_eq!(active.origin.feed.as_deref(), Some("msp-a"));
    assert_eq!(
        active.origin.sha256.as_deref(),
        Some(sha256_hex(&oct).as_str())
    );

    // Another feed's older catalog: refused, the one in force stays, audited.
    let r = run(&db, "msp-b", SNAPSHOT, "2026-08-22");
    assert_eq!(r.outcome, Outcome::RefusedOlder);
    assert!(
        r.message
            .contains("version 2026-08-22 from feed \"msp-b\" was refused")
            && r.message.contains("older than version 2026-10-01"),
        "{}",
        r.message
    );
    let after = db.read_blocking(super::super::active::load).unwrap();
    assert_eq!(after.origin, active.origin);

    // The same one again: nothing.
    assert_eq!(
        run(&db, "msp-a", &oct, "2026-10-01").outcome,
        Outcome::Unchanged
    );

    let actions: Vec<String> = audit(&db).into_iter().map(|(a, _)| a).collect();
    assert_eq!(
        actions,
        ["legacy.catalog_replaced", "legacy.catalog_refused"]
    );
    let (_, details) = &audit(&db)[0];
    let d: serde_json::Value = serde_json::from_str(details).unwrap();
    assert_eq!(d["from_version"], "2026-08-22");
    assert_eq!(d["to_version"], "2026-10-01");
    assert_eq!(d["feed"], "msp-a");
}

#[test]
fn a_blob_that_is_no_catalog_or_another_version_fails_the_check() {
    let body = b"{\"not\": \"a catalog\"}";
    let e = check(&reference(body, "2026-08-22"), body).unwrap_err();
    assert!(e.contains("not endoflife.date JSON"), "{e}");
    let e = check(&reference(SNAPSHOT, "2026-09-01"), SNAPSHOT).unwrap_err();
    assert_eq!(
        e,
        "its export date is 2026-08-22, but the signed catalog names version 2026-09-01"
    );
}

#[test]
fn a_damaged_stored_catalog_is_replaced_by_any_verified_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("t.db"), Default::default()).unwrap();
    db.write_blocking(|tx| {
        tx.execute(
            "INSERT INTO eol_catalog (id, version, source, sha256, feed, imported_at, body)
             VALUES (1, '2027-01-01', 's', 'x', 'f', 't', X'00')",
            [],
        )
        .map_err(crate::error::DbError::from)
    })
    .unwrap();
    assert!(db.read_blocking(super::super::active::load).is_err());
    let r = run(&db, "msp-a", SNAPSHOT, "2026-08-22");
    assert_eq!(r.outcome, Outcome::Replaced);
    assert_eq!(r.active_origin, "a damaged stored row");
    let active = db.read_blocking(super::super::active::load).unwrap();
    assert_eq!(
        active.origin.sha256.as_deref(),
        Some(sha256_hex(SNAPSHOT).as_str())
    );
}
