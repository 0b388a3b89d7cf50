//! The drop folder end to end: a real `patchward serve` watching a folder; bundles built
//! with the MSP tools are copied in slowly, garbage is refused with a readable reason,
//! and the folder vanishes and comes back (a USB stick unplugged and replugged).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use patchward::feed::tools::{InitOptions, add_patch, export, init, publish};

use crate::support::{Server, patchward, run, stderr, stdout};

/// Waits (bounded) until `cond` holds; panics with `what` otherwise.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after 20 s waiting for {what}");
}

/// Writes a patch file and its artifact into `dir`; returns (patch toml, artifact).
fn write_patch(dir: &Path, id: &str, artifact: &str) -> (PathBuf, PathBuf) {
    let toml = format!(
        r#"
id = "{id}"
title = "Update for {id}"
kind = "security"
severity = "high"
cves = ["CVE-2025-12345"]
released = "2026-11-01T00:00:00Z"
install = "apt"
est_minutes = 5

[[applies_to]]
os = "debian"
version = "12"

[[artifacts]]
name = "{artifact}"
format = "file"
"#
    );
    let p = dir.join(format!("{artifact}.toml"));
    std::fs::write(&p, toml).unwrap();
    let a = dir.join(artifact);
    std::fs::write(&a, format!("contents of {artifact}\n").repeat(2000)).unwrap();
    (p, a)
}

fn patch_ids(data: &Path) -> Vec<String> {
    let mut cmd = patchward(data);
    cmd.args(["patches", "list", "--json"]);
    let o = run(cmd);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    rows.iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn drop_folder_imports_rejects_and_survives_the_folder_vanishing() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let now = jiff::Timestamp::now();

    // MSP side: a feed with one patch, published and exported as a full bundle.
    let feed = work.join("example-msp");
    init(&feed, &InitOptions::default(), now).unwrap();
    let (p1, a1) = write_patch(work, "DSA-1/openssl", "openssl_1_amd64.deb");
    add_patch(&feed, &p1, &[a1]).unwrap();
    publish(&feed, &[], now).unwrap();
    let full = work.join("full.pwb");
    export(&feed, &full, None, now).unwrap();

    // Site side: the pinned root, a drop folder, and a config naming both.
    let pinned = work.join("pinned.root.json");
    std::fs::copy(feed.join("public/root/1.root.json"), &pinned).unwrap();
    let drop = work.join("drop");
    std::fs::create_dir(&drop).unwrap();
    let data = work.join("data");
    let config = work.join("patchward.toml");
    std::fs::write(
        &config,
        format!(
            "[import]\ndrop_dir = {:?}\nstable_secs = 1\n\n[[mirror.sources]]\n\
             name = \"example-msp\"\nurl = \"file://{}/public\"\nroot = {:?}\n",
            drop.display().to_string(),
            feed.display(),
            pinned.display().to_string(),
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let mut server = Server::start_with(&data, &["--config", cfg]);
    assert_eq!(
        server.banner_value("drop folder"),
        drop.display().to_string()
    );

    // A slow copy: half, a pause longer than the stability period with the file still
    // open, then the rest. It must not be taken half-written.
    let bytes = std::fs::read(&full).unwrap();
    let (head, tail) = bytes.split_at(bytes.len() / 2);
    let target = drop.join("first.pwb");
    {
        let mut f = std::fs::File::create(&target).unwrap();
        f.write_all(head).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(2500));
        assert!(target.exists(), "a half-written bundle was taken");
        assert!(
            !drop.join("rejected").exists(),
            "a half-written bundle was rejected"
        );
        f.write_all(tail).unwrap();
    }
    wait_for("first.pwb in imported/", || {
        drop.join("imported/first.pwb").exists()
    });
    assert!(!target.exists());
    assert_eq!(
        std::fs::read(drop.join("imported/first.pwb")).unwrap(),
        bytes
    );
    assert_eq!(patch_ids(&data), vec!["DSA-1/openssl".to_string()]);

    // Garbage is refused, moved aside, and explained in plain words.
    std::fs::write(drop.join("bad.pwb"), b"this is not a bundle at all\n").unwrap();
    let reason = drop.join("rejected/bad.pwb.reason.txt");
    wait_for("rejected/bad.pwb.reason.txt", || reason.exists());
    assert!(drop.join("rejected/bad.pwb").exists());
    assert!(!drop.join("bad.pwb").exists());
    let text = std::fs::read_to_string(&reason).unwrap();
    assert!(text.contains("Patchward did not import bad.pwb"), "{text}");
    assert!(text.contains("nothing on the appliance changed"), "{text}");
    assert!(text.contains("Reason: "), "{text}");
    assert!(
        text.contains("Ask your provider for a new bundle"),
        "{text}"
    );
    let mut cmd = patchward(&data);
    cmd.args(["audit", "list", "--json", "--limit", "50"]);
    let audit = stdout(&run(cmd));
    assert!(audit.contains("feed.import_rejected"), "{audit}");
    assert!(audit.contains("drop-folder"), "{audit}");

    // The same bundle again: valid but already current; noted beside it in imported/
    // under a new name (the first one is kept).
    std::fs::copy(&full, drop.join("first.pwb")).unwrap();
    let note = drop.join("imported/first-1.pwb.reason.txt");
    wait_for("imported/first-1.pwb.reason.txt", || note.exists());
    let text = std::fs::read_to_string(&note).unwrap();
    assert!(text.contains("already had catalog version 1"), "{text}");

    // A half-written copy of that same (current) bundle is broken, not current: it is
    // filed under rejected/ with the reason (issue [8] item 7).
    std::fs::write(drop.join("cut.pwb"), &bytes[..bytes.len() / 2]).unwrap();
    let reason = drop.join("rejected/cut.pwb.reason.txt");
    wait_for("rejected/cut.pwb.reason.txt", || reason.exists());
    assert!(!drop.join("imported/cut.pwb").exists());
    let text = std::fs::read_to_string(&reason).unwrap();
    assert!(text.contains("truncated"), "{text}");

    // The folder vanishes (unplugged) and comes back with a new bundle.
    std::fs::remove_dir_all(&drop).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let (p2, a2) = write_patch(work, "DSA-2/curl", "curl_2_amd64.deb");
    add_patch(&feed, &p2, &[a2]).unwrap();
    let later = jiff::Timestamp::now();
    publish(&feed, &[], later).unwrap();
    let incr = work.join("incr.pwb");
    export(&feed, &incr, Some(1), later).unwrap();
    std::fs::create_dir(&drop).unwrap();
    std::fs::copy(&incr, drop.join("second.pwb")).unwrap();
    wait_for("second.pwb in imported/ after the folder came back", || {
        drop.join("imported/second.pwb").exists()
    });
    let mut ids = patch_ids(&data);
    ids.sort();
    assert_eq!(ids, vec!["DSA-1/openssl", "DSA-2/curl"]);

    // Shutdown stops the watcher cleanly.
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(Duration::from_secs(15)), Some(0));
}

