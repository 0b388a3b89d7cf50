//! Rollouts end to end with the real binaries: a script patch is approved, the pilot
//! agent is offered it at its check-in and installs it inside its window, the pilot
//! gate (one success, a short soak) passes, and only then are the broad agents offered
//! it. `explain` tells each host why not yet at every step. A second patch whose
//! install fails on the pilot halts its rollout (error brake) before any broad host
//! gets it; `rollout resume` acknowledges the failure. A patch outside every window is
//! not offered, and `explain` names the next opening.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::Value;

use crate::feedkit::{Feed, Site};
use crate::jobs::{add_script_patch_with, agent, jobs, ok, script_archive};
use crate::support::{Server, run, stderr};

const POLICY: &str = r#"
[[policy.rings]]
name = "pilot"
gate = { canary = true, min_successes = 1, success_ratio = 0.0, soak = "2s", max_failures = 0 }

[[policy.rings]]
name = "broad"
catch_all = true

[policy.windows.default]
tz = "UTC"
weekly = [{ days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], start = "00:00", duration = "24h" }]

[policy.windows.never]
tz = "Europe/Berlin"
weekly = [{ days = ["sun"], start = "03:00", duration = "1h" }]
blackout = [{ from = "FROM", until = "UNTIL", reason = "frozen" }]

[[policy.host_windows]]
labels = { frozen = "yes" }
windows = "never"
"#;

fn explain(site: &Site, host: &str, patch: &str) -> Value {
    let out =
        ok(run(site.cmd(&[
            "explain", "--host", host, "--patch", patch, "--json",
        ])));
    let v: Value = serde_json::from_str(&out).unwrap();
    v[0].clone()
}

