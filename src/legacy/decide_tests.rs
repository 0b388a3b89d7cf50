//! Tests of `legacy::decide`: every refusal names its cause and writes nothing.

use jiff::civil::date;

use super::*;
use crate::db::Db;
use crate::legacy::decisions::{AcceptanceStatus, acceptance_of, include_of};

fn db() -> (tempfile::TempDir, Db) {
    let d = tempfile::tempdir().unwrap();
    let db = Db::open(&d.path().join("t.db"), Default::default()).unwrap();
    (d, db)
}

fn now() -> Timestamp {
    "2026-12-07T10:00:00Z".parse().unwrap()
}

fn agent() -> HostRef {
    HostRef::Agent {
        id: "h-0001".into(),
        hostname: "web1".into(),
    }
}

fn agentless() -> HostRef {
    HostRef::Agentless {
        name: "old-printer".into(),
    }
}

fn req(controls: &[&str], until: Date) -> AcceptRequest {
    AcceptRequest {
        reason: "vendor app only runs here; replacement in Q3".into(),
        controls: controls.iter().map(|c| c.to_string()).collect(),
        until,
    }
}

/// Rows of a table, each column as text.
type Rows = Vec<Vec<String>>;

/// Everything the decisions touch: both tables and the audit log (actor, action,
/// subject).
fn state(db: &Db) -> (Rows, Rows, Vec<(String, String, String)>) {
    db.read_blocking(|c| {
        let rows = |sql: &str, n: usize| -> Result<Rows, LegacyError> {
            let mut st = c.prepare(sql)?;
            let v = st
                .query_map([], |r| {
                    (0..n)
                        .map(|i| {
                            r.get::<_, rusqlite::types::Value>(i)
                                .map(|v| format!("{v:?}"))
                        })
                        .collect::<Result<Vec<_>, _>>()
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(v)
        };
        let acc = rows("SELECT * FROM legacy_acceptances ORDER BY host", 7)?;
        let inc = rows("SELECT * FROM legacy_includes ORDER BY host", 4)?;
        let mut st = c.prepare("SELECT actor, action, subject FROM audit_log ORDER BY seq")?;
        let audit = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, LegacyError>((acc, inc, audit))
    })
    .unwrap()
}

/// Runs `f` in a write transaction, expecting a refusal whose text contains `needle`,
/// and checks that nothing changed.
fn refused(db: &Db, needle: &str, f: impl FnOnce(&Transaction<'_>) -> Result<(), LegacyError>) {
    let before = state(db);
    let err = db.write_blocking(f).unwrap_err().to_string();
    assert!(err.contains(needle), "{err:?} should contain {needle:?}");
    assert_eq!(state(db), before, "a refusal changed state: {err}");
}

fn last_audit(db: &Db) -> (String, String, String, serde_json::Value) {
    db.read_blocking(|c| {
        c.query_row(
            "SELECT actor, action, subject, details FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| {
                let d: String = r.get(3)?;
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    serde_json::from_str(&d).unwrap(),
                ))
            },
        )
        .map_err(LegacyError::from)
    })
    .unwrap()
}

#[test]
fn controls_come_from_the_vocabulary() {
    assert_eq!(
        parse_controls(" Segmented, monitored,,segmented ").unwrap(),
        vec!["segmented", "monitored"]
    );
    for required in [
        "segmented",
        "monitored",
        "isolated-vlan",
        "no-internet",
        "backup-verified",
        "vendor-extended-support",
        "app-firewall",
    ] {
        assert_eq!(parse_controls(required).unwrap(), vec![required]);
    }
    let e = parse_controls("segmented,firewalled")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown control \"firewalled\""), "{e}");
    assert!(e.contains("isolated-vlan, no-internet"), "{e}");
    let e = parse_controls(" , ").unwrap_err().to_string();
    assert!(e.contains("at least one compensating control"), "{e}");
}

