//! Tests of the monitor's daemon edge: targets, views, and add/remove-port with their
//! refusals (error text and unchanged state) and audit entries.

use super::*;
use crate::db::legacy_segment::FlowRow;
use crate::legacy::hosts::tests::{agentless, db, enroll, now};

fn flow(db: &Db, host: &str, text: &str) {
    let f: Flow = text.parse().unwrap();
    db.write_blocking(|tx| {
        sq::insert_flow(
            tx,
            &FlowRow {
                host: host.into(),
                flow: f.to_string(),
                added_at: now().to_string(),
                added_by: "admin".into(),
            },
        )
    })
    .unwrap();
}

fn ports(db: &Db, host: &str) -> Vec<(u16, bool)> {
    db.read_blocking(|c| mq::ports_of(c, host))
        .unwrap()
        .into_iter()
        .map(|p| (p.port, p.banner))
        .collect()
}

fn audit(db: &Db) -> Vec<(String, String, serde_json::Value)> {
    db.read_blocking(|c| {
        let mut st = c.prepare(
            "SELECT action, subject, details FROM audit_log WHERE action LIKE 'legacy.monitor%'
             ORDER BY seq",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                serde_json::from_str(&r.get::<_, String>(2)?).unwrap(),
            ))
        })?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(crate::error::DbError::from)
    })
    .unwrap()
}

fn pv(port: u16, source: &'static str, banner: bool) -> WatchedPortView {
    WatchedPortView {
        port,
        source,
        banner,
    }
}

#[test]
fn probe_address_prefers_the_first_usable_ipv4() {
    assert_eq!(
        probe_address(&["2001:db8::7", "192.0.2.10", "198.51.100.1"]),
        Some("192.0.2.10".parse().unwrap())
    );
    assert_eq!(
        probe_address(&["127.0.0.1", "fe80::1", "10.0.0.5/24"]),
        Some("10.0.0.5".parse().unwrap())
    );
    assert_eq!(
        probe_address(&["fe80::1", "2001:db8::7/64"]),
        Some("2001:db8::7".parse().unwrap())
    );
    assert_eq!(
        probe_address(&["::1", "127.0.0.2", "2001:db8::8"]),
        Some("2001:db8::8".parse().unwrap())
    );
    assert_eq!(
        probe_address(&["::1", "127.0.0.2"]),
        Some("127.0.0.2".parse().unwrap())
    );
    assert_eq!(probe_address(&["0.0.0.0", "ff02::1", "nonsense"]), None);
    assert_eq!(probe_address::<&str>(&[]), None);
}

#[test]
fn watched_ports_are_single_tcp_in_ports_plus_added_ones() {
    let flows: Vec<Flow> = [
        "in tcp 192.0.2.0/24 port 22,445,8000-8010",
        "in udp 192.0.2.0/24 port 161",
        "out tcp 198.51.100.7 port 25",
        "in icmp 192.0.2.0/24",
        "in tcp @lan-clients port 445,3389",
    ]
    .iter()
    .map(|t| t.parse().unwrap())
    .collect();
    let added = vec![
        PortRow {
            host: "h".into(),
            port: 22,
            banner: false,
            added_at: now().to_string(),
            added_by: "admin".into(),
        },
        PortRow {
            host: "h".into(),
            port: 9100,
            banner: true,
            added_at: now().to_string(),
            added_by: "admin".into(),
        },
    ];
    assert_eq!(
        watched_ports(&flows, &added),
        vec![
            pv(22, "added", false),
            pv(445, "flow", false),
            pv(3389, "flow", false),
            pv(9100, "added", true),
        ]
    );
    assert_eq!(
        watched_ports(&flows[..1], &[]),
        vec![pv(22, "flow", true), pv(445, "flow", false)]
    );
}

#[test]
fn views_show_watched_pending_unwatched_and_stored_states() {
    let (_d, db) = db();
    agentless(&db, "legacy-db", "windows-server", "2012");
    agentless(&db, "printer", "windows-server", "2012");
    agentless(&db, "ranges-only", "windows-server", "2012");
    let agent = enroll(&db, "web1", "debian", "10");
    flow(&db, "legacy-db", "in tcp 192.0.2.0/24 port 1433");
    flow(&db, "ranges-only", "in tcp 192.0.2.0/24 port 8000-8010");
    flow(&db, &agent, "in tcp 192.0.2.0/24 port 22");
    db.write_blocking(|tx| {
        mq::put_state(
            tx,
            &mq::StateRow {
                host: agent.clone(),
                address: "10.0.0.5".into(),
                state: "down".into(),
                since: "2026-12-07T11:00:00Z".into(),
                last_cycle: "2026-12-07T11:59:00Z".into(),
                baselines: "{}".into(),
            },
        )
    })
    .unwrap();
    let cfg = LegacyConfig::default();
    let v = db.read_blocking(|c| views(c, now(), &cfg)).unwrap();
    assert_eq!(
        v.keys().cloned().collect::<Vec<_>>(),
        vec![
            agent.clone(),
            "legacy-db".into(),
            "printer".into(),
            "ranges-only".into()
        ]
    );
    assert_eq!(
        v["legacy-db"],
        MonitorView {
            state: "pending".into(),
            since: None,
            last_cycle: None,
            ports: vec![pv(1433, "flow", false)],
        }
    );
    assert_eq!(v["printer"].state, "unwatched");
    assert_eq!(v["ranges-only"].state, "unwatched");
    assert!(v["ranges-only"].ports.is_empty());
    assert_eq!(
        v[&agent],
        MonitorView {
            state: "down".into(),
            since: Some("2026-12-07T11:00:00Z".into()),
            last_cycle: Some("2026-12-07T11:59:00Z".into()),
            ports: vec![pv(22, "flow", true)],
        }
    );
    let p = db.read_blocking(|c| plan(c, now(), &cfg)).unwrap();
    let targets: Vec<Target> = p.iter().filter_map(HostWatch::target).collect();
    assert_eq!(targets.len(), 2);
    assert_eq!(targets[0].name, agent);
    assert_eq!(targets[0].addr, "10.0.0.5".parse::<IpAddr>().unwrap());
    assert_eq!(targets[1].name, "legacy-db");
    assert_eq!(targets[1].addr, "192.0.2.10".parse::<IpAddr>().unwrap());
    let printer = p.iter().find(|h| h.key == "printer").unwrap();
    let hint = unwatched_hint(printer).unwrap();
    assert!(
        hint.contains("no watched port") && hint.contains("legacy monitor add-port printer"),
        "{hint}"
    );
    assert_eq!(unwatched_hint(&p[0]), None);
}

