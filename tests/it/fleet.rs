//! Fleet end to end with the real binaries: token, three agents enroll and check in, a
//! used-up token is refused, revocation stops an agent, and forged or replayed signed
//! requests are refused without changing anything. Quiet check-ins reach the database
//! after the flush interval and at shutdown.

use std::path::Path;
use std::process::Command;

use patchward::fleet::signing;
use patchward::trust::keys::Ed25519Key;
use serde_json::Value;

use crate::support::{Server, http, patchward, run, stderr, stdout};

const AGENT: &str = env!("CARGO_BIN_EXE_patchward-agent");

fn agent(state: &Path) -> Command {
    let mut c = Command::new(AGENT);
    c.arg("--state-dir").arg(state);
    c
}

fn hosts_json(data: &Path) -> Vec<Value> {
    let o = run({
        let mut c = patchward(data);
        c.args(["hosts", "list", "--json"]);
        c
    });
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

fn show_json(data: &Path, host: &str) -> String {
    let o = run({
        let mut c = patchward(data);
        c.args(["hosts", "show", host, "--json"]);
        c
    });
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

#[test]
fn enroll_checkin_revoke_and_refuse_forgeries() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start(&data);

    let o = run({
        let mut c = patchward(&data);
        c.args(["hosts", "token", "create", "--uses", "3", "--ring", "pilot"])
            .args(["--labels", "site=hq"]);
        c
    });
    assert!(o.status.success(), "{}", stderr(&o));
    let token = stdout(&o).trim().to_string();
    assert!(token.starts_with("pwt_"), "{token}");

    let key_id = server.banner_value("appliance key").replace("ed25519", "");
    let key_id = key_id.trim();
    let mut states = Vec::new();
    for i in 1..=3 {
        let st = tmp.path().join(format!("agent{i}"));
        let o = run({
            let mut c = agent(&st);
            c.args(["enroll", "--server", &server.url, "--token", &token])
                .args(["--fingerprint", key_id, "--hostname", &format!("web{i}")]);
            c
        });
        assert!(o.status.success(), "enroll {i}: {}", stderr(&o));
        assert!(stdout(&o).contains(key_id), "{}", stdout(&o));
        let o = run({
            let mut c = agent(&st);
            c.arg("once");
            c
        });
        assert!(o.status.success(), "once {i}: {}", stderr(&o));
        assert!(
            stdout(&o).contains("checked in: 0 job(s)"),
            "{}",
            stdout(&o)
        );
        states.push(st);
    }
    let hosts = hosts_json(&data);
    assert_eq!(hosts.len(), 3);
    for (i, h) in hosts.iter().enumerate() {
        assert_eq!(h["hostname"], format!("web{}", i + 1));
        assert_eq!(h["ring"], "pilot");
        assert_eq!(h["labels"]["site"], "hq");
        assert_eq!(h["stale"], false);
        assert!(h["kernel"].as_str().is_some_and(|k| !k.is_empty()), "{h}");
    }

    // A fourth enrollment with the used-up token is refused and adds nothing.
    let o = run({
        let mut c = agent(&tmp.path().join("agent4"));
        c.args([
            "enroll",
            "--server",
            &server.url,
            "--token",
            &token,
            "--hostname",
            "web4",
        ]);
        c
    });
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("already used 3 times"),
        "{}",
        stderr(&o)
    );
    assert_eq!(hosts_json(&data).len(), 3);

    // An expired token is refused and adds nothing. (Its expiry is moved into the past
    // in the database: the shortest `--expires` is a minute.)
    let o = run({
        let mut c = patchward(&data);
        c.args(["hosts", "token", "create", "--expires", "1m"]);
        c
    });
    let expiring = stdout(&o).trim().to_string();
    let db = rusqlite::Connection::open(data.join("patchward.db")).unwrap();
    let n = db
        .execute(
            "UPDATE enrollment_tokens SET expires_at = '2026-01-01T00:00:00Z' \
             WHERE sha256 = ?1",
            [patchward::fleet::tokens::hash_token(&expiring)],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(db);
    let o = run({
        let mut c = agent(&tmp.path().join("agent5"));
        c.args(["enroll", "--server", &server.url, "--token", &expiring]);
        c
    });
    assert!(!o.status.success());
    assert!(stderr(&o).contains("expired"), "{}", stderr(&o));
    assert!(!tmp.path().join("agent5/state.json").exists());
    assert_eq!(hosts_json(&data).len(), 3);

    // A forged and a replayed signed request are refused and change nothing.
    let st: Value =
        serde_json::from_slice(&std::fs::read(states[0].join("state.json")).unwrap()).unwrap();
    let host_id = st["host_id"].as_str().unwrap().to_string();
    let key = Ed25519Key::load(&states[0].join("host.ed25519")).unwrap();
    let inv = patchward::agent::inventory::collect(jiff::Timestamp::now(), Some("web1"));
    let body = serde_json::to_vec(&serde_json::json!({ "inventory": inv })).unwrap();
    let path = "/api/agent/v1/checkin";
    let url = format!("{}{path}", server.url);
    let send = |h: &signing::SignedHeaders, body: &[u8]| {
        let mut r = http().post(&url).body(body.to_vec());
        for (k, v) in h.pairs() {
            r = r.header(k, v);
        }
        r.send().unwrap()
    };
    let good = signing::sign(&key, &host_id, "POST", path, jiff::Timestamp::now(), &body);
    assert_eq!(send(&good, &body).status(), 200);
    let before = show_json(&data, &host_id);
    let r = send(&good, &body);
    assert_eq!(r.status(), 401);
    assert!(r.text().unwrap().contains("replayed"));
    let forger = Ed25519Key::generate(&mut rand::rngs::OsRng);
    let forged = signing::sign(
        &forger,
        &host_id,
        "POST",
        path,
        jiff::Timestamp::now(),
        &body,
    );
    let r = send(&forged, &body);
    assert_eq!(r.status(), 401);
    assert!(r.text().unwrap().contains("bad signature"));
    assert_eq!(show_json(&data, &host_id), before);

    // Revocation: the agent's next check-in fails with a clear message.
    let o = run({
        let mut c = patchward(&data);
        c.args(["hosts", "revoke", "web3"]);
        c
    });
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run({
        let mut c = agent(&states[2]);
        c.arg("once");
        c
    });
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("(403)") && stderr(&o).contains("revoked"),
        "{}",
        stderr(&o)
    );
    // The others still work.
    let o = run({
        let mut c = agent(&states[1]);
        c.arg("once");
        c
    });
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_hostile_hostname_is_refused_and_nothing_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start(&data);
    let o = run({
        let mut c = patchward(&data);
        c.args(["hosts", "token", "create"]);
        c
    });
    let token = stdout(&o).trim().to_string();
    let o = run({
        let mut c = agent(&tmp.path().join("a"));
        c.args(["enroll", "--server", &server.url, "--token", &token])
            .args(["--hostname", "<script>x</script>"]);
        c
    });
    assert!(!o.status.success());
    assert!(stderr(&o).contains("invalid hostname"), "{}", stderr(&o));
    assert!(hosts_json(&data).is_empty());
    assert!(!tmp.path().join("a/state.json").exists());
}

