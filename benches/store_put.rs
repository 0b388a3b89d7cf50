//! Put throughput of the blob store, next to its peers in the same run:
//! - `sha256_in_memory`: the sha2 crate (`asm`, SHA-NI) over the same bytes in memory,
//!   the floor for any verified write;
//! - `write_fsync`: the same bytes written to a new file with `fsync` and a rename, the
//!   disk's share of the cost.
//!
//! Every put stores new content (an 8-byte counter in front), so each iteration hashes,
//! writes, fsyncs and renames; nothing is deduplicated.
//!
//! Run: `cargo bench --bench store_put` (about 30 s). Figures go to BENCHMARKS.md.
//! `PATCHWARD_BENCH_DIR=/dev/shm` puts the temp directories on tmpfs, which leaves the
//! CPU cost alone (hashing, copying, syscalls) without the disk.

use std::cell::Cell;
use std::fs::File;
use std::io::{Read, Write};

use divan::Bencher;
use divan::counter::BytesCount;
use patchward::store::{Store, StoreOptions};
use sha2::{Digest, Sha256};

fn main() {
    divan::main();
}

const MIB: usize = 1 << 20;

fn tempdir() -> tempfile::TempDir {
    match std::env::var_os("PATCHWARD_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31)).collect()
}

fn put(bencher: Bencher, len: usize) {
    let dir = tempdir();
    let opts = StoreOptions {
        free_space_reserve: 0,
        verify_on_read: false,
    };
    let store = Store::open(dir.path(), opts).unwrap();
    let data = data(len);
    let n = Cell::new(0u64);
    bencher.counter(BytesCount::new(len)).bench_local(|| {
        n.set(n.get() + 1);
        let prefix = n.get().to_le_bytes();
        let mut reader = (&prefix[..]).chain(&data[8..]);
        let out = store.put(None, &mut reader).unwrap();
        assert!(!out.already_present);
    });
}

fn sha256_in_memory(bencher: Bencher, len: usize) {
    let data = data(len);
    bencher
        .counter(BytesCount::new(len))
        .bench_local(|| Sha256::digest(divan::black_box(&data)));
}

fn write_fsync(bencher: Bencher, len: usize) {
    let dir = tempdir();
    let data = data(len);
    let n = Cell::new(0u64);
    bencher.counter(BytesCount::new(len)).bench_local(|| {
        n.set(n.get() + 1);
        let tmp = dir.path().join("tmp");
        let mut f = File::create(&tmp).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
        std::fs::rename(&tmp, dir.path().join(n.get().to_string())).unwrap();
        File::open(dir.path()).unwrap().sync_all().unwrap();
    });
}

#[divan::bench(sample_count = 100)]
fn put_1mib(b: Bencher) {
    put(b, MIB)
}

#[divan::bench(sample_count = 15)]
fn put_64mib(b: Bencher) {
    put(b, 64 * MIB)
}

#[divan::bench(sample_count = 100)]
fn sha256_in_memory_1mib(b: Bencher) {
    sha256_in_memory(b, MIB)
}

#[divan::bench(sample_count = 15)]
fn sha256_in_memory_64mib(b: Bencher) {
    sha256_in_memory(b, 64 * MIB)
}

#[divan::bench(sample_count = 100)]
fn write_fsync_1mib(b: Bencher) {
    write_fsync(b, MIB)
}

#[divan::bench(sample_count = 15)]
fn write_fsync_64mib(b: Bencher) {
    write_fsync(b, 64 * MIB)
}

/// What `Store::open` and `Store::rescan` cost for a store of 10,000 blobs (warm page
/// cache): the walk behind the choice to keep usage counters in memory.
#[divan::bench(sample_count = 20)]
fn rescan_10k_blobs(bencher: Bencher) {
    let dir = tempdir();
    // Lay the blobs out directly (no fsync per file): the walk only reads.
    for i in 0u32..10_000 {
        let bytes = i.to_le_bytes().repeat(1 + i as usize % 64);
        let hash = hex::encode(Sha256::digest(&bytes));
        let fanout = dir.path().join("sha256").join(&hash[..2]);
        std::fs::create_dir_all(&fanout).unwrap();
        std::fs::write(fanout.join(&hash), &bytes).unwrap();
    }
    let opts = StoreOptions {
        free_space_reserve: 0,
        verify_on_read: false,
    };
    let store = Store::open(dir.path(), opts).unwrap();
    assert_eq!(store.usage().blobs, 10_000);
    bencher.bench_local(|| store.rescan().unwrap());
}