fn rejections(data: &Path) -> usize {
    let mut cmd = patchward(data);
    cmd.args(["audit", "list", "--json", "--limit", "200"]);
    let o = run(cmd);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).matches("\"feed.import_rejected\"").count()
}

#[test]
fn a_file_that_cannot_be_moved_stays_and_is_not_retried_until_it_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let drop = tmp.path().join("drop");
    std::fs::create_dir(&drop).unwrap();
    // A plain file where rejected/ should be: the move fails as on read-only media
    // (tests may run as root, for whom a read-only mode is no obstacle).
    std::fs::write(drop.join("rejected"), b"").unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("patchward.toml");
    std::fs::write(
        &config,
        format!(
            "[import]\ndrop_dir = {:?}\nstable_secs = 1\n",
            drop.display().to_string()
        ),
    )
    .unwrap();
    let _server = Server::start_with(&data, &["--config", config.to_str().unwrap()]);

    let bad = drop.join("bad.pwb");
    std::fs::write(&bad, b"not a bundle").unwrap();
    wait_for("the rejection to be audited", || rejections(&data) == 1);
    // Many rescans later: still there, still refused only once.
    std::thread::sleep(Duration::from_secs(3));
    assert!(bad.exists());
    assert_eq!(rejections(&data), 1);

    // Changed content is a new file: it is looked at again.
    std::fs::write(&bad, b"still not a bundle").unwrap();
    wait_for("the changed file to be refused again", || {
        rejections(&data) == 2
    });
    assert!(bad.exists());
}