/// Polls `f` (bounded: 15 s) until it holds.
#[track_caller]
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{what}: not within 15 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The server's count of check-ins answered on `path` ("quiet": read-only, "write").
fn checkins(server: &Server, path: &str) -> u64 {
    let text = crate::support::http()
        .get(format!("{}/metrics", server.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let name = format!("patchward_checkins_total{{path=\"{path}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(name.as_str())?.trim().parse().ok())
        .unwrap_or(0)
}

fn state_of(site: &Site, host_id: &str, patch: &str) -> Option<String> {
    jobs(site)
        .into_iter()
        .rfind(|j| j["host_id"] == host_id && j["patch_id"] == patch)
        .map(|j| j["state"].as_str().unwrap().to_string())
}

#[test]
fn approve_pilot_gate_broad_with_explanations_and_the_error_brake() {
    let tmp = tempfile::tempdir().unwrap();
    let marks = tempfile::tempdir().unwrap();
    let m = |n: &str| marks.path().join(n).display().to_string();
    let t = Timestamp::now();
    let mut feed = Feed::init(tmp.path(), "acme", t);
    feed.add("acme/filler", "low", "CVE-2099-0002", 1000, 1);
    let selector = "[[applies_to]]\nlabels = [\"site=hq\"]\n";
    let good = script_archive(&[
        (
            "install",
            format!("echo $PATCHWARD_JOB_ID >> {}", m("good")),
        ),
        ("verify", "true".into()),
        (
            "rollback",
            format!("echo $PATCHWARD_JOB_ID >> {}", m("undone")),
        ),
    ]);
    let bad = script_archive(&[
        ("install", "echo broken >&2; exit 1".into()),
        ("verify", "true".into()),
    ]);
    add_script_patch_with(&feed, "acme/good-1", selector, &good);
    add_script_patch_with(&feed, "acme/bad-1", selector, &bad);
    feed.publish(t);
    let bundle = feed.export(&tmp.path().join("full.pwb"), None, t);
    let site = Site::new(tmp.path(), "s", &[&feed]);
    let mut cfg = std::fs::read_to_string(&site.config).unwrap();
    // A blackout around now, in the window set's zone.
    let civil = |days: i64| {
        let t = t
            .checked_add(jiff::SignedDuration::from_hours(24 * days))
            .unwrap();
        jiff::tz::TimeZone::get("Europe/Berlin")
            .unwrap()
            .to_datetime(t)
            .strftime("%Y-%m-%dT%H:%M")
            .to_string()
    };
    cfg.push_str(
        &POLICY
            .replace("FROM", &civil(-1))
            .replace("UNTIL", &civil(30)),
    );
    std::fs::write(&site.config, cfg).unwrap();
    ok(site.import(&bundle));
    let server = Server::start_with(&site.data, &["--config", site.config.to_str().unwrap()]);

    let pilot_token = ok(run(site.cmd(&[
        "hosts", "token", "create", "--ring", "pilot", "--labels", "site=hq",
    ])));
    let broad_token = ok(run(site.cmd(&[
        "hosts", "token", "create", "--uses", "3", "--labels", "site=hq",
    ])));
    let frozen_token = ok(run(site.cmd(&[
        "hosts",
        "token",
        "create",
        "--labels",
        "site=hq,frozen=yes",
    ])));
    let enroll = |name: &str, token: &str| {
        let st = tmp.path().join(name);
        let out = ok(agent(
            &st,
            &[
                "enroll",
                "--server",
                &server.url,
                "--token",
                token.trim(),
                "--hostname",
                name,
            ],
        ));
        let id = out
            .lines()
            .find_map(|l| l.strip_prefix("enrolled as host "))
            .unwrap()
            .trim()
            .to_string();
        (st, id)
    };
    let (p1, p1_id) = enroll("pilot1", &pilot_token);
    let (b1, b1_id) = enroll("broad1", &broad_token);
    let (b2, b2_id) = enroll("broad2", &broad_token);
    let (f1, f1_id) = enroll("frozen1", &frozen_token);

    // Not approved: nobody is offered anything, and explain says so.
    ok(agent(&p1, &["once"]));
    assert_eq!(state_of(&site, &p1_id, "acme/good-1"), None);
    let e = explain(&site, "pilot1", "acme/good-1");
    assert_eq!(e["status"], "blocked", "{e}");
    assert_eq!(e["reason"]["code"], "not_approved", "{e}");

    // Refusals change nothing: unknown ring, expedite of a non-critical patch.
    let o = run(site.cmd(&["approve", "acme/good-1", "--rings", "nope"]));
    assert!(
        !o.status.success() && stderr(&o).contains("not defined"),
        "{}",
        stderr(&o)
    );
    let o = run(site.cmd(&["expedite", "acme/good-1", "--reason", "hurry"]));
    assert!(
        !o.status.success() && stderr(&o).contains("only critical or KEV"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        explain(&site, "pilot1", "acme/good-1")["reason"]["code"],
        "not_approved"
    );

    // Check-ins the plan offers nothing stay on the read-only path, also right after
    // an approval made every plan stale (the check-in replans on its reader).
    ok(agent(&f1, &["once"]));
    let writes = || checkins(&server, "write");
    let (w0, q0) = (writes(), checkins(&server, "quiet"));
    let out = ok(run(site.cmd(&[
        "approve",
        "acme/good-1",
        "--reason",
        "tested",
    ])));
    assert!(out.contains("approved for pilot, broad"), "{out}");
    ok(agent(&f1, &["once"]));
    assert_eq!(
        writes(),
        w0,
        "a check-in after the approval went to the writer"
    );
    assert_eq!(checkins(&server, "quiet"), q0 + 1);
    assert_eq!(state_of(&site, &f1_id, "acme/good-1"), None);
    // Broad waits for the pilot gate.
    let e = explain(&site, "broad1", "acme/good-1");
    assert_eq!(e["reason"]["code"], "waiting_on_gate", "{e}");
    assert_eq!(e["reason"]["ring"], "pilot", "{e}");
    // The pilot host may start now.
    assert_eq!(explain(&site, "pilot1", "acme/good-1")["status"], "offer");

    // A broad agent checking in first gets nothing.
    ok(agent(&b1, &["once"]));
    assert_eq!(state_of(&site, &b1_id, "acme/good-1"), None);
    // The pilot agent is offered the job, installs it and reports in the same run.
    let out = ok(agent(&p1, &["once"]));
    assert!(out.contains("succeeded"), "{out}");
    assert_eq!(
        state_of(&site, &p1_id, "acme/good-1").as_deref(),
        Some("succeeded")
    );
    let listed = jobs(&site);
    let pj = listed.iter().find(|j| j["host_id"] == p1_id).unwrap();
    assert!(pj.to_string().contains("latest_start") || pj["state"] == "succeeded");
    // Soaking: broad still waits, and explain says until when.
    let e = explain(&site, "broad1", "acme/good-1");
    assert_eq!(e["reason"]["code"], "waiting_on_gate", "{e}");
    assert!(e.to_string().contains("soak"), "{e}");
    ok(agent(&b1, &["once"]));
    assert_eq!(state_of(&site, &b1_id, "acme/good-1"), None);

    // After the soak (and a fresh pilot check-in for the health condition) the broad
    // hosts are offered it, one at a time behind a canary.
    let start = Instant::now();
    loop {
        ok(agent(&p1, &["once"]));
        if explain(&site, "broad1", "acme/good-1")["status"] == "offer" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "gate never passed"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // The frozen broad host's window is blacked out: the gate passed, but not for it.
    let e = explain(&site, "frozen1", "acme/good-1");
    assert_eq!(e["reason"]["code"], "blackout", "{e}");
    // Check-ins read the fleet plan, rebuilt every second: the first one after the gate
    // passed may still see the pilot soaking.
    eventually("broad1 is offered the patch after the gate", || {
        ok(agent(&b1, &["once"]));
        state_of(&site, &b1_id, "acme/good-1").is_some()
    });
    assert_eq!(
        state_of(&site, &b1_id, "acme/good-1").as_deref(),
        Some("succeeded")
    );
    // Behind the canary: offered once a plan has seen broad1 succeed.
    eventually("broad2 is offered the patch after the canary", || {
        ok(agent(&b2, &["once"]));
        state_of(&site, &b2_id, "acme/good-1").is_some()
    });
    assert_eq!(
        state_of(&site, &b2_id, "acme/good-1").as_deref(),
        Some("succeeded")
    );
    assert_eq!(
        std::fs::read_to_string(m("good")).unwrap().lines().count(),
        3
    );
    let e = explain(&site, "broad2", "acme/good-1");
    assert_eq!(e["status"], "installed", "{e}");
    let shown = ok(run(site.cmd(&["rollout", "show", "acme/good-1", "--json"])));
    let v: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["rings"][0]["succeeded"], 1, "{v}");
    assert_eq!(v["rings"][1]["succeeded"], 2, "{v}");

    // Roll it back: each of the three hosts that installed it gets a rollback job, runs
    // the patch's `rollback` at its next check-in and reports `rolled_back`.
    let out = ok(run(site.cmd(&[
        "rollout",
        "rollback",
        "acme/good-1",
        "--reason",
        "app regression",
        "--json",
    ])));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rollback_jobs"].as_array().unwrap().len(), 3, "{v}");
    for a in [&p1, &b1, &b2] {
        ok(agent(a, &["once"]));
    }
    assert_eq!(
        std::fs::read_to_string(m("undone"))
            .unwrap()
            .lines()
            .count(),
        3
    );
    for id in [&p1_id, &b1_id, &b2_id] {
        assert_eq!(
            state_of(&site, id, "acme/good-1").as_deref(),
            Some("rolled_back"),
            "{id}"
        );
    }
    let e = explain(&site, "broad1", "acme/good-1");
    assert_eq!(e["state"], "rolled_back", "{e}");
    // Finished rollouts are listed with --all only.
    let listed = ok(run(site.cmd(&["rollout", "list"])));
    assert!(!listed.contains("acme:acme/good-1"), "{listed}");
    let listed = ok(run(site.cmd(&["rollout", "list", "--all"])));
    assert!(listed.contains("acme:acme/good-1  rolled_back"), "{listed}");
    let audit = ok(run(site.cmd(&["audit", "list", "--json"])));
    assert!(audit.contains("rollout.rolled_back"), "{audit}");
    // Nothing is left to undo: refused, and nothing changes.
    let before = jobs(&site).len();
    let o = run(site.cmd(&["rollout", "rollback", "acme/good-1", "--reason", "again"]));
    assert!(
        !o.status.success() && stderr(&o).contains("nothing to roll back"),
        "{}",
        stderr(&o)
    );
    assert_eq!(jobs(&site).len(), before);

    // A failing pilot halts the rollout before any broad host installs.
    ok(run(site.cmd(&["approve", "acme/bad-1", "--reason", "try"])));
    let out = ok(agent(&p1, &["once"]));
    assert!(out.contains("failed"), "{out}");
    for b in [&b1, &b2] {
        ok(agent(b, &["once"]));
    }
    assert_eq!(state_of(&site, &b1_id, "acme/bad-1"), None);
    assert_eq!(state_of(&site, &b2_id, "acme/bad-1"), None);
    let e = explain(&site, "broad1", "acme/bad-1");
    assert_eq!(e["reason"]["code"], "rollout_halted", "{e}");
    // The server's planner halts it within about a second.
    eventually("the error brake halts the rollout", || {
        ok(run(site.cmd(&["rollout", "list"]))).contains("acme:acme/bad-1  halted")
    });
    let audit = ok(run(site.cmd(&["audit", "list", "--json"])));
    assert!(audit.contains("rollout.halted"), "{audit}");
    assert!(audit.contains("patch.approved"), "{audit}");
    // Resume acknowledges the failure; the pilot host is not retried on its own.
    ok(run(site.cmd(&[
        "rollout",
        "resume",
        "acme/bad-1",
        "--reason",
        "known issue",
    ])));
    let e = explain(&site, "pilot1", "acme/bad-1");
    assert_eq!(e["status"], "job", "{e}");
    // Abort: no more offers.
    ok(run(site.cmd(&[
        "rollout",
        "abort",
        "acme/bad-1",
        "--reason",
        "broken",
    ])));
    let e = explain(&site, "broad1", "acme/bad-1");
    assert_eq!(e["reason"]["code"], "rollout_aborted", "{e}");
    let o = run(site.cmd(&["rollout", "resume", "acme/bad-1", "--reason", "x"]));
    assert!(
        !o.status.success() && stderr(&o).contains("aborted"),
        "{}",
        stderr(&o)
    );

    // Defer: a date in the past is refused and changes nothing; a future one holds it.
    let o = run(site.cmd(&["defer", "acme/bad-1", "--until", "2020-01-01T00:00:00Z"]));
    assert!(
        !o.status.success() && stderr(&o).contains("not in the future"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        explain(&site, "broad1", "acme/bad-1")["reason"]["code"],
        "rollout_aborted"
    );
    // A format it does not take is refused with the formats it does, and changes
    // nothing; a mistyped patch id gets a suggestion.
    let o = run(site.cmd(&["defer", "acme/bad-1", "--until", "15.01.2027"]));
    assert!(
        !o.status.success()
            && stderr(&o).contains("\"15.01.2027\" is not a date and time; write a date (2027-01-15, meaning 00:00 UTC that day)")
            && stderr(&o).contains("RFC 3339"),
        "{}",
        stderr(&o)
    );
    let o = run(site.cmd(&["rollout", "show", "acme/bad1"]));
    assert!(
        !o.status.success() && stderr(&o).contains("(did you mean \"acme/bad-1\"?)"),
        "{}",
        stderr(&o)
    );
    let o = run(site.cmd(&["explain", "--host", "brod1"]));
    assert!(
        !o.status.success() && stderr(&o).contains("(did you mean \"broad1\"?)"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        explain(&site, "broad1", "acme/bad-1")["reason"]["code"],
        "rollout_aborted"
    );
    // A plain date is the start of that day (UTC).
    let day = (Timestamp::now() + jiff::SignedDuration::from_hours(72))
        .strftime("%Y-%m-%d")
        .to_string();
    let out = ok(run(site.cmd(&["defer", "acme/bad-1", "--until", &day])));
    assert!(
        out.contains(&format!("deferred until {day}T00:00:00Z")),
        "{out}"
    );
    assert_eq!(
        explain(&site, "broad1", "acme/bad-1")["reason"]["code"],
        "deferred"
    );
    ok(run(site.cmd(&[
        "decline",
        "acme/bad-1",
        "--reason",
        "vendor pulled it",
    ])));
    let e = explain(&site, "broad1", "acme/bad-1");
    assert_eq!(e["reason"]["code"], "declined", "{e}");
    assert!(
        e["sentence"].as_str().unwrap().contains("vendor pulled it"),
        "{e}"
    );

    // windows next prints the openings in local time.
    let out =
        ok(run(site.cmd(&[
            "windows", "next", "--ring", "pilot", "--count", "2",
        ])));
    assert!(
        out.contains("00:00 +00") || out.contains("00:00 Z"),
        "{out}"
    );
    let o = run(site.cmd(&["windows", "next", "--ring", "nope"]));
    assert!(!o.status.success() && stderr(&o).contains("not a configured ring"));
}
