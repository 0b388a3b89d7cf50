//! Issue [10]: the legacy segment's fence in a real kernel, in network namespaces the
//! tests create and always remove (`netns_support`). Three namespaces (LAN client,
//! appliance as router running the real `patchward-netd`, legacy host), RFC 5737
//! addresses, and the host's own ruleset compared before and after every test.
//!
//! Needs root, nft, ip, python3 and setpriv: `.ci/run` runs them with
//! `--features system-tests`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use patchward::legacy::flows::{DnsAnswers, Flow, NamedSets, SegmentHost};
use patchward::legacy::netd::client;
use patchward::legacy::nft::{Segment, render};

use crate::netns_support::{CLIENT, LEGACY, Lab, PYTHON, host_ruleset, ok, require_root_and_tools};

fn legacy_db(flows: &[&str]) -> Vec<SegmentHost> {
    vec![SegmentHost {
        name: "legacy-db".into(),
        addresses: vec![LEGACY.parse().unwrap()],
        flows: flows.iter().map(|f| f.parse::<Flow>().unwrap()).collect(),
    }]
}

fn rendered(hosts: &[SegmentHost], dns: &DnsAnswers) -> String {
    render(Segment {
        hosts,
        sets: &NamedSets::new(),
        dns,
    })
    .unwrap()
}

