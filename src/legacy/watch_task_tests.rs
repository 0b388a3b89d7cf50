//! The monitor task against real listeners on 127.0.0.1, a manual clock and a real
//! database; blocked flows through a fake `patchward-netd` on a unix socket.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use tokio::net::TcpListener;

use super::*;
use crate::clock::ManualClock;
use crate::db::legacy_registry::{AgentlessRow, insert_agentless};
use crate::db::legacy_segment::{AppliedRow, FlowRow};
use crate::legacy::hosts::tests::{db, now};
use crate::legacy::netd::{BlockedFlow, Counter, Response};
use crate::legacy::segment_input::InputHost;

fn cfg() -> LegacyConfig {
    LegacyConfig {
        monitor_timeout: Duration::from_millis(500),
        ..LegacyConfig::default()
    }
}

fn host(db: &Db, name: &str, address: &str, flow: &str) {
    db.write_blocking(|tx| {
        insert_agentless(
            tx,
            &AgentlessRow {
                name: name.into(),
                addresses: format!("[\"{address}\"]"),
                product: "windows-server".into(),
                cycle: "2012".into(),
                owner: "ops".into(),
                notes: String::new(),
                added_at: now().to_string(),
                added_by: "admin".into(),
            },
        )?;
        sq::insert_flow(
            tx,
            &FlowRow {
                host: name.into(),
                flow: flow.into(),
                added_at: now().to_string(),
                added_by: "admin".into(),
            },
        )
    })
    .unwrap();
}

/// A listener on 127.0.0.1 accepting (and closing) connections until aborted.
async fn listen(port: u16) -> tokio::task::JoinHandle<()> {
    let l = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(async move {
        loop {
            if let Ok((s, _)) = l.accept().await {
                drop(s);
            }
        }
    })
}

async fn stop(h: tokio::task::JoinHandle<()>) {
    h.abort();
    let _ = h.await;
}

async fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

fn state(db: &Db, host: &str) -> StateRow {
    db.read_blocking(|c| mq::state_of(c, host))
        .unwrap()
        .unwrap()
}

fn events(db: &Db, host: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = db
        .read_blocking(|c| mq::events_of(c, host, 100))
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.text))
        .collect();
    v.reverse();
    v
}

