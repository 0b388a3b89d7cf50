use super::*;
use crate::legacy::hosts::tests::{agentless, db, enroll, now};

/// (flows, sets, audit entries, events): what a refused change must leave as it was.
fn state(db: &Db) -> (Vec<FlowRow>, Vec<SetRow>, i64, i64) {
    db.read_blocking(|c| {
        let a: i64 = c.query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0))?;
        let e: i64 = c.query_row("SELECT count(*) FROM legacy_events", [], |r| r.get(0))?;
        Ok::<_, crate::error::DbError>((q::flows_all(c)?, q::sets_all(c)?, a, e))
    })
    .unwrap()
}

fn refused(
    db: &Db,
    r: Result<impl std::fmt::Debug, LegacyError>,
    want: &str,
    before: &(Vec<FlowRow>, Vec<SetRow>, i64, i64),
) {
    let e = r.unwrap_err().to_string();
    assert!(e.contains(want), "{e}\n  wanted: {want}");
    assert_eq!(
        &state(db),
        before,
        "a refused change wrote something: {want}"
    );
}

fn last_audit(db: &Db) -> (String, String, serde_json::Value) {
    db.read_blocking(|c| {
        c.query_row(
            "SELECT action, subject, details FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    serde_json::from_str(&r.get::<_, String>(2)?).unwrap(),
                ))
            },
        )
        .map_err(crate::error::DbError::from)
    })
    .unwrap()
}

#[test]
fn flows_are_added_listed_and_removed_with_audit_and_events() {
    let (_d, db) = db();
    agentless(&db, "legacy-db", "windows-server", "2012-r2");
    define_set(
        &db,
        now(),
        "lan-clients",
        &["192.0.2.0/24".into(), "198.51.100.7".into()],
        "LAN",
        "admin",
    )
    .unwrap();
    let (h, f, added) = add_flow(
        &db,
        now(),
        "legacy-db",
        r#"in tcp @lan-clients port 1433 "ERP""#,
        "admin",
    )
    .unwrap();
    assert!(added);
    assert_eq!(h.key(), "legacy-db");
    assert_eq!(f.to_string(), r#"in tcp @lan-clients port 1433 "ERP""#);
    let (action, subject, details) = last_audit(&db);
    assert_eq!(
        (action.as_str(), subject.as_str()),
        ("legacy.flow_added", "legacy-db")
    );
    assert_eq!(details["flow"], r#"in tcp @lan-clients port 1433 "ERP""#);
    // The same flow again (spelled differently) changes nothing.
    let before = state(&db);
    let (_, _, again) = add_flow(
        &db,
        now(),
        "LEGACY-DB",
        r#"in  tcp @lan-clients ports 1433 "ERP""#,
        "bob",
    )
    .unwrap();
    assert!(!again);
    assert_eq!(state(&db), before);
    add_flow(
        &db,
        now(),
        "legacy-db",
        "out udp backup.example.net port 53",
        "admin",
    )
    .unwrap();
    let listed = db.read_blocking(|c| flows_of(c, &h)).unwrap();
    let texts: Vec<&str> = listed.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            r#"in tcp @lan-clients port 1433 "ERP""#,
            "out udp backup.example.net port 53"
        ]
    );
    assert_eq!(listed[0].added_by, "admin");
    // Removing without the comment finds it.
    let (_, gone) = remove_flow(
        &db,
        now(),
        "legacy-db",
        "in tcp @lan-clients port 1433",
        "admin",
    )
    .unwrap();
    assert_eq!(gone.comment, "ERP");
    assert_eq!(last_audit(&db).0, "legacy.flow_removed");
    let events = db
        .read_blocking(|c| crate::db::legacy_monitor::events_of(c, "legacy-db", 10))
        .unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["flow_removed", "flow_added", "flow_added"]);
    assert!(
        events[0].text.contains("in tcp @lan-clients port 1433"),
        "{}",
        events[0].text
    );
}

#[test]
fn bad_flows_are_refused_and_change_nothing() {
    let (_d, db) = db();
    agentless(&db, "legacy-db", "windows-server", "2012-r2");
    let trixie = enroll(&db, "trixie", "debian", "13");
    add_flow(
        &db,
        now(),
        "legacy-db",
        r#"in tcp 192.0.2.0/24 port 22 "admins""#,
        "admin",
    )
    .unwrap();
    let before = state(&db);
    for (host, flow, want) in [
        (
            "legacy-db",
            "sideways tcp 192.0.2.1 port 22",
            "invalid flow: unknown direction `sideways`",
        ),
        ("nosuch", "in tcp 192.0.2.1 port 22", "no host \"nosuch\""),
        (
            "trixie",
            "in tcp 192.0.2.1 port 22",
            "is an agent host on a supported OS",
        ),
        (
            "legacy-db",
            "in tcp @lan-clients port 1433",
            "no set @lan-clients is defined (none is defined); define it with `patchward legacy set add lan-clients CIDR...`",
        ),
        (
            "legacy-db",
            "in tcp 2001:db8::/32 port 22",
            "host `legacy-db`, flow `in tcp 2001:db8::/32 port 22`: the peer is IPv6 but the host has no IPv6 address",
        ),
        (
            "legacy-db",
            r#"in tcp 192.0.2.0/24 port 22 "other words""#,
            "already has this flow as `in tcp 192.0.2.0/24 port 22 \"admins\"`",
        ),
    ] {
        refused(
            &db,
            add_flow(&db, now(), host, flow, "admin"),
            want,
            &before,
        );
    }
    assert!(trixie.starts_with("h-") || !trixie.is_empty());
    refused(
        &db,
        remove_flow(
            &db,
            now(),
            "legacy-db",
            "in tcp 192.0.2.0/24 port 23",
            "admin",
        ),
        "host legacy-db has no flow `in tcp 192.0.2.0/24 port 23` (its flows: in tcp 192.0.2.0/24 port 22 \"admins\"",
        &before,
    );
}