#[test]
fn accept_records_replaces_and_revokes_with_audit() {
    let (_d, db) = db();
    let cfg = LegacyConfig::default();
    let host = agent();
    db.write_blocking(|tx| {
        accept(
            tx,
            now(),
            &cfg,
            &host,
            &req(&["segmented"], date(2027, 3, 1)),
            "alice",
        )
    })
    .unwrap();
    let a = db
        .read_blocking(|c| acceptance_of(c, "h-0001"))
        .unwrap()
        .unwrap();
    assert_eq!(a.controls, vec!["segmented"]);
    assert_eq!(a.until.to_string(), "2027-03-01T00:00:00Z");
    assert_eq!((a.actor.as_str(), a.expiry_audited), ("alice", false));
    assert_eq!(
        AcceptanceStatus::of(Some(&a), now()),
        AcceptanceStatus::Accepted
    );
    let (actor, action, subject, details) = last_audit(&db);
    assert_eq!(
        (actor.as_str(), action.as_str(), subject.as_str()),
        ("alice", "legacy.accept", "h-0001")
    );
    assert_eq!(details["until"], "2027-03-01");
    assert!(details.get("replaces").is_none());

    // A second acceptance replaces the first; the audit entry shows the old expiry.
    db.write_blocking(|tx| {
        accept(
            tx,
            now(),
            &cfg,
            &host,
            &req(&["monitored", "no-internet"], date(2027, 6, 1)),
            "bob",
        )
    })
    .unwrap();
    let (_, action, _, details) = last_audit(&db);
    assert_eq!(action, "legacy.accept");
    assert_eq!(details["replaces"]["ends_at"], "2027-03-01T00:00:00Z");
    assert_eq!(details["replaces"]["accepted_by"], "alice");
    let a = db
        .read_blocking(|c| acceptance_of(c, "h-0001"))
        .unwrap()
        .unwrap();
    assert_eq!(a.controls, vec!["monitored", "no-internet"]);

    db.write_blocking(|tx| revoke_acceptance(tx, now(), &host, "host replaced", "carol"))
        .unwrap();
    assert!(
        db.read_blocking(|c| acceptance_of(c, "h-0001"))
            .unwrap()
            .is_none()
    );
    let (actor, action, subject, details) = last_audit(&db);
    assert_eq!(
        (actor.as_str(), action.as_str(), subject.as_str()),
        ("carol", "legacy.revoke_acceptance", "h-0001")
    );
    assert_eq!(details["reason"], "host replaced");
    assert_eq!(details["revoked"]["ends_at"], "2027-06-01T00:00:00Z");
}

#[test]
fn bad_acceptances_are_refused_and_change_nothing() {
    let (_d, db) = db();
    let cfg = LegacyConfig::default();
    let host = agentless();
    // One stored acceptance, so "nothing changed" also covers a replacement attempt.
    db.write_blocking(|tx| {
        accept(
            tx,
            now(),
            &cfg,
            &host,
            &req(&["segmented"], date(2027, 1, 1)),
            "alice",
        )
    })
    .unwrap();
    let ok = req(&["segmented"], date(2027, 6, 1));
    let with = |f: &dyn Fn(&mut AcceptRequest)| {
        let mut r = ok.clone();
        f(&mut r);
        r
    };
    let cases: Vec<(AcceptRequest, &str)> = vec![
        (with(&|r| r.reason = "  ".into()), "a reason is required"),
        (
            with(&|r| r.reason = "x".repeat(501)),
            "501 characters is too long (at most 500)",
        ),
        (
            with(&|r| r.controls.clear()),
            "at least one compensating control",
        ),
        (
            with(&|r| r.controls = vec!["prayer".into()]),
            "unknown control \"prayer\"",
        ),
        (
            with(&|r| r.until = date(2026, 12, 7)),
            "2026-12-07 is not after today (2026-12-07, UTC)",
        ),
        (with(&|r| r.until = date(2025, 1, 1)), "is not after today"),
        (
            with(&|r| r.until = date(2027, 12, 8)),
            "more than legacy.max_acceptance_days (365) days away: the latest allowed date is 2027-12-07",
        ),
    ];
    for (r, needle) in cases {
        refused(&db, needle, |tx| accept(tx, now(), &cfg, &host, &r, "bob"));
    }
    // The latest allowed date itself is accepted; a shorter maximum moves it.
    db.write_blocking(|tx| {
        accept(
            tx,
            now(),
            &cfg,
            &host,
            &with(&|r| r.until = date(2027, 12, 7)),
            "bob",
        )
    })
    .unwrap();
    let short = LegacyConfig {
        max_acceptance_days: 30,
        ..cfg.clone()
    };
    refused(&db, "the latest allowed date is 2027-01-06", |tx| {
        accept(
            tx,
            now(),
            &short,
            &host,
            &with(&|r| r.until = date(2027, 1, 7)),
            "bob",
        )
    });
}

#[test]
fn revoke_needs_an_acceptance_and_a_reason() {
    let (_d, db) = db();
    let host = agent();
    refused(&db, "web1 has no risk acceptance to revoke", |tx| {
        revoke_acceptance(tx, now(), &host, "gone", "alice")
    });
    db.write_blocking(|tx| {
        accept(
            tx,
            now(),
            &LegacyConfig::default(),
            &host,
            &req(&["monitored"], date(2027, 1, 1)),
            "alice",
        )
    })
    .unwrap();
    refused(&db, "a reason is required", |tx| {
        revoke_acceptance(tx, now(), &host, "", "alice")
    });
}

