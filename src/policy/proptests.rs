//! Property tests of the two promises the rest of the appliance relies on:
//! - no allowed start outside a window: whatever the windows, zone, instant and job
//!   length, a start the policy allows lies inside a slot occurrence for the job's whole
//!   length and never touches a blackout (checked against a naive re-derivation of the
//!   slots, not against the merging code);
//! - no ring N+1 work before ring N's gate passes: a simulated rollout that only does
//!   what [`plan_rollout`] allows never starts a host in ring N+1 while ring N lacks its
//!   successes, its soak, its health, or has tripped the brake, and never runs more
//!   than one host of a ring before its canary succeeded;
//! - openings are exactly the open instants: every instant lies in a listed opening
//!   exactly when the entries (re-derived naively) say it is open, each opening is
//!   maximal (the instant before it and its end are closed), and the scheduler's
//!   "may a job start now" agrees.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::gate::{FailureLimit, GateRules, HostOutcome, HostResult, RingResults};
use super::rings::plan_rollout;
use super::windows::{
    Blackout, Day, Emergency, Monthly, OneOff, StartCheck, Urgency, Weekly, Windows, may_start,
    next_allowed_start, next_openings,
};

const ZONES: &[&str] = &[
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe", // 30-minute DST shift
    "America/St_Johns",    // -03:30
    "Asia/Kolkata",
];

const DAYS: [Day; 7] = [
    Day::Mon,
    Day::Tue,
    Day::Wed,
    Day::Thu,
    Day::Fri,
    Day::Sat,
    Day::Sun,
];

fn time() -> impl Strategy<Value = Time> {
    (0i8..24, 0i8..60).prop_map(|(h, m)| Time::constant(h, m, 0, 0))
}

fn minutes(max: i64) -> impl Strategy<Value = SignedDuration> {
    (1..=max).prop_map(SignedDuration::from_mins)
}

fn date() -> impl Strategy<Value = Date> {
    (0i64..730).prop_map(|d| Date::constant(2026, 1, 1).saturating_add(d.days()))
}

fn weekly() -> impl Strategy<Value = Weekly> {
    (
        prop::sample::subsequence(DAYS.to_vec(), 1..=7),
        time(),
        minutes(3 * 24 * 60),
    )
        .prop_map(|(days, start, duration)| Weekly {
            days,
            start,
            duration,
        })
}

fn monthly() -> impl Strategy<Value = Monthly> {
    (
        prop::sample::select(vec![1i8, 2, 3, 4, -1]),
        prop::sample::select(DAYS.to_vec()),
        -28i8..=28,
        time(),
        minutes(24 * 60),
    )
        .prop_map(|(nth, weekday, offset_days, start, duration)| Monthly {
            nth,
            weekday,
            offset_days,
            start,
            duration,
        })
}

fn once() -> impl Strategy<Value = OneOff> {
    (date(), time(), minutes(7 * 24 * 60)).prop_map(|(d, t, duration)| OneOff {
        start: d.to_datetime(t),
        duration,
    })
}

fn blackout() -> impl Strategy<Value = Blackout> {
    (date(), time(), minutes(10 * 24 * 60)).prop_map(|(d, t, len)| {
        let from = d.to_datetime(t);
        Blackout {
            from,
            until: from.checked_add(len).unwrap(),
            reason: String::new(),
        }
    })
}

fn windows() -> impl Strategy<Value = Windows> {
    (
        prop::sample::select(ZONES.to_vec()),
        prop::collection::vec(weekly(), 0..3),
        prop::collection::vec(monthly(), 0..3),
        prop::collection::vec(once(), 0..3),
        prop::collection::vec(blackout(), 0..3),
        prop::collection::vec(weekly(), 0..2),
    )
        .prop_map(|(tz, weekly, monthly, once, blackout, emergency)| Windows {
            tz: tz.into(),
            weekly,
            monthly,
            once,
            blackout,
            emergency: Emergency {
                weekly: emergency,
                ..Emergency::default()
            },
        })
}

