//! Agent check-ins at fleet scale (BENCHMARKS.md, "Agent check-ins").
//!
//! 1. Creates a fresh data directory (one `patchward serve` start and stop), then enrolls
//!    HOSTS simulated hosts through the **bulk path**: the same `fleet::hosts::enroll`
//!    the enrollment endpoint calls (token checked and counted, host row, first
//!    inventory, audit entry), run directly on the database before the server starts,
//!    ENROLL_BATCH enrollments per transaction. Each host gets its own ed25519 key and a
//!    realistic inventory: Debian 12 os-release, a kernel, two addresses, and a list of
//!    PACKAGES packages (a common base plus a few host-specific versions).
//! 2. Starts the release `patchward serve` on 127.0.0.1:0 and drives it from this
//!    process with a minimal keep-alive HTTP/1.1 client (raw tokio sockets: hyper's
//!    client would cost more CPU than the server's work on the shared two cores).
//!    Every request is signed on its own (fresh date and signature: the replay guard
//!    refuses reused ones). Signing happens before each phase, not during it, so the
//!    measured CPU is the server's; every date is within a few seconds of sending (the
//!    server refuses more than 5 minutes of skew).
//! 3. Phases, each reporting requests/s and p50/p99/max latency:
//!    - `first check-in`: every host sends its full package list once, as an agent does
//!      when its package list changed (a write transaction each);
//!    - `steady, closed loop`: CONNS connections send back to back, digest-only
//!      inventories (packages unchanged, uptime advanced, no job events), as agents do
//!      after their first check-in: the maximum rate;
//!    - open loop: RATE check-ins/s offered for RATE_SECS seconds on the same
//!      connections; latency is counted from the scheduled send time (no coordinated
//!      omission), so this is the figure for "p99 at the target rate". Four such
//!      phases alternate, so that other load on the machine falls on both kinds alike:
//!      `open loop, quiet` (no rollout); `open loop, rollout active` after a patch that
//!      applies to every host was approved with the real `patchward approve` and the
//!      planner's first plan for it is in place (read from the server's
//!      `patchward_plan_rollouts` gauge; the time to it is printed); quiet again after
//!      `patchward rollout halt` (the plan is dropped); active again after `resume`.
//!      With the rollout active the planner rebuilds the plan when its inputs change
//!      and at least every 10 s, and every check-in consults it: "check-in latency
//!      with the scheduler on". Both kinds are also reported pooled, with the ratio.
//! 4. Stops the server (SIGTERM), reports its peak RSS (VmHWM, read just before), and
//!    checks on the database that every host's `last_seen` is from the last phase.
//!
//! The total number of signed requests stays below the replay guard's capacity within
//! its 5-minute window.
//!
//! Run: `cargo bench --bench checkin`

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use patchward::db::{Db, DbOptions};
use patchward::fleet::hosts::{self, EnrollRequest};
use patchward::fleet::inventory::{Inventory, OsRelease, Package, packages_digest};
use patchward::fleet::signing;
use patchward::fleet::tokens::{self, NewToken};
use patchward::trust::keys::Ed25519Key;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const HOSTS: usize = 10_000;
const PACKAGES: usize = 300;
const ENROLL_BATCH: usize = 500;
const CONNS: usize = 64;
/// Requests in the closed-loop phase.
const STEADY_REQUESTS: usize = 25_000;
const RATE: usize = 3_000;
/// Seconds of each open-loop phase (four of them).
const RATE_SECS: usize = 5;
const QUIET: &str = "open loop, quiet";
const ACTIVE: &str = "open loop, rollout active";
const PATH: &str = "/api/agent/v1/checkin";

const BIN: &str = env!("CARGO_BIN_EXE_patchward");

fn patchward(data: &Path, config: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(config)
        .env("PATCHWARD_LOG", "warn")
        .env_remove("NOTIFY_SOCKET");
    c
}

/// Starts `patchward serve` on a free port; returns the child and its `host:port`.
fn serve(data: &Path, config: &Path) -> (Child, String) {
    use std::io::{BufRead, BufReader};
    let mut c = patchward(data, config);
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--tls-listen",
        "127.0.0.1:0",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut url = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.trim().strip_prefix("listening on") {
            url = rest.split_whitespace().next().map(str::to_string);
        }
        if line.contains("stop with Ctrl-C") {
            break;
        }
    }
    let url = url.expect("listening line");
    let addr = url.trim_start_matches("http://").to_string();
    (child, addr)
}

fn stop(mut child: Child) {
    // SAFETY: plain syscall on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "server exited with {status}");
}

