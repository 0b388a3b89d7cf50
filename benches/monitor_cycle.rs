//! A legacy monitor cycle at site scale (BENCHMARKS.md, "Legacy host monitor cycle").
//!
//! 1,000 hosts x 10 watched ports, at most 50 probes at once, against 10,000 real
//! listeners on 1,000 loopback addresses (127.88.a.b, ephemeral ports). The listeners
//! run in a child process (this binary again, with `PW_MONITOR_BENCH_ROLE=targets`), so
//! the CPU time measured with getrusage in this process is the appliance's alone. The
//! first port of each host sends an SSH banner line, which the prober reads and hashes;
//! every listener reads until the prober's FIN and then closes, like a real server.
//!
//! Three cycles run through the real `Monitor::run_cycle` (probe, clean close, state
//! machine). Each prints its wall time, the process's CPU time (user + system), the
//! number of open ports and the connect latency p50 / p99. The run fails if a cycle
//! takes 60 s or more, or if a port did not answer.
//!
//! Run: `cargo bench --bench monitor_cycle`

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::Duration;

use jiff::Timestamp;
use patchward::clock::ManualClock;
use patchward::legacy::monitor::{
    CycleOptions, HostState, Monitor, ProbeOptions, ProbeOutcome, Target, Thresholds, WatchedPort,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOSTS: usize = 1_000;
const PORTS: usize = 10;
const CONCURRENCY: usize = 50;
const CYCLES: usize = 3;
const ROLE: &str = "PW_MONITOR_BENCH_ROLE";

fn host_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 88, (i / 200) as u8, (i % 200 + 1) as u8))
}

fn main() {
    if std::env::var(ROLE).as_deref() == Ok("targets") {
        return targets();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, "targets")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the target process");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut targets = Vec::with_capacity(HOSTS);
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line == "READY" {
            break;
        }
        let mut fields = line.split(' ');
        let addr: IpAddr = fields.next().unwrap().parse().unwrap();
        let ports = fields
            .enumerate()
            .map(|(i, p)| WatchedPort {
                port: p.parse().unwrap(),
                banner: i == 0,
            })
            .collect();
        targets.push(Target {
            name: format!("legacy-{}", targets.len()),
            addr,
            ports,
        });
    }
    assert_eq!(targets.len(), HOSTS, "the target process did not start");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let opts = CycleOptions::new(CONCURRENCY, ProbeOptions::default()).unwrap();
    let clock = ManualClock::new("2026-12-07T12:00:00Z".parse::<Timestamp>().unwrap());
    let mut monitor = Monitor::new(Thresholds::default());
    println!("monitor cycle: {HOSTS} hosts x {PORTS} ports, at most {CONCURRENCY} probes at once");
    for cycle in 1..=CYCLES {
        let cpu_before = cpu_time();
        let report = rt
            .block_on(monitor.run_cycle(&targets, &opts, &clock))
            .unwrap();
        let cpu = cpu_time() - cpu_before;
        let mut latencies: Vec<Duration> = report
            .results
            .iter()
            .flat_map(|h| &h.probes)
            .filter_map(|p| match p.outcome {
                ProbeOutcome::Open { latency, .. } => Some(latency),
                _ => None,
            })
            .collect();
        latencies.sort();
        let open = latencies.len();
        let pct = |q: f64| latencies[((open as f64 - 1.0) * q) as usize];
        println!(
            "cycle {cycle}: wall {:.2} s, appliance CPU {:.2} s (user+sys), {open} of {} \
             ports open, connect p50 {:.0} us, p99 {:.0} us, events {}, up {}",
            report.elapsed.as_secs_f64(),
            cpu.as_secs_f64(),
            HOSTS * PORTS,
            pct(0.5).as_secs_f64() * 1e6,
            pct(0.99).as_secs_f64() * 1e6,
            report.events.len(),
            monitor.state_counts().up,
        );
        assert_eq!(open, HOSTS * PORTS, "ports did not answer");
        assert!(
            report.elapsed < Duration::from_secs(60),
            "a cycle took 60 s or more"
        );
        clock.advance(jiff::SignedDuration::from_secs(60));
    }
    assert_eq!(monitor.state_counts().up, HOSTS);
    assert_eq!(monitor.state(&targets[0].name), Some(HostState::Up));
    drop(child.stdin.take()); // the target process exits on EOF
    let _ = child.wait();
}

/// User + system CPU time of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The child: binds the listeners, prints "ADDR PORT..." per host and "READY", serves
/// until its stdin closes.
fn targets() {
    raise_fd_limit(HOSTS * PORTS + 1_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut out = std::io::stdout().lock();
        for h in 0..HOSTS {
            let addr = host_ip(h);
            let mut line = addr.to_string();
            for p in 0..PORTS {
                let listener = tokio::net::TcpListener::bind((addr, 0)).await.unwrap();
                line.push_str(&format!(" {}", listener.local_addr().unwrap().port()));
                let banner = p == 0;
                tokio::spawn(async move {
                    loop {
                        let Ok((mut conn, _)) = listener.accept().await else {
                            continue;
                        };
                        tokio::spawn(async move {
                            if banner {
                                let _ = conn.write_all(b"SSH-2.0-OpenSSH_7.4\r\n").await;
                            }
                            let mut buf = [0u8; 256];
                            while let Ok(n) = conn.read(&mut buf).await {
                                if n == 0 {
                                    break;
                                }
                            }
                        });
                    }
                });
            }
            writeln!(out, "{line}").unwrap();
        }
        writeln!(out, "READY").unwrap();
        out.flush().unwrap();
        drop(out);
        // Until the parent closes our stdin.
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            let _ = std::io::stdin().read_line(&mut sink);
        })
        .await;
    });
}

fn raise_fd_limit(want: usize) {
    // SAFETY: plain get/setrlimit on a zeroed struct.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if (lim.rlim_cur as usize) < want {
        lim.rlim_cur = (want as libc::rlim_t).max(lim.rlim_cur).min(lim.rlim_max);
        if (lim.rlim_max as usize) < want {
            lim.rlim_max = want as libc::rlim_t;
            lim.rlim_cur = want as libc::rlim_t;
        }
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
        assert_eq!(
            rc,
            0,
            "raising the open-file limit to {want} (10,000 listeners): {}; run as root or \
             raise `ulimit -n`",
            std::io::Error::last_os_error()
        );
    }
}