/// A sentinel table of someone else's in the router namespace: no counters, so nothing
/// in it changes unless someone changes it.
fn add_sentinel(lab: &Lab) -> String {
    let file = lab.dir.path().join("sentinel.nft");
    std::fs::write(
        &file,
        "table inet sentinel {\n\
         set admins { type ipv4_addr; elements = { 192.0.2.99 } }\n\
         chain passthrough { type filter hook forward priority 10; policy accept; ip saddr @admins accept; }\n\
         }\n",
    )
    .unwrap();
    lab.router.ok(&["nft", "-f", file.to_str().unwrap()]);
    lab.router.ok(&["nft", "list", "table", "inet", "sentinel"])
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "needs root and nft: cargo test --features system-tests"
)]
fn an_allowed_flow_passes_a_forbidden_one_is_dropped_and_counted() {
    require_root_and_tools();
    let host_before = host_ruleset();
    let mut lab = Lab::new("daemon");
    let sentinel = add_sentinel(&lab);
    lab.listen_on_legacy(&[2222, 4445]);
    // Before any table, both connect: the router forwards everything.
    assert_eq!(lab.connect_from_client(4445), "hello");

    let text = rendered(
        &legacy_db(&["in tcp 192.0.2.0/24 port 2222 \"admins\""]),
        &DnsAnswers::new(),
    );
    let applied = client::apply(&lab.socket, &text).unwrap();
    assert!(applied.changed);

    assert_eq!(lab.connect_from_client(2222), "hello");
    assert_eq!(lab.connect_from_client(4445), "timeout");

    let counters = client::counters(&lab.socket).unwrap();
    let by_name: BTreeMap<&str, u64> = counters
        .counters
        .iter()
        .map(|c| (c.name.as_str(), c.packets))
        .collect();
    assert!(by_name["drop_in_legacy-db"] >= 1, "{counters:?}");
    assert_eq!(by_name["drop_out_legacy-db"], 0, "{counters:?}");
    let blocked: Vec<_> = counters
        .blocked
        .iter()
        .filter(|b| b.source.to_string() == CLIENT && b.destination.to_string() == LEGACY)
        .collect();
    assert_eq!(blocked.len(), 1, "{counters:?}");
    assert_eq!(
        (blocked[0].proto.as_str(), blocked[0].port),
        ("tcp", Some(4445))
    );
    assert!(blocked[0].packets >= 1);

    // The table is what was applied, with its hash; the sentinel is untouched.
    let table = client::show(&lab.socket).unwrap();
    assert_eq!(table.sha256.as_deref(), Some(applied.sha256.as_str()));
    assert!(
        table
            .text
            .unwrap()
            .contains("192.0.2.0/24 . 198.51.100.10 . tcp . 2222")
    );
    assert_eq!(
        lab.router.ok(&["nft", "list", "table", "inet", "sentinel"]),
        sentinel
    );
    drop(lab);
    assert_eq!(
        host_ruleset(),
        host_before,
        "the init namespace's ruleset changed"
    );
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "needs root and nft: cargo test --features system-tests"
)]
fn a_second_apply_of_the_same_ruleset_is_unchanged_and_other_tables_stay_byte_for_byte() {
    require_root_and_tools();
    let host_before = host_ruleset();
    let lab = Lab::new("daemon");
    let sentinel = add_sentinel(&lab);
    let text = rendered(
        &legacy_db(&["in tcp 192.0.2.0/24 port 22"]),
        &DnsAnswers::new(),
    );
    let first = client::apply(&lab.socket, &text).unwrap();
    let listing = lab
        .router
        .ok(&["nft", "list", "table", "inet", "patchward"]);
    let second = client::apply(&lab.socket, &text).unwrap();
    assert!(first.changed);
    assert!(!second.changed, "the second apply changed something");
    assert_eq!(first.sha256, second.sha256);
    assert_eq!(
        lab.router
            .ok(&["nft", "list", "table", "inet", "patchward"]),
        listing
    );
    // A different ruleset replaces the table whole.
    let other = rendered(
        &legacy_db(&["in tcp 192.0.2.0/24 port 23"]),
        &DnsAnswers::new(),
    );
    assert!(client::apply(&lab.socket, &other).unwrap().changed);
    let now = lab
        .router
        .ok(&["nft", "list", "table", "inet", "patchward"]);
    assert!(
        now.contains(". tcp . 23") && !now.contains(". tcp . 22"),
        "{now}"
    );
    assert_eq!(
        lab.router.ok(&["nft", "list", "table", "inet", "sentinel"]),
        sentinel
    );
    drop(lab);
    assert_eq!(
        host_ruleset(),
        host_before,
        "the init namespace's ruleset changed"
    );
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "needs root and nft: cargo test --features system-tests"
)]
fn the_helper_refuses_other_tables_flush_garbage_and_strangers_and_changes_nothing() {
    require_root_and_tools();
    let host_before = host_ruleset();
    let lab = Lab::new("daemon");
    add_sentinel(&lab);
    let good = rendered(
        &legacy_db(&["in tcp 192.0.2.0/24 port 22"]),
        &DnsAnswers::new(),
    );
    client::apply(&lab.socket, &good).unwrap();
    let before = lab.router.ruleset();

    let other_table = format!(
        "patchward-netd: refused: line {}: `table inet sentinel` names another table: only table inet patchward may be changed",
        good.lines().count() + 1
    );
    let cases = [
        (
            format!("{good}table inet sentinel {{ chain fwd {{ accept; }} }}\n"),
            other_table.as_str(),
        ),
        (
            format!("flush ruleset\n{good}"),
            "patchward-netd: refused: line 1: `flush ruleset` is refused: it would remove every table, and only table inet patchward may be changed",
        ),
        (
            "\u{1b}[2J garbage {{{".to_string(),
            "patchward-netd: refused: line 1: character '\\u{1b}' is not allowed (only printable ASCII, tabs and newlines)",
        ),
        (
            "table inet patchward { chain c { this is not nft; } }\n".to_string(),
            "patchward-netd: refused by nft -c, nothing applied: nft check failed: /dev/stdin:4:",
        ),
    ];
    for (text, expected) in cases {
        let err = client::apply(&lab.socket, &text).unwrap_err().to_string();
        assert!(
            err.starts_with(expected),
            "got: {err}\nexpected: {expected}"
        );
        assert_eq!(
            lab.router.ruleset(),
            before,
            "a refused ruleset changed the kernel's"
        );
    }

    // A stranger: the socket file is opened up on purpose so that only the peer check
    // stands in the way.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(lab.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&lab.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    // One JSON request line, sent by python as another user.
    let script = |request: &str| {
        format!(
            "import socket\n\
             s = socket.socket(socket.AF_UNIX); s.connect({:?})\n\
             s.sendall({request:?}.encode() + b'\\n')\n\
             print(s.makefile().readline().strip())\n",
            lab.socket.to_str().unwrap()
        )
    };
    let as_user = |gid: &str, request: &str| {
        ok(std::process::Command::new("setpriv").args([
            "--reuid",
            "65534",
            "--regid",
            gid,
            "--clear-groups",
            PYTHON,
            "-c",
            &script(request),
        ]))
    };
    let answer = as_user(
        "65534",
        r#"{"op":"apply","ruleset":"table inet patchward { }"}"#,
    );
    assert_eq!(
        answer.trim(),
        r#"{"status":"error","message":"refused: uid 65534 is neither root nor a member of group daemon (add the account that runs patchward to group daemon)"}"#
    );
    assert_eq!(
        lab.router.ruleset(),
        before,
        "a stranger's request changed the kernel's ruleset"
    );
    // The same user in the helper's group may read the counters.
    let answer = as_user("1", r#"{"op":"counters"}"#);
    assert!(
        answer.starts_with(r#"{"status":"counters","counters":[{"name":"drop_in_legacy-db""#),
        "{answer}"
    );
    drop(lab);
    assert_eq!(
        host_ruleset(),
        host_before,
        "the init namespace's ruleset changed"
    );
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "needs root and nft: cargo test --features system-tests"
)]
fn dns_elements_leave_the_set_when_their_ttl_ends() {
    require_root_and_tools();
    let lab = Lab::new("daemon");
    let mut dns = DnsAnswers::new();
    dns.insert(
        "backup.example.net".into(),
        vec![("192.0.2.50".parse().unwrap(), Duration::from_secs(2))],
    );
    let hosts = legacy_db(&[
        "out tcp backup.example.net port 873",
        "in tcp 192.0.2.0/24 port 22",
    ]);
    client::apply(&lab.socket, &rendered(&hosts, &dns)).unwrap();
    let set = || {
        lab.router
            .ok(&["nft", "list", "table", "inet", "patchward"])
    };
    assert!(
        set().contains("198.51.100.10 . 192.0.2.50 . tcp . 873 timeout 2s"),
        "{}",
        set()
    );
    let start = Instant::now();
    while set().contains("192.0.2.50") {
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "the DNS element outlived its TTL: {}",
            set()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "the element left too early"
    );
    // The permanent element stays.
    assert!(set().contains("192.0.2.0/24 . 198.51.100.10 . tcp . 22"));
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "needs root and nft: cargo test --features system-tests"
)]
fn namespaces_are_removed_even_when_the_test_fails() {
    require_root_and_tools();
    let names = std::panic::catch_unwind(|| {
        let lab = Lab::new("daemon");
        let names = [
            lab.client.name.clone(),
            lab.router.name.clone(),
            lab.legacy.name.clone(),
        ];
        std::panic::panic_any(names);
    })
    .unwrap_err();
    let names = names.downcast_ref::<[String; 3]>().unwrap();
    let list = ok(std::process::Command::new("ip").args(["netns", "list"]));
    for n in names {
        assert!(!list.contains(n.as_str()), "{n} was left behind: {list}");
    }
}

