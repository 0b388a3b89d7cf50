//! `patchward legacy monitor ...` and `legacy events` with the real binary: ports added
//! and removed (audited), refusals with their text and nothing changed, status in text
//! and JSON; and the daemon's monitor watching a listener on 127.0.0.1 end to end
//! (state stored, a port_opened event stored and listed).

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Server, patchward, run, stderr, stdout};

fn cmd(data: &Path, config: Option<&Path>, args: &[&str]) -> std::process::Output {
    run({
        let mut c = patchward(data);
        if let Some(cfg) = config {
            c.arg("--config").arg(cfg);
        }
        c.args(args);
        c
    })
}

fn legacy(data: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["legacy"];
    all.extend_from_slice(args);
    cmd(data, None, &all)
}

fn ok(o: std::process::Output) -> String {
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    stdout(&o)
}

fn refused(o: std::process::Output) -> String {
    assert!(!o.status.success(), "succeeded: {}", stdout(&o));
    stderr(&o)
}

fn status(data: &Path) -> Vec<Value> {
    serde_json::from_str(&ok(legacy(data, &["monitor", "status", "--json"]))).unwrap()
}

fn monitor_audit(data: &Path) -> Vec<Value> {
    let all: Vec<Value> = serde_json::from_str(&ok(cmd(
        data,
        None,
        &["audit", "list", "--limit", "100", "--json"],
    )))
    .unwrap();
    all.into_iter()
        .filter(|e| {
            e["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("legacy.monitor"))
        })
        .collect()
}

fn add_host(data: &Path, name: &str, address: &str) {
    ok(cmd(data, None, &["init"]));
    ok(legacy(
        data,
        &[
            "add",
            name,
            "--address",
            address,
            "--product",
            "windows-server",
            "--cycle",
            "2012",
        ],
    ));
}

#[test]
fn ports_are_added_and_removed_audited_and_bad_input_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    add_host(&data, "legacy-db", "192.0.2.10");

    let s = status(&data);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0]["name"], "legacy-db");
    assert_eq!(s[0]["state"], "unwatched");
    assert!(
        s[0]["hint"]
            .as_str()
            .unwrap()
            .contains("legacy monitor add-port legacy-db PORT"),
        "{}",
        s[0]
    );

    let out = ok(legacy(&data, &["monitor", "add-port", "legacy-db", "22"]));
    assert_eq!(
        out,
        "watching port 22 of legacy-db (banner on); the monitor probes it from its next cycle\n"
    );
    ok(legacy(
        &data,
        &["monitor", "add-port", "LEGACY-DB", "9100", "--no-banner"],
    ));
    let before = status(&data);
    assert_eq!(before[0]["state"], "pending");
    assert_eq!(before[0]["address"], "192.0.2.10");
    assert_eq!(
        before[0]["ports"],
        serde_json::json!([
            {"port": 22, "source": "added", "banner": true},
            {"port": 9100, "source": "added", "banner": false},
        ])
    );
    let audited = monitor_audit(&data).len();
    assert_eq!(audited, 2);

    let cases: &[(&[&str], &str)] = &[
        (
            &["monitor", "add-port", "legacy-db", "22"],
            "port 22 of legacy-db is already watched (banner on, added by",
        ),
        (
            &["monitor", "add-port", "legacy-dbx", "22"],
            "no host \"legacy-dbx\" (neither a registered legacy host nor an enrolled one)",
        ),
        (
            &["monitor", "add-port", "legacy-db", "0"],
            "invalid port: 0 is not a TCP port: give one from 1 to 65535",
        ),
        (
            &["monitor", "add-port", "legacy-db", "70000"],
            "invalid value '70000' for '<PORT>'",
        ),
        (
            &[
                "monitor",
                "add-port",
                "legacy-db",
                "23",
                "--banner",
                "--no-banner",
            ],
            "the argument '--banner' cannot be used with '--no-banner'",
        ),
        (
            &["monitor", "remove-port", "legacy-db", "23"],
            "port 23 of legacy-db was not added to the monitor; added ports: 22, 9100",
        ),
        (&["monitor", "status", "nobody"], "no host \"nobody\""),
        (&["events", "nobody"], "no host \"nobody\""),
        (
            &["events", "legacy-db", "--limit", "0"],
            "invalid value '0' for '--limit <LIMIT>'",
        ),
    ];
    for (args, want) in cases {
        let e = refused(legacy(&data, args));
        assert!(e.contains(want), "{args:?}: {e}");
        assert_eq!(status(&data), before, "{args:?} changed the monitor");
        assert_eq!(monitor_audit(&data).len(), audited, "{args:?} was audited");
    }

    let out = ok(legacy(
        &data,
        &["monitor", "remove-port", "legacy-db", "9100"],
    ));
    assert_eq!(
        out,
        "port 9100 of legacy-db is no longer watched (unless a flow names it)\n"
    );
    let a = monitor_audit(&data);
    assert_eq!(a.len(), 3);
    let actions: Vec<&str> = a.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(
        actions.contains(&"legacy.monitor_remove_port"),
        "{actions:?}"
    );
    assert_eq!(status(&data)[0]["ports"].as_array().unwrap().len(), 1);

    let text = ok(legacy(&data, &["monitor", "status", "legacy-db"]));
    assert!(text.starts_with("HOST "), "{text}");
    assert!(
        text.contains("legacy-db")
            && text.contains("pending")
            && text.contains("22(added)[banner]"),
        "{text}"
    );
    assert_eq!(
        ok(legacy(&data, &["events", "legacy-db"])),
        "no events for legacy-db yet\n"
    );
    assert_eq!(
        ok(legacy(&data, &["events", "legacy-db", "--json"])),
        "[]\n"
    );
}

