//! Tests of the blob store. Every failure test asserts the error's message and that the
//! store is unchanged: same usage, same files (tmp/ included).

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use super::*;
use crate::clock::ManualClock;

const HOUR: Duration = Duration::from_secs(3600);

fn t0() -> Timestamp {
    "2026-11-27T10:00:00Z".parse().unwrap()
}

fn st(ts: Timestamp) -> SystemTime {
    SystemTime::try_from(ts).unwrap()
}

fn opts() -> StoreOptions {
    StoreOptions {
        free_space_reserve: 0,
        verify_on_read: true,
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    clock: ManualClock,
}

fn fixture() -> Fixture {
    fixture_with(opts())
}

fn fixture_with(opts: StoreOptions) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let store = Store::open(&dir.path().join("store"), opts)
        .unwrap()
        .with_clock(Arc::new(clock.clone()));
    Fixture {
        _dir: dir,
        store,
        clock,
    }
}

/// Deterministic content of `len` bytes, different for each `seed`.
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn sha(bytes: &[u8]) -> Sha256Hex {
    Sha256Hex::from_digest(&Sha256::digest(bytes).into())
}

/// Every file under `root` with its size, sorted: what "the store is unchanged" compares.
fn files(root: &Path) -> Vec<(PathBuf, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let m = fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                walk(root, &e.path(), out);
            } else {
                out.push((e.path().strip_prefix(root).unwrap().to_path_buf(), m.len()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn snapshot(store: &Store) -> (StoreUsage, Vec<(PathBuf, u64)>) {
    (store.usage(), files(store.root()))
}

fn put_bytes(store: &Store, bytes: &[u8]) -> PutOutcome {
    store
        .put(Some((&sha(bytes), bytes.len() as u64)), &mut &bytes[..])
        .unwrap()
}

/// A reader that counts what it hands out; yields `len` bytes of a pattern without
/// holding them.
struct Counting {
    len: u64,
    read: u64,
}

impl Counting {
    fn new(len: u64) -> Self {
        Self { len, read: 0 }
    }
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.len - self.read).min(buf.len() as u64) as usize;
        buf[..n].fill(0x5a);
        self.read += n as u64;
        Ok(n)
    }
}

/// Yields `data`, then fails (a dropped connection, a corrupt bundle).
struct FailsAfter<'a> {
    data: &'a [u8],
}

impl Read for FailsAfter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.data.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "peer went away",
            ));
        }
        self.data.read(buf)
    }
}

#[test]
fn put_then_read_round_trips() {
    let f = fixture();
    let data = content(3 * BUF + 17, 1);
    let hash = sha(&data);

    let out = f.store.put(None, &mut &data[..]).unwrap();
    assert_eq!(
        out,
        PutOutcome {
            hash: hash.clone(),
            size: data.len() as u64,
            already_present: false
        }
    );
    let path = f.store.path(&hash);
    let want_path = f
        .store
        .root()
        .join("sha256")
        .join(&hash.as_str()[..2])
        .join(hash.as_str());
    assert_eq!(path, want_path);
    assert_eq!(fs::read(&path).unwrap(), data);
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o222, 0);
    assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), st(t0()));
    assert!(f.store.contains(&hash).unwrap());

    let mut blob = f.store.open_blob(&hash).unwrap();
    assert_eq!(blob.size, data.len() as u64);
    assert_eq!(blob.modified, st(t0()));
    let mut back = Vec::new();
    blob.file.read_to_end(&mut back).unwrap();
    assert_eq!(back, data);

    let mut copy = Vec::new();
    let n = f.store.read_verified(&hash, &mut copy).unwrap();
    assert_eq!((n, copy), (data.len() as u64, data.clone()));

    assert_eq!(
        f.store.usage(),
        StoreUsage {
            blobs: 1,
            bytes: data.len() as u64
        }
    );
    assert_eq!(fs::read_dir(f.store.root().join("tmp")).unwrap().count(), 0);
}

const BUF: usize = 1 << 20;

