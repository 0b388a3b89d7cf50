//! The job lifecycle beyond the happy path, with the real binaries on loopback:
//! - a patch that needs a reboot stays `reboot_pending` (the agent runs its reboot
//!   command once) until the boot id changes, then `verify` confirms it or it is
//!   rolled back;
//! - the agent is killed mid-install (the install step outlives it, as during an agent
//!   upgrade) and mid-report (after the appliance applied the report, before the agent
//!   heard); every job ends in exactly one final state, each state recorded once;
//! - a tampered ticket is refused and nothing runs; artifact bytes that do not match
//!   the ticket fail the job before anything runs;
//! - `jobs cancel` stops a job before the agent starts it, and refuses one that is
//!   over; the appliance expires jobs whose window passed unstarted; a report the
//!   appliance refuses for good is dropped by the agent instead of blocking it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::Value;

use crate::feedkit::{Feed, Site};
use crate::jobs::{add_script_patch_with, agent, jobs, ok, script_archive};
use crate::support::{Server, run, stderr};

const AGENT: &str = env!("CARGO_BIN_EXE_patchward-agent");

/// Waits (bounded) until `p` exists.
fn wait_for(p: &Path, limit: Duration) {
    let start = Instant::now();
    while !p.exists() {
        assert!(start.elapsed() < limit, "{} did not appear", p.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn states(job: &Value) -> Vec<String> {
    job["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap().to_string())
        .collect()
}

fn by_patch(site: &Site, id: &str) -> Value {
    jobs(site)
        .into_iter()
        .find(|j| j["patch_id"] == id)
        .unwrap_or_else(|| panic!("no job for {id}"))
}

fn deploy(site: &Site, patch: &str, host: &str) -> String {
    let out = ok(run(site.cmd(&["deploy", "--patch", patch, "--host", host])));
    out.split_whitespace()
        .find(|w| w.starts_with("j-"))
        .unwrap()
        .to_string()
}

/// A site with the given script patches imported, a running appliance, and one agent
/// enrolled as `web1` against `server_url(appliance)`.
struct Fixture {
    tmp: tempfile::TempDir,
    site: Site,
    server: Server,
    state: std::path::PathBuf,
}

fn fixture(patches: &[(&str, &str, Vec<u8>)], via: Option<&dyn Fn(&str) -> String>) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let t = Timestamp::now();
    let mut feed = Feed::init(tmp.path(), "acme", t);
    feed.add("acme/filler", "low", "CVE-2099-0002", 1000, 1);
    for (id, extra, archive) in patches {
        add_script_patch_with(&feed, id, extra, archive);
    }
    feed.publish(t);
    let bundle = feed.export(&tmp.path().join("full.pwb"), None, t);
    let site = Site::new(tmp.path(), "s", &[&feed]);
    ok(site.import(&bundle));
    let server = Server::start_with(&site.data, &["--config", site.config.to_str().unwrap()]);
    let token = ok(run(site.cmd(&["hosts", "token", "create"])));
    let state = tmp.path().join("agent");
    let url = via.map_or_else(|| server.url.clone(), |f| f(&server.url));
    ok(agent(
        &state,
        &[
            "enroll",
            "--server",
            &url,
            "--token",
            token.trim(),
            "--hostname",
            "web1",
        ],
    ));
    Fixture {
        tmp,
        site,
        server,
        state,
    }
}

fn agent_cmd(state: &Path, extra_env: &[(&str, &Path)], args: &[&str]) -> Command {
    let mut c = Command::new(AGENT);
    c.arg("--state-dir").arg(state).args(args);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c
}

#[test]
fn reboot_pending_until_the_host_boots_again_then_confirmed_or_rolled_back() {
    let marks = tempfile::tempdir().unwrap();
    let m = |n: &str| marks.path().join(n).display().to_string();
    let kernel = script_archive(&[
        ("install", format!("touch {}", m("k1"))),
        ("verify", format!("test -f {}", m("k1"))),
    ]);
    let lost = script_archive(&[
        ("install", format!("touch {}", m("k2"))),
        ("verify", format!("test -f {}", m("k2"))),
        ("rollback", format!("echo undone > {}", m("k2-undone"))),
    ]);
    let f = fixture(
        &[
            ("acme/kernel-1", "reboot = true\n", kernel),
            ("acme/kernel-2", "reboot = true\n", lost),
        ],
        None,
    );
    deploy(&f.site, "acme/kernel-1", "web1");
    deploy(&f.site, "acme/kernel-2", "web1");
    let boot = f.tmp.path().join("boot_id");
    std::fs::write(&boot, "boot-1\n").unwrap();
    let reboot = f.tmp.path().join("reboot.sh");
    std::fs::write(&reboot, format!("#!/bin/sh\necho x >> {}\n", m("reboots"))).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&reboot, std::fs::Permissions::from_mode(0o755)).unwrap();
    let once = || {
        ok(run(agent_cmd(
            &f.state,
            &[("PATCHWARD_AGENT_BOOT_ID_FILE", &boot)],
            &["--reboot-command", reboot.to_str().unwrap(), "once"],
        )))
    };

    let out = once();
    assert!(out.contains("reboot requested"), "{out}");
    for p in ["acme/kernel-1", "acme/kernel-2"] {
        // Reported in the same run.
        assert_eq!(by_patch(&f.site, p)["state"], "reboot_pending");
    }
    assert_eq!(std::fs::read_to_string(m("reboots")).unwrap(), "x\n");

    // Same boot: still pending, and no second reboot request.
    let out = once();
    assert!(out.contains("waiting for the host to boot again"), "{out}");
    assert_eq!(std::fs::read_to_string(m("reboots")).unwrap(), "x\n");
    assert_eq!(
        by_patch(&f.site, "acme/kernel-1")["state"],
        "reboot_pending"
    );

    // The host boots again; kernel-2's change did not survive the reboot.
    std::fs::remove_file(m("k2")).unwrap();
    std::fs::write(&boot, "boot-2\n").unwrap();
    let out = once();
    assert!(out.contains("resumed from reboot_pending"), "{out}");
    let k1 = by_patch(&f.site, "acme/kernel-1");
    assert_eq!(k1["state"], "succeeded", "{k1}");
    assert_eq!(
        states(&k1),
        [
            "offered",
            "downloading",
            "downloaded",
            "installing",
            "verifying",
            "reboot_pending",
            "succeeded"
        ]
    );
    assert!(k1.to_string().contains("confirmed after reboot"), "{k1}");
    let k2 = by_patch(&f.site, "acme/kernel-2");
    assert_eq!(k2["state"], "rolled_back", "{k2}");
    assert!(k2.to_string().contains("verify failed"), "{k2}");
    assert!(Path::new(&m("k2-undone")).exists());
    assert_eq!(std::fs::read_to_string(m("reboots")).unwrap(), "x\n");
}

/// Runs `patchward-agent once` in the background.
fn spawn_once(state: &Path) -> Child {
    agent_cmd(state, &[], &["once"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn assert_each_state_once(job: &Value) {
    let s = states(job);
    let mut uniq = s.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), s.len(), "a state recorded twice: {s:?}");
    let finals = [
        "succeeded",
        "failed",
        "rolled_back",
        "rollback_failed",
        "expired",
        "cancelled",
    ];
    let last = s.last().unwrap();
    assert!(finals.contains(&last.as_str()), "{s:?}");
}

#[test]
fn killed_mid_install_the_resumed_agent_waits_for_the_step_then_verify_decides() {
    let marks = tempfile::tempdir().unwrap();
    let m = |n: &str| marks.path().join(n).display().to_string();
    let slow_ok = script_archive(&[
        (
            "install",
            format!("touch {}; sleep 1; touch {}", m("s1"), m("d1")),
        ),
        ("verify", format!("test -f {}", m("d1"))),
    ]);
    let slow_bad = script_archive(&[
        ("install", format!("touch {}; sleep 1; exit 3", m("s2"))),
        ("verify", format!("test -f {}", m("d2"))),
        ("rollback", format!("touch {}", m("u2"))),
    ]);
    let f = fixture(
        &[
            ("acme/slow-ok", "", slow_ok),
            ("acme/slow-bad", "", slow_bad),
        ],
        None,
    );
    for (patch, started, end) in [
        ("acme/slow-ok", "s1", "succeeded"),
        ("acme/slow-bad", "s2", "rolled_back"),
    ] {
        deploy(&f.site, patch, "web1");
        let mut child = spawn_once(&f.state);
        wait_for(Path::new(&m(started)), Duration::from_secs(30));
        child.kill().unwrap();
        child.wait().unwrap();
        // The install step is still running: the agent waits for it, then verifies.
        let out = ok(agent(&f.state, &["once"]));
        assert!(out.contains("resumed from installing"), "{out}");
        let job = by_patch(&f.site, patch);
        assert_eq!(job["state"], end, "{job}");
        assert!(job.to_string().contains("waited for `install`"), "{job}");
        assert_each_state_once(&job);
    }
    assert!(Path::new(&m("u2")).exists());
    // Nothing is run again afterwards.
    let before = jobs(&f.site);
    ok(agent(&f.state, &["once"]));
    assert_eq!(jobs(&f.site), before);
}

/// What the test proxy does to the traffic between agent and appliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pass,
    /// Kill this pid right after the appliance answered a check-in that carried job
    /// events, before the agent hears the answer.
    KillOnReport(u32),
    /// Change one byte of every ticket's payload (the signature no longer matches).
    TamperTickets,
    /// Flip one byte of every artifact body.
    TamperArtifacts,
}

/// A reverse proxy for the agent API, with a [`Mode`] the test switches.
struct Proxy {
    url: String,
    mode: Arc<std::sync::Mutex<Mode>>,
    _rt: tokio::runtime::Runtime,
}

impl Proxy {
    fn set(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap()
    }
}

fn proxy(upstream: String) -> Proxy {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mode = Arc::new(std::sync::Mutex::new(Mode::Pass));
    let shared = mode.clone();
    patchward::tls::install_crypto_provider();
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (upstream, mode, client) = (upstream.clone(), shared.clone(), client.clone());
        async move {
            use axum::response::IntoResponse;
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
            let path = parts.uri.path_and_query().unwrap().as_str().to_string();
            let mut r = client.request(parts.method.clone(), format!("{upstream}{path}"));
            for (k, val) in &parts.headers {
                if k != "host" {
                    r = r.header(k, val);
                }
            }
            let resp = r.body(body.clone()).send().await.unwrap();
            let status = resp.status();
            let mut headers = axum::http::HeaderMap::new();
            for (k, v) in resp.headers() {
                if k != "content-length" && k != "transfer-encoding" {
                    headers.insert(k.clone(), v.clone());
                }
            }
            let mut bytes = resp.bytes().await.unwrap().to_vec();
            let checkin = path == "/api/agent/v1/checkin";
            let current = *mode.lock().unwrap();
            match current {
                Mode::KillOnReport(pid) if checkin && status.is_success() => {
                    let has_events = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .is_some_and(|v| v["job_events"].as_array().is_some_and(|a| !a.is_empty()));
                    if has_events {
                        *mode.lock().unwrap() = Mode::Pass;
                        let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
                        rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
                        return axum::http::StatusCode::BAD_GATEWAY.into_response();
                    }
                }
                Mode::TamperTickets if checkin && status.is_success() => {
                    let mut v: Value = serde_json::from_slice(&bytes).unwrap();
                    for t in v["jobs"].as_array_mut().unwrap() {
                        use base64::Engine;
                        let b64 = base64::engine::general_purpose::STANDARD;
                        let mut payload = b64.decode(t["payload"].as_str().unwrap()).unwrap();
                        // "est_minutes":1 -> 9: still valid JSON, no longer signed.
                        let key = b"\"est_minutes\":";
                        let at = payload.windows(key.len()).position(|w| w == key);
                        payload[at.unwrap() + key.len()] = b'9';
                        t["payload"] = b64.encode(payload).into();
                    }
                    bytes = serde_json::to_vec(&v).unwrap();
                }
                Mode::TamperArtifacts if path.contains("/artifacts/") && !bytes.is_empty() => {
                    let mid = bytes.len() / 2;
                    bytes[mid] ^= 0xff;
                }
                _ => {}
            }
            (status, headers, bytes).into_response()
        }
    });
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    Proxy { url, mode, _rt: rt }
}