/// Random flow sets (addresses, CIDRs, a named set, DNS answers, ports and ranges, all
/// three protocols, IPv4 and IPv6) render to rulesets the whitelist and `nft -c` accept.
#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "needs root and nft: cargo test --features system-tests"
)]
fn random_flow_sets_render_to_rulesets_nft_accepts() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    require_root_and_tools();
    let scratch = crate::netns_support::Netns::new(usize::MAX, "prop");
    let peer = prop_oneof![
        (1u8..=254).prop_map(|d| format!("192.0.2.{d}")),
        (0u8..=255, 8u8..=32).prop_map(|(c, p)| {
            let net: ipnet::Ipv4Net = format!("10.{c}.3.4/{p}").parse().unwrap();
            net.trunc().to_string()
        }),
        (1u16..=0xffff).prop_map(|h| format!("2001:db8:1::{h:x}")),
        (16u8..=128).prop_map(|p| {
            let net: ipnet::Ipv6Net = format!("2001:db8:ab:cd::1/{p}").parse().unwrap();
            net.trunc().to_string()
        }),
        Just("@lan-clients".to_string()),
        Just("backup.example.net".to_string()),
    ];
    let ports = proptest::collection::vec((1u16..=65535, 0u16..=200), 1..4).prop_map(|v| {
        let items: Vec<String> = v
            .into_iter()
            .map(|(p, w)| match p.checked_add(w) {
                Some(q) if w > 0 => format!("{p}-{q}"),
                _ => p.to_string(),
            })
            .collect();
        items.join(",")
    });
    let flow = (any::<bool>(), 0u8..3, peer, ports).prop_map(|(inbound, proto, peer, ports)| {
        let dir = if inbound { "in" } else { "out" };
        match proto {
            0 => format!("{dir} tcp {peer} port {ports}"),
            1 => format!("{dir} udp {peer} port {ports}"),
            _ => format!("{dir} icmp {peer}"),
        }
    });
    let hosts = proptest::collection::vec(proptest::collection::vec(flow, 0..8), 1..6);
    let ttls = proptest::collection::vec((1u8..=254, 0u64..7200), 0..4);

    let mut runner = TestRunner::new(Config {
        cases: 32,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(hosts, ttls), |(hosts, ttls)| {
            let hosts: Vec<SegmentHost> = hosts
                .into_iter()
                .enumerate()
                .map(|(i, flows)| {
                    let mut flows: Vec<Flow> = flows.iter().map(|f| f.parse().unwrap()).collect();
                    flows.sort_by_key(|f| f.to_string());
                    flows.dedup_by_key(|f| f.to_string());
                    SegmentHost {
                        name: format!("host-{i}"),
                        addresses: vec![
                            format!("198.51.100.{}", i + 10).parse().unwrap(),
                            format!("2001:db8:200::{}", i + 10).parse().unwrap(),
                        ],
                        flows,
                    }
                })
                .collect();
            let mut sets = NamedSets::new();
            sets.insert(
                "lan-clients".into(),
                vec![
                    "192.0.2.0/25".parse().unwrap(),
                    "2001:db8:100::/48".parse().unwrap(),
                ],
            );
            let mut dns = DnsAnswers::new();
            dns.insert(
                "backup.example.net".into(),
                ttls.iter()
                    .map(|(d, ttl)| {
                        (
                            format!("192.0.2.{d}").parse().unwrap(),
                            Duration::from_secs(*ttl),
                        )
                    })
                    .collect(),
            );
            let text = render(Segment {
                hosts: &hosts,
                sets: &sets,
                dns: &dns,
            })
            .unwrap();
            patchward::legacy::netd::validate::validate(&text).unwrap();
            let batch = patchward::legacy::netd::nft_cmd::batch(&text, &"0".repeat(64));
            let mut child = scratch
                .cmd(&["nft", "-c", "-f", "-"])
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), batch.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            prop_assert!(
                out.status.success(),
                "nft -c refused:\n{}\n{text}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(())
        })
        .unwrap();
}