#[test]
fn empty_blob_and_expected_put() {
    let f = fixture();
    let out = put_bytes(&f.store, b"");
    assert_eq!(
        out.hash.as_str(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let exact = content(BUF, 2); // exactly one buffer: the end is found by a 1-byte read
    assert!(!put_bytes(&f.store, &exact).already_present);
    assert_eq!(f.store.usage().blobs, 2);
}

#[test]
fn second_put_of_same_content_is_deduplicated_and_refreshes_mtime() {
    let f = fixture();
    let data = content(5000, 3);
    let hash = sha(&data);
    put_bytes(&f.store, &data);
    let before = files(f.store.root());

    // Without an expectation the stream is read (to learn its name), then dropped.
    f.clock.advance(SignedDuration::from_hours(1));
    let again = f.store.put(None, &mut &data[..]).unwrap();
    assert!(again.already_present);
    assert_eq!(again.hash, hash);
    assert_eq!(
        fs::metadata(f.store.path(&hash))
            .unwrap()
            .modified()
            .unwrap(),
        st(t0() + SignedDuration::from_hours(1))
    );

    // With one, nothing is read at all.
    f.clock.advance(SignedDuration::from_hours(1));
    let mut reader = Counting::new(5000);
    let again = f.store.put(Some((&hash, 5000)), &mut reader).unwrap();
    assert!(again.already_present);
    assert_eq!(reader.read, 0);
    assert_eq!(
        fs::metadata(f.store.path(&hash))
            .unwrap()
            .modified()
            .unwrap(),
        st(t0() + SignedDuration::from_hours(2))
    );

    assert_eq!(files(f.store.root()), before);
    assert_eq!(
        f.store.usage(),
        StoreUsage {
            blobs: 1,
            bytes: 5000
        }
    );
}

#[test]
fn hash_mismatch_is_refused_and_nothing_changes() {
    let f = fixture();
    put_bytes(&f.store, b"already here");
    let before = snapshot(&f.store);
    let data = content(3000, 4);
    let claimed = sha(b"something else");

    let err = f
        .store
        .put(Some((&claimed, 3000)), &mut &data[..])
        .unwrap_err();
    assert!(matches!(err, StoreError::HashMismatch { .. }));
    let msg = err.to_string();
    assert!(msg.contains(claimed.as_str()), "{msg}");
    assert!(msg.contains(sha(&data).as_str()), "{msg}");
    assert!(msg.contains("nothing was stored"), "{msg}");
    assert_eq!(snapshot(&f.store), before);
    assert!(!f.store.contains(&sha(&data)).unwrap());
}

#[test]
fn short_stream_is_refused_and_nothing_changes() {
    let f = fixture();
    let data = content(1000, 5);
    let hash = sha(&data);
    let before = snapshot(&f.store);

    let err = f
        .store
        .put(Some((&hash, 1234)), &mut &data[..])
        .unwrap_err();
    assert!(matches!(err, StoreError::TooShort { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "blob {hash} ended after 1000 bytes but the catalog says 1234: the download or \
             bundle is truncated; nothing was stored"
        )
    );
    assert_eq!(snapshot(&f.store), before);
}

#[test]
fn long_stream_is_stopped_one_byte_past_the_size() {
    let f = fixture();
    let hash = sha(&content(1000, 6));
    let before = snapshot(&f.store);

    let mut reader = Counting::new(1000);
    let err = f.store.put(Some((&hash, 999)), &mut reader).unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }));
    assert_eq!(reader.read, 1000);
    assert_eq!(snapshot(&f.store), before);
}

#[test]
fn oversized_stream_is_stopped_after_size_plus_one_bytes() {
    let f = fixture();
    let hash = sha(b"whatever the catalog names");
    let before = snapshot(&f.store);

    // Would yield 10 GiB; 1234 + 1 bytes must be all that is read.
    let mut reader = Counting::new(10 << 30);
    let err = f.store.put(Some((&hash, 1234)), &mut reader).unwrap_err();
    assert_eq!(reader.read, 1235);
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "blob {hash} is larger than the 1234 bytes the catalog says"
        )),
        "{msg}"
    );
    assert_eq!(snapshot(&f.store), before);

    // Same for a size that spans several buffers.
    let mut reader = Counting::new(10 << 30);
    let size = 3 * BUF as u64 + 5;
    f.store.put(Some((&hash, size)), &mut reader).unwrap_err();
    assert_eq!(reader.read, size + 1);
    assert_eq!(snapshot(&f.store), before);
}

