//! A multi-week simulation of the scheduler with a manual clock and simulated agents,
//! in process: the real database, the server's planner (`planner::Planner` rebuilt and
//! acted on, then `plan::offer`) at every check-in, and agents that report through
//! `fleet::jobs::apply_events` like the real one. At every check-in the exact
//! per-host evaluator (`engine::offer`, which `explain` shares) is asked too, in a
//! savepoint that is rolled back, and must pick the same patch.
//!
//! Eight hosts (two pilot, six broad; two broad hosts keep New York time, the rest
//! Berlin) check in every 20 minutes from 2026-03-01 to 2026-04-12, across the US
//! (March 8) and EU (March 29) clock changes. Checked throughout:
//! - no job is ever offered (and so started) outside its host's window, or so late
//!   that `est_minutes` would overrun the window;
//! - a patch whose install fails on the pilot halts before any broad host gets it;
//! - an expedited critical patch reaches every host sooner than a normal one
//!   approved at the same moment;
//! - a host never gets a patch before the patch it `requires`; once a newer patch that
//!   `supersedes` an older one is approved, no host is offered the older one.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};

use super::World;
use super::approvals::{self, Control};
use crate::db::Db;
use crate::feed::catalog::{PatchEntry, PatchKind, Selector, Severity};
use crate::fleet::jobs::{JobEvent, JobState};
use crate::fleet::tokens::NewToken;
use crate::policy::approval::Decision;
use crate::policy::{Policy, RawPolicy, StartCheck, Urgency, may_start};
use crate::trust::keys::Ed25519Key;

const POLICY: &str = r#"
[[policy.rings]]
name = "pilot"
gate = { canary = true, min_successes = 2, success_ratio = 0.0, soak = "24h", max_failures = 0, checkin_within = "2h" }

[[policy.rings]]
name = "broad"
catch_all = true
gate = { canary = true, min_successes = 2, soak = "12h", max_failures = 1 }

[policy.classes.security]
expedited_soak = "1h"

[policy.windows.default]
tz = "Europe/Berlin"
weekly = [{ days = ["tue", "thu"], start = "02:00", duration = "3h" }]
emergency = { weekly = [{ days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], start = "12:00", duration = "2h" }] }

[policy.windows.ny]
tz = "America/New_York"
weekly = [{ days = ["sat"], start = "23:00", duration = "4h" }]
emergency = { weekly = [{ days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], start = "20:00", duration = "2h" }] }

[[policy.host_windows]]
labels = { site = "ny" }
windows = "ny"
"#;

fn policy() -> Policy {
    #[derive(serde::Deserialize)]
    struct Wrap {
        policy: RawPolicy,
    }
    let w: Wrap = toml::from_str(POLICY).unwrap();
    Policy::from_raw(&w.policy).unwrap()
}

fn patch(id: &str, severity: Severity, est: u32) -> PatchEntry {
    let mut e = crate::feed::catalog::tests::entry(id, id.as_bytes());
    e.kind = PatchKind::Security;
    e.severity = severity;
    e.cvss = None;
    e.cves = vec![];
    e.est_minutes = est;
    // Simulated agents run nothing; a script patch keeps apt repositories out of it.
    e.install = crate::feed::catalog::InstallMethod::Script;
    for a in &mut e.artifacts {
        a.format = crate::feed::catalog::ArtifactFormat::Script;
    }
    e.released = "2026-02-20T00:00:00Z".parse().unwrap();
    e.applies_to = vec![Selector {
        os: Some("debian".into()),
        ..Default::default()
    }];
    e
}

struct Sim {
    _dir: tempfile::TempDir,
    db: Db,
    policy: Policy,
    key: Ed25519Key,
    hosts: Vec<(String, String)>,
    /// Patches whose install fails on every host.
    failing: BTreeSet<String>,
    /// (host, patch) -> when the job was offered.
    offered: BTreeMap<(String, String), Timestamp>,
    /// (host, patch) -> when it succeeded.
    done: BTreeMap<(String, String), Timestamp>,
    planner: super::planner::Planner,
}