fn vm_hwm_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The server's process id, for its CPU time per phase.
static SERVER_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// CLOCK_MONOTONIC in seconds: the clock `perf record -k CLOCK_MONOTONIC` stamps
/// samples with, so a profile of the server can be cut by phase (`perf script --time`).
fn monotonic_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// CPU seconds (user + system) the server process has used so far.
fn server_cpu_s() -> f64 {
    let pid = SERVER_PID.load(Ordering::Relaxed);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime and stime are
    // the 12th and 13th, in clock ticks.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    f.get(11)
        .zip(f.get(12))
        .map_or(0.0, |(u, s)| (u + s) / ticks)
}

/// The package list of host `n`: a common base, with every 50th package at a
/// host-specific version (hosts are patched at different times).
fn packages(n: usize) -> Vec<Package> {
    (0..PACKAGES)
        .map(|i| Package {
            name: format!(
                "lib{}-pkg{i}",
                ["ssl", "xml", "gtk", "c", "z", "curl"][i % 6]
            ),
            version: if i % 50 == 0 {
                format!("{}.{}.{}-1+deb12u{}", i % 7, i % 13, i % 5, n % 3)
            } else {
                format!("{}.{}.{}-1", i % 7, i % 13, i % 5)
            },
            arch: if i % 9 == 0 { "all" } else { "amd64" }.into(),
        })
        .collect()
}

struct SimHost {
    id: String,
    key: Ed25519Key,
    inventory: Inventory,
    digest: String,
    /// When `inventory.uptime_s` was true.
    at: Timestamp,
}

fn inventory(n: usize, boot: Timestamp, now: Timestamp) -> Inventory {
    Inventory {
        os: OsRelease {
            id: "debian".into(),
            version_id: "12".into(),
            id_like: String::new(),
        },
        kernel: "6.1.0-28-amd64".into(),
        arch: "x86_64".into(),
        hostname: format!("sim{n:05}"),
        addresses: vec![
            format!("10.{}.{}.{}/16", n / 65536, (n / 256) % 256, n % 256),
            "fe80::1/64".into(),
        ],
        packages: Some(packages(n)),
        packages_digest: None,
        uptime_s: now.duration_since(boot).as_secs().unsigned_abs(),
        last_boot: Some(boot),
        reboot_required: false,
    }
}

/// Puts one patch into the catalog that applies to every simulated host (seeded on the
/// database, like the enrollment; `feed` and `patches` rows as an import writes them),
/// then approves it with the real `patchward approve`: from then on a rollout is active
/// and every check-in consults the scheduler's plan. The default windows (02:00-06:00
/// UTC) decide whether anything is offered; the plan is built either way.
fn start_rollout(data: &Path, config: &Path) {
    use patchward::feed::catalog::{
        Artifact, ArtifactFormat, InstallMethod, PatchEntry, PatchKind, Selector, Severity,
    };
    let entry = PatchEntry {
        id: "acme/bench-1".into(),
        title: "Bench patch".into(),
        description: String::new(),
        kind: PatchKind::Security,
        severity: Severity::High,
        cvss: None,
        cves: vec![],
        released: "2026-11-01T00:00:00Z".parse().unwrap(),
        applies_to: vec![Selector {
            os: Some("debian".into()),
            version: Some("12".into()),
            ..Selector::default()
        }],
        artifacts: vec![Artifact {
            name: "bench.tar.zst".into(),
            sha256: "00".repeat(32),
            size: 1,
            format: ArtifactFormat::Script,
        }],
        install: InstallMethod::Script,
        requires: vec![],
        supersedes: vec![],
        conflicts: vec![],
        reboot: false,
        est_minutes: 10,
        needs_backup: None,
    };
    let json = serde_json::to_string(&entry).unwrap();
    let db = Db::open(&data.join("patchward.db"), DbOptions::default()).unwrap();
    db.write_blocking(|tx| {
        let now = Timestamp::now().to_string();
        tx.execute(
            "INSERT INTO feeds (name, trust_state, updated_at) VALUES ('acme', '{}', ?1)",
            [&now],
        )?;
        tx.execute(
            "INSERT INTO patches (feed, id, catalog_version, title, kind, severity, cvss_score,
                 cves, released, entry, entry_sha256, first_seen)
             VALUES ('acme', 'acme/bench-1', 1, 'Bench patch', 'security', 'high', NULL, '[]',
                 '2026-11-01T00:00:00Z', ?1, ?2, ?3)",
            [&json, &"00".repeat(32), &now],
        )?;
        Ok::<_, patchward::error::DbError>(())
    })
    .unwrap();
    drop(db);
    cli(
        data,
        config,
        &["approve", "acme/bench-1", "--reason", "bench"],
    );
}

