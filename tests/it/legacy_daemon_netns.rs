//! Issue [10], what `patchward serve` does for a fence in a real kernel: a DNS-name peer
//! resolved through a DNS server of this test lands in the kernel's allow-list with the
//! record's TTL, and moves when the record does (the keeper follows the TTL, not the
//! far longer `dns_refresh`); refused connections in both directions become
//! `blocked_flow` events read from the helper's real counters. Three namespaces of a
//! `netns_support::Lab`, always removed; the daemon runs in the init namespace and
//! reaches the helper through its unix socket and the DNS server on 127.0.0.1.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::dns_testserver::{TestDns, Zone};
use crate::netns_support::{CLIENT, Lab, host_ruleset, require_root_and_tools};
use crate::support::{Server, patchward, run, stderr, stdout};

/// A second LAN address the DNS record moves to (not configured anywhere: nothing
/// answers there, only the allow-list's element matters).
const MOVED: &str = "192.0.2.3";

fn cli(data: &std::path::Path, config: &std::path::Path, args: &[&str]) -> String {
    let mut c = patchward(data);
    c.arg("--config").arg(config).args(args);
    let o = run(c);
    assert!(
        o.status.success(),
        "{args:?}: {}\n{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Waits (at most `limit`) until `f` holds, saying what it waited for.
fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> Option<String>) {
    let start = Instant::now();
    loop {
        let Some(state) = f() else { return };
        assert!(start.elapsed() < limit, "{what}; last seen: {state}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "needs root and nft: cargo test --features system-tests"
)]
fn the_daemon_resolves_dns_peers_into_the_kernel_and_reports_blocked_flows() {
    require_root_and_tools();
    let host_before = host_ruleset();
    let mut lab = Lab::new("daemon");
    lab.listen_on_legacy(&[2222, 4445]);
    lab.listen_on_client(&[873]);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let dns = rt.block_on(TestDns::start("127.0.0.1:0"));
    dns.set(
        "backup.test",
        Zone::Records(vec![(CLIENT.parse().unwrap(), 12)]),
    );

    let tmp = tempfile::tempdir().unwrap();
    let (data, config) = (tmp.path().join("data"), tmp.path().join("patchward.toml"));
    std::fs::write(
        &config,
        format!(
            "[legacy]\nsegment_mode = \"enforce\"\nnetd_socket = \"{}\"\n\
             dns_refresh = \"10m\"\ndns_servers = [\"{}\"]\nmonitor_interval = \"5s\"\n\
             monitor_timeout_ms = 500\n",
            lab.socket.display(),
            dns.addr
        ),
    )
    .unwrap();
    let pw = |args: &[&str]| cli(&data, &config, args);
    pw(&["init"]);
    pw(&[
        "legacy",
        "add",
        "legacy-db",
        "--address",
        crate::netns_support::LEGACY,
        "--product",
        "windows-server",
        "--cycle",
        "2012 R2",
    ]);
    pw(&[
        "legacy",
        "flow",
        "add",
        "legacy-db",
        "in",
        "tcp",
        "192.0.2.0/24",
        "port",
        "2222",
    ]);
    pw(&[
        "legacy",
        "flow",
        "add",
        "legacy-db",
        "out",
        "tcp",
        "backup.test",
        "port",
        "873",
        "--comment",
        "nightly backup",
    ]);
    // Applied before the daemon ever resolved the name: the name allows nothing yet.
    pw(&[
        "legacy",
        "segment",
        "apply",
        "--reason",
        "CHG-9 fence the db",
    ]);
    assert_eq!(lab.connect_from_legacy(CLIENT, 873), "timeout");
    assert_eq!(lab.connect_from_client(2222), "hello");

    let table = || {
        lab.router
            .ok(&["nft", "list", "table", "inet", "patchward"])
    };
    let _server = Server::start_with(&data, &["--config", config.to_str().unwrap()]);

    // The keeper resolves the name at start and re-applies with the answer.
    let element = format!("198.51.100.10 . {CLIENT} . tcp . 873 timeout");
    wait_until(
        Duration::from_secs(20),
        "the DNS answer did not reach the kernel's set",
        || (!table().contains(&element)).then(table),
    );
    assert_eq!(lab.connect_from_legacy(CLIENT, 873), "hello");
    assert!(dns.queries.lock().unwrap().to_owned() >= 1);

    // Refused both ways while the daemon runs: the legacy host to a LAN port it has no
    // flow for, and the client to a port of the host that is not allowed.
    assert_eq!(lab.connect_from_legacy(CLIENT, 4445), "timeout");
    assert_eq!(lab.connect_from_client(4445), "timeout");
    let events = || -> Vec<Value> {
        serde_json::from_str(&pw(&["legacy", "events", "legacy-db", "--json"])).unwrap()
    };
    let blocked = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["kind"] == "blocked_flow")
            .map(|e| e["text"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    wait_until(
        Duration::from_secs(20),
        "no blocked_flow events for both refused connections",
        || {
            let b = blocked(&events());
            let out = b.iter().any(|t| {
                t.starts_with(&format!(
                    "host legacy-db tried to reach {CLIENT}:4445 (tcp)"
                ))
            });
            let inward = b.iter().any(|t| {
                t.starts_with(&format!(
                    "{CLIENT} tried to reach host legacy-db on port 4445 (tcp)"
                ))
            });
            (!(out && inward)).then(|| format!("{b:?}"))
        },
    );

    // The record moves. Its TTL (12 s) is far shorter than dns_refresh (10 min): the
    // keeper looks again when the answer runs out, and the old address leaves the set.
    dns.set(
        "backup.test",
        Zone::Records(vec![(MOVED.parse().unwrap(), 12)]),
    );
    let moved = format!("198.51.100.10 . {MOVED} . tcp . 873 timeout");
    wait_until(
        Duration::from_secs(35),
        "the moved DNS record did not replace the old element",
        || {
            let t = table();
            (!t.contains(&moved) || t.contains(&element)).then_some(t)
        },
    );
    assert_eq!(lab.connect_from_legacy(CLIENT, 873), "timeout");
    let failed = events()
        .iter()
        .filter(|e| e["kind"] == "dns_failed")
        .count();
    assert_eq!(failed, 0, "the test resolver answered every lookup");
    drop(_server);
    drop(lab);
    assert_eq!(
        host_ruleset(),
        host_before,
        "the init namespace's ruleset changed"
    );
}
