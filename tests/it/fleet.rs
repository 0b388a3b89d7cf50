//! Fleet end to end with the real binaries: token, three agents enroll and check in, a
//! used-up token is refused, revocation stops an agent, and forged or replayed signed
//! requests are refused without changing anything.

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
