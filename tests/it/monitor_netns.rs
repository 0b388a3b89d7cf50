//! The monitor against a real kernel path: two network namespaces this test creates (an
//! appliance and a legacy host), joined by a veth pair on RFC 5737 addresses
//! (198.51.100.1 and .2). The prober runs on a thread inside the appliance namespace,
//! the listeners are bound inside the host namespace, and the host's link is really cut
//! with `ip link set ... down`. The namespaces (and with them the veth pair) are always
//! deleted, even when the test fails. Nothing in the init namespace is touched.
//! Needs root and iproute2: `cargo test --features system-tests --test it monitor_netns`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use patchward::clock::ManualClock;
use patchward::legacy::monitor::probe::probe;
use patchward::legacy::monitor::{
    CycleOptions, EventKind, HostState, Monitor, ProbeOptions, Target, Thresholds, WatchedPort,
};

use crate::monitor::{Counts, serve_listener};

const APPLIANCE_IP: &str = "198.51.100.1";
const HOST_IP: &str = "198.51.100.2";

/// Network namespaces created by this test, deleted on drop (which also deletes the
/// veth pair inside them).
struct Namespaces {
    names: Vec<String>,
}

impl Namespaces {
    fn new() -> Self {
        Self { names: Vec::new() }
    }

    fn add(&mut self, name: &str) {
        // A leftover of a killed earlier run with the same pid would make `add` fail.
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        ip(&["netns", "add", name]);
        self.names.push(name.to_owned());
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in self.names.iter().rev() {
            let out = Command::new("ip").args(["netns", "del", name]).output();
            if !matches!(&out, Ok(o) if o.status.success()) {
                eprintln!("could not delete network namespace {name}: {out:?}");
            }
        }
    }
}

/// Runs `ip ARGS`, panicking with its stderr when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` (install iproute2): {e}"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Moves the calling thread into the named network namespace.
fn enter(ns: &str) {
    let file = File::open(format!("/run/netns/{ns}"))
        .unwrap_or_else(|e| panic!("open /run/netns/{ns}: {e}"));
    // SAFETY: setns on a valid namespace fd only changes this thread's namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// A listener bound inside `ns` (sockets keep the namespace they were created in).
fn bind_in(ns: &str, port: u16) -> std::net::TcpListener {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        enter(&ns);
        let l = std::net::TcpListener::bind((HOST_IP, port)).expect("bind in the host namespace");
        l.set_nonblocking(true).unwrap();
        l
    })
    .join()
    .expect("the bind thread panicked")
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "needs root and iproute2 (network namespaces): cargo test --features system-tests"
)]
fn the_monitor_sees_drift_a_cut_link_and_recovery_in_network_namespaces() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the network namespace test creates namespaces and veth pairs and needs root"
    );
    let pid = std::process::id();
    let (app, host) = (format!("pwmon-app-{pid}"), format!("pwmon-host-{pid}"));
    let (veth_app, veth_host) = (format!("pwm{pid}a"), format!("pwm{pid}h"));
    let mut namespaces = Namespaces::new();
    namespaces.add(&app);
    namespaces.add(&host);
    ip(&[
        "link", "add", &veth_app, "netns", &app, "type", "veth", "peer", "name", &veth_host,
        "netns", &host,
    ]);
    for (ns, dev, addr) in [
        (&app, &veth_app, APPLIANCE_IP),
        (&host, &veth_host, HOST_IP),
    ] {
        ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }

    let scenario = {
        let (app, host, veth_host) = (app.clone(), host.clone(), veth_host.clone());
        std::thread::spawn(move || {
            enter(&app);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(run(&host, &veth_host));
        })
    };
    // On failure the panic is re-raised here, and `namespaces` is dropped while unwinding.
    if let Err(panic) = scenario.join() {
        std::panic::resume_unwind(panic);
    }
    drop(namespaces);
    assert!(
        !std::path::Path::new(&format!("/run/netns/{app}")).exists(),
        "the appliance namespace was not removed"
    );
}

/// The appliance namespace's `Tcp: OutRsts` counter (this thread is in it).
fn out_rsts() -> u64 {
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap();
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
    let index = names
        .split_whitespace()
        .position(|n| n == "OutRsts")
        .expect("OutRsts in /proc/net/snmp");
    values
        .split_whitespace()
        .nth(index)
        .unwrap()
        .parse()
        .unwrap()
}