#[test]
fn free_space_reserve_refuses_before_writing() {
    let f = fixture_with(StoreOptions {
        free_space_reserve: u64::MAX / 2,
        verify_on_read: true,
    });
    let before = snapshot(&f.store);
    let hash = sha(b"x");

    let mut reader = Counting::new(1 << 30);
    let err = f
        .store
        .put(Some((&hash, 1 << 30)), &mut reader)
        .unwrap_err();
    assert!(matches!(err, StoreError::NoSpace { .. }));
    let msg = err.to_string();
    assert!(
        msg.starts_with("import needs 1 GiB but only 0 B is free above the 8 EiB reserve on "),
        "{msg}"
    );
    assert!(msg.contains(&f.store.root().display().to_string()), "{msg}");
    assert!(
        msg.ends_with("; free space or lower store.free_space_reserve_mb"),
        "{msg}"
    );
    assert_eq!(reader.read, 0);
    assert_eq!(snapshot(&f.store), before);

    // Unknown size: refused before reading too.
    let mut reader = Counting::new(1 << 30);
    let err = f.store.put(None, &mut reader).unwrap_err();
    assert!(matches!(err, StoreError::NoSpaceWhileWriting { .. }));
    assert!(err.to_string().contains("below the 8 EiB reserve"), "{err}");
    assert_eq!(reader.read, 0);
    assert_eq!(snapshot(&f.store), before);
}

#[test]
fn reserve_is_checked_while_streaming_an_unknown_size() {
    // A reserve just under what is free now: the first check passes, and the check
    // after some MiB fails once the file system's free space moves below it (other
    // writers on this machine only make that happen sooner).
    let f = fixture();
    let free = space::available(f.store.root()).unwrap();
    let store = Store::open(
        f.store.root(),
        StoreOptions {
            free_space_reserve: free - (4 << 20),
            verify_on_read: true,
        },
    )
    .unwrap();
    let before = snapshot(&store);
    let mut reader = Counting::new(1 << 30);
    let err = store.put(None, &mut reader).unwrap_err();
    assert!(
        matches!(err, StoreError::NoSpaceWhileWriting { .. }),
        "{err}"
    );
    assert!(reader.read < 1 << 30, "stopped early, read {}", reader.read);
    assert_eq!(snapshot(&store), before);
}