impl Sim {
    fn new(patches: &[PatchEntry]) -> Sim {
        // On tmpfs where there is one: ~50,000 fsynced commits are the slow part.
        let dir = match std::path::Path::new("/dev/shm").is_dir() {
            true => tempfile::tempdir_in("/dev/shm").unwrap(),
            false => tempfile::tempdir().unwrap(),
        };
        let db = Db::open(&dir.path().join("t.db"), Default::default()).unwrap();
        let t0: Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
        db.write_blocking(|tx| {
            tx.execute(
                "INSERT INTO feeds (name, trust_state, updated_at) VALUES ('acme', '{}', ?1)",
                [t0.to_string()],
            )?;
            for p in patches {
                tx.execute(
                    "INSERT INTO patches (feed, id, catalog_version, title, kind, severity,
                        cvss_score, cves, released, entry, entry_sha256, first_seen)
                     VALUES ('acme', ?1, 1, ?2, 'security', ?3, NULL, '[]', ?4, ?5, '', ?4)",
                    rusqlite::params![
                        p.id,
                        p.title,
                        format!("{:?}", p.severity).to_lowercase(),
                        p.released.to_string(),
                        serde_json::to_string(p).unwrap()
                    ],
                )?;
            }
            Ok::<_, crate::error::DbError>(())
        })
        .unwrap();
        let mut hosts = Vec::new();
        let specs = [
            ("p1", Some("pilot"), "site=hq"),
            ("p2", Some("pilot"), "site=hq"),
            ("b1", None, "site=hq"),
            ("b2", None, "site=hq"),
            ("b3", None, "site=hq"),
            ("b4", None, "site=hq"),
            ("n1", None, "site=ny"),
            ("n2", None, "site=ny"),
        ];
        for (name, ring, labels) in specs {
            let id = db
                .write_blocking(|tx| {
                    let t = crate::fleet::tokens::create(
                        tx,
                        t0,
                        "sim",
                        &NewToken {
                            ring: ring.map(str::to_string),
                            labels: crate::fleet::parse_labels(labels).unwrap(),
                            expires_in: SignedDuration::from_hours(1),
                            max_uses: 1,
                        },
                    )?;
                    let key = Ed25519Key::generate(&mut rand::rngs::OsRng);
                    crate::fleet::hosts::enroll(
                        tx,
                        t0,
                        &crate::fleet::hosts::EnrollRequest {
                            token: t.token,
                            hostname: name.into(),
                            public_key: key.public_hex(),
                            inventory: crate::fleet::inventory::sample(name),
                        },
                    )
                })
                .unwrap();
            hosts.push((name.to_string(), id));
        }
        Sim {
            _dir: dir,
            db,
            policy: policy(),
            key: Ed25519Key::generate(&mut rand::rngs::OsRng),
            hosts,
            failing: BTreeSet::new(),
            offered: BTreeMap::new(),
            done: BTreeMap::new(),
            planner: super::planner::Planner::new(),
        }
    }

    /// Creates a job for `patch` on `host` directly (as `deploy` does); returns its id.
    fn deploy(&self, now: Timestamp, patch: &str, host: &str) -> String {
        self.db
            .write_blocking(|tx| {
                crate::fleet::jobs::create(
                    tx,
                    now,
                    &self.key,
                    &crate::fleet::jobs::NewJob {
                        patch: patch.into(),
                        host: host.into(),
                        not_before: None,
                        latest_start: None,
                        health_check: false,
                        rollback_of: None,
                    },
                    "test",
                )
            })
            .unwrap()
            .0
            .id
    }

    /// The host reports the job through every step to success at `at`.
    fn succeed(&self, at: Timestamp, host: &str, job: &str) {
        self.succeed_claiming(at, at, host, job);
    }

    /// As [`Sim::succeed`], received at `now` while the host's clock says `host_at`.
    fn succeed_claiming(&self, now: Timestamp, host_at: Timestamp, host: &str, job: &str) {
        let events: Vec<JobEvent> = [
            JobState::Downloading,
            JobState::Downloaded,
            JobState::Installing,
            JobState::Verifying,
            JobState::Succeeded,
        ]
        .into_iter()
        .map(|state| JobEvent {
            job_id: job.to_string(),
            state,
            at: host_at,
            output: String::new(),
        })
        .collect();
        self.db
            .write_blocking(|tx| crate::fleet::jobs::apply_events(tx, now, host, &events))
            .unwrap();
    }

    fn decide(&self, now: Timestamp, id: &str, d: Decision) {
        self.db
            .write_blocking(|tx| approvals::decide(tx, now, &self.policy, id, &d, "sim", "sim"))
            .unwrap();
    }

    fn approve(&self, now: Timestamp, id: &str, expedite: bool) {
        let d = Decision::Approve {
            rings: vec!["pilot".into(), "broad".into()],
            expedite: expedite.then(|| "actively exploited".to_string()),
        };
        self.decide(now, id, d);
    }

    /// The planner's offer, checked against the exact evaluator's choice.
    fn offer(&self, tx: &rusqlite::Transaction<'_>, now: Timestamp, host: &str) -> Option<String> {
        let patch_of = |job: &Option<String>| {
            job.as_ref().map(|j| {
                crate::db::jobs::job(tx, j)
                    .unwrap()
                    .map(|r| r.patch_id)
                    .unwrap()
            })
        };
        tx.execute_batch("SAVEPOINT exact").unwrap();
        let exact = super::engine::offer(tx, now, &self.policy, &self.key, host).unwrap();
        let exact = patch_of(&exact);
        tx.execute_batch("ROLLBACK TO exact; RELEASE exact")
            .unwrap();
        let plan = self.planner.rebuild(tx, &self.policy, now).unwrap();
        super::planner::advance(tx, &self.policy, Some(&plan), now).unwrap();
        let plan = self.planner.fresh(tx, &self.policy, now).unwrap().unwrap();
        let job = super::plan::offer(tx, now, &self.policy, &self.key, &plan, host).unwrap();
        assert_eq!(
            patch_of(&job),
            exact,
            "planner and evaluator differ for {host} at {now}"
        );
        job
    }

    /// One check-in of every host at `now`: the host reports what it did, then the
    /// scheduler may offer one job, which the host "runs" right away.
    fn tick(&mut self, now: Timestamp) {
        for (name, id) in self.hosts.clone() {
            let inv = crate::fleet::inventory::sample(&name);
            let offered = self
                .db
                .write_blocking(|tx| {
                    crate::fleet::hosts::checkin(tx, now, &id, inv)?;
                    Ok::<_, crate::fleet::FleetError>(self.offer(tx, now, &id))
                })
                .unwrap();
            let Some(job) = offered else { continue };
            let row = self
                .db
                .read_blocking(|c| crate::db::jobs::job(c, &job))
                .unwrap()
                .unwrap();
            let patch = row.patch_id.clone();
            self.check_window(&name, &id, &patch, now);
            self.offered.insert((name.clone(), patch.clone()), now);
            let fail = self.failing.contains(&patch);
            let mut states = vec![
                JobState::Downloading,
                JobState::Downloaded,
                JobState::Installing,
            ];
            states.push(if fail {
                JobState::Failed
            } else {
                JobState::Verifying
            });
            if !fail {
                states.push(JobState::Succeeded);
                self.done.insert((name.clone(), patch.clone()), now);
            }
            let events: Vec<JobEvent> = states
                .into_iter()
                .map(|s| JobEvent {
                    job_id: job.clone(),
                    state: s,
                    at: now,
                    output: String::new(),
                })
                .collect();
            self.db
                .write_blocking(|tx| crate::fleet::jobs::apply_events(tx, now, &id, &events))
                .unwrap();
        }
    }

    /// The invariant: an offer is inside one of the host's openings (regular, or the
    /// emergency window for an expedited patch), with `est_minutes` to spare, and not
    /// in a blackout.
    fn check_window(&self, name: &str, id: &str, patch: &str, now: Timestamp) {
        let world = self.db.read_blocking(World::load).unwrap();
        let host = &world.hosts[id];
        let ring = self.policy.ring_of(&host.facts).unwrap();
        let ws = self.policy.windows_for(&host.facts, ring).unwrap();
        let p = world.patch("acme", patch).unwrap();
        let expedited = matches!(
            world.approval(p),
            crate::policy::Approval::Approved {
                expedite: Some(_),
                ..
            }
        );
        let urgency = if expedited {
            Urgency::Expedited
        } else {
            Urgency::Normal
        };
        let check = may_start(&ws.windows, &ws.tz, now, p.entry.est_minutes, urgency);
        assert!(
            matches!(check, StartCheck::Allowed { .. }),
            "{patch} offered to {name} at {now} ({}) outside its window: {check:?}",
            ws.tz.to_datetime(now)
        );
    }

    fn run(&mut self, from: Timestamp, to: Timestamp, mut at: impl FnMut(&mut Sim, Timestamp)) {
        let step = SignedDuration::from_mins(20);
        let mut now = from;
        let mut n = 0;
        while now < to {
            at(self, now);
            self.tick(now);
            now = now.checked_add(step).unwrap();
            n += 1;
            assert!(n < 10_000, "bounded");
        }
    }

    fn got(&self, patch: &str) -> BTreeSet<String> {
        self.offered
            .keys()
            .filter(|(_, p)| p == patch)
            .map(|(h, _)| h.clone())
            .collect()
    }

    fn last_done(&self, patch: &str) -> Option<Timestamp> {
        self.done
            .iter()
            .filter(|((_, p), _)| p == patch)
            .map(|(_, t)| *t)
            .max()
    }
}

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn six_weeks_across_two_clock_changes() {
    let normal = patch("acme/normal-1", Severity::High, 30);
    let urgent = patch("acme/urgent-1", Severity::Critical, 30);
    let broken = patch("acme/broken-1", Severity::Medium, 30);
    let base = patch("acme/base-1", Severity::Low, 20);
    let mut needs_base = patch("acme/needs-base-1", Severity::Critical, 20);
    needs_base.requires = vec!["acme/base-1".into()];
    let old = patch("acme/old-1", Severity::Medium, 20);
    let mut new = patch("acme/new-1", Severity::Medium, 20);
    new.supersedes = vec!["acme/old-1".into()];
    let all = [normal, urgent, broken, base, needs_base, old, new];
    let mut sim = Sim::new(&all);
    sim.failing.insert("acme/broken-1".into());

    let start = t("2026-03-01T00:00:00Z");
    let end = t("2026-04-12T00:00:00Z");
    let mut decided = BTreeSet::new();
    sim.run(start, end, |sim, now| {
        let mut once = |key: &str, f: &mut dyn FnMut(&Sim)| {
            if decided.insert(key.to_string()) {
                f(sim);
            }
        };
        if now >= t("2026-03-02T10:00:00Z") {
            once("normal+urgent", &mut |s| {
                s.approve(now, "acme/normal-1", false);
                s.approve(now, "acme/urgent-1", true);
            });
        }
        if now >= t("2026-03-16T10:00:00Z") {
            once("broken", &mut |s| s.approve(now, "acme/broken-1", false));
            // Approved first: must still wait for its requirement.
            once("needs-base", &mut |s| {
                s.approve(now, "acme/needs-base-1", false)
            });
            once("old", &mut |s| s.approve(now, "acme/old-1", false));
        }
        if now >= t("2026-03-20T10:00:00Z") {
            once("base", &mut |s| s.approve(now, "acme/base-1", false));
        }
        if now >= t("2026-03-27T10:00:00Z") {
            once("new", &mut |s| s.approve(now, "acme/new-1", false));
        }
    });

    let everyone: BTreeSet<String> = sim.hosts.iter().map(|(n, _)| n.clone()).collect();
    // Both reach every host; the expedited critical patch finishes sooner.
    assert_eq!(sim.got("acme/normal-1"), everyone);
    assert_eq!(sim.got("acme/urgent-1"), everyone);
    let (u, n) = (
        sim.last_done("acme/urgent-1").unwrap(),
        sim.last_done("acme/normal-1").unwrap(),
    );
    assert!(u < n, "expedited finished {u}, normal {n}");

    // The failing patch halted in the pilot: the canary failed, no broad host got it.
    let broken_hosts = sim.got("acme/broken-1");
    assert_eq!(broken_hosts.len(), 1, "{broken_hosts:?}");
    assert!(broken_hosts.iter().all(|h| h.starts_with('p')));
    let r = sim
        .db
        .read_blocking(|c| crate::db::rollout::rollout(c, "acme", "acme/broken-1"))
        .unwrap()
        .unwrap();
    assert_eq!(r.state, "halted", "{r:?}");

    // requires: everyone got base before needs-base.
    assert_eq!(sim.got("acme/needs-base-1"), everyone);
    for h in &everyone {
        let b = sim.done[&(h.clone(), "acme/base-1".to_string())];
        let nb = sim.offered[&(h.clone(), "acme/needs-base-1".to_string())];
        assert!(b < nb, "{h}: base done {b}, needs-base offered {nb}");
    }

    // supersedes: after new-1 was approved, old-1 was offered to nobody; every host
    // ends up with new-1.
    let approved_new = t("2026-03-27T10:00:00Z");
    for ((h, p), at) in &sim.offered {
        if p == "acme/old-1" {
            assert!(*at < approved_new, "{h} got old-1 at {at}");
        }
    }
    assert_eq!(sim.got("acme/new-1"), everyone);

    // Resume acknowledges the pilot failure: the rollout may go on.
    let now = end;
    sim.db
        .write_blocking(|tx| {
            approvals::control(tx, now, "acme/broken-1", Control::Resume, "sim", "fixed")
        })
        .unwrap();
}