/// Runs a `patchward` admin command on the running appliance's data directory.
fn cli(data: &Path, config: &Path, args: &[&str]) {
    let out = patchward(data, config).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Enrolls HOSTS hosts with `fleet::hosts::enroll` on the stopped appliance's database.
/// A gauge from the server's `/metrics` (plain HTTP on `addr`), if it is there.
fn metric(addr: &str, name: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits (at most two minutes) until the server's planner has a plan with `rollouts`
/// rollouts in it; returns how long that took.
fn wait_for_plan(addr: &str, rollouts: f64) -> Duration {
    let t = Instant::now();
    while metric(addr, "patchward_plan_rollouts").unwrap_or(0.0) != rollouts {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the planner's plan did not reach {rollouts} rollouts within two minutes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    t.elapsed()
}

fn enroll_all(db_path: &Path) -> Vec<SimHost> {
    let db = Db::open(db_path, DbOptions::default()).unwrap();
    let now = Timestamp::now();
    let token = db
        .write_blocking(|tx| {
            tokens::create(
                tx,
                now,
                "bench",
                &NewToken {
                    ring: Some("bench".into()),
                    labels: [("site".to_string(), "lab".to_string())].into(),
                    expires_in: SignedDuration::from_hours(1),
                    max_uses: HOSTS as u32,
                },
            )
        })
        .unwrap();
    let boot = now - SignedDuration::from_hours(30);
    let mut out = Vec::with_capacity(HOSTS);
    for chunk in (0..HOSTS).collect::<Vec<_>>().chunks(ENROLL_BATCH) {
        let reqs: Vec<(Ed25519Key, EnrollRequest)> = chunk
            .iter()
            .map(|&n| {
                let key = Ed25519Key::generate(&mut rand::rngs::OsRng);
                let inv = inventory(n, boot, now);
                let req = EnrollRequest {
                    token: token.token.clone(),
                    hostname: inv.hostname.clone(),
                    public_key: key.public_hex(),
                    inventory: inv,
                };
                (key, req)
            })
            .collect();
        let ids = db
            .write_blocking(|tx| {
                reqs.iter()
                    .map(|(_, r)| hosts::enroll(tx, now, r))
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap();
        for ((key, req), id) in reqs.into_iter().zip(ids) {
            let digest = packages_digest(req.inventory.packages.as_deref().unwrap());
            out.push(SimHost {
                id,
                key,
                inventory: req.inventory,
                digest,
                at: now,
            });
        }
    }
    out
}

/// A signed check-in, as raw HTTP/1.1 bytes.
fn request(addr: &str, h: &SimHost, full: bool) -> Vec<u8> {
    let now = Timestamp::now();
    let mut inv = h.inventory.clone();
    inv.uptime_s += now.duration_since(h.at).as_secs().unsigned_abs();
    if !full {
        inv.packages = None;
        inv.packages_digest = Some(h.digest.clone());
    }
    let body = serde_json::to_vec(&serde_json::json!({ "inventory": inv })).unwrap();
    let s = signing::sign(&h.key, &h.id, "POST", PATH, now, &body);
    let mut r = format!(
        "POST {PATH} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n",
        body.len()
    );
    for (k, v) in s.pairs() {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    let mut bytes = r.into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

/// Sends one request on a keep-alive connection; returns the status.
async fn roundtrip(conn: &mut BufReader<TcpStream>, req: &[u8]) -> std::io::Result<u16> {
    conn.get_mut().write_all(req).await?;
    let mut line = String::new();
    conn.read_line(&mut line).await?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut len = 0usize;
    loop {
        line.clear();
        conn.read_line(&mut line).await?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().map_err(std::io::Error::other)?;
        }
    }
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).await?;
    if status != 200 {
        eprintln!("HTTP {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(status)
}

struct Phase {
    name: &'static str,
    requests: usize,
    secs: f64,
    lat_ms: Vec<f64>,
    failures: usize,
    /// From the server's counters: check-ins answered on the read-only path, on the
    /// write path, and plans built inside a check-in.
    paths: [u64; 3],
    /// Plans built during the phase (by the planner task or a check-in) and the
    /// seconds they took together.
    builds: (u64, f64),
    /// CPU seconds the server used during the phase.
    cpu_s: f64,
}

impl Phase {
    /// Prints the phase's line; returns its p50 and p99 in ms.
    fn report(&mut self) -> (f64, f64) {
        self.lat_ms.sort_by(f64::total_cmp);
        let q = |p: f64| self.lat_ms[((self.lat_ms.len() - 1) as f64 * p).round() as usize];
        println!(
            "{:<26} {:>6} req {:>6.2} s {:>5.0} req/s  p50 {:>6.2} ms  p99 {:>7.2} ms  \
             max {:>7.2} ms  failures {}  server CPU {:.1} µs/req  (quiet/write/inline plans \
             {}/{}/{}; {} plans built in {:.0} ms)",
            self.name,
            self.requests,
            self.secs,
            self.requests as f64 / self.secs,
            q(0.50),
            q(0.99),
            q(1.0),
            self.failures,
            self.cpu_s * 1e6 / self.requests as f64,
            self.paths[0],
            self.paths[1],
            self.paths[2],
            self.builds.0,
            self.builds.1 * 1000.0,
        );
        (q(0.50), q(0.99))
    }
}

/// Runs `reqs` over CONNS connections. With `rate`, request i is due at start + i/rate
/// and its latency counts from then; without, connections send back to back.
async fn phase(name: &'static str, addr: &str, reqs: Vec<Vec<u8>>, rate: Option<usize>) -> Phase {
    let counters = || {
        [
            "patchward_checkins_total{path=\"quiet\"}",
            "patchward_checkins_total{path=\"write\"}",
            "patchward_plan_inline_builds_total",
            "patchward_plan_build_seconds_count",
            "patchward_plan_build_seconds_sum",
        ]
        .map(|m| metric(addr, m).unwrap_or(0.0))
    };
    let before = counters();
    let cpu = server_cpu_s();
    let t0 = monotonic_s();
    let mut p = run_phase(name, addr, reqs, rate).await;
    p.cpu_s = server_cpu_s() - cpu;
    println!(
        "phase {name:?}: CLOCK_MONOTONIC {t0:.3} to {:.3}",
        monotonic_s()
    );
    let after = counters();
    p.paths = [0, 1, 2].map(|i| (after[i] - before[i]) as u64);
    p.builds = ((after[3] - before[3]) as u64, after[4] - before[4]);
    p
}

async fn run_phase(
    name: &'static str,
    addr: &str,
    reqs: Vec<Vec<u8>>,
    rate: Option<usize>,
) -> Phase {
    let n = reqs.len();
    let reqs = Arc::new(reqs);
    let next = Arc::new(AtomicUsize::new(0));
    let mut conns = Vec::new();
    for _ in 0..CONNS {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        conns.push(BufReader::new(s));
    }
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for mut conn in conns {
        let (reqs, next) = (reqs.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failures = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= reqs.len() {
                    break;
                }
                let t0 = match rate {
                    Some(r) => {
                        let due = start + Duration::from_secs_f64(i as f64 / r as f64);
                        tokio::time::sleep_until(due).await;
                        due
                    }
                    None => tokio::time::Instant::now(),
                };
                match roundtrip(&mut conn, &reqs[i]).await {
                    Ok(200) => {}
                    Ok(_) => failures += 1,
                    Err(e) => panic!("request failed: {e}"),
                }
                lat.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            (lat, failures)
        }));
    }
    let mut lat_ms = Vec::with_capacity(n);
    let mut failures = 0;
    for t in tasks {
        let (l, f) = t.await.unwrap();
        lat_ms.extend(l);
        failures += f;
    }
    Phase {
        name,
        requests: n,
        secs: start.elapsed().as_secs_f64(),
        lat_ms,
        failures,
        paths: [0; 3],
        builds: (0, 0.0),
        cpu_s: 0.0,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = root.join("data");
    let config = root.join("site.toml");
    std::fs::write(&config, "[store]\nfree_space_reserve_mb = 0\n").unwrap();
    let (first, _) = serve(&data, &config);
    stop(first);

    let t = Instant::now();
    let hosts = enroll_all(&data.join("patchward.db"));
    println!(
        "bulk enrollment of {HOSTS} hosts ({PACKAGES} packages each): {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let (server, addr) = serve(&data, &config);
    let pid = server.id();
    SERVER_PID.store(pid, Ordering::Relaxed);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut phases = Vec::new();
    let steady_start = rt.block_on(async {
        let reqs: Vec<_> = hosts.iter().map(|h| request(&addr, h, true)).collect();
        phases.push(phase("first check-in (full)", &addr, reqs, None).await);

        let reqs: Vec<_> = (0..STEADY_REQUESTS)
            .map(|i| request(&addr, &hosts[i % HOSTS], false))
            .collect();
        phases.push(phase("steady, closed loop", &addr, reqs, None).await);

        // Open loop, alternating without and with the scheduler at work, so that the
        // other load on the machine falls on both alike: quiet; a rollout approved
        // (from its first plan on); the rollout halted (no plan); resumed.
        let started = Timestamp::now();
        let mut slot = 0;
        let mut open_loop = |name: &'static str| {
            slot += 1;
            let reqs: Vec<_> = (0..RATE * RATE_SECS)
                .map(|i| request(&addr, &hosts[(i * 7 + slot) % HOSTS], false))
                .collect();
            phase(name, &addr, reqs, Some(RATE))
        };
        phases.push(open_loop(QUIET).await);

        println!(
            "planner before the approval: {} hosts in its index, last tick {:.3} s",
            metric(&addr, "patchward_planner_hosts").unwrap_or(-1.0),
            metric(&addr, "patchward_planner_tick_seconds").unwrap_or(-1.0),
        );
        start_rollout(&data, &config);
        // Measured once the plan is in place (the planner keeps its fleet index warm,
        // so this is one tick plus the plan's build).
        let waited = wait_for_plan(&addr, 1.0);
        println!(
            "approval to the first plan: {:.2} s (that tick took {:.3} s)",
            waited.as_secs_f64(),
            metric(&addr, "patchward_planner_tick_seconds").unwrap_or(-1.0),
        );
        phases.push(open_loop(ACTIVE).await);

        cli(
            &data,
            &config,
            &["rollout", "halt", "acme/bench-1", "--reason", "bench"],
        );
        wait_for_plan(&addr, 0.0);
        phases.push(open_loop(QUIET).await);

        cli(
            &data,
            &config,
            &["rollout", "resume", "acme/bench-1", "--reason", "bench"],
        );
        wait_for_plan(&addr, 1.0);
        phases.push(open_loop(ACTIVE).await);
        started
    });
    println!(
        "{HOSTS} hosts, {CONNS} connections; open loop offers {RATE}/s for {RATE_SECS} s \
         (latency from the scheduled send time)"
    );
    for p in &mut phases {
        p.report();
    }
    // Both open-loop kinds pooled.
    let pooled = |name: &'static str| {
        let mut all = Phase {
            name,
            requests: 0,
            secs: 0.0,
            lat_ms: vec![],
            failures: 0,
            paths: [0; 3],
            builds: (0, 0.0),
            cpu_s: 0.0,
        };
        for p in phases.iter().filter(|p| p.name == name) {
            all.requests += p.requests;
            all.secs += p.secs;
            all.lat_ms.extend(&p.lat_ms);
            all.failures += p.failures;
            for i in 0..3 {
                all.paths[i] += p.paths[i];
            }
            all.cpu_s += p.cpu_s;
            all.builds.0 += p.builds.0;
            all.builds.1 += p.builds.1;
        }
        all
    };
    println!("pooled:");
    let (mut quiet, mut active) = (pooled(QUIET), pooled(ACTIVE));
    let (q50, q99) = quiet.report();
    let (a50, a99) = active.report();
    println!(
        "rollout active / quiet: p50 {:.2}x, p99 {:.2}x, server CPU per check-in {:.2}x \
         (target: within 10 %)",
        a50 / q50,
        a99 / q99,
        (active.cpu_s / active.requests as f64) / (quiet.cpu_s / quiet.requests as f64)
    );
    println!(
        "planner at the end: last tick {:.3} s",
        metric(&addr, "patchward_planner_tick_seconds").unwrap_or(-1.0),
    );
    println!("server peak RSS (VmHWM): {:.1} MiB", vm_hwm_mib(pid));
    stop(server);

    // Every host checked in during the open-loop phase; after a clean stop, its
    // last_seen is on disk.
    let db = Db::open(&data.join("patchward.db"), DbOptions::default()).unwrap();
    let hosts = db
        .read_blocking(|c| hosts::list(c, Timestamp::now()))
        .unwrap();
    let fresh = hosts
        .iter()
        .filter(|h| {
            h.last_seen
                .as_deref()
                .and_then(|s| s.parse::<Timestamp>().ok())
                .is_some_and(|t| t >= steady_start)
        })
        .count();
    println!("hosts with last_seen from the open-loop phase after stop: {fresh} / {HOSTS}");
    assert!(
        phases.iter().all(|p| p.failures == 0),
        "some requests failed"
    );
    assert_eq!(fresh, HOSTS);
}
