//! Blocked flows: deltas, resets, the once-an-hour rule, directions and drop counters.

use super::*;
use crate::legacy::netd::Counter;
use crate::legacy::segment_input::InputHost;

fn t(mins: i64) -> Timestamp {
    "2026-12-07T12:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_mins(mins)
}

fn input() -> SegmentInput {
    SegmentInput {
        hosts: vec![InputHost {
            key: "legacy-db".into(),
            display: "legacy-db".into(),
            nft_name: "legacy-db".into(),
            addresses: vec!["198.51.100.7".parse().unwrap()],
            flows: vec![],
        }],
        sets: BTreeMap::new(),
    }
}

fn blocked(src: &str, dst: &str, proto: &str, port: Option<u16>, packets: u64) -> BlockedFlow {
    BlockedFlow {
        source: src.parse().unwrap(),
        destination: dst.parse().unwrap(),
        proto: proto.into(),
        port,
        packets,
        bytes: packets * 60,
    }
}

fn reading(blocked: Vec<BlockedFlow>, drop_out: u64) -> Counters {
    Counters {
        counters: vec![
            Counter {
                name: "drop_in_legacy-db".into(),
                packets: 0,
                bytes: 0,
            },
            Counter {
                name: "drop_out_legacy-db".into(),
                packets: drop_out,
                bytes: drop_out * 60,
            },
            Counter {
                name: "drop_out_gone".into(),
                packets: 5,
                bytes: 300,
            },
        ],
        blocked,
    }
}

fn texts(r: &BlockedReading) -> Vec<&str> {
    r.events.iter().map(|e| e.text.as_str()).collect()
}

#[test]
fn an_attempt_is_reported_at_once_then_at_most_hourly_with_deltas() {
    let mut tr = BlockedTracker::new();
    let out = |n| blocked("198.51.100.7", "192.0.2.10", "tcp", Some(445), n);
    let r = tr.observe(&input(), &reading(vec![out(37)], 37), t(0));
    assert_eq!(
        texts(&r),
        vec!["host legacy-db tried to reach 192.0.2.10:445 (tcp) 37 times in the last hour"]
    );
    assert_eq!(r.events[0].host, "legacy-db");
    assert_eq!(r.events[0].at, t(0));
    let d: serde_json::Value = serde_json::from_str(&r.events[0].detail).unwrap();
    assert_eq!(
        d,
        json!({"direction": "out", "peer": "192.0.2.10", "port": 445, "protocols": ["tcp"],
               "packets": 37, "since": null})
    );
    assert_eq!(r.dropped, BTreeMap::from([("legacy-db".to_string(), 37)]));
    // More packets within the hour: counted, not reported yet.
    let r = tr.observe(&input(), &reading(vec![out(40)], 40), t(10));
    assert!(r.events.is_empty());
    assert_eq!(r.dropped["legacy-db"], 3);
    let r = tr.observe(&input(), &reading(vec![out(50)], 50), t(59));
    assert!(r.events.is_empty());
    // Nothing new, nothing dropped.
    let r = tr.observe(&input(), &reading(vec![out(50)], 50), t(59));
    assert_eq!(r, BlockedReading::default());
    // The hour has passed: the 13 packets since the first event.
    let r = tr.observe(&input(), &reading(vec![out(51)], 51), t(60));
    assert_eq!(
        texts(&r),
        vec!["host legacy-db tried to reach 192.0.2.10:445 (tcp) 14 times in the last hour"]
    );
    let d: serde_json::Value = serde_json::from_str(&r.events[0].detail).unwrap();
    assert_eq!(d["since"], json!(t(0).to_string()));
    // Quiet for the next hour: no event.
    let r = tr.observe(&input(), &reading(vec![out(51)], 51), t(125));
    assert!(r.events.is_empty());
}

#[test]
fn a_smaller_count_is_a_reset_not_a_negative_delta() {
    let mut tr = BlockedTracker::new();
    let out = |n| blocked("198.51.100.7", "192.0.2.10", "udp", Some(53), n);
    tr.observe(&input(), &reading(vec![out(100)], 100), t(0));
    // The table was re-applied: counters start from zero again.
    let r = tr.observe(&input(), &reading(vec![out(4)], 4), t(61));
    assert_eq!(
        texts(&r),
        vec!["host legacy-db tried to reach 192.0.2.10:53 (udp) 4 times in the last hour"]
    );
    assert_eq!(r.dropped["legacy-db"], 4);
    // The element expired and came back: counted from zero as well.
    tr.observe(&input(), &reading(vec![], 4), t(70));
    let r = tr.observe(&input(), &reading(vec![out(1)], 5), t(125));
    assert_eq!(
        texts(&r),
        vec!["host legacy-db tried to reach 192.0.2.10:53 (udp) once in the last hour"]
    );
    assert_eq!(r.dropped["legacy-db"], 1);
}

#[test]
fn inbound_attempts_icmp_and_unknown_addresses() {
    let mut tr = BlockedTracker::new();
    let r = tr.observe(
        &input(),
        &reading(
            vec![
                blocked("192.0.2.50", "198.51.100.7", "tcp", Some(3389), 12),
                blocked("198.51.100.7", "203.0.113.9", "icmp", None, 2),
                // Neither end is a fenced host: not ours to report.
                blocked("192.0.2.1", "192.0.2.2", "tcp", Some(80), 9),
            ],
            0,
        ),
        t(0),
    );
    assert_eq!(
        texts(&r),
        vec![
            "host legacy-db tried to reach 203.0.113.9 (icmp) 2 times in the last hour",
            "192.0.2.50 tried to reach host legacy-db on port 3389 (tcp) 12 times in the last hour",
        ]
    );
    // An unknown counter (a host no longer in the applied input) is not attributed.
    assert!(r.dropped.is_empty());
}

#[test]
fn an_event_remembered_from_before_a_restart_delays_the_next() {
    let mut tr = BlockedTracker::new();
    tr.remember(
        "legacy-db",
        Way::Out,
        "192.0.2.10".parse().unwrap(),
        Some(445),
        t(-30),
    );
    let out = |n| blocked("198.51.100.7", "192.0.2.10", "tcp", Some(445), n);
    let r = tr.observe(&input(), &reading(vec![out(3)], 3), t(0));
    assert!(r.events.is_empty());
    let r = tr.observe(&input(), &reading(vec![out(3)], 3), t(30));
    assert_eq!(
        texts(&r),
        vec!["host legacy-db tried to reach 192.0.2.10:445 (tcp) 3 times in the last hour"]
    );
}