fn token(data: &Path, uses: &str) -> String {
    let o = run({
        let mut c = patchward(data);
        c.args(["hosts", "token", "create", "--uses", uses]);
        c
    });
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).trim().to_string()
}

fn token_uses(data: &Path) -> Vec<u64> {
    let o = run({
        let mut c = patchward(data);
        c.args(["hosts", "token", "list", "--json"]);
        c
    });
    let v: Vec<Value> = serde_json::from_str(&stdout(&o)).unwrap();
    v.iter().map(|t| t["uses"].as_u64().unwrap()).collect()
}

#[test]
fn fingerprint_bad_reports_digest_retry_run_loop_and_audit() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start(&data);
    let token = token(&data, "2");

    // A wrong --fingerprint is refused before the token is spent.
    let o = run({
        let mut c = agent(&tmp.path().join("x"));
        c.args(["enroll", "--server", &server.url, "--token", &token])
            .args(["--fingerprint", &"0".repeat(64), "--hostname", "web0"]);
        c
    });
    assert!(!o.status.success());
    assert!(stderr(&o).contains("refusing to enroll"), "{}", stderr(&o));
    assert!(hosts_json(&data).is_empty());
    assert_eq!(token_uses(&data), [0]);

    let st = tmp.path().join("a");
    let o = run({
        let mut c = agent(&st);
        c.args([
            "enroll",
            "--server",
            &server.url,
            "--token",
            &token,
            "--hostname",
            "db1",
        ]);
        c
    });
    assert!(o.status.success(), "{}", stderr(&o));
    // Enrolling twice from one state directory is refused locally.
    let o = run({
        let mut c = agent(&st);
        c.args(["enroll", "--server", &server.url, "--token", &token]);
        c
    });
    assert!(stderr(&o).contains("already enrolled"), "{}", stderr(&o));
    assert_eq!(token_uses(&data), [1]);

    // Malformed and oversized reports: 400 and 413, nothing stored.
    let state: Value =
        serde_json::from_slice(&std::fs::read(st.join("state.json")).unwrap()).unwrap();
    let host_id = state["host_id"].as_str().unwrap().to_string();
    let key = Ed25519Key::load(&st.join("host.ed25519")).unwrap();
    let path = "/api/agent/v1/checkin";
    let url = format!("{}{path}", server.url);
    let send = |body: &[u8]| {
        let h = signing::sign(&key, &host_id, "POST", path, jiff::Timestamp::now(), body);
        let mut r = http().post(&url).body(body.to_vec());
        for (k, v) in h.pairs() {
            r = r.header(k, v);
        }
        r.send().unwrap()
    };
    let before = show_json(&data, &host_id);
    let r = send(b"{\"inventory\": 42}");
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("malformed request"));
    let mut inv = patchward::agent::inventory::collect(jiff::Timestamp::now(), Some("db1"));
    inv.hostname = "db1\u{1b}[31m".into();
    let r = send(&serde_json::to_vec(&serde_json::json!({ "inventory": inv })).unwrap());
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("invalid hostname"));
    inv.hostname = "db1".into();
    let p = serde_json::json!({"name": "a", "version": "1", "arch": "all"});
    inv.packages = Some(serde_json::from_value(Value::Array(vec![p.clone(); 20_001])).unwrap());
    let r = send(&serde_json::to_vec(&serde_json::json!({ "inventory": inv })).unwrap());
    assert_eq!(r.status(), 413);
    assert_eq!(show_json(&data, &host_id), before);

    // The appliance's package list differs from the one the agent last reported (here:
    // a report with one package): the agent's digest-only report gets 409 and the agent
    // resends the full list.
    inv.packages = Some(serde_json::from_value(serde_json::json!([p])).unwrap());
    let r = send(&serde_json::to_vec(&serde_json::json!({ "inventory": inv })).unwrap());
    assert_eq!(r.status(), 200);
    assert_eq!(hosts_json(&data)[0]["packages"], 1);
    let o = run({
        let mut c = agent(&st);
        c.arg("once");
        c
    });
    assert!(o.status.success(), "{}", stderr(&o));
    let local = patchward::agent::inventory::collect(jiff::Timestamp::now(), None);
    let n = local.packages.unwrap().len();
    assert_eq!(hosts_json(&data)[0]["packages"], n);

    // `run` checks in at once and stops cleanly on SIGTERM.
    let child = agent(&st)
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let seen_before = hosts_json(&data)[0]["last_seen"].clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while hosts_json(&data)[0]["last_seen"] == seen_before {
        assert!(std::time::Instant::now() < deadline, "run did not check in");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let pid = i32::try_from(child.id()).unwrap();
    assert!(pid > 1);
    // SAFETY: plain syscall on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("checked in") && !log.contains("failed"),
        "{log}"
    );

    // Everything above is in an intact audit trail.
    let o = run({
        let mut c = patchward(&data);
        c.args(["audit", "list", "--json"]);
        c
    });
    let actions: Vec<String> = serde_json::from_str::<Vec<Value>>(&stdout(&o))
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert!(
        actions.contains(&"token.created".to_string()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"host.enrolled".to_string()),
        "{actions:?}"
    );
    let o = run({
        let mut c = patchward(&data);
        c.args(["audit", "verify"]);
        c
    });
    assert!(o.status.success(), "{}", stdout(&o));
}