async fn run(host_ns: &str, veth_host: &str) {
    let counts = Arc::new(Counts::default());
    let open = bind_in(host_ns, 0);
    let open_port = open.local_addr().unwrap().port();
    let new_port = bind_in(host_ns, 0).local_addr().unwrap().port(); // released at once
    let hold = Duration::ZERO;
    // A banner, a second line and 2 KiB more than the prober reads: unless it drains
    // them before letting the socket go, the appliance's kernel sends an RST.
    let banner: &'static [u8] = format!("SSH-2.0-OpenSSH_7.4\r\nmore\r\n{}", "x".repeat(2048))
        .into_bytes()
        .leak();
    let first = serve_listener(
        tokio::net::TcpListener::from_std(open).unwrap(),
        Some(banner),
        hold,
        Arc::clone(&counts),
    );
    let target = Target {
        name: "legacy-netns".into(),
        addr: HOST_IP.parse().unwrap(),
        ports: vec![
            WatchedPort {
                port: open_port,
                banner: true,
            },
            WatchedPort::new(new_port),
        ],
    };
    let targets = [target];
    let probe_opts = ProbeOptions {
        timeout: Duration::from_millis(500),
        close_grace: Duration::from_millis(500),
    };
    let opts = CycleOptions::new(50, probe_opts).unwrap();
    // DOWN after 2 failed of the last 3 cycles, UP after 2 answered in a row.
    let mut monitor = Monitor::new(Thresholds::new(2, 3, 2).unwrap());
    let clock = ManualClock::new("2026-12-07T12:00:00Z".parse().unwrap());
    let mut cycle = async || {
        clock.advance(SignedDuration::from_secs(60));
        let report = monitor.run_cycle(&targets, &opts, &clock).await.unwrap();
        let kinds: Vec<EventKind> = report.events.iter().map(|e| e.kind.clone()).collect();
        let texts: Vec<String> = report.events.iter().map(|e| e.to_string()).collect();
        (monitor.state("legacy-netns").unwrap(), kinds, texts)
    };

    let rsts_before = out_rsts();
    assert_eq!(cycle().await.0, HostState::Pending);
    assert_eq!(cycle().await.0, HostState::Up);

    // A new listener on a watched port: drift, in the first cycle that sees it.
    let second = serve_listener(
        tokio::net::TcpListener::from_std(bind_in(host_ns, new_port)).unwrap(),
        None,
        hold,
        Arc::clone(&counts),
    );
    let (state, kinds, _) = cycle().await;
    assert_eq!(state, HostState::Up);
    assert_eq!(kinds, vec![EventKind::PortOpened { port: new_port }]);
    assert_eq!(
        out_rsts() - rsts_before,
        0,
        "the appliance sent RSTs: probes must close with a FIN"
    );

    // Cut the host's link: PENDING after one failed cycle, DOWN after the second.
    ip(&["-n", host_ns, "link", "set", veth_host, "down"]);
    assert_eq!(cycle().await, (HostState::Pending, vec![], vec![]));
    let (state, kinds, texts) = cycle().await;
    assert_eq!(state, HostState::Down);
    assert!(
        matches!(
            kinds.as_slice(),
            [EventKind::HostDown {
                failed: 2,
                window: 3,
                ..
            }]
        ),
        "{kinds:?}"
    );
    assert!(
        texts[0].starts_with(
            "host legacy-netns (198.51.100.2) is DOWN: no watched port answered in 2 of the \
             last 3 cycles (last cycle: "
        ),
        "{texts:?}"
    );
    let (state, kinds, _) = cycle().await;
    assert_eq!((state, kinds.len()), (HostState::Down, 0));

    // Link back: wait (bounded) until the path works, then UP only on the second
    // answered cycle.
    ip(&["-n", host_ns, "link", "set", veth_host, "up"]);
    let addr = std::net::SocketAddr::new(HOST_IP.parse().unwrap(), open_port);
    let mut reachable = false;
    for _ in 0..50 {
        if probe(addr, false, &probe_opts).await.is_open() {
            reachable = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        reachable,
        "the host did not answer within 5 s of its link coming back"
    );
    assert_eq!(cycle().await, (HostState::Down, vec![], vec![]));
    let (state, kinds, _) = cycle().await;
    assert_eq!(state, HostState::Up);
    assert!(
        matches!(kinds.as_slice(), [EventKind::HostUp { streak: 2, .. }]),
        "{kinds:?}"
    );
    assert_eq!(counts.resets.load(std::sync::atomic::Ordering::SeqCst), 0);
    first.stop().await;
    second.stop().await;
}