#[test]
fn include_and_exclude_round_trip_for_agent_hosts_only() {
    let (_d, db) = db();
    let host = agent();
    refused(
        &db,
        "web1 is not included, so there is nothing to exclude",
        |tx| exclude(tx, now(), &host, "why", "alice"),
    );
    refused(&db, "a reason is required", |tx| {
        include(tx, now(), &host, " ", "alice")
    });
    refused(
        &db,
        "old-printer is an agentless host: Patchward never offers patches to a host without an agent",
        |tx| include(tx, now(), &agentless(), "please", "alice"),
    );
    db.write_blocking(|tx| include(tx, now(), &host, "tested on a clone", "alice"))
        .unwrap();
    let inc = db
        .read_blocking(|c| include_of(c, "h-0001"))
        .unwrap()
        .unwrap();
    assert_eq!(
        (inc.reason.as_str(), inc.actor.as_str()),
        ("tested on a clone", "alice")
    );
    let (actor, action, subject, details) = last_audit(&db);
    assert_eq!(
        (actor.as_str(), action.as_str(), subject.as_str()),
        ("alice", "legacy.include", "h-0001")
    );
    assert_eq!(details["reason"], "tested on a clone");
    refused(
        &db,
        "web1 is already included (by alice at 2026-12-07T10:00:00Z: tested on a clone)",
        |tx| include(tx, now(), &host, "again", "bob"),
    );
    db.write_blocking(|tx| exclude(tx, now(), &host, "clone broke", "bob"))
        .unwrap();
    assert!(
        db.read_blocking(|c| include_of(c, "h-0001"))
            .unwrap()
            .is_none()
    );
    let (actor, action, _, details) = last_audit(&db);
    assert_eq!((actor.as_str(), action.as_str()), ("bob", "legacy.exclude"));
    assert_eq!(details["included"]["reason"], "tested on a clone");
}

#[test]
fn expiry_is_audited_once_on_a_manual_clock() {
    use crate::clock::{Clock, ManualClock};
    let (_d, db) = db();
    let clock = ManualClock::new(now());
    let cfg = LegacyConfig::default();
    db.write_blocking(|tx| {
        accept(
            tx,
            clock.now(),
            &cfg,
            &agent(),
            &req(&["segmented"], date(2026, 12, 9)),
            "alice",
        )?;
        accept(
            tx,
            clock.now(),
            &cfg,
            &agentless(),
            &req(&["monitored"], date(2027, 2, 1)),
            "alice",
        )
    })
    .unwrap();
    let audited = |db: &Db| state(db).2.len();
    let before = audited(&db);
    assert_eq!(
        db.write_blocking(|tx| expire_due(tx, clock.now())).unwrap(),
        0
    );
    // One second before the start of 2026-12-09: still accepted.
    clock.set("2026-12-08T23:59:59Z".parse().unwrap());
    assert_eq!(
        db.write_blocking(|tx| expire_due(tx, clock.now())).unwrap(),
        0
    );
    clock.set("2026-12-09T00:00:00Z".parse().unwrap());
    assert_eq!(
        db.write_blocking(|tx| expire_due(tx, clock.now())).unwrap(),
        1
    );
    assert_eq!(audited(&db), before + 1);
    let (actor, action, subject, details) = last_audit(&db);
    assert_eq!(
        (actor.as_str(), action.as_str(), subject.as_str()),
        ("system", "legacy.acceptance_expired", "h-0001")
    );
    assert_eq!(details["ended_at"], "2026-12-09T00:00:00Z");
    let a = db
        .read_blocking(|c| acceptance_of(c, "h-0001"))
        .unwrap()
        .unwrap();
    assert!(a.expiry_audited);
    assert_eq!(
        AcceptanceStatus::of(Some(&a), clock.now()),
        AcceptanceStatus::Expired
    );
    // Idempotent: later runs add nothing until the next one ends.
    clock.set("2026-12-10T00:00:00Z".parse().unwrap());
    assert_eq!(
        db.write_blocking(|tx| expire_due(tx, clock.now())).unwrap(),
        0
    );
    assert_eq!(audited(&db), before + 1);
    // A new acceptance of the same host clears the flag, so its own expiry is audited.
    db.write_blocking(|tx| {
        accept(
            tx,
            clock.now(),
            &cfg,
            &agent(),
            &req(&["segmented"], date(2026, 12, 11)),
            "alice",
        )
    })
    .unwrap();
    clock.set("2026-12-11T00:00:00Z".parse().unwrap());
    assert_eq!(
        db.write_blocking(|tx| expire_due(tx, clock.now())).unwrap(),
        1
    );
}
