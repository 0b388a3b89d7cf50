//! Legacy hosts end to end with the real binaries: two agents in the same ring, one
//! playing debian 10 (`PATCHWARD_AGENT_OS_RELEASE`), one debian 12. An approved patch
//! is offered to the debian 12 agent only; `explain` says why for the other; after
//! `legacy include` it is offered too. Risk acceptance on the CLI: accept and revoke
//! are audited, `--until` beyond the maximum names the latest date, and an account
//! that is an auditor on the admin page is refused with nothing written.

use jiff::Timestamp;
use serde_json::Value;

use crate::feedkit::{Feed, Site};
use crate::jobs::{add_script_patch_with, jobs, ok, script_archive};
use crate::support::{Server, run, stderr};

const AGENT: &str = env!("CARGO_BIN_EXE_patchward-agent");

const POLICY: &str = r#"
[[policy.rings]]
name = "fleet"
catch_all = true

[policy.windows.default]
tz = "UTC"
weekly = [{ days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], start = "00:00", duration = "24h" }]
"#;

fn agent(state: &std::path::Path, os_release: &std::path::Path, args: &[&str]) -> String {
    let mut c = std::process::Command::new(AGENT);
    c.env("PATCHWARD_AGENT_OS_RELEASE", os_release)
        .arg("--state-dir")
        .arg(state)
        .args(args);
    ok(run(c))
}

fn has_job(site: &Site, host: &str) -> bool {
    jobs(site)
        .iter()
        .any(|j| j["host_id"] == host && j["patch_id"] == "acme/fix-1")
}