#[test]
fn a_host_busy_with_a_deployed_job_is_offered_nothing_until_it_ends() {
    let sim = Sim::new(&[
        patch("acme/manual-1", Severity::Low, 20),
        patch("acme/rolled-1", Severity::High, 20),
    ]);
    // Tuesday 02:30 in Berlin: inside the window.
    let now = t("2026-03-03T01:30:00Z");
    let (_, p1) = sim.hosts[0].clone();
    let deployed = sim.deploy(now, "acme/manual-1", &p1);
    sim.approve(now, "acme/rolled-1", false);
    let offer = || {
        sim.db
            .write_blocking(|tx| super::engine::offer(tx, now, &sim.policy, &sim.key, &p1))
            .unwrap()
    };
    assert_eq!(offer(), None, "offered while the deployed job is open");
    sim.succeed(now, &p1, &deployed);
    assert!(offer().is_some(), "not offered once the host was free");
}

#[test]
fn a_check_in_never_does_the_first_index_load_the_planner_task_does() {
    let sim = Sim::new(&[patch("acme/rolled-1", Severity::High, 20)]);
    let now = t("2026-03-03T01:30:00Z");
    sim.approve(now, "acme/rolled-1", false);
    let fresh = || {
        sim.db
            .write_blocking(|tx| sim.planner.fresh(tx, &sim.policy, now))
            .unwrap()
    };
    // Before the first load: a check-in's transaction gets no plan and would not try.
    assert!(fresh().is_none(), "a check-in loaded every inventory");
    let hosts = sim
        .db
        .read_blocking(|c| sim.planner.warm(c, &sim.policy, now).map(|(n, _)| n))
        .unwrap();
    assert_eq!(hosts, sim.hosts.len());
    // Loaded: a check-in may now plan inline (cheap, incremental), e.g. right after an
    // approval changed the generation.
    let plan = fresh().expect("a plan once the index is loaded");
    assert_eq!(plan.hosts(), sim.hosts.len());
    assert_eq!(plan.patches.len(), 1);
    // A host revoked afterwards moves the input counters; the next warm-up drops it.
    let (_, gone) = sim.hosts[2].clone();
    sim.db
        .write_blocking(|tx| crate::fleet::hosts::revoke(tx, &gone, now, "test", "test"))
        .unwrap();
    let hosts = sim
        .db
        .read_blocking(|c| sim.planner.warm(c, &sim.policy, now).map(|(n, _)| n))
        .unwrap();
    assert_eq!(hosts, sim.hosts.len() - 1);
}