#[tokio::test]
async fn cycles_store_state_and_events_and_baselines_survive_a_restart() {
    let (_d, db) = db();
    let open = free_port().await;
    let later = free_port().await;
    host(
        &db,
        "legacy-db",
        "127.0.0.1",
        &format!("in tcp 192.0.2.0/24 port {open}"),
    );
    watch::add_port(&db, now(), "legacy-db", later, Some(false), "admin").unwrap();
    let l_open = listen(open).await;
    let clock = ManualClock::new(now());
    let mut task = db
        .read_blocking(|c| WatchTask::restore(c, &cfg(), now()))
        .unwrap();

    let s = task.cycle(&db, &clock).await.unwrap();
    assert_eq!((s.watched, s.unwatched, s.counts.pending), (1, 0, 1));
    let st = state(&db, "legacy-db");
    assert_eq!(
        (st.state.as_str(), st.address.as_str()),
        ("pending", "127.0.0.1")
    );
    assert_eq!(st.since, now().to_string());
    clock.advance(SignedDuration::from_mins(1));
    let s = task.cycle(&db, &clock).await.unwrap();
    assert_eq!(s.counts.up, 1);
    let st = state(&db, "legacy-db");
    let up_since = (now() + SignedDuration::from_mins(1)).to_string();
    assert_eq!(
        (st.state.as_str(), st.since.as_str()),
        ("up", up_since.as_str())
    );
    let mut want = vec![
        (
            open,
            PortBaseline {
                open: true,
                banner: None,
            },
        ),
        (
            later,
            PortBaseline {
                open: false,
                banner: None,
            },
        ),
    ];
    want.sort_by_key(|(p, _)| *p);
    assert_eq!(parse_baselines(&st.baselines), want);
    assert!(events(&db, "legacy-db").is_empty());

    // A new listener on a watched port: drift, reported at once.
    let l_later = listen(later).await;
    clock.advance(SignedDuration::from_mins(1));
    let s = task.cycle(&db, &clock).await.unwrap();
    assert_eq!(s.events, 1);
    assert_eq!(
        events(&db, "legacy-db"),
        vec![(
            "port_opened".to_string(),
            format!(
                "port {later} on host legacy-db (127.0.0.1) opened: it accepted a connection, \
                 and it was closed in the baseline"
            )
        )]
    );
    let st = state(&db, "legacy-db");
    assert_eq!(st.since, up_since, "the state did not change");

    // Restart: the baselines come back (both ports open), the state starts PENDING.
    drop(task);
    let t = clock.now();
    let mut task = db
        .read_blocking(|c| WatchTask::restore(c, &cfg(), t))
        .unwrap();
    stop(l_open).await;
    stop(l_later).await;
    for i in 1..=3 {
        clock.advance(SignedDuration::from_mins(1));
        let s = task.cycle(&db, &clock).await.unwrap();
        if i < 3 {
            assert_eq!(s.counts.pending, 1, "cycle {i}");
        } else {
            assert_eq!(s.counts.down, 1);
        }
    }
    let ev = events(&db, "legacy-db");
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(ev[1].0, "host_down");
    assert!(
        ev[1].1.starts_with(
            "host legacy-db (127.0.0.1) is DOWN: no watched port answered in 3 of the last 5 cycles"
        ),
        "{}",
        ev[1].1
    );
    let detail: Value = serde_json::from_str(
        &db.read_blocking(|c| mq::events_of(c, "legacy-db", 1))
            .unwrap()[0]
            .detail,
    )
    .unwrap();
    assert_eq!(detail["failed"], json!(3));
    assert_eq!(detail["address"], json!("127.0.0.1"));
    assert_eq!(state(&db, "legacy-db").state, "down");
    // No port_closed noise while the host answers nowhere, and the baselines were
    // restored (otherwise the first answered cycle would only set them).
    let l_open = listen(open).await;
    for _ in 0..2 {
        clock.advance(SignedDuration::from_mins(1));
        task.cycle(&db, &clock).await.unwrap();
    }
    stop(l_open).await;
    let ev = events(&db, "legacy-db");
    assert_eq!(
        ev.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        vec!["port_opened", "host_down", "host_up"]
    );
}

#[tokio::test]
async fn unwatched_hosts_lose_their_state_and_old_events_are_pruned_daily() {
    let (_d, db) = db();
    let clock = ManualClock::new(now());
    let old = |days: i64| (now() - SignedDuration::from_hours(24 * days)).to_string();
    db.write_blocking(|tx| {
        mq::put_state(
            tx,
            &StateRow {
                host: "gone".into(),
                address: "192.0.2.9".into(),
                state: "up".into(),
                since: old(3),
                last_cycle: old(1),
                baselines: "{}".into(),
            },
        )?;
        mq::insert_event(tx, "gone", &old(401), "host_down", "old", "{}")?;
        mq::insert_event(tx, "gone", &old(399), "host_down", "kept", "{}")
    })
    .unwrap();
    let mut task = db
        .read_blocking(|c| WatchTask::restore(c, &cfg(), now()))
        .unwrap();
    let s = task.cycle(&db, &clock).await.unwrap();
    assert_eq!((s.watched, s.pruned), (0, 1));
    assert!(
        db.read_blocking(|c| mq::state_of(c, "gone"))
            .unwrap()
            .is_none()
    );
    assert_eq!(
        events(&db, "gone"),
        vec![("host_down".to_string(), "kept".to_string())]
    );
    // Within the day: no second prune; a day later: pruned again.
    db.write_blocking(|tx| mq::insert_event(tx, "gone", &old(500), "host_down", "older", "{}"))
        .unwrap();
    clock.advance(SignedDuration::from_hours(1));
    assert_eq!(task.cycle(&db, &clock).await.unwrap().pruned, 0);
    clock.advance(SignedDuration::from_hours(23));
    assert_eq!(task.cycle(&db, &clock).await.unwrap().pruned, 1);
    assert_eq!(
        events(&db, "gone").len(),
        1,
        "399 days + 1 day old is still kept"
    );
}

