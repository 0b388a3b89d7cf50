//! Fault test: SIGKILL `patchward import` at random points of a multi-blob import.
//! After every kill the previous state is intact (database sound, no partial blob, no
//! half-visible catalog) and a rerun completes without rewriting blobs already stored.

use std::process::Stdio;
use std::time::Instant;

use rand::Rng;

use crate::feedkit::{Feed, Site};
use crate::support::{run, stderr, stdout};

const RUNS: usize = 30;
const BLOBS: usize = 16;
const BLOB_SIZE: usize = 1 << 20;

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn killing_the_importer_at_random_points_is_harmless_and_a_rerun_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let t = jiff::Timestamp::now();
    let mut feed = Feed::init(tmp.path(), "msp", t);
    for i in 0..BLOBS {
        feed.add(
            &format!("P-{i}"),
            "high",
            "CVE-2099-4242",
            BLOB_SIZE,
            100 + i as u64,
        );
    }
    feed.publish(t);
    let bundle = feed.export(&tmp.path().join("big.pwb"), None, t);
    let base = Site::new(tmp.path(), "base", &[&feed]);

    // How long an undisturbed import takes (fastest of three), to spread the kills
    // over it.
    let mut full = std::time::Duration::MAX;
    for p in 0..3 {
        let probe = tmp.path().join(format!("probe{p}"));
        copy_dir(&base.data, &probe);
        let site = Site {
            data: probe,
            config: base.config.clone(),
        };
        let start = Instant::now();
        let out = site.import(&bundle);
        assert!(out.status.success(), "{}", stderr(&out));
        full = full.min(start.elapsed());
    }

    let mut rng = rand::thread_rng();
    let mut partial_reruns = 0;
    let mut killed_mid_import = 0;
    for i in 0..RUNS {
        let data = tmp.path().join(format!("run{i}"));
        copy_dir(&base.data, &data);
        let site = Site {
            data,
            config: base.config.clone(),
        };
        let mut child = site
            .cmd(&["import"])
            .arg(&bundle)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = full.mul_f64(rng.gen_range(0.0..0.9));
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        let _ = child.wait();
        if !finished {
            killed_mid_import += 1;
        }

        // Invariants right after the kill.
        let conn = rusqlite::Connection::open(site.data.join("patchward.db")).unwrap();
        let ok: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok", "run {i}");
        let patches: i64 = conn
            .query_row("SELECT count(*) FROM patches", [], |r| r.get(0))
            .unwrap();
        let blobs: i64 = conn
            .query_row("SELECT count(*) FROM patch_blobs", [], |r| r.get(0))
            .unwrap();
        assert!(
            (patches, blobs) == (0, 0) || (patches, blobs) == (BLOBS as i64, BLOBS as i64),
            "run {i}: half-visible catalog: {patches} patches, {blobs} blobs"
        );
        drop(conn);
        let verify = run(site.cmd(&["store", "verify", "--json"]));
        assert!(verify.status.success(), "run {i}: {}", stdout(&verify));
        let stored_before = crate::feedkit::store_files(&site.data.join("store"))
            .keys()
            .filter(|k| k.starts_with("sha256/"))
            .count();

        // A rerun completes, writing only what is not stored yet.
        let out = site.import(&bundle);
        assert!(out.status.success(), "run {i}: {}", stderr(&out));
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if s["already_current"] != true {
            let expected = (BLOBS - stored_before) * BLOB_SIZE;
            assert_eq!(s["bytes_stored"], expected as u64, "run {i}: {s}");
            if stored_before > 0 {
                partial_reruns += 1;
            }
        }
        assert_eq!(site.patches().as_array().unwrap().len(), BLOBS, "run {i}");
        let verify = run(site.cmd(&["store", "verify"]));
        assert!(verify.status.success(), "run {i}: {}", stdout(&verify));
        std::fs::remove_dir_all(&site.data).unwrap();
    }
    assert!(
        killed_mid_import >= RUNS / 3,
        "only {killed_mid_import} of {RUNS} kills landed during an import"
    );
    eprintln!(
        "import fault test: {killed_mid_import}/{RUNS} kills mid-import, {partial_reruns} reruns \
         found blobs already stored (import takes {full:?})"
    );
}