#[test]
fn the_daemon_watches_a_listener_and_stores_what_it_sees() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("patchward.toml");
    std::fs::write(
        &config,
        "[legacy]\nmonitor_interval = \"5s\"\nmonitor_timeout_ms = 500\n",
    )
    .unwrap();
    add_host(&data, "legacy-db", "127.0.0.1");
    let first = TcpListener::bind("127.0.0.1:0").unwrap();
    let p1 = first.local_addr().unwrap().port();
    let p2 = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    ok(legacy(
        &data,
        &["monitor", "add-port", "legacy-db", &p1.to_string()],
    ));
    ok(legacy(
        &data,
        &["monitor", "add-port", "legacy-db", &p2.to_string()],
    ));
    let accept = |l: TcpListener| {
        std::thread::spawn(move || {
            for s in l.incoming() {
                drop(s);
            }
        })
    };
    accept(first);
    let _server = Server::start_with(&data, &["--config", config.to_str().unwrap()]);
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(40);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    wait("UP", &|| status(&data)[0]["state"] == "up");
    let s = status(&data);
    assert!(
        s[0]["last_cycle"].is_string() && s[0]["since"].is_string(),
        "{}",
        s[0]
    );

    // A new listener on the second watched port: drift.
    accept(TcpListener::bind(("127.0.0.1", p2)).unwrap());
    let events = || -> Vec<Value> {
        serde_json::from_str(&ok(legacy(&data, &["events", "legacy-db", "--json"]))).unwrap()
    };
    wait("port_opened", &|| !events().is_empty());
    let e = events();
    assert_eq!(e[0]["kind"], "port_opened");
    assert_eq!(
        e[0]["text"],
        format!(
            "port {p2} on host legacy-db (127.0.0.1) opened: it accepted a connection, and it \
             was closed in the baseline"
        )
    );
    assert_eq!(e[0]["detail"]["port"], p2);
    let text = ok(legacy(&data, &["events", "legacy-db"]));
    assert!(text.contains("port_opened"), "{text}");
}
