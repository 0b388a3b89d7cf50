//! apt index building and signing (BENCHMARKS.md, "apt repositories").
//!
//! 1. Debian bookworm's real `Packages` (63,440 entries, from
//!    `../shared/fixtures/debian/bookworm/Packages.xz`): build and sign one suite's
//!    indexes (Packages, Packages.gz, no .xz above 1 MiB, Release, Release.gpg,
//!    InRelease), and the full atomic publish to disk (by-hash, fsync, switch).
//! 2. A pool of real `.deb` files (`PATCHWARD_BENCH_DEBS`, default `/tmp/pw-bench-debs`;
//!    fill it with `apt-get download`, see BENCHMARKS.md): read every package's control
//!    data and hashes (what import does) + build and sign, side by side with
//!    `apt-ftparchive packages` + `apt-ftparchive release` on the same files.
//!
//! Run: `cargo bench --bench apt_index`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use patchward::apt::AptSettings;
use patchward::apt::index::PackageEntry;
use patchward::apt::publish::{AptDir, build_suite, write_ring};
use patchward::trust::openpgp::AptSigningKey;

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    (v[0].as_secs_f64(), v[v.len() / 2].as_secs_f64())
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, f64) {
    let mut v = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        std::hint::black_box(f());
        v.push(t.elapsed());
    }
    stats(v)
}

fn main() {
    let key = AptSigningKey::generate_at(
        "bench <b@patchward.invalid>",
        Timestamp::now() - SignedDuration::from_hours(1),
        rand::rngs::OsRng,
    )
    .unwrap();
    let settings = AptSettings {
        architectures: vec!["amd64".into()],
        ..AptSettings::default()
    };

    // 1. Debian's index.
    let fixtures = std::env::var("PATCHWARD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    let xz = fixtures.join("debian/bookworm/Packages.xz");
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut liblzma::read::XzDecoder::new(std::fs::File::open(&xz).unwrap()),
        &mut text,
    )
    .unwrap();
    let t = Instant::now();
    let entries: Vec<PackageEntry> = text
        .split("\n\n")
        .filter(|s| !s.trim().is_empty())
        .map(|s| PackageEntry::from_stanza(s).expect("a Packages stanza"))
        .collect();
    let parse = t.elapsed().as_secs_f64();
    println!(
        "bookworm main amd64 Packages: {} entries, {:.1} MB (parsed in {parse:.2} s, not timed below)",
        entries.len(),
        text.len() as f64 / 1e6
    );
    let now = Timestamp::now();
    let (min, med) = time(5, || {
        build_suite(&settings, &key, "pilot", &entries, now).unwrap()
    });
    println!(
        "build + sign (render, gzip -6, sha256, Release, Release.gpg, InRelease): min {min:.3} s, median {med:.3} s"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = AptDir::new(tmp.path().join("apt"));
    let mut i = 0;
    let (min, med) = time(5, || {
        i += 1;
        write_ring(
            &dir,
            &settings,
            &key,
            "pilot",
            &entries,
            now + SignedDuration::from_secs(i),
        )
        .unwrap()
    });
    println!(
        "full publish to disk (by-hash, fsync, generation, switch): min {min:.3} s, median {med:.3} s"
    );

    // 2. Real .deb files against apt-ftparchive.
    let pool = std::env::var("PATCHWARD_BENCH_DEBS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/tmp/pw-bench-debs"));
    let debs: Vec<PathBuf> = std::fs::read_dir(&pool)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "deb"))
                .collect()
        })
        .unwrap_or_default();
    if debs.is_empty() {
        println!(
            "no .deb files in {} (set PATCHWARD_BENCH_DEBS); skipping the apt-ftparchive comparison",
            pool.display()
        );
        return;
    }
    let bytes: u64 = debs
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    println!(
        "pool: {} .deb files, {:.1} MB",
        debs.len(),
        bytes as f64 / 1e6
    );
    // Warm the page cache once for both sides.
    for p in &debs {
        let _ = std::fs::read(p);
    }
    let ours = time(3, || {
        let entries: Vec<PackageEntry> = debs
            .iter()
            .map(|p| PackageEntry::from_meta(&patchward::deb::read_meta(p).unwrap()).unwrap())
            .collect();
        build_suite(&settings, &key, "pilot", &entries, now).unwrap()
    });
    let out = tempfile::tempdir().unwrap();
    let peer = time(3, || {
        let dists = out.path().join("dists/pilot/main/binary-amd64");
        std::fs::create_dir_all(&dists).unwrap();
        let p = Command::new("apt-ftparchive")
            .args(["packages", "."])
            .current_dir(&pool)
            .output()
            .unwrap();
        assert!(p.status.success());
        std::fs::write(dists.join("Packages"), &p.stdout).unwrap();
        let r = Command::new("apt-ftparchive")
            .args(["release", "."])
            .current_dir(out.path().join("dists/pilot"))
            .output()
            .unwrap();
        assert!(r.status.success());
        r.stdout.len()
    });
    println!(
        "patchward read control+hashes of every .deb, build + sign: min {:.3} s, median {:.3} s ({:.0} packages/s)",
        ours.0,
        ours.1,
        debs.len() as f64 / ours.1
    );
    println!(
        "apt-ftparchive packages + release:                          min {:.3} s, median {:.3} s ({:.0} packages/s)",
        peer.0,
        peer.1,
        debs.len() as f64 / peer.1
    );
    println!(
        "ratio (apt-ftparchive median / patchward median): {:.2}x",
        peer.1 / ours.1
    );
}
