//! Incremental online sync of a large catalog (BENCHMARKS.md, "Mirror sync").
//!
//! Builds a feed of 10,000 patches (one 1-4 KiB artifact each) with the MSP tools'
//! publish (patch files and blobs are written directly: `feed add` per patch costs an
//! fsync each and measures nothing of interest here), serves its `public/` directory from
//! the in-process test upstream on 127.0.0.1, and syncs it into a fresh appliance data
//! directory through the real import pipeline and `HttpTransport`. Then 1 % of the
//! patches (100) get new artifacts, the feed is published again, and the appliance
//! syncs again. Printed: blob bytes transferred against the changed blobs' bytes (the
//! ratio should be 1.00x), the metadata bytes (timestamp + catalog) separately, and times.
//!
//! Run: `cargo bench --bench sync_incremental` (about a minute on 2 cores).

#[path = "../tests/it/upstream.rs"]
mod upstream;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

use patchward::appliance::Appliance;
use patchward::clock::{SharedClock, SystemClock};
use patchward::config::{Config, Overrides};
use patchward::feed::import::{self, FeedSource, HttpTransport, NoProgress, TransferTotals};
use patchward::feed::tools::{self, InitOptions};

const PATCHES: usize = 10_000;
const CHANGED: usize = 100;

/// Writes patch `i` with a fresh random artifact; returns the artifact's size.
fn write_patch(feed: &Path, i: usize, rng: &mut impl RngCore, generation: u32) -> u64 {
    let size = 1024 + (rng.next_u32() as usize % 3072);
    let mut bytes = vec![0u8; size];
    rng.fill_bytes(&mut bytes);
    let sha = hex::encode(Sha256::digest(&bytes));
    std::fs::write(feed.join("blobs/sha256").join(&sha), &bytes).unwrap();
    let toml = format!(
        "id = \"PW-{i:05}/pkg{i}\"\ntitle = \"Update {i} (generation {generation})\"\n\
         kind = \"security\"\nseverity = \"medium\"\ncves = [\"CVE-2026-{:04}\"]\n\
         released = \"2026-11-01T00:00:00Z\"\ninstall = \"apt\"\nest_minutes = 5\n\n\
         [[applies_to]]\nos = \"debian\"\nversion = \"12\"\n\n\
         [[artifacts]]\nname = \"pkg{i}_{generation}_amd64.deb\"\nsha256 = \"{sha}\"\n\
         size = {size}\nformat = \"file\"\n",
        10000 + i
    );
    std::fs::write(feed.join(format!("patches/p{i:05}.toml")), toml).unwrap();
    size as u64
}

fn sync(
    url: &str,
    source: &FeedSource,
    db: &patchward::db::Db,
    store: &patchward::store::Store,
) -> (import::ImportSummary, TransferTotals, f64) {
    let mut t = HttpTransport::new(url).unwrap();
    let started = Instant::now();
    let s = import::import(
        &mut t,
        source,
        db,
        store,
        Timestamp::now(),
        "bench",
        &NoProgress,
    )
    .unwrap();
    (s, t.stats(), started.elapsed().as_secs_f64())
}

fn main() {
    // `cargo test --benches` runs this with --bench absent; keep that cheap.
    if !std::env::args().any(|a| a == "--bench") {
        println!("sync_incremental: run with `cargo bench --bench sync_incremental`");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("msp");
    let opts = InitOptions {
        name: Some("msp".into()),
        ..InitOptions::default()
    };
    tools::init(&feed, &opts, Timestamp::now()).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);

    let t = Instant::now();
    let mut total = 0u64;
    for i in 0..PATCHES {
        total += write_patch(&feed, i, &mut rng, 1);
    }
    let gen_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    tools::publish(&feed, &[], Timestamp::now()).unwrap();
    let publish1_s = t.elapsed().as_secs_f64();

    let up = upstream::Upstream::start(&feed.join("public"));
    let data = tmp.path().join("appliance");
    let config = Config::load(
        None,
        &Overrides {
            data_dir: Some(data),
            ..Default::default()
        },
    )
    .unwrap();
    let clock: SharedClock = Arc::new(SystemClock);
    let app = Appliance::init(&config, &clock).unwrap();
    let store = patchward::mirror::open_store(&config).unwrap();
    let source = FeedSource {
        name: "msp".into(),
        pinned_root: std::fs::read(feed.join("public/root/1.root.json")).unwrap(),
    };

    let (s1, st1, full_s) = sync(&up.url, &source, &app.db, &store);
    let c1 = up.counters();
    assert_eq!(s1.catalog_version, 1);
    assert_eq!(st1.blob_bytes, total);

    // 1 %: every 100th patch gets a new artifact.
    let mut changed = BTreeMap::new();
    for i in (0..PATCHES).step_by(PATCHES / CHANGED) {
        changed.insert(i, write_patch(&feed, i, &mut rng, 2));
    }
    let changed_bytes: u64 = changed.values().sum();
    let t = Instant::now();
    tools::publish(&feed, &[], Timestamp::now()).unwrap();
    let publish2_s = t.elapsed().as_secs_f64();
    up.reset();
    let (s2, st2, incr_s) = sync(&up.url, &source, &app.db, &store);
    let c2 = up.counters();
    assert_eq!(s2.catalog_version, 2);
    assert_eq!(s2.patches.updated, CHANGED, "{:?}", s2.patches);

    // Idle re-sync: the catalog is current; only the timestamp and catalog travel.
    up.reset();
    let (s3, st3, idle_s) = sync(&up.url, &source, &app.db, &store);
    assert!(s3.already_current);

    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!("sync_incremental: {PATCHES} patches, {CHANGED} changed (1 %)");
    println!(
        "  build feed      {gen_s:.2} s write + {publish1_s:.2} s publish ({:.1} MiB of blobs)",
        mib(total)
    );
    println!(
        "  full sync       {full_s:.2} s  blobs {} B ({:.1} MiB) in {} requests, metadata {} B, {:.1} MiB/s",
        st1.blob_bytes,
        mib(st1.blob_bytes),
        c1.requests,
        st1.metadata_bytes,
        mib(st1.blob_bytes + st1.metadata_bytes) / full_s
    );
    println!("  publish v2      {publish2_s:.2} s");
    println!(
        "  incremental     {incr_s:.2} s  blobs {} B vs changed {} B = {:.4}x; metadata {} B (timestamp + catalog); server sent {} body B in {} requests",
        st2.blob_bytes,
        changed_bytes,
        st2.blob_bytes as f64 / changed_bytes as f64,
        st2.metadata_bytes,
        c2.body_bytes,
        c2.requests
    );
    println!(
        "  idle re-sync    {idle_s:.2} s  blobs {} B, metadata {} B",
        st3.blob_bytes, st3.metadata_bytes
    );
    assert_eq!(st2.blob_bytes, changed_bytes);
}
