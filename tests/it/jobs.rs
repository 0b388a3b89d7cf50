//! Jobs end to end with the real binaries: a feed with script patches (real `.tar.zst`
//! archives built here) is imported, an agent enrolls, `deploy` creates jobs, and two
//! `once` runs execute and report them: a good patch succeeds, one whose verify fails is
//! rolled back, and one whose required backup fails is never installed. Then refused
//! reports (another host's job: 403, a move out of a final state: 409) change nothing,
//! a retried report applies once, windows expire or wait, and a revoked host gets no job.
//!
//! The agent downloads every artifact through the signed
//! `GET /api/agent/v1/artifacts/sha256/<hex>` endpoint into its cache and checks hash
//! and size against the ticket before running anything.

use std::path::Path;

use jiff::Timestamp;
use patchward::feed::tools;
use patchward::fleet::signing;
use patchward::trust::keys::Ed25519Key;
use serde_json::Value;

use crate::feedkit::{Feed, Site};
use crate::support::{Server, http, run, stderr, stdout};

const AGENT: &str = env!("CARGO_BIN_EXE_patchward-agent");

/// A `.tar.zst` of executable shell scripts. Unless `steps` name one, a passing
/// `health` step is added: the test patches are of the application class, whose
/// default rules require the application health check.
pub(crate) fn script_archive(steps: &[(&str, String)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let healthy = [("health", "echo healthy".to_string())];
    let add_health = !steps.iter().any(|(n, _)| *n == "health");
    for (name, body) in steps.iter().chain(healthy.iter().filter(|_| add_health)) {
        let content = format!("#!/bin/sh\nset -e\n{body}\n");
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o755);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, content.as_bytes()).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_size(7);
    h.set_mode(0o644);
    b.append_data(&mut h, "payload/data.txt", &b"payload"[..])
        .unwrap();
    zstd::encode_all(&b.into_inner().unwrap()[..], 3).unwrap()
}

/// Adds a script patch whose archive is `archive`; returns the archive's sha256.
pub(crate) fn add_script_patch(
    feed: &Feed,
    id: &str,
    needs_backup: bool,
    archive: &[u8],
) -> String {
    add_script_patch_with(
        feed,
        id,
        &format!("needs_backup = {needs_backup}\n"),
        archive,
    )
}

/// [`add_script_patch`] with extra top-level TOML lines (`reboot = true`, ...).
pub(crate) fn add_script_patch_with(feed: &Feed, id: &str, extra: &str, archive: &[u8]) -> String {
    let name = format!("{}.tar.zst", id.replace('/', "-"));
    let art = feed.dir.join(&name);
    std::fs::write(&art, archive).unwrap();
    let toml = format!(
        "id = {id:?}\ntitle = \"script patch {id}\"\nkind = \"application\"\n\
         severity = \"high\"\nreleased = \"2026-10-01T00:00:00Z\"\ninstall = \"script\"\n\
         est_minutes = 1\n{extra}\
         [[artifacts]]\nname = {name:?}\nformat = \"script\"\n"
    );
    let p = feed.dir.join(format!("{name}.toml"));
    std::fs::write(&p, toml).unwrap();
    tools::add_patch(&feed.dir, &p, &[art]).unwrap();
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(archive))
}

pub(crate) fn agent(state: &Path, args: &[&str]) -> std::process::Output {
    let mut c = std::process::Command::new(AGENT);
    c.arg("--state-dir").arg(state).args(args);
    run(c)
}

pub(crate) fn ok(o: std::process::Output) -> String {
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    stdout(&o)
}

pub(crate) fn jobs(site: &Site) -> Vec<Value> {
    serde_json::from_str(&ok(run(site.cmd(&["jobs", "list", "--json"])))).unwrap()
}

