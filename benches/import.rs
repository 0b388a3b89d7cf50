//! Import throughput of a 1 GiB bundle (1,000 blobs of 1 MiB) against its peers, in the
//! same run on the same file (BENCHMARKS.md, "Import").
//!
//! Builds the feed with the real MSP tools, exports a full bundle, then times:
//! - `patchward import FILE` (release binary, fresh data directory each run), with its
//!   peak RSS from wait4's rusage;
//! - `zstd -dc FILE | sha256sum` (coreutils: no SHA-NI on this machine);
//! - `zstd -dc FILE | openssl dgst -sha256` (SHA-NI: the real floor for "decompress and
//!   hash every byte").
//!
//! Run: `cargo bench --bench import` (needs zstd and openssl; ~3 GiB of disk in
//! $PATCHWARD_BENCH_DIR or the temp dir).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use patchward::feed::tools::{self, InitOptions};

const BLOBS: usize = 1000;
const BLOB: usize = 1 << 20;
const RUNS: usize = 3;

fn fill(seed: u64, size: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(size + 8);
    while v.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(size);
    v
}

/// Runs `cmd`, returning wall time and the child's peak RSS in KiB.
fn timed(mut cmd: Command) -> (Duration, u64) {
    let t = Instant::now();
    let child = cmd.stdout(Stdio::null()).spawn().expect("spawn");
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for the child we just spawned.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed"
    );
    std::mem::forget(child);
    (t.elapsed(), usage.ru_maxrss as u64)
}

fn sh(script: &str, file: &Path) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(script).arg("sh").arg(file);
    c
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let base = std::env::var_os("PATCHWARD_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(base).unwrap();
    let now = jiff::Timestamp::now();
    let feed = tmp.path().join("feed");
    std::fs::create_dir_all(&feed).unwrap();
    let opts = InitOptions {
        name: Some("bench".into()),
        ..Default::default()
    };
    tools::init(&feed, &opts, now).unwrap();
    let t = Instant::now();
    for i in 0..BLOBS {
        let art = tmp.path().join(format!("a{i}.bin"));
        std::fs::write(&art, fill(i as u64 + 1, BLOB)).unwrap();
        let p = tmp.path().join("p.toml");
        std::fs::write(
            &p,
            format!(
                "id = \"B-{i}\"\ntitle = \"bench {i}\"\nkind = \"maintenance\"\nseverity = \"low\"\n\
                 released = \"2026-10-01T00:00:00Z\"\ninstall = \"script\"\nest_minutes = 1\n\
                 [[artifacts]]\nname = \"a{i}.bin\"\nformat = \"file\"\n"
            ),
        )
        .unwrap();
        tools::add_patch(&feed, &p, std::slice::from_ref(&art)).unwrap();
        std::fs::remove_file(&art).unwrap();
    }
    tools::publish(&feed, &[], now).unwrap();
    let bundle = tmp.path().join("bench.pwb");
    tools::export(&feed, &bundle, None, now).unwrap();
    let size = std::fs::metadata(&bundle).unwrap().len();
    eprintln!(
        "built {BLOBS} x 1 MiB feed and a {size}-byte bundle in {:?}",
        t.elapsed()
    );

    let config = tmp.path().join("site.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nfree_space_reserve_mb = 0\n[[mirror.sources]]\nname = \"bench\"\n\
             url = \"file://{0}/public\"\nroot = \"{0}/public/root/1.root.json\"\n",
            feed.display()
        ),
    )
    .unwrap();

    let bin = env!("CARGO_BIN_EXE_patchward");
    let payload = (BLOBS * BLOB) as f64;
    let mut ours = Vec::new();
    let mut rss = 0;
    let mut coreutils = Vec::new();
    let mut openssl = Vec::new();
    for run in 0..RUNS {
        // Fresh appliance: create it with a one-shot `keys`-free path: serve would bind,
        // so initialise through the library instead.
        let data = tmp.path().join(format!("data{run}"));
        let cfg = patchward::config::Config::load(
            Some(&config),
            &patchward::config::Overrides {
                data_dir: Some(data.clone()),
                ..Default::default()
            },
        )
        .unwrap();
        let clock: patchward::clock::SharedClock =
            std::sync::Arc::new(patchward::clock::SystemClock);
        drop(patchward::appliance::Appliance::init(&cfg, &clock).unwrap());
        // Cold-ish cache for every contender alike: the bundle was just read by the
        // previous contender, so all run with it in the page cache.
        let mut c = Command::new(bin);
        c.arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .arg("import")
            .arg(&bundle);
        c.env("PATCHWARD_LOG", "warn");
        let (d, r) = timed(c);
        ours.push(d);
        rss = rss.max(r);
        coreutils.push(timed(sh("zstd -dc \"$1\" | sha256sum", &bundle)).0);
        openssl.push(timed(sh("zstd -dc \"$1\" | openssl dgst -sha256", &bundle)).0);
        std::fs::remove_dir_all(&data).unwrap();
    }
    let (o, c, s) = (median(ours), median(coreutils), median(openssl));
    let mbs = |d: Duration| payload / d.as_secs_f64() / 1e6;
    println!("import of {BLOBS} x 1 MiB ({size} bytes compressed), median of {RUNS}:");
    println!(
        "  patchward import                       {:>7.2} s  {:>6.0} MB/s  peak RSS {:.1} MiB",
        o.as_secs_f64(),
        mbs(o),
        rss as f64 / 1024.0
    );
    println!(
        "  zstd -dc | sha256sum                   {:>7.2} s  {:>6.0} MB/s",
        c.as_secs_f64(),
        mbs(c)
    );
    println!(
        "  zstd -dc | openssl dgst -sha256        {:>7.2} s  {:>6.0} MB/s",
        s.as_secs_f64(),
        mbs(s)
    );
    println!(
        "  ratio vs coreutils pipeline            {:>7.2}x",
        c.as_secs_f64() / o.as_secs_f64()
    );
    println!(
        "  ratio vs openssl pipeline              {:>7.2}x",
        s.as_secs_f64() / o.as_secs_f64()
    );
}
