//! Issue [10]: render + check + apply of the legacy fence for 1,000 hosts x 10 flows
//! (goal 250 ms, limit 1 s), and reading the counters back, through the real
//! `patchward-netd` in a network namespace this bench creates and removes.
//!
//! Needs root and nft: `sudo cargo bench --bench nft_apply` (prints a note and does
//! nothing without root). Addresses: hosts in 198.18.0.0/15 (RFC 2544, benchmarking),
//! peers in RFC 5737 ranges; nothing leaves the namespace.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use patchward::legacy::flows::{DnsAnswers, Flow, NamedSets, SegmentHost};
use patchward::legacy::netd::{client, validate};
use patchward::legacy::nft::{Segment, render};

const HOSTS: usize = 1000;
const ROUNDS: usize = 5;

struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

struct Netd(Child);

impl Drop for Netd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hosts() -> Vec<SegmentHost> {
    (0..HOSTS)
        .map(|i| {
            let flows = [
                "in tcp 192.0.2.0/24 port 22".to_string(),
                "in tcp @lan-clients port 443,8443".to_string(),
                format!("in tcp 192.0.2.20 port {}", 10_000 + i),
                "in udp 192.0.2.53 port 161".to_string(),
                "in icmp 192.0.2.0/24".to_string(),
                "in tcp 192.0.2.0/25 port 3389,5000-5100".to_string(),
                "out tcp 192.0.2.10 port 445".to_string(),
                "out udp 192.0.2.53 port 53,123".to_string(),
                "out tcp backup.example.net port 873".to_string(),
                "out tcp 203.0.113.0/24 port 8000-8100".to_string(),
            ];
            SegmentHost {
                name: format!("legacy-{i:04}"),
                addresses: vec![
                    format!("198.18.{}.{}", i / 250, i % 250 + 1)
                        .parse()
                        .unwrap(),
                ],
                flows: flows.iter().map(|f| f.parse::<Flow>().unwrap()).collect(),
            }
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    if !rustix::process::geteuid().is_root() {
        println!(
            "nft_apply: needs root (network namespace, nft); run as root: cargo bench --bench nft_apply"
        );
        return;
    }
    let hosts = hosts();
    let mut sets = NamedSets::new();
    sets.insert("lan-clients".into(), vec!["192.0.2.0/26".parse().unwrap()]);
    let mut dns = DnsAnswers::new();
    dns.insert(
        "backup.example.net".into(),
        vec![("192.0.2.40".parse().unwrap(), Duration::from_secs(300))],
    );

    let mut renders = Vec::new();
    let mut text = String::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        text = render(Segment {
            hosts: &hosts,
            sets: &sets,
            dns: &dns,
        })
        .unwrap();
        validate::validate(&text).unwrap();
        renders.push(t.elapsed());
    }
    if let Ok(path) = std::env::var("NFT_DUMP") {
        std::fs::write(path, &text).unwrap();
    }
    let elements = text.lines().filter(|l| l.starts_with("\t\t\t")).count();

    let ns = Namespace(format!("pw-bench-{}", std::process::id()));
    assert!(
        Command::new("ip")
            .args(["netns", "add", &ns.0])
            .status()
            .unwrap()
            .success()
    );
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("netd.sock");
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.0, env!("CARGO_BIN_EXE_patchward-netd")])
        .args(["--socket", socket.to_str().unwrap(), "--group", "root"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _netd = Netd(child);
    let start = Instant::now();
    while !socket.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "patchward-netd did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    // Each round applies a different ruleset (one port changes), so each is a real
    // check + apply, then the same ruleset again (unchanged), then the counters.
    let (mut applies, mut unchanged, mut reads) = (Vec::new(), Vec::new(), Vec::new());
    let mut counters = 0;
    for round in 0..ROUNDS {
        let mut hosts = hosts.clone();
        hosts[0].flows[0] = format!("in tcp 192.0.2.0/24 port {}", 22 + round)
            .parse()
            .unwrap();
        let text = render(Segment {
            hosts: &hosts,
            sets: &sets,
            dns: &dns,
        })
        .unwrap();
        let t = Instant::now();
        assert!(client::apply(&socket, &text).unwrap().changed);
        applies.push(t.elapsed());
        let t = Instant::now();
        assert!(!client::apply(&socket, &text).unwrap().changed);
        unchanged.push(t.elapsed());
        let t = Instant::now();
        let c = client::counters(&socket).unwrap();
        reads.push(t.elapsed());
        counters = c.counters.len();
    }
    let total = median(renders.clone()) + median(applies.clone());
    println!(
        "nft_apply: {HOSTS} hosts x 10 flows, {elements} set elements, {} bytes of nft text",
        text.len()
    );
    println!(
        "  render + validate        median {} (min {})",
        ms(median(renders.clone())),
        ms(*renders.iter().min().unwrap())
    );
    println!(
        "  apply via netd (check + transaction) median {} (min {})",
        ms(median(applies.clone())),
        ms(*applies.iter().min().unwrap())
    );
    println!(
        "  render + check + apply   {} (goal 250 ms, limit 1 s)",
        ms(total)
    );
    println!(
        "  apply, unchanged         median {}",
        ms(median(unchanged))
    );
    println!(
        "  counters read ({counters} named) median {}",
        ms(median(reads))
    );
}
