//! Table tests of the monitor's state machine: every transition, the exact thresholds,
//! flapping, and port drift.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::*;

const ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

fn t0() -> Timestamp {
    "2026-12-07T12:00:00Z".parse().unwrap()
}

fn at(cycle: usize) -> Timestamp {
    t0() + SignedDuration::from_secs(60 * cycle as i64)
}

fn open() -> ProbeOutcome {
    ProbeOutcome::Open {
        latency: Duration::from_millis(1),
        banner_hash: None,
    }
}

fn open_with(banner: &str) -> ProbeOutcome {
    ProbeOutcome::Open {
        latency: Duration::from_millis(1),
        banner_hash: Some(BannerHash::of_first_line(banner.as_bytes())),
    }
}

/// One watched port; each character of `cycles` is a cycle: `o` open, `r` refused,
/// `t` timed out, `u` unreachable. Returns the state after each cycle (`U`, `P`, `D`)
/// and the events as (cycle index, kind name).
fn run(thresholds: Thresholds, cycles: &str) -> (String, Vec<(usize, &'static str)>) {
    let mut host = HostTracker::new("legacy-db", ADDR, thresholds);
    let mut states = String::new();
    let mut events = Vec::new();
    for (i, c) in cycles.chars().enumerate() {
        let outcome = match c {
            'o' => open(),
            'r' => ProbeOutcome::Refused,
            't' => ProbeOutcome::Timeout,
            'u' => ProbeOutcome::Unreachable("No route to host".into()),
            other => panic!("unknown cycle {other:?}"),
        };
        for e in host.observe(&[PortProbe { port: 22, outcome }], at(i)) {
            assert_eq!(e.at, at(i));
            events.push((i, e.kind.name()));
        }
        states.push(match host.state() {
            HostState::Up => 'U',
            HostState::Pending => 'P',
            HostState::Down => 'D',
        });
    }
    (states, events)
}

/// (what, thresholds, cycles, states after each cycle, events).
type Case<'a> = (
    &'a str,
    Thresholds,
    &'a str,
    &'a str,
    &'a [(usize, &'a str)],
);

#[test]
fn host_transitions() {
    let d = Thresholds::default(); // 3 of 5, 2 to recover
    let one = Thresholds::new(1, 1, 1).unwrap();
    let cases: &[Case] = &[
        ("a new host is PENDING until confirmed", d, "oo", "PU", &[]),
        ("one lost SYN raises no alert", d, "ooroo", "PUPPU", &[]),
        ("timeout and unreachable fail too", d, "ootuo", "PUPPP", &[]),
        (
            "3 failed in a row is DOWN",
            d,
            "oorrr",
            "PUPPD",
            &[(4, "host_down")],
        ),
        ("2 failed is only PENDING", d, "oorr", "PUPP", &[]),
        (
            "a new host that never answers goes DOWN",
            d,
            "rrr",
            "PPD",
            &[(2, "host_down")],
        ),
        (
            "DOWN stays DOWN until 2 answers in a row",
            d,
            "oorrrrouo",
            "PUPPDDDDD",
            &[(4, "host_down")],
        ),
        (
            "UP again after the recovery threshold",
            d,
            "oorrroo",
            "PUPPDDU",
            &[(4, "host_down"), (6, "host_up")],
        ),
        (
            "3 of 5 not in a row is DOWN",
            d,
            "oorroor",
            "PUPPPUD",
            &[(6, "host_down")],
        ),
        (
            "failures older than the window do not count",
            d,
            "oorroooor",
            "PUPPPUUUP",
            &[],
        ),
        (
            "flapping: every other cycle fails",
            d,
            "oororor",
            "PUPPPPD",
            &[(6, "host_down")],
        ),
        (
            "flapping while DOWN does not bring it UP",
            d,
            "oorrrororoo",
            "PUPPDDDDDDU",
            &[(4, "host_down"), (10, "host_up")],
        ),
        (
            "after recovery the window starts afresh",
            d,
            "oorrroorr",
            "PUPPDDUPP",
            &[(4, "host_down"), (6, "host_up")],
        ),
        (
            "1 of 1: every failure is DOWN, every answer UP",
            one,
            "orror",
            "UDDUD",
            &[(1, "host_down"), (3, "host_up"), (4, "host_down")],
        ),
        (
            "recovery needs answers in a row",
            Thresholds::new(2, 3, 3).unwrap(),
            "rrooroooo",
            "PDDDDDDUU",
            &[(1, "host_down"), (7, "host_up")],
        ),
    ];
    for (what, thresholds, cycles, states, events) in cases {
        let (got_states, got_events) = run(*thresholds, cycles);
        assert_eq!(&got_states, states, "{what}: states for {cycles}");
        assert_eq!(&got_events, events, "{what}: events for {cycles}");
    }
}