/// An instant in 2026-2027, often close to a DST change so the gaps and folds are hit.
fn instant() -> impl Strategy<Value = Timestamp> {
    let near_dst = prop::sample::select(vec![
        "2026-03-29T01:00:00Z", // Berlin spring
        "2026-10-25T01:00:00Z", // Berlin fall
        "2026-03-08T07:00:00Z", // New York spring
        "2026-11-01T06:00:00Z", // New York fall
        "2026-04-04T15:00:00Z", // Lord Howe fall
        "2026-10-03T15:30:00Z", // Lord Howe spring
    ]);
    prop_oneof![
        (0i64..2 * 365 * 86_400).prop_map(|s| Timestamp::from_second(1_767_225_600 + s).unwrap()),
        (near_dst, -2 * 86_400i64..2 * 86_400).prop_map(|(t, s)| t
            .parse::<Timestamp>()
            .unwrap()
            .checked_add(SignedDuration::from_secs(s))
            .unwrap()),
    ]
}

/// Naive: is `p` inside some occurrence of the slots? Re-derives each occurrence from
/// the rules in the module doc, for the local dates a slot starting there could cover.
fn in_slot(
    tz: &TimeZone,
    weekly: &[Weekly],
    monthly: &[Monthly],
    once: &[OneOff],
    p: Timestamp,
) -> bool {
    let occurs = |dt: DateTime, dur: SignedDuration| {
        let s = tz.to_ambiguous_timestamp(dt).compatible().unwrap();
        s <= p && p < s.checked_add(dur).unwrap()
    };
    let today = tz.to_datetime(p).date();
    for back in 0..=9i64 {
        let d = today.saturating_sub(back.days());
        for w in weekly {
            if w.days.iter().any(|x| x.weekday() == d.weekday())
                && occurs(d.to_datetime(w.start), w.duration)
            {
                return true;
            }
        }
        for m in monthly {
            // `d` is an occurrence date if it is the nth weekday of some month + offset.
            let base = d.saturating_sub(i64::from(m.offset_days).days());
            if base.nth_weekday_of_month(m.nth, m.weekday.weekday()).ok() == Some(base)
                && occurs(d.to_datetime(m.start), m.duration)
            {
                return true;
            }
        }
    }
    once.iter().any(|o| occurs(o.start, o.duration))
}

fn in_blackout(tz: &TimeZone, w: &Windows, p: Timestamp) -> bool {
    w.blackout.iter().any(|b| {
        let from = tz.to_ambiguous_timestamp(b.from).compatible().unwrap();
        let until = tz.to_ambiguous_timestamp(b.until).compatible().unwrap();
        from <= p && p < until
    })
}