fn audit_actions(site: &Site) -> Vec<(String, String)> {
    let v: Value = serde_json::from_str(&ok(run(site.cmd(&["audit", "list", "--json"])))).unwrap();
    let entries = v
        .as_array()
        .cloned()
        .or_else(|| v["entries"].as_array().cloned())
        .unwrap();
    entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_string(),
                e["subject"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn an_eol_agent_is_not_offered_until_included_and_acceptance_is_admin_only() {
    let tmp = tempfile::tempdir().unwrap();
    let t = Timestamp::now();
    let mut feed = Feed::init(tmp.path(), "acme", t);
    feed.add("acme/filler", "low", "CVE-2099-0002", 1000, 1);
    let archive = script_archive(&[("install", "true".into()), ("verify", "true".into())]);
    add_script_patch_with(
        &feed,
        "acme/fix-1",
        "[[applies_to]]\nos = \"debian\"\n",
        &archive,
    );
    feed.publish(t);
    let bundle = feed.export(&tmp.path().join("full.pwb"), None, t);
    let site = Site::new(tmp.path(), "s", &[&feed]);
    let mut cfg = std::fs::read_to_string(&site.config).unwrap();
    cfg.push_str(POLICY);
    std::fs::write(&site.config, cfg).unwrap();
    ok(site.import(&bundle));
    let server = Server::start_with(&site.data, &["--config", site.config.to_str().unwrap()]);

    let token = ok(run(site.cmd(&["hosts", "token", "create", "--uses", "2"])));
    let os = |name: &str, version: &str| {
        let p = tmp.path().join(format!("{name}.os-release"));
        std::fs::write(&p, format!("ID=debian\nVERSION_ID=\"{version}\"\n")).unwrap();
        p
    };
    let enroll = |name: &str, release: &std::path::Path| {
        let st = tmp.path().join(name);
        let out = agent(
            &st,
            release,
            &[
                "enroll",
                "--server",
                &server.url,
                "--token",
                token.trim(),
                "--hostname",
                name,
            ],
        );
        let id = out
            .lines()
            .find_map(|l| l.strip_prefix("enrolled as host "))
            .unwrap()
            .trim()
            .to_string();
        (st, id)
    };
    let (old_os, new_os) = (os("old", "10"), os("new", "12"));
    let (old, old_id) = enroll("old", &old_os);
    let (new, new_id) = enroll("new", &new_os);
    ok(run(site.cmd(&[
        "approve",
        "acme/fix-1",
        "--reason",
        "tested",
    ])));

    agent(&old, &old_os, &["once"]);
    agent(&new, &new_os, &["once"]);
    assert!(
        has_job(&site, &new_id),
        "the debian 12 agent was not offered the patch"
    );
    assert!(
        !has_job(&site, &old_id),
        "the debian 10 agent was offered the patch"
    );
    // The admin page's Legacy page lists the debian 10 agent as end of life.
    let admin = crate::support::Admin::first_sign_in(&server, crate::web_pages::NEW_PW);
    let page = admin.get("/legacy").text().unwrap();
    let row = page
        .split("<tr>")
        .find(|r| r.contains(&format!("href=\"/legacy/{old_id}\"")))
        .unwrap_or_else(|| panic!("the debian 10 agent is not on the Legacy page: {page}"));
    assert!(row.contains(">eol</span>"), "{row}");
    assert!(row.contains("2024-06-30"), "{row}");
    let e: Value = serde_json::from_str(&ok(run(site.cmd(&[
        "explain",
        "--host",
        "old",
        "--patch",
        "acme/fix-1",
        "--json",
    ]))))
    .unwrap();
    let e = &e[0];
    assert_eq!(e["reason"]["code"], "host_end_of_life", "{e}");
    assert_eq!(e["reason"]["eol_date"], "2024-06-30", "{e}");
    let sentence = e["sentence"].as_str().unwrap();
    assert!(
        sentence.contains(
            "debian 10 reached end of life on 2024-06-30; legacy hosts are not offered \
             patches unless included (patchward legacy include old --reason ...)"
        ),
        "{sentence}"
    );

    ok(run(site.cmd(&[
        "legacy",
        "include",
        "old",
        "--reason",
        "tested on a clone",
    ])));
    // The rollout completed when the debian 12 host installed it; the planner task
    // reopens it within a second or so now that the included host needs it.
    let start = std::time::Instant::now();
    while !has_job(&site, &old_id) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(15),
            "the included debian 10 agent was not offered the patch within 15 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
        agent(&old, &old_os, &["once"]);
    }

    // Risk acceptance round trip, audited.
    let today = jiff::tz::TimeZone::UTC.to_datetime(Timestamp::now()).date();
    let days = |n: i64| {
        today
            .checked_add(jiff::Span::new().days(n))
            .unwrap()
            .to_string()
    };
    let accept = |until: &str| {
        run(site.cmd(&[
            "legacy",
            "accept",
            "old",
            "--reason",
            "runs the vendor app",
            "--controls",
            "segmented,monitored",
            "--until",
            until,
        ]))
    };
    let before = audit_actions(&site);
    let o = accept(&days(400));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!("the latest allowed date is {}", days(365))),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        audit_actions(&site),
        before,
        "a refused acceptance was audited"
    );
    ok(accept(&days(30)));
    ok(run(site.cmd(&[
        "legacy",
        "revoke-acceptance",
        "old",
        "--reason",
        "replaced",
    ])));
    let after = audit_actions(&site);
    for action in [
        "legacy.include",
        "legacy.accept",
        "legacy.revoke_acceptance",
    ] {
        assert!(
            after.contains(&(action.to_string(), old_id.clone())),
            "{action} on {old_id} missing from {after:?}"
        );
    }

    // An admin-page account of the invoking account's name with role auditor: refused.
    let me =
        patchward::legacy::decide_cli::account_of(&patchward::auth::actor::cli_actor()).to_string();
    ok(run(site.cmd(&["users", "add", &me, "--role", "auditor"])));
    let before = audit_actions(&site);
    let o = accept(&days(30));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!(
            "risk acceptance needs an admin: account {me} is an auditor"
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        audit_actions(&site),
        before,
        "a refused acceptance changed something"
    );
}
