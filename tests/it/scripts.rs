//! The worked example of a script patch (`mirror/examples/script-patch/`) end to end,
//! exactly as README tells an MSP technician to make it: the archive of `steps/` built
//! with the real `tar -C DIR -cf - .` (whose first entry is `./`), checked and stored
//! by `feed add`, shipped in a bundle, and installed by the real agent, whose steps
//! reach the firmware image it downloaded and checked through
//! `$PATCHWARD_ARTIFACT_ACME_BMC_2_1_BIN`.

use std::path::{Path, PathBuf};
use std::process::Command;

use jiff::Timestamp;
use patchward::feed::tools;
use serde_json::Value;

use crate::feedkit::{Feed, Site};
use crate::jobs::{jobs, ok};
use crate::support::{Server, run};

const AGENT: &str = env!("CARGO_BIN_EXE_patchward-agent");

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mirror/examples/script-patch")
}

/// `tar -C DIR -cf - . | zstd`, as README shows it.
fn tar_dir(dir: &Path) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(out.status.success());
    // The archive really starts with the `./` entry the agent used to refuse.
    assert_eq!(&out.stdout[..2], b"./");
    zstd::encode_all(&out.stdout[..], 3).unwrap()
}

/// A `patchward-agent` run with the example's `ACME_BMC_DIR`, which its steps inherit.
fn agent(state: &Path, bmc: &Path, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(AGENT);
    c.arg("--state-dir")
        .arg(state)
        .args(args)
        .env("ACME_BMC_DIR", bmc);
    run(c)
}

#[test]
fn the_worked_example_is_added_and_installed_with_its_firmware_artifact() {
    let tmp = tempfile::tempdir().unwrap();
    let t = Timestamp::now();
    let ex = example();
    let feed = Feed::init(tmp.path(), "acme", t);
    let archive = tmp.path().join("acme-bmc-steps.tar.zst");
    std::fs::write(&archive, tar_dir(&ex.join("steps"))).unwrap();
    let image = ex.join("acme-bmc-2.1.bin");
    let added =
        tools::add_patch(&feed.dir, &ex.join("PATCH.toml"), &[archive, image.clone()]).unwrap();
    assert_eq!(added.id, "acme/bmc-firmware-2.1");
    feed.publish(t);
    let bundle = feed.export(&tmp.path().join("full.pwb"), None, t);
    let site = Site::new(tmp.path(), "s", &[&feed]);
    ok(site.import(&bundle));

    let server = Server::start_with(&site.data, &["--config", site.config.to_str().unwrap()]);
    let token = ok(run(site.cmd(&["hosts", "token", "create"])));
    let st = tmp.path().join("agent");
    let bmc = tmp.path().join("bmc");
    ok(agent(
        &st,
        &bmc,
        &[
            "enroll",
            "--server",
            &server.url,
            "--token",
            token.trim(),
            "--hostname",
            "bmc1",
        ],
    ));
    let out = ok(run(site.cmd(&[
        "deploy",
        "--patch",
        "acme/bmc-firmware-2.1",
        "--host",
        "bmc1",
    ])));
    assert!(out.contains("created job j-"), "{out}");
    ok(agent(&st, &bmc, &["once"]));
    ok(agent(&st, &bmc, &["once"]));

    let job: Value = jobs(&site)
        .into_iter()
        .find(|j| j["patch_id"] == "acme/bmc-firmware-2.1")
        .unwrap();
    assert_eq!(job["state"], "succeeded", "{job}");
    let text = job.to_string();
    assert!(
        text.contains("flashed acme-bmc-2.1.bin (ACME BMC firmware 2.1, job j-"),
        "{text}"
    );
    assert!(
        text.contains("running image matches acme-bmc-2.1.bin"),
        "{text}"
    );
    // The step read the verified artifact through the path it was given.
    assert_eq!(
        std::fs::read(bmc.join("current.bin")).unwrap(),
        std::fs::read(&image).unwrap()
    );
    assert!(bmc.join("backup.bin").exists());
    // The per-job files are cleaned up after the job.
    let work = st.join("work");
    let left: Vec<_> = std::fs::read_dir(&work)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}
