//! The planner and the exact evaluator with legacy hosts: a debian 10 host is not
//! offered what a debian 12 host of the same ring gets, until it is included; a day
//! rollover alone turns a host end-of-life in the planner's index.

use super::*;
use crate::legacy::HostRef;

/// Host `id` reports `os` VERSION_ID `version` (debian) at `now`.
fn runs_debian(sim: &Sim, now: Timestamp, id: &str, version: &str) {
    let mut inv = crate::fleet::inventory::sample(id);
    inv.os.version_id = version.into();
    sim.db
        .write_blocking(|tx| crate::fleet::hosts::checkin(tx, now, id, inv))
        .unwrap();
}

fn offered(sim: &Sim, now: Timestamp, id: &str) -> Option<String> {
    sim.db
        .write_blocking(|tx| Ok::<_, crate::error::DbError>(sim.offer(tx, now, id)))
        .unwrap()
}

#[test]
fn an_eol_host_is_not_offered_what_its_ring_gets_until_included() {
    let sim = Sim::new(&[patch("acme/p-1", Severity::High, 20)]);
    // Tuesday 02:30 in Berlin: inside the window.
    let now = t("2026-03-03T01:30:00Z");
    let (old, new) = (sim.hosts[0].1.clone(), sim.hosts[1].1.clone());
    runs_debian(&sim, now, &old, "10");
    sim.approve(now, "acme/p-1", false);
    // Both are pilots; `offer` also checks that the planner and the evaluator agree.
    assert_eq!(offered(&sim, now, &old), None);
    let job = offered(&sim, now, &new).expect("the debian 12 pilot is offered the patch");
    // The canary succeeds, so the ring's other hosts may start.
    sim.succeed(now, &new, &job);
    // Explain's sentence for the debian 10 host.
    let mut world = sim.db.read_blocking(World::load).unwrap();
    sim.db
        .read_blocking(|c| world.fence_legacy(c, now, &sim.policy.legacy))
        .unwrap();
    let p = world.find_patch("acme/p-1").unwrap().clone();
    let why = crate::policy::applicability(&p.entry, &world.hosts[&old].facts)
        .unwrap_err()
        .to_string();
    assert_eq!(
        why,
        "debian 10 reached end of life on 2024-06-30; legacy hosts are not offered patches \
         unless included (patchward legacy include p1 --reason ...)"
    );
    // Included: offered at the next check-in, by both paths.
    let host = HostRef::Agent {
        id: old.clone(),
        hostname: "p1".into(),
    };
    sim.db
        .write_blocking(|tx| crate::legacy::decide::include(tx, now, &host, "tested", "sim"))
        .unwrap();
    assert!(offered(&sim, now, &old).is_some());
}

#[test]
fn a_day_rollover_alone_flips_a_host_to_eol_in_the_index() {
    let sim = Sim::new(&[]);
    let eol = crate::legacy::catalog::Catalog::embedded()
        .lifecycle("debian", "11", jiff::civil::date(2020, 1, 1), 90)
        .eol_date
        .unwrap();
    let eve = crate::legacy::decide::ends_at(eol.yesterday().unwrap())
        .unwrap()
        .checked_add(SignedDuration::from_hours(23))
        .unwrap();
    let id = sim.hosts[0].1.clone();
    runs_debian(&sim, eve, &id, "11");
    let flagged = |at: Timestamp| {
        sim.db
            .read_blocking(|c| {
                sim.planner.warm(c, &sim.policy, at)?;
                sim.planner.with_index(c, &sim.policy, |i| {
                    i.host(i.position(&id).unwrap()).unwrap().eol.clone()
                })
            })
            .unwrap()
    };
    assert_eq!(flagged(eve), None);
    // Two hours later, nothing else changed: past midnight UTC of its end-of-life day.
    let e = flagged(eve.checked_add(SignedDuration::from_hours(2)).unwrap()).unwrap();
    assert_eq!((e.product.as_str(), e.eol_date), ("debian", Some(eol)));
}