#[test]
fn reader_failing_half_way_leaves_nothing() {
    let f = fixture();
    put_bytes(&f.store, b"already here");
    let before = snapshot(&f.store);
    let data = content(2 * BUF + 100, 7);

    let mut reader = FailsAfter {
        data: &data[..data.len() / 2],
    };
    let err = f
        .store
        .put(Some((&sha(&data), data.len() as u64)), &mut reader)
        .unwrap_err();
    assert!(matches!(err, StoreError::Read { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "reading the content to store failed after {} bytes: peer went away; nothing was stored",
            data.len() / 2
        )
    );
    assert_eq!(snapshot(&f.store), before);

    // Unknown size: the same.
    let mut reader = FailsAfter { data: &data[..] };
    f.store.put(None, &mut reader).unwrap_err();
    assert_eq!(snapshot(&f.store), before);
}

#[test]
fn open_removes_leftover_temp_files_but_not_a_live_writers() {
    let f = fixture();
    let data = content(4000, 8);
    put_bytes(&f.store, &data);
    let tmp = f.store.root().join("tmp");
    // Leftovers of a crashed writer: a partial blob (even one named like the blob) and
    // an empty one.
    fs::write(tmp.join("put-4242-0"), &data[..100]).unwrap();
    fs::write(tmp.join(sha(&data).as_str()), &data[..100]).unwrap();
    File::create(tmp.join("put-4242-1")).unwrap();
    // A writer in another process still holds its lock (an open file description of
    // our own conflicts with flock just the same).
    let live = tmp.join("put-99999-0");
    let live_file = File::create(&live).unwrap();
    live_file.lock().unwrap();

    let store = Store::open(f.store.root(), opts()).unwrap();
    let left: Vec<_> = fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(left, vec![live.clone()]);
    assert_eq!(
        store.usage(),
        StoreUsage {
            blobs: 1,
            bytes: 4000
        }
    );
    assert_eq!(fs::read(store.path(&sha(&data))).unwrap(), data);

    // Once the writer is gone, the next open collects it.
    drop(live_file);
    Store::open(f.store.root(), opts()).unwrap();
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
}

#[test]
fn usage_counted_at_open_matches_what_puts_counted() {
    let f = fixture();
    for seed in 0..20u8 {
        put_bytes(&f.store, &content(100 * seed as usize, seed));
    }
    // A stray file is not a blob and is not counted.
    fs::write(f.store.root().join("sha256").join("README"), b"hi").unwrap();
    let reopened = Store::open(f.store.root(), opts()).unwrap();
    assert_eq!(reopened.usage(), f.store.usage());
    assert_eq!(f.store.rescan().unwrap(), f.store.usage());
    assert_eq!(reopened.usage().blobs, 20);
    assert_eq!(
        reopened.usage().bytes,
        (0..20).map(|s| 100 * s).sum::<u64>()
    );
}

#[test]
fn gc_removes_only_unreferenced_blobs_older_than_grace() {
    let f = fixture();
    let old = content(1000, 10);
    let old_referenced = content(2000, 11);
    put_bytes(&f.store, &old);
    put_bytes(&f.store, &old_referenced);
    f.clock.advance(SignedDuration::from_hours(1));
    let recent = content(3000, 12);
    put_bytes(&f.store, &recent);
    let referenced: HashSet<String> = [sha(&old_referenced).to_string()].into();

    // At t0 + 1h30 with 1 h grace: `old` is 1.5 h old, `recent` 0.5 h.
    let now = st(t0() + SignedDuration::from_mins(90));
    let report = f.store.gc(&referenced, HOUR, now).unwrap();
    assert_eq!(
        report,
        GcReport {
            removed: 1,
            bytes_freed: 1000,
            kept_in_grace: 1
        }
    );
    assert!(!f.store.contains(&sha(&old)).unwrap());
    assert!(f.store.contains(&sha(&old_referenced)).unwrap());
    assert!(f.store.contains(&sha(&recent)).unwrap());
    assert_eq!(
        f.store.usage(),
        StoreUsage {
            blobs: 2,
            bytes: 5000
        }
    );

    // Exactly at the grace boundary a blob is kept; a moment later it goes. Referenced
    // blobs stay whatever their age.
    let at = st(t0() + SignedDuration::from_hours(2));
    assert_eq!(f.store.gc(&referenced, HOUR, at).unwrap().removed, 0);
    let later = at + Duration::from_secs(1);
    assert_eq!(
        f.store.gc(&referenced, HOUR, later).unwrap(),
        GcReport {
            removed: 1,
            bytes_freed: 3000,
            kept_in_grace: 0
        }
    );
    let far = st(t0() + SignedDuration::from_hours(24 * 365));
    assert_eq!(
        f.store.gc(&referenced, HOUR, far).unwrap(),
        GcReport::default()
    );
    assert!(f.store.contains(&sha(&old_referenced)).unwrap());
    assert_eq!(
        f.store.usage(),
        StoreUsage {
            blobs: 1,
            bytes: 2000
        }
    );
    assert_eq!(
        Store::open(f.store.root(), opts()).unwrap().usage(),
        f.store.usage()
    );
}

#[test]
fn re_put_or_touch_protects_an_old_blob_from_gc() {
    let f = fixture();
    let a = content(1000, 13);
    let b = content(1000, 14);
    put_bytes(&f.store, &a);
    put_bytes(&f.store, &b);
    f.clock.advance(SignedDuration::from_hours(10));
    assert!(put_bytes(&f.store, &a).already_present);
    assert!(f.store.touch(&sha(&b)).unwrap());
    assert!(!f.store.touch(&sha(b"absent")).unwrap());

    let now = st(t0() + SignedDuration::from_mins(10 * 60 + 30));
    let report = f.store.gc(&HashSet::new(), HOUR, now).unwrap();
    assert_eq!(report.removed, 0);
    assert_eq!(report.kept_in_grace, 2);
}

#[test]
fn gc_refuses_a_malformed_reference_set() {
    let f = fixture();
    let data = content(100, 15);
    put_bytes(&f.store, &data);
    let before = snapshot(&f.store);
    let upper: HashSet<String> = [sha(&data).as_str().to_uppercase()].into();
    let far = st(t0() + SignedDuration::from_hours(1000));

    let err = f.store.gc(&upper, HOUR, far).unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference { .. }));
    assert!(err.to_string().contains("nothing was removed"), "{err}");
    assert_eq!(snapshot(&f.store), before);
}