#[test]
fn the_window_can_be_64_cycles() {
    let t = Thresholds::new(64, 64, 1).unwrap();
    let cycles = format!("o{}", "r".repeat(64));
    let (states, events) = run(t, &cycles);
    assert_eq!(&states[..64], &format!("U{}", "P".repeat(63)));
    assert_eq!(events, vec![(64, "host_down")]);
}

#[test]
fn thresholds_are_checked_with_actionable_errors() {
    let cases = [
        (
            Thresholds::new(0, 5, 2),
            "monitor fail_n is 0: it must be at least 1 (the number of failed cycles, out of \
             window_m, that marks a host DOWN)",
        ),
        (
            Thresholds::new(3, 2, 2),
            "monitor window_m is 2: it must be between fail_n (3) and 64 (the number of \
             recent cycles fail_n is counted in)",
        ),
        (
            Thresholds::new(3, 65, 2),
            "monitor window_m is 65: it must be between fail_n (3) and 64 (the number of \
             recent cycles fail_n is counted in)",
        ),
        (
            Thresholds::new(3, 5, 0),
            "monitor recover_n is 0: it must be at least 1 (the answered cycles in a row \
             that bring a DOWN host UP again)",
        ),
    ];
    for (result, text) in cases {
        assert_eq!(result.unwrap_err().to_string(), text);
    }
    let ok = Thresholds::new(3, 5, 2).unwrap();
    assert_eq!((ok.fail_n(), ok.window_m(), ok.recover_n()), (3, 5, 2));
    assert_eq!(ok, Thresholds::default());
}

/// Cycles over several ports: each cycle is a list of (port, outcome).
fn drift(cycles: &[&[(u16, ProbeOutcome)]]) -> Vec<(usize, EventKind)> {
    let mut host = HostTracker::new("legacy-db", ADDR, Thresholds::default());
    drift_on(&mut host, cycles)
}

fn drift_on(host: &mut HostTracker, cycles: &[&[(u16, ProbeOutcome)]]) -> Vec<(usize, EventKind)> {
    let mut out = Vec::new();
    for (i, cycle) in cycles.iter().enumerate() {
        let probes: Vec<PortProbe> = cycle
            .iter()
            .map(|(port, outcome)| PortProbe {
                port: *port,
                outcome: outcome.clone(),
            })
            .collect();
        out.extend(
            host.observe(&probes, at(i))
                .into_iter()
                .map(|e| (i, e.kind)),
        );
    }
    out
}

#[test]
fn a_port_that_opens_is_reported_at_once() {
    let r = ProbeOutcome::Refused;
    let events = drift(&[
        &[(22, open()), (445, r.clone())],
        &[(22, open()), (445, r.clone())],
        &[(22, open()), (445, open())],
        &[(22, open()), (445, open())],
    ]);
    assert_eq!(events, vec![(2, EventKind::PortOpened { port: 445 })]);
}

#[test]
fn a_port_that_closes_is_reported_after_n_of_m_answered_cycles() {
    let (r, t) = (ProbeOutcome::Refused, ProbeOutcome::Timeout);
    let events = drift(&[
        &[(22, open()), (445, open())],
        &[(22, open()), (445, t.clone())], // one lost SYN
        &[(22, open()), (445, open())],
        &[(22, open()), (445, r.clone())],
        &[(22, open()), (445, open())],
        &[(22, open()), (445, r.clone())], // 3 of the last 5
        &[(22, open()), (445, r.clone())], // closed in the baseline now: quiet
        &[(22, open()), (445, open())],
    ]);
    assert_eq!(
        events,
        vec![
            (
                5,
                EventKind::PortClosed {
                    port: 445,
                    closed: 3,
                    window: 5
                }
            ),
            (7, EventKind::PortOpened { port: 445 }),
        ]
    );
}

#[test]
fn ports_are_not_judged_while_the_host_answers_nowhere() {
    let r = ProbeOutcome::Refused;
    let events = drift(&[
        &[(22, open()), (445, open())],
        &[(22, open()), (445, open())],
        &[(22, r.clone()), (445, r.clone())],
        &[(22, r.clone()), (445, r.clone())],
        &[(22, r.clone()), (445, r.clone())],
        &[(22, open()), (445, open())],
        &[(22, open()), (445, open())],
    ]);
    let names: Vec<(usize, &str)> = events.iter().map(|(i, k)| (*i, k.name())).collect();
    assert_eq!(names, vec![(4, "host_down"), (6, "host_up")]);
}

#[test]
fn a_changed_banner_is_reported_once_and_a_missing_one_is_no_evidence() {
    let a = || open_with("SSH-2.0-OpenSSH_7.4\r\n");
    let b = || open_with("SSH-2.0-OpenSSH_9.6\r\n");
    let events = drift(&[
        &[(22, a())],
        &[(22, a())],
        &[(22, open())], // the banner did not arrive in time
        &[(22, a())],
        &[(22, b())],
        &[(22, b())],
    ]);
    assert_eq!(
        events,
        vec![(
            4,
            EventKind::BannerChanged {
                port: 22,
                old: BannerHash::of_first_line(b"SSH-2.0-OpenSSH_7.4"),
                new: BannerHash::of_first_line(b"SSH-2.0-OpenSSH_9.6"),
            }
        )]
    );
}

