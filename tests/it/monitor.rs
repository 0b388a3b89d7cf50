//! The legacy host monitor against real sockets on 127.0.0.0/8: listeners the tests bind
//! on their own 127.91.x.y addresses (ephemeral ports, so parallel tests and other
//! processes do not collide), probed by the real cycle runner.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use patchward::clock::{Clock, ManualClock};
use patchward::legacy::monitor::{
    BannerHash, CycleOptions, EventKind, HostState, Monitor, ProbeOptions, ProbeOutcome, Target,
    Thresholds, WatchedPort,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the listeners saw: connections now and at most, overall and per address, and
/// connections that ended with an RST before the client's FIN. (An RST sent after the
/// FIN is invisible to a reader; `monitor_netns` counts the kernel's `OutRsts` for it.)
#[derive(Default)]
pub struct Counts {
    pub accepted: AtomicUsize,
    pub resets: AtomicUsize,
    now: AtomicUsize,
    max: AtomicUsize,
    per_addr: Mutex<HashMap<IpAddr, (usize, usize)>>,
}

impl Counts {
    fn enter(&self, addr: IpAddr) {
        self.accepted.fetch_add(1, Ordering::SeqCst);
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        let mut per = self.per_addr.lock().unwrap();
        let (cur, max) = per.entry(addr).or_default();
        *cur += 1;
        *max = (*max).max(*cur);
    }

    fn leave(&self, addr: IpAddr) {
        self.now.fetch_sub(1, Ordering::SeqCst);
        self.per_addr.lock().unwrap().get_mut(&addr).unwrap().0 -= 1;
    }

    fn max_per_addr(&self) -> usize {
        let per = self.per_addr.lock().unwrap();
        per.values().map(|(_, max)| *max).max().unwrap_or(0)
    }
}

/// A listener that counts, optionally sends `banner` first, holds each connection for
/// `hold`, then reads until the client's FIN (an RST is counted) and closes.
pub struct Served {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Served {
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

pub async fn serve(
    addr: SocketAddr,
    banner: Option<&'static [u8]>,
    hold: Duration,
    counts: Arc<Counts>,
) -> Served {
    let listener = TcpListener::bind(addr).await.expect("bind a test listener");
    serve_listener(listener, banner, hold, counts)
}

/// [`serve`] on a listener bound elsewhere (e.g. inside a network namespace).
pub fn serve_listener(
    listener: TcpListener,
    banner: Option<&'static [u8]>,
    hold: Duration,
    counts: Arc<Counts>,
) -> Served {
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let counts = Arc::clone(&counts);
            tokio::spawn(async move {
                counts.enter(addr.ip());
                if let Some(banner) = banner {
                    let _ = conn.write_all(banner).await;
                }
                tokio::time::sleep(hold).await;
                let mut buf = [0u8; 256];
                loop {
                    match conn.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(_) => continue,
                        Err(_) => {
                            counts.resets.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                    }
                }
                counts.leave(addr.ip());
            });
        }
    });
    Served { addr, task }
}

fn ip(c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 91, c, d))
}

/// A port on `addr` that nothing listens on now (bound once, then released).
async fn free_port(addr: IpAddr) -> u16 {
    let l = TcpListener::bind((addr, 0)).await.unwrap();
    l.local_addr().unwrap().port()
}

fn quick() -> CycleOptions {
    CycleOptions::new(
        50,
        ProbeOptions {
            timeout: Duration::from_secs(2),
            close_grace: Duration::from_secs(1),
        },
    )
    .unwrap()
}

fn target(name: &str, addr: IpAddr, ports: &[u16]) -> Target {
    Target {
        name: name.into(),
        addr,
        ports: ports.iter().map(|p| WatchedPort::new(*p)).collect(),
    }
}

