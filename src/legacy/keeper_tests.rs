//! Tests of the keeper against the stand-in helper of `segment_tests`.

use jiff::SignedDuration;

use super::*;
use crate::db::legacy_segment::DnsRow;
use crate::legacy::segment::tests::{FakeNetd, add_flow, add_host, db, now};

fn count(db: &Db, sql: &str) -> i64 {
    db.read_blocking(|c| {
        c.query_row(sql, [], |r| r.get(0))
            .map_err(crate::error::DbError::from)
    })
    .unwrap()
}

fn events_of_kind(db: &Db, kind: &str) -> i64 {
    count(
        db,
        &format!("SELECT count(*) FROM legacy_events WHERE kind = '{kind}'"),
    )
}

fn restores(db: &Db) -> i64 {
    count(
        db,
        "SELECT count(*) FROM audit_log WHERE action = 'legacy.segment_restored'",
    )
}

fn fenced(db: &Db) {
    add_host(db, "legacy-db", "192.0.2.10");
    add_flow(db, "legacy-db", "in tcp 198.51.100.0/24 port 1433");
    add_host(db, "old-printer", "192.0.2.20");
    add_flow(db, "old-printer", "in tcp 198.51.100.7 port 9100");
}

#[test]
fn nothing_to_keep_in_export_mode_or_before_any_apply() {
    let (_d, db) = db();
    fenced(&db);
    let mut k = Keeper::default();
    assert_eq!(
        k.tick(&db, &LegacyConfig::default(), now()).unwrap(),
        Tick::Idle
    );
    let netd = FakeNetd::start();
    assert_eq!(k.tick(&db, &netd.cfg(), now()).unwrap(), Tick::Idle);
    assert!(netd.table.lock().unwrap().is_none());
}

#[test]
fn a_table_gone_or_changed_is_restored_as_approved_with_events_and_audit() {
    let (_d, db) = db();
    fenced(&db);
    let netd = FakeNetd::start();
    let cfg = netd.cfg();
    let applied = segment::apply(&db, &cfg, now(), "admin", "CHG-1").unwrap();
    let approved = netd.table.lock().unwrap().clone().unwrap();
    let mut k = Keeper::default();
    assert_eq!(k.tick(&db, &cfg, now()).unwrap(), Tick::Holding);
    assert_eq!(restores(&db), 0);

    // An edit nobody applied yet must not reach the kernel through the keeper.
    add_flow(&db, "legacy-db", "in tcp 203.0.113.5 port 3389");
    *netd.table.lock().unwrap() = None;
    let t = k.tick(&db, &cfg, now()).unwrap();
    assert_eq!(
        t,
        Tick::Restored {
            cause: Cause::Absent,
            sha256: applied.sha256.clone()
        }
    );
    assert_eq!(
        netd.table.lock().unwrap().as_deref(),
        Some(approved.as_str())
    );
    assert_eq!(events_of_kind(&db, "fence_drifted"), 2);
    assert_eq!(events_of_kind(&db, "fence_restored"), 2);
    assert_eq!(restores(&db), 1);
    let ev = db
        .read_blocking(|c| events::events_of(c, "legacy-db", 1))
        .unwrap();
    assert_eq!(ev[0].kind, "fence_restored");
    assert_eq!(
        ev[0].text,
        format!(
            "the fence of legacy-db was restored as applied {} by admin",
            now()
        )
    );
    let st = segment::status(&db, &cfg, now()).unwrap();
    assert_eq!(st.state, segment::FenceState::Applied);
    assert!(st.pending);

    *netd.table.lock().unwrap() = Some("table inet patchward {\n}\n".into());
    let t = k.tick(&db, &cfg, now()).unwrap();
    assert!(
        matches!(
            t,
            Tick::Restored {
                cause: Cause::Drift,
                ..
            }
        ),
        "{t:?}"
    );
    assert_eq!(
        netd.table.lock().unwrap().as_deref(),
        Some(approved.as_str())
    );
    assert_eq!(restores(&db), 2);
    assert_eq!(k.tick(&db, &cfg, now()).unwrap(), Tick::Holding);
    assert_eq!(restores(&db), 2);
}

