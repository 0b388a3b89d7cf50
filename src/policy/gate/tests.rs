//! Table-driven gate tests: canary, rings of 1-10 hosts, ratios, soak, health, the
//! error brake, per-ring capacity and the rollout plan.

use jiff::{SignedDuration, Timestamp};

use super::*;
use crate::policy::rings::plan_rollout;

const BASE: &str = "2026-07-01T00:00:00Z";

fn at(hours: i64) -> Timestamp {
    BASE.parse::<Timestamp>()
        .unwrap()
        .checked_add(SignedDuration::from_hours(hours))
        .unwrap()
}

/// A ring from a spec: space-separated hosts, each `P` (pending), `I@h` (in progress
/// since hour h), `S@h`, `F@h`, `R@h` (rolled back); `cH` sets the last check-in hour
/// (`c-` for never). Without `c`, the host checked in at `now`.
fn ring(spec: &str, now: i64) -> RingResults {
    let hosts = spec
        .split_whitespace()
        .enumerate()
        .map(|(i, h)| {
            let (state, checkin) = match h.split_once('c') {
                Some((s, "-")) => (s, None),
                Some((s, c)) => (s, Some(at(c.parse().unwrap()))),
                None => (h, Some(at(now))),
            };
            let hour = |s: &str| at(s[2..].parse().unwrap());
            let outcome = match &state[..1] {
                "P" => HostOutcome::Pending,
                "I" => HostOutcome::InProgress { since: hour(state) },
                "S" => HostOutcome::Succeeded { at: hour(state) },
                "F" => HostOutcome::Failed { at: hour(state) },
                "R" => HostOutcome::RolledBack { at: hour(state) },
                _ => panic!("bad host spec {h}"),
            };
            HostResult {
                host: format!("h{}", i + 1),
                outcome,
                last_checkin: checkin,
            }
        })
        .collect();
    RingResults {
        ring: "pilot".into(),
        hosts,
        unlisted_pending: 0,
    }
}

fn rules(toml_text: &str) -> GateRules {
    let r: GateRules = toml::from_str(toml_text).unwrap();
    r.validate("gate").unwrap();
    r
}

fn show(s: &GateStatus) -> String {
    let list = |r: &[GateReason]| {
        r.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    };
    match s {
        GateStatus::Passed => "passed".into(),
        GateStatus::Waiting { reasons } => format!("waiting: {}", list(reasons)),
        GateStatus::Halted { reasons } => format!("halted: {}", list(reasons)),
    }
}

/// One row: `hosts` at hour `now` under `rules` -> the gate as text.
#[track_caller]
fn check(hosts: &str, rule_text: &str, now: i64, want: &str) {
    let got = gate(&ring(hosts, now), &rules(rule_text), at(now));
    assert_eq!(show(&got), want, "{hosts:?} [{rule_text}] at +{now}h");
}

fn soak_end(h: i64) -> String {
    format!("soak ends at {}", at(h))
}

#[test]
fn canary_and_small_rings() {
    // Defaults: canary, min_successes 3 (capped at the ring size), ratio 0.5, soak 24h.
    check("", "", 0, "passed");
    check(
        "P",
        "",
        0,
        "waiting: the canary host has not succeeded yet; 0/1 succeeded",
    );
    check(
        "I@0",
        "",
        1,
        "waiting: the canary host has not succeeded yet; 0/1 succeeded",
    );
    check("S@1", "", 10, &format!("waiting: {}", soak_end(25)));
    check("S@1", "", 25, "passed");
    // Two hosts: both must succeed (3 capped to 2).
    check("S@1 P", "", 30, "waiting: 1/2 succeeded");
    check("S@1 S@2", "", 25, &format!("waiting: {}", soak_end(26)));
    check("S@1 S@2", "", 26, "passed");
    // Three to five hosts need 3; six to ten need half, rounded up.
    check("S@1 S@1 P", "", 30, "waiting: 2/3 succeeded");
    check("S@1 S@1 S@1", "", 30, "passed");
    check("S@1 S@1 S@1 P P", "", 30, "passed");
    check("S@1 S@1 S@1 P P P P", "", 30, "waiting: 3/4 succeeded");
    check(
        "S@1 S@1 S@1 S@1 P P P P P P",
        "",
        30,
        "waiting: 4/5 succeeded",
    );
    check("S@1 S@1 S@1 S@1 S@2 P P P P P", "", 30, "passed");
    // min_successes is absolute; a ratio of 0 leaves it alone.
    check(
        "S@1 P P P P P P P P P",
        "min_successes = 1\nsuccess_ratio = 0.0",
        30,
        "passed",
    );
    check(
        "S@1 S@1 P P P P P P P P",
        "min_successes = 2\nsuccess_ratio = 0.0",
        30,
        "passed",
    );
    check(
        "S@1 P P P P P P P P P",
        "min_successes = 2\nsuccess_ratio = 0.0",
        30,
        "waiting: 1/2 succeeded",
    );
    // Ratio rounding: 0.3 of 10 is 3, not 4.
    check(
        "S@1 S@1 S@1 P P P P P P P",
        "min_successes = 1\nsuccess_ratio = 0.3",
        30,
        "passed",
    );
    check(
        "S@1 S@1 S@1 S@1 S@1 S@1 S@1 S@1 F@1 P",
        "success_ratio = 0.9",
        30,
        "waiting: 8/9 succeeded",
    );
    // Without a canary, nothing is said about it.
    check("P P", "canary = false", 0, "waiting: 0/2 succeeded");
}

