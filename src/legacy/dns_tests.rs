use super::*;
use crate::legacy::hosts::tests::{agentless, db, now};

#[path = "dns_testserver.rs"]
mod testserver;
pub(crate) use testserver::{TestDns, Zone};

fn at(secs: i64) -> Timestamp {
    now().checked_add(SignedDuration::from_secs(secs)).unwrap()
}

fn stored(db: &Db, t: Timestamp) -> Vec<(String, String, String)> {
    db.read_blocking(|c| q::dns_live(c, &t.to_string()))
        .unwrap()
        .into_iter()
        .map(|r| (r.name, r.address, r.expires_at))
        .collect()
}

fn dns_events(db: &Db) -> Vec<(String, String)> {
    db.read_blocking(|c| crate::db::legacy_monitor::events_of(c, "legacy-db", 50))
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "dns_failed")
        .map(|e| (e.host, e.text))
        .collect()
}

async fn setup() -> (tempfile::TempDir, Db, TestDns, Resolver) {
    let (d, db) = db();
    agentless(&db, "legacy-db", "windows-server", "2012-r2");
    crate::legacy::flows_store::add_flow(
        &db,
        now(),
        "legacy-db",
        "out tcp peer.test port 443",
        "admin",
    )
    .unwrap();
    let dns = TestDns::start("127.0.0.1:0").await;
    let r = Resolver::with_servers(&[dns.addr], Duration::from_millis(400)).unwrap();
    (d, db, dns, r)
}

fn names() -> Vec<String> {
    vec!["peer.test".to_string()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_stored_with_their_ttl_a_and_aaaa_and_only_due_names_are_asked() {
    let (_d, db, dns, r) = setup().await;
    dns.set(
        "peer.test",
        Zone::Records(vec![
            ("192.0.2.20".parse().unwrap(), 2),
            ("2001:db8::20".parse().unwrap(), 60),
        ]),
    );
    let every = Duration::from_secs(30);
    let out = refresh_due(&db, &r, &names(), now(), every).await.unwrap();
    assert_eq!(
        out,
        DnsRefresh {
            changed: true,
            resolved: 1,
            failed: vec![]
        }
    );
    // TTL 2 is clamped to 5 s; AAAA keeps its 60 s.
    assert_eq!(
        stored(&db, now()),
        [
            (
                "peer.test".into(),
                "192.0.2.20".into(),
                "2026-12-07T12:00:05Z".into()
            ),
            (
                "peer.test".into(),
                "2001:db8::20".into(),
                "2026-12-07T12:01:00Z".into()
            ),
        ]
    );
    let answers = db
        .read_blocking(|c| crate::legacy::segment_input::dns_answers(c, now()))
        .unwrap();
    assert_eq!(answers["peer.test"].len(), 2);
    // Nothing expires within 1 s: nobody is asked, nothing changes.
    let asked = *dns.queries.lock().unwrap();
    let out = refresh_due(&db, &r, &names(), now(), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        out,
        DnsRefresh {
            changed: false,
            resolved: 0,
            failed: vec![]
        }
    );
    assert_eq!(*dns.queries.lock().unwrap(), asked);
    // 10 s later the A record has expired: asked again, new expiry; the gone address
    // leaves with the answer that no longer lists it.
    dns.set(
        "peer.test",
        Zone::Records(vec![("2001:db8::20".parse().unwrap(), 60)]),
    );
    let out = refresh_due(&db, &r, &names(), at(10), every).await.unwrap();
    assert!(out.changed && out.resolved == 1, "{out:?}");
    assert_eq!(
        stored(&db, at(10)),
        [(
            "peer.test".into(),
            "2001:db8::20".into(),
            "2026-12-07T12:01:10Z".into()
        )]
    );
    assert!(dns_events(&db).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_keeps_old_answers_until_they_expire_and_is_reported_once_per_streak() {
    let (_d, db, dns, r) = setup().await;
    dns.set(
        "peer.test",
        Zone::Records(vec![("192.0.2.20".parse().unwrap(), 20)]),
    );
    let every = Duration::from_secs(30);
    refresh_due(&db, &r, &names(), now(), every).await.unwrap();
    dns.set("peer.test", Zone::NxDomain);
    let out = refresh_due(&db, &r, &names(), at(5), every).await.unwrap();
    assert_eq!(
        out.failed,
        [(
            "peer.test".to_string(),
            "no such name (NXDOMAIN)".to_string()
        )]
    );
    assert!(!out.changed);
    assert_eq!(
        stored(&db, at(5)).len(),
        1,
        "the old answer stays until it expires"
    );
    refresh_due(&db, &r, &names(), at(6), every).await.unwrap();
    let ev = dns_events(&db);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(
        ev[0]
            .1
            .contains("peer.test could not be resolved (no such name (NXDOMAIN))"),
        "{}",
        ev[0].1
    );
    // Past its TTL the answer is pruned.
    let out = refresh_due(&db, &r, &names(), at(21), every).await.unwrap();
    assert!(out.changed && stored(&db, at(21)).is_empty(), "{out:?}");
    // It resolves again, then fails again: a new streak, a new event.
    dns.set(
        "peer.test",
        Zone::Records(vec![("192.0.2.21".parse().unwrap(), 20)]),
    );
    assert!(
        refresh_due(&db, &r, &names(), at(22), every)
            .await
            .unwrap()
            .failed
            .is_empty()
    );
    dns.set("peer.test", Zone::NxDomain);
    refresh_due(&db, &r, &names(), at(23), every).await.unwrap();
    assert_eq!(dns_events(&db).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_keeps_the_old_answers() {
    let (_d, db, dns, r) = setup().await;
    dns.set(
        "peer.test",
        Zone::Records(vec![("192.0.2.20".parse().unwrap(), 20)]),
    );
    let every = Duration::from_secs(30);
    refresh_due(&db, &r, &names(), now(), every).await.unwrap();
    let before = stored(&db, at(5));
    dns.set("peer.test", Zone::Silent);
    let started = std::time::Instant::now();
    let out = refresh_due(&db, &r, &names(), at(5), every).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(out.failed.len(), 1, "{out:?}");
    assert_ne!(out.failed[0].1, "no such name (NXDOMAIN)");
    assert_eq!(stored(&db, at(5)), before);
    assert_eq!(dns_events(&db).len(), 1);
}

#[test]
fn merge_keeps_the_failed_family() {
    let old = vec![
        DnsRow {
            name: "n".into(),
            address: "192.0.2.1".into(),
            expires_at: "2026-12-07T12:00:30Z".into(),
            resolved_at: "x".into(),
        },
        DnsRow {
            name: "n".into(),
            address: "2001:db8::1".into(),
            expires_at: "2026-12-07T12:00:30Z".into(),
            resolved_at: "x".into(),
        },
    ];
    let a = NameAnswer {
        v4: Ok(vec![("192.0.2.2".parse().unwrap(), 100)]),
        v6: Err("timed out".into()),
        nxdomain: false,
    };
    let (rows, why) = merge("n", &old, &a, now());
    let addrs: Vec<String> = rows.unwrap().into_iter().map(|r| r.address).collect();
    assert_eq!(addrs, ["192.0.2.2", "2001:db8::1"]);
    assert_eq!(why.as_deref(), Some("timed out"));
}