#[test]
fn failures_are_one_event_per_host_per_streak_and_retried() {
    let (_d, db) = db();
    fenced(&db);
    let netd = FakeNetd::start();
    let cfg = netd.cfg();
    segment::apply(&db, &cfg, now(), "admin", "CHG-1").unwrap();
    let gone = LegacyConfig {
        netd_socket: cfg.netd_socket.with_file_name("elsewhere.sock"),
        ..cfg.clone()
    };
    let mut k = Keeper::default();
    for first in [true, false, false] {
        match k.tick(&db, &gone, now()).unwrap() {
            Tick::Failed { error, first: f } => {
                assert_eq!(f, first);
                assert!(
                    error.starts_with("patchward-netd is not reachable"),
                    "{error}"
                );
                assert!(error.contains("patchward-netd.socket"), "{error}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(events_of_kind(&db, "fence_failed"), 2);
    let ev = db
        .read_blocking(|c| events::events_of(c, "old-printer", 1))
        .unwrap();
    assert!(
        ev[0].text.starts_with(
            "the fence of old-printer cannot be kept in place: patchward-netd is not reachable"
        ),
        "{}",
        ev[0].text
    );
    // The helper is back: the streak ends; a new failure is announced again.
    assert_eq!(k.tick(&db, &cfg, now()).unwrap(), Tick::Holding);
    assert!(matches!(
        k.tick(&db, &gone, now()).unwrap(),
        Tick::Failed { first: true, .. }
    ));
    assert_eq!(events_of_kind(&db, "fence_failed"), 4);
}

#[test]
fn dns_answers_are_renewed_and_only_address_changes_are_audited() {
    let (_d, db) = db();
    add_host(&db, "legacy-db", "192.0.2.10");
    add_flow(&db, "legacy-db", "out tcp backup.example.net port 873");
    let answer = |addr: &str, until: Timestamp| {
        db.write_blocking(|tx| {
            q::replace_dns(
                tx,
                "backup.example.net",
                &[DnsRow {
                    name: "backup.example.net".into(),
                    address: addr.into(),
                    expires_at: until.to_string(),
                    resolved_at: now().to_string(),
                }],
            )
        })
        .unwrap();
    };
    let ttl = SignedDuration::from_secs(600);
    answer("203.0.113.80", now() + ttl);
    let netd = FakeNetd::start();
    let cfg = netd.cfg();
    segment::apply(&db, &cfg, now(), "admin", "CHG-2").unwrap();
    assert!(
        netd.table
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .contains("203.0.113.80 . tcp . 873 timeout 600s")
    );
    let mut k = Keeper::default();
    assert_eq!(k.tick(&db, &cfg, now()).unwrap(), Tick::Holding);
    // A minute later the same answer renders with 540s left: renewed, not audited.
    let later = now() + SignedDuration::from_secs(60);
    let t = k.tick(&db, &cfg, later).unwrap();
    assert!(
        matches!(
            t,
            Tick::Restored {
                cause: Cause::Dns,
                ..
            }
        ),
        "{t:?}"
    );
    assert!(
        netd.table
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .contains("203.0.113.80 . tcp . 873 timeout 540s")
    );
    assert_eq!(restores(&db), 0);
    assert_eq!(events_of_kind(&db, "fence_restored"), 0);
    // The record follows the kernel, so this is not drift.
    let st = segment::status(&db, &cfg, later).unwrap();
    assert_eq!(st.state, segment::FenceState::Applied);
    assert!(!st.pending);
    // A new address is a change of the fence: audited.
    answer("203.0.113.81", later + ttl);
    let t = k.tick(&db, &cfg, later).unwrap();
    assert!(
        matches!(
            t,
            Tick::Restored {
                cause: Cause::Dns,
                ..
            }
        ),
        "{t:?}"
    );
    assert!(
        netd.table
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .contains("203.0.113.81 . tcp . 873")
    );
    assert_eq!(restores(&db), 1);
    assert_eq!(k.tick(&db, &cfg, later).unwrap(), Tick::Holding);
}

#[test]
fn without_timeouts_drops_only_element_timeouts() {
    assert_eq!(
        without_timeouts("a . b timeout 60s,\nc timeout 5s }\ntimeout 1h\nx timeout y"),
        "a . b,\nc }\ntimeout 1h\nx timeout y"
    );
}

#[test]
fn the_keeper_wakes_when_the_first_dns_answer_runs_out_within_its_bounds() {
    let every = std::time::Duration::from_secs(300);
    let at = |s: i64| now().checked_add(SignedDuration::from_secs(s)).unwrap();
    // No answers: the configured refresh.
    assert_eq!(next_wake([], now(), every).as_secs(), 300);
    // One second before the earliest expiry.
    assert_eq!(next_wake([at(200), at(61)], now(), every).as_secs(), 60);
    // Never more often than MIN_WAKE, never later than `every`.
    assert_eq!(next_wake([at(3)], now(), every), MIN_WAKE);
    assert_eq!(next_wake([at(-5)], now(), every), MIN_WAKE);
    assert_eq!(next_wake([at(9_000)], now(), every).as_secs(), 300);
    // A refresh shorter than MIN_WAKE is kept.
    let short = std::time::Duration::from_secs(4);
    assert_eq!(next_wake([at(2)], now(), short), short);
}

#[test]
fn expiries_are_those_of_the_named_answers_still_alive() {
    let (_d, db) = db();
    let row = |name: &str, address: &str, secs: i64| DnsRow {
        name: name.into(),
        address: address.into(),
        expires_at: now()
            .checked_add(SignedDuration::from_secs(secs))
            .unwrap()
            .to_string(),
        resolved_at: now().to_string(),
    };
    db.write_blocking(|tx| {
        q::replace_dns(
            tx,
            "backup.example.net",
            &[row("backup.example.net", "192.0.2.50", 40)],
        )?;
        q::replace_dns(
            tx,
            "gone.example.net",
            &[row("gone.example.net", "192.0.2.51", -1)],
        )?;
        q::replace_dns(
            tx,
            "other.example.net",
            &[row("other.example.net", "192.0.2.52", 7)],
        )
    })
    .unwrap();
    let names = vec![
        "Backup.Example.Net".to_string(),
        "gone.example.net".to_string(),
    ];
    let got = db
        .read_blocking(|c| dns_expiries(c, &names, now()))
        .unwrap();
    assert_eq!(
        got,
        vec![now().checked_add(SignedDuration::from_secs(40)).unwrap()]
    );
}