#[test]
fn soak_runs_from_the_last_success() {
    check(
        "S@1 S@1 S@10",
        "",
        30,
        &format!("waiting: {}", soak_end(34)),
    );
    check("S@1 S@1 S@10", "soak = \"2h\"", 12, "passed");
    check("S@1 S@1 S@10", "soak = \"0s\"", 10, "passed");
    check(
        "S@1 S@1 S@2 P",
        "soak = \"72h\"",
        73,
        &format!("waiting: {}", soak_end(74)),
    );
}

#[test]
fn health_needs_check_ins_after_success() {
    // h1 never checked in after its success; h2 last seen 3h ago (limit 2h).
    check(
        "S@1c0 S@1 S@1",
        "",
        30,
        "waiting: not checking in since success: h1",
    );
    check(
        "S@1 S@1c27 S@1",
        "",
        30,
        "waiting: not checking in since success: h2",
    );
    check("S@1 S@1c28 S@1", "", 30, "passed");
    check(
        "S@1c- S@1 S@1",
        "",
        30,
        "waiting: not checking in since success: h1",
    );
    check("S@1 S@1c27 S@1", "checkin_within = \"6h\"", 30, "passed");
}

#[test]
fn the_error_brake_halts() {
    // Default max_failures = 1: a second failure halts.
    check(
        "F@1 P P P",
        "",
        2,
        "waiting: the canary host has not succeeded yet; 0/3 succeeded",
    );
    check(
        "F@1 F@2 P P P",
        "",
        3,
        "halted: 2 failures exceed max_failures 1",
    );
    check(
        "S@1 F@1 F@2 P P P",
        "max_failures = 2",
        30,
        "waiting: 1/3 succeeded",
    );
    check(
        "S@1 F@1 F@2 F@3 P P",
        "max_failures = 2",
        3,
        "halted: 3 failures exceed max_failures 2",
    );
    check(
        "F@1 P P P",
        "max_failures = 0",
        2,
        "halted: 1 failures exceed max_failures 0",
    );
    // Percent of the ring: 2 of 10 is 20% (allowed), 3 is not.
    check(
        "S@1 S@1 S@1 S@1 S@1 F@1 F@1 P P P",
        "max_failures = \"20%\"",
        30,
        "passed",
    );
    check(
        "S@1 S@1 S@1 S@1 S@1 F@1 F@1 F@1 P P",
        "max_failures = \"20%\"",
        30,
        "halted: 3 failures exceed max_failures 20%",
    );
    // A 2-host ring with 50%: one failure is allowed but leaves too few to succeed.
    check(
        "S@1 F@2",
        "max_failures = \"50%\"",
        30,
        "halted: at most 1 hosts can still succeed, 2 are needed",
    );
    // Any rollback halts.
    check(
        "S@1 S@1 R@2 P",
        "max_failures = 5",
        30,
        "halted: rolled back on h3",
    );
    // Several reasons at once.
    check(
        "S@1 S@1 S@1 S@1 S@1 S@1 S@1 S@1 F@1 F@1",
        "success_ratio = 0.9",
        30,
        "halted: 2 failures exceed max_failures 1; at most 8 hosts can still succeed, 9 are needed",
    );
}