fn check_job_span(
    w: &Windows,
    tz: &TimeZone,
    t: Timestamp,
    est: u32,
    urgency: Urgency,
) -> Result<(), TestCaseError> {
    let len = i64::from(est) * 60;
    // Every 30 s over [t, t + est) and its last second: slot boundaries are whole
    // minutes in these zones, so a gap of at least a minute cannot slip between samples.
    let mut points: Vec<i64> = (0..len.max(1)).step_by(30).collect();
    if len > 0 {
        points.push(len - 1);
    }
    for off in points {
        let p = t.checked_add(SignedDuration::from_secs(off)).unwrap();
        let regular = in_slot(tz, &w.weekly, &w.monthly, &w.once, p);
        let e = &w.emergency;
        let emergency =
            urgency == Urgency::Expedited && in_slot(tz, &e.weekly, &e.monthly, &e.once, p);
        prop_assert!(
            regular || emergency,
            "allowed start {t} (est {est}m): {p} is outside every slot"
        );
        prop_assert!(
            !in_blackout(tz, w, p),
            "allowed start {t} (est {est}m): {p} is in a blackout"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn no_allowed_start_outside_a_window(
        w in windows(),
        t in instant(),
        est in prop_oneof![0u32..=30, 0u32..=600],
        expedited in any::<bool>(),
    ) {
        let tz = jiff::tz::db().get(&w.tz).unwrap();
        let urgency = if expedited { Urgency::Expedited } else { Urgency::Normal };
        let check = may_start(&w, &tz, t, est, urgency);
        if let StartCheck::Allowed { window_end, latest_start } = check {
            check_job_span(&w, &tz, t, est, urgency)?;
            prop_assert!(t <= latest_start);
            prop_assert_eq!(window_end.checked_sub(SignedDuration::from_mins(i64::from(est))).unwrap(), latest_start);
        }
        // The next allowed start is allowed, and is `t` itself when `t` is.
        let next = next_allowed_start(&w, &tz, t, est, urgency);
        match (check, next) {
            (StartCheck::Allowed { .. }, Some((s, _))) => prop_assert_eq!(s, t),
            (StartCheck::Allowed { .. }, None) => prop_assert!(false, "allowed now but no next start"),
            (_, Some((s, o))) => {
                prop_assert!(s > t);
                prop_assert!(may_start(&w, &tz, s, est, urgency).is_allowed(), "next start {s} is refused");
                check_job_span(&w, &tz, s, est, urgency)?;
                prop_assert!(o.contains(s));
            }
            (_, None) => {}
        }
    }
}

/// Naive: do the entries say `p` is open (in a slot of the urgency, in no blackout)?
fn open_at(w: &Windows, tz: &TimeZone, urgency: Urgency, p: Timestamp) -> bool {
    let e = &w.emergency;
    (in_slot(tz, &w.weekly, &w.monthly, &w.once, p)
        || urgency == Urgency::Expedited && in_slot(tz, &e.weekly, &e.monthly, &e.once, p))
        && !in_blackout(tz, w, p)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn openings_are_exactly_the_open_instants(
        w in windows(),
        t in instant(),
        expedited in any::<bool>(),
        probes in prop::collection::vec(0i64..60 * 86_400, 1..24),
    ) {
        let tz = jiff::tz::db().get(&w.tz).unwrap();
        let urgency = if expedited { Urgency::Expedited } else { Urgency::Normal };
        let count = 4;
        let list = next_openings(&w, &tz, t, count, urgency);
        let (back, ahead) = super::windows::horizon(&tz, t);
        prop_assert!(back < t.checked_sub(SignedDuration::from_hours(3 * 365 * 24)).unwrap());
        prop_assert!(ahead > t.checked_add(SignedDuration::from_hours(3 * 365 * 24)).unwrap());
        let sec = SignedDuration::from_secs(1);
        let open = |p: Timestamp| open_at(&w, &tz, urgency, p);
        for (i, o) in list.iter().enumerate() {
            prop_assert!(o.start < o.end && o.end > t, "{o:?}");
            prop_assert!(back <= o.start && o.end <= ahead, "{o:?} outside the horizon");
            if let Some(n) = list.get(i + 1) {
                prop_assert!(o.end < n.start, "{o:?} and {n:?} touch or overlap: not merged");
            }
            // Maximal: open from its first to its last second, closed just before and at
            // its end (unless cut by the horizon).
            prop_assert!(open(o.start), "{o:?}: its start is closed");
            prop_assert!(open(o.end.checked_sub(sec).unwrap()), "{o:?}: its last second is closed");
            if o.start > back {
                prop_assert!(!open(o.start.checked_sub(sec).unwrap()), "{o:?} starts too late");
            }
            if o.end < ahead {
                prop_assert!(!open(o.end), "{o:?} ends too early");
            }
        }
        // Every probed instant is in a listed opening exactly when the entries say it is
        // open, and the scheduler agrees (a zero-minute job may start exactly then).
        let listed_until = if list.len() == count { list[count - 1].end } else { ahead };
        for off in probes {
            let p = t.checked_add(SignedDuration::from_secs(off)).unwrap();
            if p >= listed_until {
                continue;
            }
            let want = open(p);
            prop_assert_eq!(list.iter().any(|o| o.contains(p)), want, "listed at {}", p);
            prop_assert_eq!(may_start(&w, &tz, p, 0, urgency).is_allowed(), want, "may_start at {}", p);
        }
    }
}

fn gate_rules() -> impl Strategy<Value = GateRules> {
    (
        any::<bool>(),
        1u32..=5,
        prop::sample::select(vec![0.0, 0.3, 0.5, 0.8, 1.0]),
        0i64..=48,
        prop_oneof![
            (0u32..=3).prop_map(FailureLimit::Count),
            (0u8..=50).prop_map(FailureLimit::Percent)
        ],
        prop::option::of(1u32..=3),
    )
        .prop_map(
            |(canary, min_successes, success_ratio, soak_h, max_failures, max_parallel)| {
                GateRules {
                    canary,
                    min_successes,
                    success_ratio,
                    soak: SignedDuration::from_hours(soak_h),
                    checkin_within: SignedDuration::from_hours(3),
                    max_failures,
                    max_parallel,
                }
            },
        )
}

/// The gate's conditions, written out independently of `gate`.
fn ring_done(r: &RingResults, g: &GateRules, now: Timestamp) -> Result<(), String> {
    let n = r.hosts.len();
    if n == 0 {
        return Ok(());
    }
    let ok: Vec<(Timestamp, Option<Timestamp>)> = r
        .hosts
        .iter()
        .filter_map(|h| match h.outcome {
            HostOutcome::Succeeded { at } => Some((at, h.last_checkin)),
            _ => None,
        })
        .collect();
    let failed = r
        .hosts
        .iter()
        .filter(|h| {
            matches!(
                h.outcome,
                HostOutcome::Failed { .. } | HostOutcome::RolledBack { .. }
            )
        })
        .count();
    if ok.is_empty() {
        return Err("no success (canary)".into());
    }
    if ok.len() < (g.min_successes as usize).min(n) {
        return Err(format!("{} < min_successes {}", ok.len(), g.min_successes));
    }
    if (ok.len() as f64) < g.success_ratio * n as f64 - 1e-6 {
        return Err(format!("{}/{n} below ratio {}", ok.len(), g.success_ratio));
    }
    let last = ok.iter().map(|(at, _)| *at).max().unwrap();
    if now < last.checked_add(g.soak).unwrap() {
        return Err("soaking".into());
    }
    if ok
        .iter()
        .any(|(at, seen)| seen.is_none_or(|s| s < *at || now.duration_since(s) > g.checkin_within))
    {
        return Err("a host is not checking in".into());
    }
    if r.hosts
        .iter()
        .any(|h| matches!(h.outcome, HostOutcome::RolledBack { .. }))
    {
        return Err("rollback".into());
    }
    let over = match g.max_failures {
        FailureLimit::Count(c) => failed > c as usize,
        FailureLimit::Percent(p) => failed * 100 > p as usize * n,
    };
    if over {
        return Err("brake".into());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn no_ring_work_before_the_previous_gate_passes(
        sizes in prop::collection::vec(1usize..=10, 2..=4),
        rules in prop::collection::vec(gate_rules(), 4),
        seed in any::<u64>(),
        fail_pct in 0u32..=40,
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut now: Timestamp = "2026-07-01T00:00:00Z".parse().unwrap();
        let mut rings: Vec<(RingResults, GateRules)> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let hosts = (0..n)
                    .map(|h| HostResult { host: format!("r{i}h{h}"), outcome: HostOutcome::Pending, last_checkin: Some(now) })
                    .collect();
                (RingResults { ring: format!("ring{i}"), hosts, unlisted_pending: 0 }, rules[i].clone())
            })
            .collect();
        for _step in 0..60 {
            now = now.checked_add(SignedDuration::from_mins(rng.gen_range(0..=12 * 60))).unwrap();
            // Hosts check in (most of the time), and running jobs finish.
            for (r, _) in rings.iter_mut() {
                for h in r.hosts.iter_mut() {
                    if rng.gen_bool(0.9) {
                        h.last_checkin = Some(now);
                    }
                    if matches!(h.outcome, HostOutcome::InProgress { .. }) && rng.gen_bool(0.6) {
                        let roll = rng.gen_range(0..100);
                        h.outcome = if roll < fail_pct / 4 {
                            HostOutcome::RolledBack { at: now }
                        } else if roll < fail_pct {
                            HostOutcome::Failed { at: now }
                        } else {
                            HostOutcome::Succeeded { at: now }
                        };
                    }
                }
            }
            // Offer only what the plan allows, and check it against the conditions.
            let plan = plan_rollout(&rings, now);
            for (k, step) in plan.steps.iter().enumerate() {
                if step.capacity == 0 {
                    continue;
                }
                prop_assert!(plan.halted.is_none(), "work offered while halted");
                for (j, (r, g)) in rings.iter().enumerate().take(k) {
                    if let Err(why) = ring_done(r, g, now) {
                        prop_assert!(false, "ring {k} offered work while ring {j} is not done: {why}");
                    }
                }
                let take = rng.gen_range(1..=step.capacity);
                let (r, g) = &mut rings[k];
                let mut started = 0;
                for h in r.hosts.iter_mut() {
                    if started < take && h.outcome == HostOutcome::Pending {
                        h.outcome = HostOutcome::InProgress { since: now };
                        started += 1;
                    }
                }
                let running = r.hosts.iter().filter(|h| matches!(h.outcome, HostOutcome::InProgress { .. })).count();
                let succeeded = r.hosts.iter().any(|h| matches!(h.outcome, HostOutcome::Succeeded { .. }));
                if g.canary && !succeeded {
                    prop_assert!(running <= 1, "ring {k}: {running} hosts running before the canary succeeded");
                }
                if let (Some(m), true) = (g.max_parallel, succeeded || !g.canary) {
                    prop_assert!(running <= m as usize, "ring {k}: {running} running, max_parallel {m}");
                }
            }
        }
    }
}