#[test]
fn deploy_run_report_succeed_roll_back_and_refuse_without_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let t = Timestamp::now();
    let marks = tmp.path().join("marks");
    std::fs::create_dir(&marks).unwrap();
    let m = |n: &str| marks.join(n).display().to_string();

    let mut feed = Feed::init(tmp.path(), "acme", t);
    feed.add("acme/filler", "low", "CVE-2099-0002", 1000, 1);
    let good = script_archive(&[
        ("install", format!("cat payload/data.txt > {}", m("good"))),
        ("verify", format!("test -f {}", m("good"))),
    ]);
    let bad_verify = script_archive(&[
        ("install", format!("touch {}", m("bad"))),
        ("verify", "echo verify says no; exit 1".into()),
        ("rollback", format!("rm {}; echo rolled back", m("bad"))),
    ]);
    let no_backup = script_archive(&[
        ("backup", "echo disk full >&2; exit 2".into()),
        ("install", format!("touch {}", m("fw"))),
        ("verify", "true".into()),
    ]);
    // Application class: installed and verified, but the application is unhealthy.
    let unhealthy = script_archive(&[
        ("install", format!("touch {}", m("app"))),
        ("verify", "true".into()),
        ("health", "echo service answers 503; exit 1".into()),
        ("rollback", format!("rm {}; echo app rolled back", m("app"))),
    ]);
    let blobs = [
        add_script_patch(&feed, "acme/good-1", false, &good),
        add_script_patch(&feed, "acme/bad-verify-1", false, &bad_verify),
        add_script_patch(&feed, "acme/fw-1", true, &no_backup),
        add_script_patch(&feed, "acme/unhealthy-1", false, &unhealthy),
    ];
    feed.publish(t);
    let bundle = feed.export(&tmp.path().join("full.pwb"), None, t);
    let site = Site::new(tmp.path(), "s", &[&feed]);
    ok(site.import(&bundle));

    let server = Server::start_with(&site.data, &["--config", site.config.to_str().unwrap()]);
    let token = ok(run(site.cmd(&["hosts", "token", "create", "--uses", "2"])));
    let st = tmp.path().join("agent");
    ok(agent(
        &st,
        &[
            "enroll",
            "--server",
            &server.url,
            "--token",
            token.trim(),
            "--hostname",
            "web1",
        ],
    ));
    // Nothing is pre-placed: the agent fetches the artifacts from the appliance.
    let cache = st.join("artifacts");
    assert!(!cache.join(&blobs[0]).exists());

    // Refusals: unknown patch, unknown host.
    let o = run(site.cmd(&["deploy", "--patch", "acme/nope", "--host", "web1"]));
    assert!(
        !o.status.success() && stderr(&o).contains("no patch"),
        "{}",
        stderr(&o)
    );
    let o = run(site.cmd(&["deploy", "--patch", "acme/good-1", "--host", "nobody"]));
    assert!(
        !o.status.success() && stderr(&o).contains("no host"),
        "{}",
        stderr(&o)
    );
    assert!(jobs(&site).is_empty());

    for p in [
        "acme/good-1",
        "acme/bad-verify-1",
        "acme/fw-1",
        "acme/unhealthy-1",
    ] {
        let out = ok(run(site.cmd(&["deploy", "--patch", p, "--host", "web1"])));
        assert!(out.contains("created job j-"), "{out}");
    }
    let listed = jobs(&site);
    assert_eq!(listed.len(), 4);
    assert!(listed.iter().all(|j| j["state"] == "offered"), "{listed:?}");

    // First run: receives and runs the jobs; second run: reports them.
    let first = ok(agent(&st, &["once"]));
    // Every artifact arrived through the signed download endpoint, byte for byte.
    for (sha, bytes) in blobs
        .iter()
        .zip([&good, &bad_verify, &no_backup, &unhealthy])
    {
        assert_eq!(
            &std::fs::read(cache.join(sha)).unwrap(),
            bytes,
            "artifact {sha}"
        );
    }
    assert!(first.contains("checked in: 4 job(s)"), "{first}");
    let second = ok(agent(&st, &["once"]));
    assert!(second.contains("checked in: 0 job(s)"), "{second}");
    // A third run has nothing to report and runs nothing again.
    ok(agent(&st, &["once"]));

    let by_patch = |id: &str| -> Value {
        jobs(&site)
            .into_iter()
            .find(|j| j["patch_id"] == id)
            .unwrap()
    };
    let good_job = by_patch("acme/good-1");
    assert_eq!(good_job["state"], "succeeded", "{good_job}");
    let states: Vec<&str> = good_job["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        [
            "offered",
            "downloading",
            "downloaded",
            "installing",
            "verifying",
            "succeeded"
        ]
    );
    assert_eq!(std::fs::read_to_string(m("good")).unwrap(), "payload");

    let bad = by_patch("acme/bad-verify-1");
    assert_eq!(bad["state"], "rolled_back", "{bad}");
    let failed = bad["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["state"] == "failed")
        .unwrap();
    assert!(
        failed["output"]
            .as_str()
            .unwrap()
            .contains("verify says no"),
        "{failed}"
    );
    assert!(!Path::new(&m("bad")).exists());

    let fw = by_patch("acme/fw-1");
    assert_eq!(fw["state"], "failed", "{fw}");
    assert!(fw.to_string().contains("backup failed"), "{fw}");
    assert!(!fw.to_string().contains("\"installing\""), "{fw}");
    assert!(!Path::new(&m("fw")).exists());

    // The application health check failed after a good install: rolled back.
    let app = by_patch("acme/unhealthy-1");
    assert_eq!(app["state"], "rolled_back", "{app}");
    assert!(
        app.to_string().contains("application health check failed")
            && app.to_string().contains("service answers 503"),
        "{app}"
    );
    assert!(!Path::new(&m("app")).exists());
    // ... and the good application patch ran its (passing) health step.
    assert!(good_job.to_string().contains("healthy"), "{good_job}");

    // Creating jobs is audited.
    let audit = ok(run(site.cmd(&["audit", "list", "--json"])));
    assert_eq!(audit.matches("job.created").count(), 4, "{audit}");

    // Reports the appliance refuses, sent as signed check-ins; nothing changes.
    let st2 = tmp.path().join("agent2");
    ok(agent(
        &st2,
        &[
            "enroll",
            "--server",
            &server.url,
            "--token",
            token.trim(),
            "--hostname",
            "web2",
        ],
    ));
    let good_id = good_job["id"].as_str().unwrap().to_string();
    let bad_id = bad["id"].as_str().unwrap().to_string();
    let before = jobs(&site);
    let checkin = |state_dir: &Path, events: Value| {
        let st: Value =
            serde_json::from_slice(&std::fs::read(state_dir.join("state.json")).unwrap()).unwrap();
        let host = st["host_id"].as_str().unwrap();
        let key = Ed25519Key::load(&state_dir.join("host.ed25519")).unwrap();
        let inv = patchward::agent::inventory::collect(Timestamp::now(), Some("webx"));
        let body =
            serde_json::to_vec(&serde_json::json!({ "inventory": inv, "job_events": events }))
                .unwrap();
        let path = "/api/agent/v1/checkin";
        let h = signing::sign(&key, host, "POST", path, Timestamp::now(), &body);
        let mut r = http().post(format!("{}{path}", server.url)).body(body);
        for (k, v) in h.pairs() {
            r = r.header(k, v);
        }
        let r = r.send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let at = Timestamp::now().to_string();
    // Another host's job.
    let (status, text) = checkin(
        &st2,
        serde_json::json!([{ "job_id": bad_id, "state": "rolling_back", "at": at }]),
    );
    assert_eq!(status, 403, "{text}");
    // Final is final; and a legal-looking event before it is not kept either.
    let (status, text) = checkin(
        &st,
        serde_json::json!([
            { "job_id": good_id, "state": "succeeded", "at": at },
            { "job_id": good_id, "state": "failed", "at": at, "output": "x" },
        ]),
    );
    assert_eq!(status, 409, "{text}");
    assert_eq!(jobs(&site), before);
    // A retried report of what was already applied changes nothing.
    let (status, text) = checkin(
        &st,
        serde_json::json!([{ "job_id": good_id, "state": "succeeded", "at": at }]),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(jobs(&site), before);

    // Windows: one that closed already expires, one that has not opened waits.
    let past = (Timestamp::now() - jiff::SignedDuration::from_hours(1)).to_string();
    let future = (Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    ok(run(site.cmd(&[
        "deploy",
        "--patch",
        "acme/good-1",
        "--host",
        "web2",
        "--latest-start",
        &past,
    ])));
    ok(run(site.cmd(&[
        "deploy",
        "--patch",
        "acme/good-1",
        "--host",
        "web2",
        "--not-before",
        &future,
    ])));
    let first = ok(agent(&st2, &["once"]));
    assert!(
        first.contains("expired") && first.contains("waiting for its window"),
        "{first}"
    );
    ok(agent(&st2, &["once"]));
    let states: Vec<String> = serde_json::from_str::<Vec<Value>>(&ok(run(
        site.cmd(&["jobs", "list", "--host", "web2", "--json"])
    )))
    .unwrap()
    .iter()
    .map(|j| j["state"].as_str().unwrap().to_string())
    .collect();
    assert_eq!(states, ["expired", "offered"]);

    // A revoked host gets no new jobs.
    ok(run(site.cmd(&["hosts", "revoke", "web2"])));
    let o = run(site.cmd(&["deploy", "--patch", "acme/good-1", "--host", "web2"]));
    assert!(
        !o.status.success() && stderr(&o).contains("revoked"),
        "{}",
        stderr(&o)
    );
}