#[test]
fn the_time_driven_rebuild_sees_hosts_checking_in_without_other_changes() {
    let sim = Sim::new(&[patch("acme/rolled-1", Severity::High, 20)]);
    // Tuesday 02:30 in Berlin: inside the window.
    let now = t("2026-03-03T01:30:00Z");
    sim.approve(now, "acme/rolled-1", false);
    // Both pilot hosts install it now; they last checked in at enrollment, before.
    for (_, host) in &sim.hosts[..2] {
        let job = sim.deploy(now, "acme/rolled-1", host);
        sim.succeed(now, host, &job);
    }
    // A day later the soak is over, but the pilots have not checked in since.
    let later = now.checked_add(SignedDuration::from_hours(25)).unwrap();
    let pilot_gate = |planner: &super::planner::Planner| {
        let plan = sim
            .db
            .read_blocking(|c| planner.rebuild(c, &sim.policy, later))
            .unwrap();
        plan.patches[0].plan.steps[0].gate.clone()
    };
    let gate = pilot_gate(&sim.planner);
    assert!(
        format!("{gate:?}").contains("NotCheckingIn"),
        "pilot gate before the check-ins: {gate:?}"
    );
    // They check in (only `last_seen` moves: no counter the planner watches).
    let seen = later.checked_sub(SignedDuration::from_mins(10)).unwrap();
    for (_, host) in &sim.hosts[..2] {
        sim.db
            .write_blocking(|tx| crate::db::fleet::set_last_seen(tx, host, &seen.to_string()))
            .unwrap();
    }
    let gate = pilot_gate(&sim.planner);
    assert_eq!(gate, crate::policy::GateStatus::Passed, "{gate:?}");
    // The same as a planner that reads everything afresh.
    assert_eq!(pilot_gate(&super::planner::Planner::new()), gate);
}