#[test]
fn the_first_banner_seen_is_learnt_silently() {
    let events = drift(&[&[(22, open())], &[(22, open_with("220 ftp ready"))]]);
    assert_eq!(events, vec![]);
}

#[test]
fn ports_dropped_from_the_watch_list_are_forgotten() {
    let r = ProbeOutcome::Refused;
    let mut host = HostTracker::new("legacy-db", ADDR, Thresholds::default());
    let events = drift_on(
        &mut host,
        &[
            &[(22, open()), (445, open())],
            &[(22, open())],
            &[(22, open()), (445, r.clone())],
        ],
    );
    assert_eq!(events, vec![]);
    let baselines: Vec<(u16, bool)> = host.baselines().map(|(p, b)| (p, b.open)).collect();
    assert_eq!(baselines, vec![(22, true), (445, false)]);
}

#[test]
fn a_restored_baseline_reports_drift_that_happened_meanwhile() {
    let closed = PortBaseline {
        open: false,
        banner: None,
    };
    let up = PortBaseline {
        open: true,
        banner: None,
    };
    let mut host = HostTracker::with_baselines(
        "legacy-db",
        ADDR,
        Thresholds::default(),
        [(22, up), (445, closed)],
    );
    assert_eq!(host.state(), HostState::Pending);
    let events = drift_on(&mut host, &[&[(22, open()), (445, open())]]);
    assert_eq!(events, vec![(0, EventKind::PortOpened { port: 445 })]);
}

#[test]
fn a_cycle_without_ports_changes_nothing() {
    let mut host = HostTracker::new("legacy-db", ADDR, Thresholds::default());
    for i in 0..10 {
        assert_eq!(host.observe(&[], at(i)), vec![]);
    }
    assert_eq!(host.state(), HostState::Pending);
    assert_eq!(host.failed_in_window(), 0);
}

#[test]
fn down_since_is_the_time_of_the_host_down() {
    let mut host = HostTracker::new("legacy-db", ADDR, Thresholds::new(1, 1, 1).unwrap());
    let probe = |outcome| [PortProbe { port: 22, outcome }];
    host.observe(&probe(open()), at(0));
    host.observe(&probe(ProbeOutcome::Refused), at(1));
    assert_eq!(host.down_since(), Some(at(1)));
    let up = host.observe(&probe(open()), at(2));
    assert_eq!(
        up[0].kind,
        EventKind::HostUp {
            streak: 1,
            down_since: at(1)
        }
    );
    assert_eq!(host.down_since(), None);
}

#[test]
fn every_event_reads_as_a_sentence() {
    let event = |kind| Event {
        host: "legacy-db".into(),
        addr: ADDR,
        at: at(0),
        kind,
    };
    let cases = [
        (
            EventKind::HostDown {
                failed: 3,
                window: 5,
                last: vec![
                    (22, ProbeOutcome::Refused),
                    (445, ProbeOutcome::Timeout),
                    (
                        3389,
                        ProbeOutcome::Unreachable("No route to host (os error 113)".into()),
                    ),
                ],
            },
            "host legacy-db (198.51.100.7) is DOWN: no watched port answered in 3 of the last \
             5 cycles (last cycle: 22 refused, 445 timed out, 3389 unreachable (No route to \
             host (os error 113)))",
        ),
        (
            EventKind::HostUp {
                streak: 2,
                down_since: t0(),
            },
            "host legacy-db (198.51.100.7) is UP again: it answered in 2 cycles in a row \
             (DOWN since 2026-12-07T12:00:00Z)",
        ),
        (
            EventKind::PortOpened { port: 445 },
            "port 445 on host legacy-db (198.51.100.7) opened: it accepted a connection, and \
             it was closed in the baseline",
        ),
        (
            EventKind::PortClosed {
                port: 445,
                closed: 3,
                window: 5,
            },
            "port 445 on host legacy-db (198.51.100.7) closed: it was not open in 3 of the \
             last 5 cycles in which the host answered on another port",
        ),
        (
            EventKind::BannerChanged {
                port: 22,
                old: BannerHash::of_first_line(b"SSH-2.0-OpenSSH_7.4"),
                new: BannerHash::of_first_line(b"SSH-2.0-OpenSSH_7.4p1"),
            },
            "banner on port 22 of host legacy-db (198.51.100.7) changed: sha256 \
             be0da7ee170f9a69 -> 7fa191486737ab78",
        ),
    ];
    for (kind, text) in cases {
        assert_eq!(event(kind).to_string(), text);
    }
}