/// A fake helper answering one `counters` request with `blocked` (drop counter `drops`).
fn fake_netd(path: &Path, blocked: Vec<BlockedFlow>, drops: u64) -> std::thread::JoinHandle<()> {
    let _ = std::fs::remove_file(path);
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        assert_eq!(line, "{\"op\":\"counters\"}\n");
        let answer = Response::Counters {
            counters: vec![Counter {
                name: "drop_out_legacy-db".into(),
                packets: drops,
                bytes: drops * 60,
            }],
            blocked,
        };
        let mut out = serde_json::to_vec(&answer).unwrap();
        out.push(b'\n');
        (&s).write_all(&out).unwrap();
    })
}

fn smb(packets: u64) -> Vec<BlockedFlow> {
    vec![BlockedFlow {
        source: "198.51.100.7".parse().unwrap(),
        destination: "192.0.2.10".parse().unwrap(),
        proto: "tcp".into(),
        port: Some(445),
        packets,
        bytes: packets * 60,
    }]
}

#[tokio::test]
async fn blocked_flows_come_from_the_helper_in_enforce_mode_only() {
    let (dir, db) = db();
    let socket = dir.path().join("netd.sock");
    let cfg = LegacyConfig {
        segment_mode: SegmentMode::Enforce,
        netd_socket: socket.clone(),
        ..cfg()
    };
    let input = SegmentInput {
        hosts: vec![InputHost {
            key: "legacy-db".into(),
            display: "legacy-db".into(),
            nft_name: "legacy-db".into(),
            addresses: vec!["198.51.100.7".parse().unwrap()],
            flows: vec!["in tcp 192.0.2.0/24 port 1433".parse().unwrap()],
        }],
        sets: BTreeMap::new(),
    };
    db.write_blocking(|tx| {
        sq::set_applied(
            tx,
            &AppliedRow {
                input: serde_json::to_string(&input).unwrap(),
                sha256: "00".repeat(32),
                applied_at: now().to_string(),
                applied_by: "admin".into(),
                reason: "test".into(),
            },
        )
    })
    .unwrap();
    let clock = ManualClock::new(now());
    let mut task = db
        .read_blocking(|c| WatchTask::restore(c, &cfg, now()))
        .unwrap();
    // The helper is absent: no events, one warning for the streak.
    let s = task.cycle(&db, &clock).await.unwrap();
    assert_eq!(s.blocked_events, 0);
    assert!(task.helper_warned);

    let server = fake_netd(&socket, smb(37), 37);
    clock.advance(SignedDuration::from_mins(1));
    let s = task.cycle(&db, &clock).await.unwrap();
    server.join().unwrap();
    assert_eq!(s.blocked_events, 1);
    assert!(!task.helper_warned);
    let stored = db
        .read_blocking(|c| mq::events_of(c, "legacy-db", 10))
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].kind, "blocked_flow");
    assert_eq!(
        stored[0].text,
        "host legacy-db tried to reach 192.0.2.10:445 (tcp) 37 times in the last hour"
    );
    assert_eq!(
        stored[0].at,
        (now() + SignedDuration::from_mins(1)).to_string()
    );

    // After a restart, the event stored 10 minutes ago still holds back the next one.
    clock.advance(SignedDuration::from_mins(10));
    let t = clock.now();
    let mut task = db
        .read_blocking(|c| WatchTask::restore(c, &cfg, t))
        .unwrap();
    let server = fake_netd(&socket, smb(50), 50);
    assert_eq!(task.cycle(&db, &clock).await.unwrap().blocked_events, 0);
    server.join().unwrap();

    // Export mode never asks the helper (no server is listening: it would fail).
    let export = LegacyConfig {
        segment_mode: SegmentMode::Export,
        ..cfg.clone()
    };
    let mut task = db
        .read_blocking(|c| WatchTask::restore(c, &export, t))
        .unwrap();
    clock.advance(SignedDuration::from_hours(2));
    assert_eq!(task.cycle(&db, &clock).await.unwrap().blocked_events, 0);
    assert!(!task.helper_warned);
}