#[test]
fn a_host_clock_far_in_the_past_or_future_does_not_shorten_the_soak() {
    let sim = Sim::new(&[patch("acme/rolled-1", Severity::High, 20)]);
    // Tuesday 02:30 in Berlin: inside the window.
    let now = t("2026-03-03T01:30:00Z");
    sim.approve(now, "acme/rolled-1", false);
    // The two pilots succeed now by the appliance's clock; their own clocks say 1970
    // and 2100. The pilot ring's soak is 24 h.
    let claims = [t("1970-01-01T00:00:00Z"), t("2100-01-01T00:00:00Z")];
    for ((_, host), host_at) in sim.hosts[..2].iter().zip(claims) {
        let job = sim.deploy(now, "acme/rolled-1", host);
        sim.succeed_claiming(now, host_at, host, &job);
    }
    let pilot_gate = |at: Timestamp| {
        // The pilots checked in ten minutes before `at` (the health condition).
        let seen = at.checked_sub(SignedDuration::from_mins(10)).unwrap();
        for (_, host) in &sim.hosts[..2] {
            sim.db
                .write_blocking(|tx| crate::db::fleet::set_last_seen(tx, host, &seen.to_string()))
                .unwrap();
        }
        let plan = sim
            .db
            .read_blocking(|c| super::planner::Planner::new().rebuild(c, &sim.policy, at))
            .unwrap();
        plan.patches[0].plan.steps[0].gate.clone()
    };
    for hours in [1, 12, 23] {
        let at = now.checked_add(SignedDuration::from_hours(hours)).unwrap();
        let gate = pilot_gate(at);
        assert!(
            !gate.passed() && format!("{gate:?}").contains("Soak"),
            "{hours} h after the pilots succeeded the soak must still hold: {gate:?}"
        );
    }
    let after = now.checked_add(SignedDuration::from_hours(25)).unwrap();
    assert_eq!(pilot_gate(after), crate::policy::GateStatus::Passed);
    // And no broad host was offered the patch while the pilot ring soaked.
    let (_, broad) = sim.hosts[2].clone();
    let during = now.checked_add(SignedDuration::from_hours(2)).unwrap();
    let offered = sim
        .db
        .write_blocking(|tx| super::engine::offer(tx, during, &sim.policy, &sim.key, &broad))
        .unwrap();
    assert_eq!(
        offered, None,
        "a broad host was offered the patch during the soak"
    );
}

#[cfg(test)]
#[path = "sim_legacy.rs"]
mod legacy;