fn clock() -> ManualClock {
    ManualClock::new("2026-12-07T12:00:00Z".parse::<Timestamp>().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_listener_on_a_watched_port_is_reported_as_drift() {
    let counts = Arc::new(Counts::default());
    let addr = ip(1, 1);
    let a = serve((addr, 0).into(), None, Duration::ZERO, Arc::clone(&counts)).await;
    let b_port = free_port(addr).await;
    // Listening, but not watched: must never be probed.
    let other = Arc::new(Counts::default());
    let unwatched = serve((addr, 0).into(), None, Duration::ZERO, Arc::clone(&other)).await;
    let targets = [target("legacy-db", addr, &[a.addr.port(), b_port])];
    let (clock, mut monitor) = (clock(), Monitor::new(Thresholds::default()));

    for expected in [HostState::Pending, HostState::Up] {
        let report = monitor.run_cycle(&targets, &quick(), &clock).await.unwrap();
        assert_eq!(report.events, vec![]);
        assert_eq!(report.results[0].probes[1].outcome, ProbeOutcome::Refused);
        assert_eq!(monitor.state("legacy-db"), Some(expected));
        clock.advance(SignedDuration::from_secs(60));
    }
    let b = serve(
        (addr, b_port).into(),
        None,
        Duration::ZERO,
        Arc::clone(&counts),
    )
    .await;
    let report = monitor.run_cycle(&targets, &quick(), &clock).await.unwrap();
    assert_eq!(report.events.len(), 1, "{:?}", report.events);
    let event = &report.events[0];
    assert_eq!(event.kind, EventKind::PortOpened { port: b_port });
    assert_eq!(event.at, clock.now());
    assert_eq!(
        event.to_string(),
        format!(
            "port {b_port} on host legacy-db (127.91.1.1) opened: it accepted a connection, \
             and it was closed in the baseline"
        )
    );
    // A fourth cycle: nothing new.
    let report = monitor.run_cycle(&targets, &quick(), &clock).await.unwrap();
    assert_eq!(report.events, vec![]);
    assert_eq!(
        other.accepted.load(Ordering::SeqCst),
        0,
        "an unwatched port was probed"
    );
    assert_eq!(counts.resets.load(Ordering::SeqCst), 0);
    for s in [a, b, unwatched] {
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_banner_is_reported_and_the_close_stays_clean() {
    const OLD: &[u8] = b"SSH-2.0-OpenSSH_7.4\r\n";
    // A second line and 2 KiB more than the prober reads: it must drain them before it
    // lets the socket go, or the kernel would answer the unread bytes with an RST.
    let new: &'static [u8] = format!("SSH-2.0-OpenSSH_9.6\r\nsecond line\r\n{}", "x".repeat(2048))
        .into_bytes()
        .leak();
    let counts = Arc::new(Counts::default());
    let addr = ip(2, 1);
    let old = serve(
        (addr, 0).into(),
        Some(OLD),
        Duration::ZERO,
        Arc::clone(&counts),
    )
    .await;
    let port = old.addr.port();
    let targets = [Target {
        name: "legacy-ssh".into(),
        addr,
        ports: vec![WatchedPort { port, banner: true }],
    }];
    let (clock, mut monitor) = (clock(), Monitor::new(Thresholds::default()));
    let report = monitor.run_cycle(&targets, &quick(), &clock).await.unwrap();
    assert_eq!(report.events, vec![]);
    let ProbeOutcome::Open { banner_hash, .. } = &report.results[0].probes[0].outcome else {
        panic!("{:?}", report.results);
    };
    assert_eq!(
        *banner_hash,
        Some(BannerHash::of_first_line(b"SSH-2.0-OpenSSH_7.4"))
    );
    old.stop().await;

    let new_server = serve(
        (addr, port).into(),
        Some(new),
        Duration::ZERO,
        Arc::clone(&counts),
    )
    .await;
    let report = monitor.run_cycle(&targets, &quick(), &clock).await.unwrap();
    assert_eq!(
        report
            .events
            .iter()
            .map(|e| e.kind.clone())
            .collect::<Vec<_>>(),
        vec![EventKind::BannerChanged {
            port,
            old: BannerHash::of_first_line(b"SSH-2.0-OpenSSH_7.4"),
            new: BannerHash::of_first_line(b"SSH-2.0-OpenSSH_9.6"),
        }]
    );
    // Let the listener's tasks see the end of both connections.
    for _ in 0..100 {
        if counts.now.load(Ordering::SeqCst) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(counts.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(
        counts.resets.load(Ordering::SeqCst),
        0,
        "a probe ended with an RST"
    );
    new_server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_listeners_are_gone_is_pending_then_down_then_up_after_recovery() {
    let counts = Arc::new(Counts::default());
    let addr = ip(3, 1);
    let start = |port: u16| {
        serve(
            (addr, port).into(),
            None,
            Duration::ZERO,
            Arc::clone(&counts),
        )
    };
    let (a, b) = (start(0).await, start(0).await);
    let ports = [a.addr.port(), b.addr.port()];
    let targets = [target("legacy-plc", addr, &ports)];
    // DOWN after 2 failed of the last 3 cycles, UP after 2 answered in a row.
    let (clock, mut monitor) = (clock(), Monitor::new(Thresholds::new(2, 3, 2).unwrap()));
    let cycle = async |monitor: &mut Monitor| {
        clock.advance(SignedDuration::from_secs(60));
        let report = monitor.run_cycle(&targets, &quick(), &clock).await.unwrap();
        let state = monitor.state("legacy-plc").unwrap();
        (state, report.events)
    };
    assert_eq!(cycle(&mut monitor).await, (HostState::Pending, vec![]));
    assert_eq!(cycle(&mut monitor).await, (HostState::Up, vec![]));
    a.stop().await;
    b.stop().await;

    assert_eq!(cycle(&mut monitor).await, (HostState::Pending, vec![]));
    let (state, events) = cycle(&mut monitor).await;
    assert_eq!(state, HostState::Down);
    assert_eq!(events.len(), 1, "{events:?}");
    let down_at = events[0].at;
    assert_eq!(
        events[0].to_string(),
        format!(
            "host legacy-plc (127.91.3.1) is DOWN: no watched port answered in 2 of the last 3 \
             cycles (last cycle: {} refused, {} refused)",
            ports[0], ports[1]
        )
    );
    assert_eq!(cycle(&mut monitor).await, (HostState::Down, vec![]));

    // Back, but UP only after 2 answered cycles in a row.
    let (a, b) = (start(ports[0]).await, start(ports[1]).await);
    assert_eq!(cycle(&mut monitor).await, (HostState::Down, vec![]));
    let (state, events) = cycle(&mut monitor).await;
    assert_eq!(state, HostState::Up);
    assert_eq!(
        events.iter().map(|e| e.kind.clone()).collect::<Vec<_>>(),
        vec![EventKind::HostUp {
            streak: 2,
            down_since: down_at
        }]
    );
    assert_eq!(monitor.state_counts().up, 1);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_hosts_stay_within_the_global_limit_and_one_probe_per_host() {
    const HOSTS: u8 = 40;
    const PORTS: usize = 3;
    const LIMIT: usize = 8;
    let counts = Arc::new(Counts::default());
    let mut served = Vec::new();
    let mut targets = Vec::new();
    for h in 1..=HOSTS {
        let addr = ip(4, h);
        let mut ports = Vec::new();
        for _ in 0..PORTS {
            // Each connection is held 50 ms, so probes overlap and the limits matter.
            let hold = Duration::from_millis(50);
            let s = serve((addr, 0).into(), None, hold, Arc::clone(&counts)).await;
            ports.push(s.addr.port());
            served.push(s);
        }
        targets.push(target(&format!("legacy-{h}"), addr, &ports));
    }
    let opts = CycleOptions::new(LIMIT, ProbeOptions::default()).unwrap();
    let (clock, mut monitor) = (clock(), Monitor::new(Thresholds::default()));
    let report = monitor.run_cycle(&targets, &opts, &clock).await.unwrap();

    let open = report
        .results
        .iter()
        .flat_map(|h| &h.probes)
        .filter(|p| p.outcome.is_open())
        .count();
    assert_eq!(open, HOSTS as usize * PORTS, "{:?}", report.results);
    assert_eq!(
        counts.accepted.load(Ordering::SeqCst),
        HOSTS as usize * PORTS
    );
    let max = counts.max.load(Ordering::SeqCst);
    assert!(max <= LIMIT, "{max} connections at once, limit {LIMIT}");
    assert_eq!(
        max, LIMIT,
        "the limit was never reached: the test proves nothing"
    );
    assert_eq!(counts.max_per_addr(), 1, "two probes at once on one host");
    assert_eq!(
        counts.resets.load(Ordering::SeqCst),
        0,
        "a probe ended with an RST"
    );
    for s in served {
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_targets_are_refused_before_any_probe() {
    let counts = Arc::new(Counts::default());
    let addr = ip(5, 1);
    let s = serve((addr, 0).into(), None, Duration::ZERO, Arc::clone(&counts)).await;
    let port = s.addr.port();
    let targets = [
        target("legacy-db", addr, &[port]),
        target("legacy-db", ip(5, 2), &[port]),
    ];
    let mut monitor = Monitor::new(Thresholds::default());
    let err = monitor
        .run_cycle(&targets, &quick(), &clock())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "two monitor targets are both named \"legacy-db\": each host may appear once (merge \
         their ports into one target)"
    );
    assert_eq!(counts.accepted.load(Ordering::SeqCst), 0);
    assert_eq!(monitor.state("legacy-db"), None);
    assert_eq!(monitor.state_counts(), Default::default());
    s.stop().await;
}