/// The VM image's `/etc/nftables.conf` (table `inet patchward_guard`): the appliance
/// forwards only what enters or leaves `legacy0`, and the fence applied through the
/// helper still decides within that, leaving the guard as it was.
#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "needs root and nft: cargo test --features system-tests"
)]
fn the_image_forwarding_guard_routes_only_the_legacy_interface() {
    require_root_and_tools();
    let host_before = host_ruleset();
    let mut lab = Lab::new("daemon");
    lab.listen_on_legacy(&[2222, 4445]);
    let guard = concat!(env!("CARGO_MANIFEST_DIR"), "/image/nftables.conf");
    lab.router.ok(&["nft", "-f", guard]);
    // The legacy side is still called r-leg: nothing is forwarded.
    assert_eq!(lab.connect_from_client(2222), "timeout");

    for args in [
        &["ip", "link", "set", "r-leg", "down"][..],
        &["ip", "link", "set", "r-leg", "name", "legacy0"],
        &["ip", "link", "set", "legacy0", "up"],
    ] {
        lab.router.ok(args);
    }
    let start = Instant::now();
    while lab.connect_from_client(2222) != "hello" {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the guard does not forward to legacy0"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(lab.connect_from_client(4445), "hello");
    let guard_table = lab
        .router
        .ok(&["nft", "list", "table", "inet", "patchward_guard"]);

    let text = rendered(
        &legacy_db(&["in tcp 192.0.2.0/24 port 2222"]),
        &DnsAnswers::new(),
    );
    client::apply(&lab.socket, &text).unwrap();
    assert_eq!(lab.connect_from_client(2222), "hello");
    assert_eq!(lab.connect_from_client(4445), "timeout");
    assert_eq!(
        lab.router
            .ok(&["nft", "list", "table", "inet", "patchward_guard"]),
        guard_table
    );
    // Loading the guard again (as at boot) leaves the fence in place.
    lab.router.ok(&["nft", "-f", guard]);
    assert_eq!(lab.connect_from_client(4445), "timeout");
    assert!(client::show(&lab.socket).unwrap().text.is_some());
    drop(lab);
    assert_eq!(host_ruleset(), host_before);
}