#[test]
fn killed_mid_report_the_retried_report_is_applied_once_and_tampering_is_refused() {
    let marks = tempfile::tempdir().unwrap();
    let m = |n: &str| marks.path().join(n).display().to_string();
    let quick = script_archive(&[
        ("install", format!("echo run >> {}", m("q"))),
        ("verify", format!("test -f {}", m("q"))),
    ]);
    let other = script_archive(&[
        ("install", format!("touch {}", m("other"))),
        ("verify", "true".into()),
    ]);
    let px = std::cell::OnceCell::new();
    let via = |upstream: &str| px.get_or_init(|| proxy(upstream.to_string())).url.clone();
    let f = fixture(
        &[("acme/quick", "", quick), ("acme/other", "", other)],
        Some(&via),
    );
    let px = px.get().unwrap();

    // Killed after the appliance applied the report, before the agent heard.
    deploy(&f.site, "acme/quick", "web1");
    let mut child = spawn_once(&f.state);
    px.set(Mode::KillOnReport(child.id()));
    let status = child.wait().unwrap();
    assert!(!status.success(), "the agent was meant to be killed");
    assert_eq!(px.mode(), Mode::Pass, "never killed");
    let job = by_patch(&f.site, "acme/quick");
    assert_eq!(job["state"], "succeeded", "{job}");
    let before = jobs(&f.site);
    // The next run sends the same events again: nothing changes, nothing runs again.
    ok(agent(&f.state, &["once"]));
    ok(agent(&f.state, &["once"]));
    assert_eq!(jobs(&f.site), before);
    assert_each_state_once(&by_patch(&f.site, "acme/quick"));
    assert_eq!(std::fs::read_to_string(m("q")).unwrap(), "run\n");

    // A tampered ticket is refused: nothing runs, nothing is journaled or reported.
    deploy(&f.site, "acme/other", "web1");
    let journal = std::fs::read(f.state.join("jobs.jsonl")).unwrap();
    px.set(Mode::TamperTickets);
    let out = ok(agent(&f.state, &["once"]));
    assert!(out.contains("refused a job ticket"), "{out}");
    assert!(!Path::new(&m("other")).exists());
    assert_eq!(std::fs::read(f.state.join("jobs.jsonl")).unwrap(), journal);
    assert_eq!(by_patch(&f.site, "acme/other")["state"], "offered");

    // Artifact bytes that do not match the ticket: the job fails before anything runs.
    px.set(Mode::TamperArtifacts);
    let out = ok(agent(&f.state, &["once"]));
    assert!(out.contains("failed"), "{out}");
    assert!(!Path::new(&m("other")).exists());
    let job = by_patch(&f.site, "acme/other");
    assert_eq!(job["state"], "failed", "{job}");
    assert!(job.to_string().contains("the ticket says"), "{job}");
    assert!(!states(&job).contains(&"installing".to_string()), "{job}");
    px.set(Mode::Pass);
}