#[test]
fn add_port_watches_it_audited_and_refuses_bad_input_changing_nothing() {
    let (_d, db) = db();
    agentless(&db, "legacy-db", "windows-server", "2012");
    let h = add_port(&db, now(), "Legacy-DB", 22, None, "alice").unwrap();
    assert_eq!(h.key(), "legacy-db");
    assert_eq!(ports(&db, "legacy-db"), vec![(22, true)]);
    add_port(&db, now(), "legacy-db", 9100, Some(true), "alice").unwrap();
    // Changing the banner flag is a change, audited with what it replaces.
    add_port(&db, now(), "legacy-db", 22, Some(false), "bob").unwrap();
    assert_eq!(ports(&db, "legacy-db"), vec![(22, false), (9100, true)]);
    let a = audit(&db);
    assert_eq!(a.len(), 3);
    assert_eq!(a[0].0, "legacy.monitor_add_port");
    assert_eq!(a[0].1, "legacy-db");
    assert_eq!(
        a[0].2,
        json!({"host": "legacy-db", "port": 22, "banner": true})
    );
    assert_eq!(
        a[2].2["replaces"],
        json!({"banner": true, "added_by": "alice"})
    );

    let e = add_port(&db, now(), "legacy-db", 22, Some(false), "bob").unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "port 22 of legacy-db is already watched (banner off, added by bob at {}); \
             nothing changed",
            now()
        )
    );
    let e = add_port(&db, now(), "legacy-db", 0, None, "bob").unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid port: 0 is not a TCP port: give one from 1 to 65535"
    );
    let e = add_port(&db, now(), "legacy-dbx", 22, None, "bob").unwrap_err();
    assert!(
        e.to_string().starts_with("no host \"legacy-dbx\"") && e.to_string().contains("legacy-db"),
        "{e}"
    );
    assert_eq!(ports(&db, "legacy-db"), vec![(22, false), (9100, true)]);
    assert_eq!(audit(&db).len(), 3);
}

#[test]
fn remove_port_takes_only_added_ports() {
    let (_d, db) = db();
    agentless(&db, "legacy-db", "windows-server", "2012");
    flow(&db, "legacy-db", "in tcp 192.0.2.0/24 port 445 \"smb\"");
    add_port(&db, now(), "legacy-db", 22, None, "alice").unwrap();
    let e = remove_port(&db, now(), "legacy-db", 445, "bob").unwrap_err();
    assert_eq!(
        e.to_string(),
        "port 445 of legacy-db is watched because of its flow `in tcp 192.0.2.0/24 port 445 \
         \"smb\"`, not added by hand: remove that flow to stop watching it"
    );
    let e = remove_port(&db, now(), "legacy-db", 23, "bob").unwrap_err();
    assert_eq!(
        e.to_string(),
        "port 23 of legacy-db was not added to the monitor; added ports: 22"
    );
    let e = remove_port(&db, now(), "nobody", 22, "bob").unwrap_err();
    assert!(e.to_string().starts_with("no host \"nobody\""), "{e}");
    assert_eq!(ports(&db, "legacy-db"), vec![(22, true)]);
    assert_eq!(audit(&db).len(), 1);

    let h = remove_port(&db, now(), "legacy-db", 22, "bob").unwrap();
    assert_eq!(h.display_name(), "legacy-db");
    assert!(ports(&db, "legacy-db").is_empty());
    let a = audit(&db);
    assert_eq!(a[1].0, "legacy.monitor_remove_port");
    assert_eq!(a[1].2["port"], json!(22));
    assert_eq!(a[1].2["added_by"], json!("alice"));
    let e = remove_port(&db, now(), "legacy-db", 22, "bob").unwrap_err();
    assert_eq!(
        e.to_string(),
        "port 22 of legacy-db was not added to the monitor; added ports: none"
    );
}