#[test]
fn a_host_holds_at_most_max_flows() {
    let (_d, db) = db();
    agentless(&db, "legacy-db", "windows-server", "2012-r2");
    for p in 1..=MAX_FLOWS_PER_HOST {
        add_flow(
            &db,
            now(),
            "legacy-db",
            &format!("in tcp 192.0.2.1 port {p}"),
            "admin",
        )
        .unwrap();
    }
    let before = state(&db);
    refused(
        &db,
        add_flow(
            &db,
            now(),
            "legacy-db",
            "in tcp 192.0.2.1 port 9999",
            "admin",
        ),
        "too many flows (257): a host may have at most 256; remove one first",
        &before,
    );
}

#[test]
fn sets_are_validated_replaced_and_kept_while_used() {
    let (_d, db) = db();
    agentless(&db, "legacy-db", "windows-server", "2012-r2");
    define_set(
        &db,
        now(),
        "@lan-clients",
        &["192.0.2.0/24, 198.51.100.7".into(), "192.0.2.0/24".into()],
        "",
        "admin",
    )
    .unwrap();
    let (action, subject, details) = last_audit(&db);
    assert_eq!(
        (action.as_str(), subject.as_str()),
        ("legacy.set_defined", "set:lan-clients")
    );
    assert_eq!(
        details["members"],
        serde_json::json!(["192.0.2.0/24", "198.51.100.7/32"])
    );
    assert_eq!(details["replaced"], false);
    // Saying the same again writes nothing.
    let before = state(&db);
    define_set(
        &db,
        now(),
        "lan-clients",
        &["198.51.100.7/32".into(), "192.0.2.0/24".into()],
        "",
        "admin",
    )
    .unwrap();
    assert_eq!(state(&db), before);
    let too_many: Vec<String> = (0..1025u32)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
        .collect();
    for (name, members, comment, want) in [
        (
            "Bad Name",
            vec!["192.0.2.0/24".to_string()],
            "",
            "invalid set name: \"Bad Name\"",
        ),
        (
            "x",
            vec!["192.0.2.1/24".to_string()],
            "",
            "`192.0.2.1/24` has host bits set; did you mean 192.0.2.0/24?",
        ),
        (
            "x",
            vec!["printer".to_string()],
            "",
            "invalid set member: `printer` is not an address or CIDR",
        ),
        (
            "x",
            vec![" ".to_string()],
            "",
            "a set needs at least one address or CIDR",
        ),
        (
            "x",
            too_many,
            "",
            "1025 members; a set may have at most 1024",
        ),
        (
            "x",
            vec!["192.0.2.0/24".to_string()],
            "bell\u{7}",
            "invalid comment: contains a control character",
        ),
    ] {
        refused(
            &db,
            define_set(&db, now(), name, &members, comment, "admin"),
            want,
            &before,
        );
    }
    add_flow(
        &db,
        now(),
        "legacy-db",
        "in tcp @lan-clients port 445",
        "admin",
    )
    .unwrap();
    let before = state(&db);
    refused(
        &db,
        remove_set(&db, now(), "lan-clients", "admin"),
        "set @lan-clients is used by the flows of legacy-db; remove those flows first",
        &before,
    );
    refused(
        &db,
        remove_set(&db, now(), "nosuch", "admin"),
        "no set @nosuch is defined (defined: @lan-clients)",
        &before,
    );
    // Replacing keeps the flows and is audited as a replacement.
    define_set(
        &db,
        now(),
        "lan-clients",
        &["203.0.113.0/24".into()],
        "moved",
        "admin",
    )
    .unwrap();
    assert_eq!(last_audit(&db).2["replaced"], true);
    let sets = db.read_blocking(super::sets).unwrap();
    assert_eq!(
        sets[0].members,
        vec!["203.0.113.0/24".parse::<IpNet>().unwrap()]
    );
    remove_flow(
        &db,
        now(),
        "legacy-db",
        "in tcp @lan-clients port 445",
        "admin",
    )
    .unwrap();
    remove_set(&db, now(), "lan-clients", "admin").unwrap();
    let (action, subject, _) = last_audit(&db);
    assert_eq!(
        (action.as_str(), subject.as_str()),
        ("legacy.set_removed", "set:lan-clients")
    );
    assert!(db.read_blocking(super::sets).unwrap().is_empty());
}

#[test]
fn removing_a_legacy_host_removes_its_flows() {
    let (_d, db) = db();
    agentless(&db, "legacy-db", "windows-server", "2012-r2");
    add_flow(
        &db,
        now(),
        "legacy-db",
        "in tcp 192.0.2.0/24 port 22",
        "admin",
    )
    .unwrap();
    db.write_blocking(|tx| {
        crate::legacy::registry::remove(tx, now(), "legacy-db", "scrapped", "admin")
    })
    .unwrap();
    assert!(state(&db).0.is_empty());
    assert_eq!(last_audit(&db).2["flows"], 1);
}