#[test]
fn a_blob_being_served_survives_its_removal() {
    let f = fixture();
    let data = content(2 * BUF + 3, 16);
    let hash = sha(&data);
    put_bytes(&f.store, &data);

    let mut blob = f.store.open_blob(&hash).unwrap();
    let mut first = vec![0u8; 10];
    blob.file.read_exact(&mut first).unwrap();
    let far = st(t0() + SignedDuration::from_hours(1000));
    assert_eq!(f.store.gc(&HashSet::new(), HOUR, far).unwrap().removed, 1);
    assert!(!f.store.contains(&hash).unwrap());
    assert!(matches!(
        f.store.open_blob(&hash),
        Err(StoreError::NotFound { .. })
    ));

    // The open handle still reads every byte, also after seeking (a Range request).
    let mut rest = Vec::new();
    blob.file.read_to_end(&mut rest).unwrap();
    assert_eq!([first, rest].concat(), data);
    blob.file.seek(SeekFrom::Start(BUF as u64)).unwrap();
    let mut tail = Vec::new();
    blob.file.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, data[BUF..]);
}

#[test]
fn verify_all_finds_corrupt_and_misnamed_blobs() {
    let f = fixture();
    let good = content(5000, 17);
    let bad = content(BUF + 5, 18);
    put_bytes(&f.store, &good);
    put_bytes(&f.store, &bad);
    assert_eq!(
        f.store.verify_all().unwrap(),
        VerifyReport {
            checked: 2,
            bytes: 5000 + BUF as u64 + 5,
            corrupt: vec![],
            misnamed: vec![]
        }
    );

    // Flip one byte on disk.
    let bad_path = f.store.path(&sha(&bad));
    fs::set_permissions(&bad_path, fs::Permissions::from_mode(0o644)).unwrap();
    let mut file = OpenOptions::new().write(true).open(&bad_path).unwrap();
    file.seek(SeekFrom::Start(BUF as u64)).unwrap();
    file.write_all(&[bad[BUF] ^ 0x01]).unwrap();
    drop(file);
    let mut flipped = bad.clone();
    flipped[BUF] ^= 0x01;
    // A copy under the wrong name and a file in the wrong fan-out directory.
    let wrong_name = f.store.root().join("sha256").join("ab").join("not-a-hash");
    fs::create_dir_all(wrong_name.parent().unwrap()).unwrap();
    fs::write(&wrong_name, &good).unwrap();
    let wrong_dir = f
        .store
        .root()
        .join("sha256")
        .join("ab")
        .join(sha(&good).as_str());
    if !sha(&good).as_str().starts_with("ab") {
        fs::write(&wrong_dir, &good).unwrap();
    }

    let report = f.store.verify_all().unwrap();
    assert_eq!(report.checked, 2);
    assert_eq!(
        report.corrupt,
        vec![CorruptBlob {
            hash: sha(&bad),
            actual: sha(&flipped),
            size: BUF as u64 + 5,
            path: bad_path.clone(),
        }]
    );
    let mut misnamed = vec![wrong_name, wrong_dir];
    misnamed.sort();
    assert_eq!(report.misnamed, misnamed);

    // Reading it verified reports the corruption and says what to do.
    let err = f
        .store
        .read_verified(&sha(&bad), &mut io::sink())
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }));
    let msg = err.to_string();
    assert!(msg.contains(&bad_path.display().to_string()), "{msg}");
    assert!(msg.contains("delete the file"), "{msg}");

    // Without verify_on_read the bytes are copied as they are.
    let plain = Store::open(
        f.store.root(),
        StoreOptions {
            verify_on_read: false,
            ..opts()
        },
    )
    .unwrap();
    let mut copy = Vec::new();
    plain.read_verified(&sha(&bad), &mut copy).unwrap();
    assert_eq!(copy, flipped);
}