/// `host_inventory.reported_at`: moves only when a check-in is written.
fn reported_at(data: &Path) -> String {
    let c = rusqlite::Connection::open_with_flags(
        data.join("patchward.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    c.query_row("SELECT reported_at FROM host_inventory", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn quiet_checkins_reach_the_database_after_the_flush_and_at_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Server::start(&data);
    let token = token(&data, "1");
    let st = tmp.path().join("a");
    let once = || {
        let o = run({
            let mut c = agent(&st);
            c.arg("once");
            c
        });
        assert!(o.status.success(), "{}", stderr(&o));
    };
    let o = run({
        let mut c = agent(&st);
        c.args(["enroll", "--server", &server.url, "--token", &token])
            .args(["--hostname", "quiet1"]);
        c
    });
    assert!(o.status.success(), "{}", stderr(&o));
    let enrolled = hosts_json(&data)[0]["last_seen"].clone();
    let written = reported_at(&data);

    // The agent's digest-only report changes nothing: no write, and last_seen shows up
    // within the flush interval.
    std::thread::sleep(std::time::Duration::from_millis(50));
    once();
    let flush = patchward::fleet::hosts::SEEN_FLUSH_EVERY;
    let deadline = std::time::Instant::now() + flush * 3;
    while hosts_json(&data)[0]["last_seen"] == enrolled {
        assert!(
            std::time::Instant::now() < deadline,
            "last_seen not written within {flush:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(reported_at(&data), written, "a quiet check-in was written");
    let seen = hosts_json(&data)[0]["last_seen"].clone();

    // A quiet check-in right before SIGTERM is written by the shutdown.
    std::thread::sleep(std::time::Duration::from_millis(50));
    once();
    server.signal(libc::SIGTERM);
    assert_eq!(
        server.wait_exit(std::time::Duration::from_secs(10)),
        Some(0)
    );
    let last = hosts_json(&data)[0]["last_seen"].clone();
    assert_ne!(
        last, seen,
        "last_seen of the last check-in lost at shutdown"
    );
    assert_eq!(reported_at(&data), written);
    let (a, b): (jiff::Timestamp, jiff::Timestamp) = (
        seen.as_str().unwrap().parse().unwrap(),
        last.as_str().unwrap().parse().unwrap(),
    );
    assert!(b > a, "{a} !< {b}");
}