#[test]
fn cancel_expire_and_a_refused_report_does_not_block_the_agent() {
    let marks = tempfile::tempdir().unwrap();
    let m = |n: &str| marks.path().join(n).display().to_string();
    let quick = script_archive(&[
        ("install", format!("touch {}", m("q"))),
        ("verify", format!("test -f {}", m("q"))),
    ]);
    let mut f = fixture(&[("acme/quick", "", quick)], None);

    // Cancelled before the agent saw it: never run.
    let job = deploy(&f.site, "acme/quick", "web1");
    let out = ok(run(f.site.cmd(&[
        "jobs",
        "cancel",
        &job,
        "--reason",
        "wrong host",
    ])));
    assert!(out.contains("cancelled job"), "{out}");
    let out = ok(agent(&f.state, &["once"]));
    assert!(out.contains("checked in: 0 job(s)"), "{out}");
    assert!(!Path::new(&m("q")).exists());
    let cancelled = by_patch(&f.site, "acme/quick");
    assert_eq!(cancelled["state"], "cancelled");
    assert!(cancelled.to_string().contains("wrong host"), "{cancelled}");
    // A job that is over cannot be cancelled; nothing changes.
    let before = jobs(&f.site);
    let o = run(f.site.cmd(&["jobs", "cancel", &job, "--reason", "again"]));
    assert!(
        !o.status.success() && stderr(&o).contains("is cancelled"),
        "{}",
        stderr(&o)
    );
    let o = run(f.site.cmd(&["jobs", "cancel", "j-nope", "--reason", "x"]));
    assert!(
        !o.status.success() && stderr(&o).contains("no job"),
        "{}",
        stderr(&o)
    );
    assert_eq!(jobs(&f.site), before);

    // A report the appliance refuses for good (cancelled -> expired) is dropped by the
    // agent, which goes on checking in.
    let journal = f.state.join("jobs.jsonl");
    let mut text = std::fs::read_to_string(&journal).unwrap_or_default();
    text.push_str(&format!(
        "{{\"kind\":\"event\",\"job_id\":\"{job}\",\"state\":\"expired\",\
         \"at\":\"{}\",\"output\":\"\"}}\n",
        Timestamp::now()
    ));
    std::fs::write(&journal, text).unwrap();
    let out = ok(agent(&f.state, &["once"]));
    assert!(out.contains("refused 1 report(s)"), "{out}");
    let out = ok(agent(&f.state, &["once"]));
    assert!(!out.contains("refused"), "{out}");
    assert_eq!(jobs(&f.site), before);

    // A job whose window passed while the appliance was down expires when it starts.
    f.server.signal(libc::SIGTERM);
    assert_eq!(f.server.wait_exit(Duration::from_secs(10)), Some(0));
    let past = (Timestamp::now() - jiff::SignedDuration::from_hours(1)).to_string();
    ok(run(f.site.cmd(&[
        "deploy",
        "--patch",
        "acme/quick",
        "--host",
        "web1",
        "--latest-start",
        &past,
    ])));
    let _server = Server::start_with(&f.site.data, &["--config", f.site.config.to_str().unwrap()]);
    let start = Instant::now();
    let expired = loop {
        let all = jobs(&f.site);
        if let Some(j) = all.iter().find(|j| j["state"] == "expired") {
            break j.clone();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{all:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        expired.to_string().contains("did not start the job"),
        "{expired}"
    );
    let audit = ok(run(f.site.cmd(&["audit", "list", "--json"])));
    assert!(
        audit.contains("job.cancelled") && audit.contains("job.expired"),
        "{audit}"
    );
}
