//! The job page, the reboot state and finished rollouts, in process on the seeded
//! database of `tests` (host `web1` in the pilot ring, a host named with markup in
//! broad): a `reboot_pending` job reads "waiting for reboot" on every page and in
//! `rollout show`, a failed job's steps can be read by both roles with the markup
//! escaped, people read host names where ids used to be, and a rollout whose every
//! host has the patch is `completed` (and reopened when a new host needs it).

use axum::http::StatusCode;
use jiff::Timestamp;

use super::tests::{EVIL, Site, app, get, site};
use crate::auth::Role;
use crate::policy::Policy;
use crate::policy::approval::Decision;

const PATCH: &str = "DSA-1/openssl";
const ROLLOUT: &str = "/rollouts/acme%3ADSA-1%2Fopenssl";
const ESCAPED: &str = "&#60;script&#62;alert(&#34;x&#34;)&#60;/script&#62;&#39;&#34;&#38;";

fn at(now: Timestamp, mins: i64) -> String {
    now.checked_sub(jiff::SignedDuration::from_mins(mins))
        .unwrap()
        .to_string()
}

/// Approves the patch for both rings and stores a job for `host` in `ring` that went
/// through `events` (state, output), the last of which is its state.
fn approve(s: &Site) {
    s.db.write_blocking(|tx| {
        crate::rollout::approvals::decide(
            tx,
            s.now,
            &Policy::default(),
            PATCH,
            &Decision::Approve {
                rings: vec!["pilot".into(), "broad".into()],
                expedite: None,
            },
            "test",
            "test",
        )
    })
    .unwrap();
}

fn job(s: &Site, id: &str, host: &str, ring: &str, events: &[(&str, &str)]) {
    let state = events.last().unwrap().0;
    s.db.write_blocking(|tx| {
        tx.execute(
            "INSERT INTO jobs (id, host_id, feed, patch_id, state, ticket, created_at, updated_at, ring)
             VALUES (?1, ?2, 'acme', ?3, ?4, x'', ?5, ?6, ?7)",
            rusqlite::params![id, host, PATCH, state, at(s.now, 60), at(s.now, 10), ring],
        )?;
        for (i, (st, out)) in events.iter().enumerate() {
            tx.execute(
                "INSERT INTO job_events (job_id, seq, state, at, output) VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![id, i as i64 + 1, st, at(s.now, 50 - i as i64), out],
            )?;
        }
        Ok::<_, crate::error::DbError>(())
    })
    .unwrap();
}

const INSTALLED: &[(&str, &str)] = &[
    ("downloading", ""),
    ("downloaded", ""),
    ("installing", ""),
    ("verifying", "installed openssl 3.0.15\n"),
];