#[test]
fn re_put_replaces_a_truncated_blob() {
    let f = fixture();
    let data = content(10_000, 19);
    let hash = sha(&data);
    put_bytes(&f.store, &data);
    let path = f.store.path(&hash);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(4000)
        .unwrap();
    let f = Fixture {
        store: Store::open(f.store.root(), opts()).unwrap(),
        ..f
    };
    assert_eq!(f.store.usage().bytes, 4000);

    let out = put_bytes(&f.store, &data);
    assert!(!out.already_present);
    assert_eq!(fs::read(&path).unwrap(), data);
    assert_eq!(
        f.store.usage(),
        StoreUsage {
            blobs: 1,
            bytes: 10_000
        }
    );
}

#[test]
fn concurrent_puts_of_one_blob_store_it_once() {
    let f = fixture();
    let data = content(3 * BUF, 20);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| f.store.put(None, &mut &data[..]).unwrap());
        }
    });
    assert_eq!(
        f.store.usage(),
        StoreUsage {
            blobs: 1,
            bytes: 3 * BUF as u64
        }
    );
    assert_eq!(f.store.verify_all().unwrap().checked, 1);
    assert_eq!(fs::read_dir(f.store.root().join("tmp")).unwrap().count(), 0);
}

// ---- crash safety: a real SIGKILL at each step of a put, in a child process ----

const CRASH_ROOT: &str = "PATCHWARD_STORE_CRASH_ROOT";

fn crash_content() -> Vec<u8> {
    content(3 * BUF + 11, 21)
}

/// Calls the "mid-stream" crash point once half the data has been handed out.
struct CrashesHalfWay<'a> {
    data: &'a [u8],
    given: usize,
}

impl Read for CrashesHalfWay<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.given >= self.data.len() / 2 {
            super::put::crash_point("mid-stream");
        }
        let n = (&self.data[self.given..]).read(buf)?;
        self.given += n;
        Ok(n)
    }
}

#[test]
#[ignore = "child process of crash_at_any_step_leaves_no_blob_or_a_whole_one"]
fn crash_child() {
    let Some(root) = std::env::var_os(CRASH_ROOT) else {
        return;
    };
    let store = Store::open(Path::new(&root), opts()).unwrap();
    let data = crash_content();
    let mut reader = CrashesHalfWay {
        data: &data,
        given: 0,
    };
    store
        .put(Some((&sha(&data), data.len() as u64)), &mut reader)
        .unwrap();
}

#[test]
fn crash_at_any_step_leaves_no_blob_or_a_whole_one() {
    let exe = std::env::current_exe().unwrap();
    let data = crash_content();
    let hash = sha(&data);
    for (point, survives) in [
        ("mid-stream", false),
        ("before-sync", false),
        ("after-sync", false),
        ("after-rename", true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let out = std::process::Command::new(&exe)
            .args(["--exact", "store::tests::crash_child", "--ignored"])
            .args(["--nocapture", "--test-threads=1"])
            .env(CRASH_ROOT, &root)
            .env("PATCHWARD_STORE_CRASH_AT", point)
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "{point}: child was not killed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        // Straight after the crash: no blob, or the whole blob under its name.
        let blob = root
            .join("sha256")
            .join(&hash.as_str()[..2])
            .join(hash.as_str());
        match fs::read(&blob) {
            Ok(bytes) => assert!(bytes == data, "{point}: partial blob visible"),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::NotFound, "{point}"),
        }
        let leftovers = fs::read_dir(root.join("tmp")).unwrap().count();
        assert_eq!(leftovers, usize::from(!survives), "{point}: temp files");

        // The next open cleans up and counts what is really there.
        let store = Store::open(&root, opts()).unwrap();
        assert_eq!(
            fs::read_dir(root.join("tmp")).unwrap().count(),
            0,
            "{point}"
        );
        assert_eq!(store.contains(&hash).unwrap(), survives, "{point}");
        let want = if survives {
            StoreUsage {
                blobs: 1,
                bytes: data.len() as u64,
            }
        } else {
            StoreUsage::default()
        };
        assert_eq!(store.usage(), want, "{point}");
        assert!(store.verify_all().unwrap().corrupt.is_empty(), "{point}");
        // And a retry of the put succeeds.
        let out = put_bytes(&store, &data);
        assert_eq!(out.already_present, survives, "{point}");
    }
}