#[track_caller]
fn check_capacity(hosts: &str, rule_text: &str, want: usize) {
    let got = ring_capacity(&ring(hosts, 5), &rules(rule_text), at(5));
    assert_eq!(got, want, "{hosts:?} [{rule_text}]");
}

#[test]
fn capacity_canary_then_parallel() {
    check_capacity("P P P", "", 1);
    check_capacity("I@0 P P", "", 0);
    check_capacity("S@1 P P", "", 2);
    check_capacity("S@1 I@2 P P", "", 2);
    // A failed canary lets another host try, alone.
    check_capacity("F@1 P P P", "", 1);
    check_capacity("F@1 I@2 P P", "", 0);
    // Braked: nothing.
    check_capacity("F@1 F@2 P", "", 0);
    // One at a time (firmware).
    check_capacity("S@1 I@2 P", "max_parallel = 1", 0);
    check_capacity("S@1 S@2 P", "max_parallel = 1", 1);
    check_capacity("P P P", "canary = false\nmax_parallel = 2", 2);
    check_capacity("I@1 P P", "canary = false\nmax_parallel = 2", 1);
    check_capacity("S@1 S@1", "", 0);
}

#[test]
fn plan_opens_rings_in_order() {
    let r = GateRules::default();
    let named = |name: &str, spec: &str, now: i64| {
        let mut x = ring(spec, now);
        x.ring = name.into();
        (x, r.clone())
    };
    let show_plan = |rings: &[(RingResults, GateRules)], now: i64| {
        let p = plan_rollout(rings, at(now));
        let steps: Vec<String> = p
            .steps
            .iter()
            .map(|s| {
                format!(
                    "{}:{}:{}",
                    s.ring,
                    if s.open { "open" } else { "closed" },
                    s.capacity
                )
            })
            .collect();
        (steps.join(" "), p.halted)
    };
    // Pilot still soaking: broad closed.
    let rings = [named("pilot", "S@1 S@1", 10), named("broad", "P P P P", 10)];
    assert_eq!(
        show_plan(&rings, 10),
        ("pilot:open:0 broad:closed:0".into(), None)
    );
    // Pilot passed: broad opens with its canary.
    let rings = [named("pilot", "S@1 S@1", 30), named("broad", "P P P P", 30)];
    assert_eq!(
        show_plan(&rings, 30),
        ("pilot:open:0 broad:open:1".into(), None)
    );
    // Three rings: the third waits for the second.
    let rings = [
        named("pilot", "S@1 S@1", 60),
        named("early", "S@30 P P P", 60),
        named("broad", "P P", 60),
    ];
    assert_eq!(
        show_plan(&rings, 60),
        ("pilot:open:0 early:open:3 broad:closed:0".into(), None)
    );
    // A halt anywhere stops everything.
    let rings = [
        named("pilot", "S@1 S@1", 30),
        named("broad", "S@26 F@27 F@28 P", 30),
    ];
    assert_eq!(
        show_plan(&rings, 30),
        ("pilot:closed:0 broad:closed:0".into(), Some("broad".into()))
    );
}

#[test]
fn rules_parse_with_defaults_and_refuse_nonsense() {
    let r = rules("min_successes = 2\nmax_failures = \"10%\"\nsoak = \"12h\"");
    assert_eq!(r.min_successes, 2);
    assert_eq!(r.max_failures, FailureLimit::Percent(10));
    assert_eq!(r.soak, SignedDuration::from_hours(12));
    assert!(r.canary);
    for (text, want) in [
        ("max_failures = \"ten\"", "neither a count"),
        ("max_failures = -1", "max_failures"),
        ("soak = \"forever\"", "soak"),
        ("canary = \"yes\"", "canary"),
        ("ratio = 1", "unknown field `ratio`"),
    ] {
        let e = toml::from_str::<GateRules>(text).unwrap_err().to_string();
        assert!(e.contains(want), "{text}: {e}");
    }
    for (text, key) in [
        ("success_ratio = -0.1", "gate.success_ratio"),
        ("soak = \"-1h\"", "gate.soak"),
        ("soak = \"100d\"", "gate.soak"),
        ("checkin_within = \"0s\"", "gate.checkin_within"),
        ("max_parallel = 0", "gate.max_parallel"),
    ] {
        let r: GateRules = toml::from_str(text).unwrap();
        assert_eq!(r.validate("gate").unwrap_err().key, key, "{text}");
    }
}