fn with_reboot_and_failure() -> Site {
    let s = site();
    approve(&s);
    let mut reboot = INSTALLED.to_vec();
    reboot.push((
        "reboot_pending",
        "verified; the new library loads after a reboot\n",
    ));
    job(&s, "j-reboot", "h-1", "pilot", &reboot);
    let failure = format!(
        "install failed\nunpacking\n{EVIL}\ndpkg: error processing package\n\
         [patchward-agent: install exited with exit status: 3]"
    );
    job(
        &s,
        "j-evil",
        "h-2",
        "broad",
        &[
            ("downloading", ""),
            ("downloaded", ""),
            ("installing", ""),
            ("failed", &failure),
        ],
    );
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_waiting_for_its_reboot_reads_the_same_everywhere() {
    let s = with_reboot_and_failure();
    let app = app(&s, Role::Auditor);
    // The host page: the host must reboot, and which job waits for it.
    let (st, host) = get(&app, "/hosts/h-1").await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        host.contains("<dt>Reboot required</dt><dd><span class=\"badge warn\">yes</span>")
            && host.contains("href=\"/jobs/j-reboot\""),
        "{host}"
    );
    // The rollout page and the dashboard: waiting for reboot, not running.
    let (_, page) = get(&app, ROLLOUT).await;
    assert!(
        page.contains("0 running · 1 waiting for reboot ·"),
        "{page}"
    );
    assert!(page.contains("pilot: 1 waiting for reboot"), "{page}");
    let (_, dash) = get(&app, "/").await;
    assert!(dash.contains("0 · 0 · 1 · 0 of"), "{dash}");
    // `rollout show` and its JSON.
    let world = s.db.read_blocking(crate::rollout::World::load).unwrap();
    let v = crate::rollout::views::views(
        &world,
        &Policy::default(),
        s.now,
        Some("acme:DSA-1/openssl"),
    )
    .unwrap();
    let json = serde_json::to_value(&v[0]).unwrap();
    assert_eq!(json["rings"][0]["ring"], "pilot");
    assert_eq!(json["rings"][0]["awaiting_reboot"], 1);
    assert_eq!(json["rings"][0]["in_progress"], 0);
    assert_eq!(json["rings"][0]["members"][0]["state"], "awaiting_reboot");
    assert_eq!(json["rings"][0]["members"][0]["id"], "h-1");
    let text = crate::rollout::views::print_views(&v, &world, true, None);
    assert!(
        text.contains("0 running    1 waiting for reboot")
            && text.contains("waiting for reboot: web1 (job j-reboot)"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_can_be_read_step_by_step_by_both_roles_and_names_hosts() {
    let s = with_reboot_and_failure();
    for role in [Role::Admin, Role::Auditor] {
        let app = app(&s, role);
        let (st, body) = get(&app, "/jobs/j-evil").await;
        assert_eq!(st, StatusCode::OK, "{role}: {body}");
        assert!(!body.contains("<script>alert"), "{role}: raw markup");
        // The host by (escaped) name with its id on hover, the failed step, its exit
        // code and its output, after the states before it.
        assert!(
            body.contains(&format!("title=\"h-2\">{ESCAPED}</a>")),
            "{body}"
        );
        let pos = |needle: &str| {
            body.find(needle)
                .unwrap_or_else(|| panic!("{needle}: {body}"))
        };
        assert!(pos("job-downloading") < pos("job-installing"));
        assert!(pos("job-installing") < pos("step <code>install</code>"));
        assert!(body.contains("<span class=\"err\">exit 3</span>"), "{body}");
        assert!(pos(ESCAPED) < pos("dpkg: error processing package"));
        let (st, page) = get(&app, "/jobs/j-reboot").await;
        assert_eq!(st, StatusCode::OK);
        assert!(
            page.contains("step <code>verify</code>") && page.contains("exit 0"),
            "{page}"
        );
        assert!(page.contains("waiting for reboot"), "{page}");
    }
    let app = app(&s, Role::Auditor);
    let (st, body) = get(&app, "/jobs/j-nope").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(body.contains("No such job"), "{body}");
    // Linked from the host page, the dashboard's failures and the rollout's hosts.
    for path in ["/hosts/h-2", "/", ROLLOUT] {
        let (_, page) = get(&app, path).await;
        assert!(page.contains("href=\"/jobs/j-evil\""), "{path}: {page}");
    }
    let (_, page) = get(&app, ROLLOUT).await;
    assert!(page.contains("broad: 1 failed"), "{page}");
    assert!(
        page.contains(&format!("title=\"h-2\">{ESCAPED}</a>")),
        "{page}"
    );
    // Audit subjects that are hosts read as their names.
    s.db.write_blocking(|tx| {
        crate::audit::append(
            tx,
            s.now,
            &crate::audit::NewEntry {
                actor: "test",
                action: "host.enrolled",
                subject: "h-1",
                details: serde_json::json!({}),
            },
        )
    })
    .unwrap();
    let (_, audit) = get(&app, "/audit").await;
    assert!(audit.contains("title=\"h-1\">web1</a>"), "{audit}");
    // A brake's note names hosts, not ids.
    let note =
        s.db.read_blocking(|c| {
            crate::rollout::engine::brake_note(
                c,
                "pilot",
                &[crate::policy::gate::GateReason::RolledBack {
                    hosts: vec!["h-1".into()],
                }],
            )
        })
        .unwrap();
    assert_eq!(note, "error brake in ring pilot: rolled back on web1");
}

/// Builds the server's plan on the site's database and acts on it, as the planner
/// task does every second.
fn plan_and_advance(s: &Site, planner: &crate::rollout::planner::Planner) -> Vec<String> {
    let p = Policy::default();
    let plan =
        s.db.read_blocking(|c| planner.rebuild(c, &p, s.now))
            .unwrap();
    s.db.write_blocking(|tx| crate::rollout::planner::advance(tx, &p, Some(&plan), s.now))
        .unwrap()
}

fn rollout_state(s: &Site) -> (String, String) {
    let r =
        s.db.read_blocking(|c| crate::db::rollout::rollout(c, "acme", PATCH))
            .unwrap()
            .unwrap();
    (r.state, r.updated_at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_every_host_has_is_completed_and_reopens_for_a_new_host() {
    let s = site();
    approve(&s);
    let mut done = INSTALLED.to_vec();
    done.push(("succeeded", "verified\n"));
    job(&s, "j-1", "h-1", "pilot", &done);
    let planner = crate::rollout::planner::Planner::new();
    // Only the pilot has it: the broad host still waits (the soak holds it back).
    plan_and_advance(&s, &planner);
    assert_eq!(rollout_state(&s).0, "active");
    job(&s, "j-2", "h-2", "broad", &done);
    let changes = plan_and_advance(&s, &planner);
    assert!(
        changes.iter().any(|c| c.contains("completed")),
        "{changes:?}"
    );
    assert_eq!(rollout_state(&s), ("completed".into(), s.now.to_string()));
    let last = s.db.read_blocking(|c| crate::audit::recent(c, 1)).unwrap();
    assert_eq!(
        (last[0].actor.as_str(), last[0].action.as_str()),
        ("patchward", "rollout.completed")
    );
    // The pages: not in progress on the dashboard, completed with its time.
    let app = app(&s, Role::Auditor);
    let (_, dash) = get(&app, "/").await;
    assert!(dash.contains("No rollout is running"), "{dash}");
    let (_, page) = get(&app, ROLLOUT).await;
    assert!(
        page.contains("state-completed")
            && page.contains("<dt>Completed</dt><dd>2026-11-27 10:00 UTC</dd>"),
        "{page}"
    );
    let world = s.db.read_blocking(crate::rollout::World::load).unwrap();
    let v = crate::rollout::views::views(&world, &Policy::default(), s.now, None).unwrap();
    assert_eq!(
        v[0].completed_at.as_deref(),
        Some(s.now.to_string().as_str())
    );
    assert!(
        !crate::rollout::views::unfinished(&v[0].state),
        "`rollout list` shows it"
    );
    // A host that enrolls into a ring later and needs the patch reopens it.
    s.db.write_blocking(|tx| {
        tx.execute(
            "INSERT INTO hosts (id, hostname, public_key, ring, labels, enrolled_at, last_seen)
             VALUES ('h-3', 'web3', 'h-3', 'pilot', '{}', ?1, ?1)",
            [s.now.to_string()],
        )?;
        let inv = crate::fleet::inventory::sample("web3");
        tx.execute(
            "INSERT INTO host_inventory (host_id, reported_at, inventory, packages_digest)
             VALUES ('h-3', ?1, ?2, '')",
            rusqlite::params![s.now.to_string(), serde_json::to_string(&inv).unwrap()],
        )?;
        Ok::<_, crate::error::DbError>(())
    })
    .unwrap();
    let (_, reopen) =
        s.db.read_blocking(|c| planner.warm(c, &Policy::default(), s.now))
            .unwrap();
    assert_eq!(reopen.len(), 1);
    s.db.write_blocking(|tx| crate::rollout::planner::complete_and_reopen(tx, &[], &reopen, s.now))
        .unwrap();
    assert_eq!(rollout_state(&s).0, "active");
    let last = s.db.read_blocking(|c| crate::audit::recent(c, 1)).unwrap();
    assert_eq!(last[0].action, "rollout.reopened");
}
