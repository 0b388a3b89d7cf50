//! Start-up and idle footprint of `patchward serve` (BENCHMARKS.md, "Start-up").
//!
//! Runs the release binary N times on a fresh data directory each time (the first-start
//! path, which also generates keys: the slower case) and on a reused one, and measures
//! exec -> READY=1 (the sd_notify message the daemon sends after migrations and bind,
//! received on a socket this harness provides, exactly as systemd would). Then it leaves
//! one server idle for a few seconds and reads its resident set size from /proc.
//!
//! Run: `cargo bench --bench startup`

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 30;

fn start_once(
    data: &std::path::Path,
    sock_dir: &std::path::Path,
    i: usize,
) -> (Duration, std::process::Child) {
    let sock_path = sock_dir.join(format!("n{i}.sock"));
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let t = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_patchward"))
        .arg("--data-dir")
        .arg(data)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-listen",
            "127.0.0.1:0",
        ])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("PATCHWARD_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    loop {
        let n = sock.recv(&mut buf).expect("READY within 10 s");
        if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
            break;
        }
    }
    (t.elapsed(), child)
}

fn stop(mut child: std::process::Child) {
    // SAFETY: plain syscall on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<32} runs {:>3}  median {:>7.1} ms  p95 {:>7.1} ms  max {:>7.1} ms",
        v.len(),
        ms(v[v.len() / 2]),
        ms(v[(v.len() * 95).div_ceil(100) - 1]),
        ms(v[v.len() - 1])
    );
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let mut first = Vec::new();
    let mut again = Vec::new();
    for i in 0..RUNS {
        let data = tmp.path().join(format!("fresh{i}"));
        let (d, c) = start_once(&data, tmp.path(), i);
        first.push(d);
        stop(c);
    }
    let reused = tmp.path().join("fresh0");
    for i in 0..RUNS {
        let (d, c) = start_once(&reused, tmp.path(), RUNS + i);
        again.push(d);
        stop(c);
    }
    summary("exec -> READY (first start)", first);
    summary("exec -> READY (existing data)", again);

    let (_, c) = start_once(&reused, tmp.path(), 3 * RUNS);
    std::thread::sleep(Duration::from_secs(3));
    let rss = rss_kib(c.id());
    println!(
        "idle RSS after 3 s                {:>7.1} MiB",
        rss as f64 / 1024.0
    );
    stop(c);
}
