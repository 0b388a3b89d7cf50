//! The agent's `apt` backend with the real apt-get and dpkg of this machine, in a
//! sandbox: `APT_CONFIG` points at a file that sets every apt directory (sources,
//! lists, cache, state) into a temp dir and passes `--root`/`--admindir` to dpkg, and
//! `DPKG_ADMINDIR` makes dpkg-query read the sandbox's database, so the host's own
//! packages are never touched.
//!
//! The packages are real `.deb` files built with `dpkg-deb`; the sandbox's apt source
//! is a local repository made with `apt-ftparchive`. A patch pinning version 1.1-1 is
//! installed over 1.0-1 and verified with `dpkg-query`; a patch pinning a version the
//! repository does not have fails in apt and is rolled back (1.1-1 stays installed).
//!
//! Needs root (dpkg), apt-get, dpkg-deb and apt-ftparchive (apt-utils): run by
//! `.ci/run` with `--features system-tests`.

use std::path::{Path, PathBuf};
use std::process::Command;

use jiff::Timestamp;
use patchward::feed::tools;
use serde_json::Value;

use crate::feedkit::{Feed, Site};
use crate::jobs::{jobs, ok};
use crate::support::{Server, run};

const AGENT: &str = env!("CARGO_BIN_EXE_patchward-agent");
pub(crate) const PKG: &str = "patchward-test-hello";

pub(crate) fn sh(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Builds `PKG_<version>_all.deb` with dpkg-deb into `out`.
pub(crate) fn build_deb(work: &Path, out: &Path, version: &str) -> PathBuf {
    let root = work.join(format!("build-{version}"));
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/share/patchward-test")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: {PKG}\nVersion: {version}\nArchitecture: all\n\
             Maintainer: Patchward tests <tests@example.invalid>\n\
             Description: a package for the apt backend test\n"
        ),
    )
    .unwrap();
    std::fs::write(root.join("usr/share/patchward-test/hello"), version).unwrap();
    let deb = out.join(format!("{PKG}_{version}_all.deb"));
    sh(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&root)
        .arg(&deb));
    deb
}

/// A sandboxed apt whose only source is the local `[trusted=yes]` repository `repo`:
/// returns (APT_CONFIG file, dpkg admin dir, install root).
fn sandbox(dir: &Path, repo: &Path) -> (PathBuf, PathBuf, PathBuf) {
    sandbox_with(
        dir,
        &format!("deb [trusted=yes] file:{} ./\n", repo.display()),
        None,
    )
}

/// A sandboxed apt with `list` as its sources.list and, if given, one deb822
/// `.sources` file.
fn sandbox_with(dir: &Path, list: &str, deb822: Option<&str>) -> (PathBuf, PathBuf, PathBuf) {
    let sb = dir.join("sandbox");
    let root = sb.join("root");
    let admin = sb.join("admin");
    for d in [
        root.clone(),
        admin.join("updates"),
        admin.join("info"),
        sb.join("lists/partial"),
        sb.join("cache/archives/partial"),
        sb.join("state"),
        sb.join("apt.conf.d"),
        sb.join("preferences.d"),
    ] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(admin.join("status"), "").unwrap();
    std::fs::write(admin.join("available"), "").unwrap();
    std::fs::write(sb.join("sources.list"), list).unwrap();
    std::fs::create_dir_all(sb.join("sources.list.d")).unwrap();
    if let Some(text) = deb822 {
        std::fs::write(sb.join("sources.list.d/patchward.sources"), text).unwrap();
    }
    let p = |x: &Path| x.display().to_string();
    let conf = format!(
        "Dir::Etc::main \"/dev/null\";\n\
         Dir::Etc::parts \"{}\";\n\
         Dir::Etc::preferencesparts \"{}\";\n\
         Dir::Etc::sourcelist \"{}\";\n\
         Dir::Etc::sourceparts \"{}\";\n\
         Dir::State \"{}\";\n\
         Dir::State::Lists \"{}\";\n\
         Dir::State::status \"{}\";\n\
         Dir::Cache \"{}\";\n\
         APT::Sandbox::User \"root\";\n\
         DPkg::Options {{ \"--root={}\"; \"--admindir={}\"; \"--force-script-chrootless\"; }};\n",
        p(&sb.join("apt.conf.d")),
        p(&sb.join("preferences.d")),
        p(&sb.join("sources.list")),
        p(&sb.join("sources.list.d")),
        p(&sb.join("state")),
        p(&sb.join("lists")),
        p(&admin.join("status")),
        p(&sb.join("cache")),
        p(&root),
        p(&admin),
    );
    let conf_path = sb.join("apt.conf");
    std::fs::write(&conf_path, conf).unwrap();
    (conf_path, admin, root)
}

pub(crate) fn add_apt_patch(feed: &Feed, id: &str, deb: &Path) {
    add_apt_patch_with(feed, id, deb, "");
}

/// [`add_apt_patch`] with extra top-level TOML (e.g. `[[applies_to]]`), placed last.
pub(crate) fn add_apt_patch_with(feed: &Feed, id: &str, deb: &Path, extra: &str) {
    let name = deb.file_name().unwrap().to_str().unwrap();
    let toml = format!(
        "id = {id:?}\ntitle = \"apt patch {id}\"\nkind = \"maintenance\"\n\
         severity = \"medium\"\nreleased = \"2026-10-01T00:00:00Z\"\ninstall = \"apt\"\n\
         est_minutes = 2\n[[artifacts]]\nname = {name:?}\nformat = \"deb\"\n{extra}"
    );
    let p = feed.dir.join(format!("{}.toml", id.replace('/', "-")));
    std::fs::write(&p, toml).unwrap();
    tools::add_patch(&feed.dir, &p, &[deb.to_path_buf()]).unwrap();
}

fn by_patch(site: &Site, id: &str) -> Value {
    jobs(site)
        .into_iter()
        .find(|j| j["patch_id"] == id)
        .unwrap()
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "needs root, apt-get, dpkg-deb and apt-ftparchive: cargo test --features system-tests"
)]
fn apt_backend_installs_the_pinned_version_and_rolls_back_a_failed_install() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the apt backend test installs packages with dpkg (into a sandbox) and needs root"
    );
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let debs = tmp.path().join("debs");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::create_dir_all(&debs).unwrap();
    let v10 = build_deb(tmp.path(), &repo, "1.0-1");
    let v11 = build_deb(tmp.path(), &repo, "1.1-1");
    // In the feed but not in the repository apt uses: apt cannot install it.
    let v99 = build_deb(tmp.path(), &debs, "9.9-1");
    let packages = sh(Command::new("apt-ftparchive")
        .args(["packages", "."])
        .current_dir(&repo));
    std::fs::write(repo.join("Packages"), packages).unwrap();
    let (apt_config, admin, root) = sandbox(tmp.path(), &repo);
    let apt = |args: &[&str]| {
        sh(Command::new("apt-get")
            .env("APT_CONFIG", &apt_config)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(args))
    };
    apt(&["update", "-q"]);
    apt(&["install", "-y", "-q", &format!("{PKG}=1.0-1")]);
    let installed = root.join("usr/share/patchward-test/hello");
    assert_eq!(std::fs::read_to_string(&installed).unwrap(), "1.0-1");
    drop(v10);

    let t = Timestamp::now();
    let mut feed = Feed::init(tmp.path(), "acme", t);
    feed.add("acme/filler", "low", "CVE-2099-0002", 1000, 1);
    add_apt_patch(&feed, "acme/hello-1.1", &v11);
    add_apt_patch(&feed, "acme/hello-9.9", &v99);
    feed.publish(t);
    let bundle = feed.export(&tmp.path().join("full.pwb"), None, t);
    let site = Site::new(tmp.path(), "s", &[&feed]);
    ok(site.import(&bundle));
    let server = Server::start_with(&site.data, &["--config", site.config.to_str().unwrap()]);
    let token = ok(run(site.cmd(&["hosts", "token", "create"])));
    let state = tmp.path().join("agent");
    let agent = |args: &[&str]| {
        let mut c = Command::new(AGENT);
        c.arg("--state-dir")
            .arg(&state)
            .args(args)
            .env("APT_CONFIG", &apt_config)
            .env("DPKG_ADMINDIR", &admin);
        ok(run(c))
    };
    agent(&[
        "enroll",
        "--server",
        &server.url,
        "--token",
        token.trim(),
        "--hostname",
        "deb1",
    ]);
    // The inventory the agent sent comes from the sandbox's dpkg database.
    let host: Value =
        serde_json::from_str(&ok(run(site.cmd(&["hosts", "show", "deb1", "--json"])))).unwrap();
    assert!(host.to_string().contains(PKG), "{host}");

    ok(run(site.cmd(&[
        "deploy",
        "--patch",
        "acme/hello-1.1",
        "--host",
        "deb1",
    ])));
    let out = agent(&["once"]);
    assert!(out.contains("succeeded"), "{out}");
    let job = by_patch(&site, "acme/hello-1.1");
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(
        job.to_string().contains(&format!("{PKG} 1.1-1 installed")),
        "{job}"
    );
    assert_eq!(std::fs::read_to_string(&installed).unwrap(), "1.1-1");

    ok(run(site.cmd(&[
        "deploy",
        "--patch",
        "acme/hello-9.9",
        "--host",
        "deb1",
    ])));
    let out = agent(&["once"]);
    assert!(out.contains("rolled_back"), "{out}");
    let job = by_patch(&site, "acme/hello-9.9");
    assert_eq!(job["state"], "rolled_back", "{job}");
    assert!(job.to_string().contains("install failed"), "{job}");
    assert_eq!(std::fs::read_to_string(&installed).unwrap(), "1.1-1");
    let status = sh(Command::new("dpkg-query")
        .env("DPKG_ADMINDIR", &admin)
        .args(["-W", "-f", "${Version}", PKG]));
    assert_eq!(status, "1.1-1");
}

/// The same backend with the appliance's own signed ring repository as the sandbox's
/// only apt source: the deb822 file from `patchward apt client-config` (key embedded in
/// `Signed-By`, no `trusted=yes`). The agent installs the pinned 1.1-1 from the pilot
/// ring's repository over 1.0-1.
#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "needs root, apt-get and dpkg-deb: cargo test --features system-tests"
)]
fn apt_backend_installs_from_the_appliances_signed_ring_repository() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the apt backend test installs packages with dpkg (into a sandbox) and needs root"
    );
    let tmp = tempfile::tempdir().unwrap();
    let (site, _v10, _v11) = crate::apt_repo::hello_site(tmp.path());
    let server = Server::start_with(&site.data, &["--config", site.config.to_str().unwrap()]);
    for patch in ["acme/hello-1.0", "acme/hello-1.1"] {
        ok(run(site.cmd(&[
            "apt", "release", "--ring", "pilot", "--patch", patch,
        ])));
    }
    // The running appliance republishes on its own; wait (bounded) for 1.1 to appear.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let packages = format!(
        "{}/apt/pilot/dists/pilot/main/binary-amd64/Packages",
        server.url
    );
    while !crate::support::http()
        .get(&packages)
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default()
        .contains("Version: 1.1-1")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "pilot was not republished"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let sources = ok(run(site.cmd(&[
        "apt",
        "client-config",
        "--ring",
        "pilot",
        "--url",
        &server.url,
    ])));
    assert!(!sources.contains("trusted"));
    let (apt_config, admin, root) = sandbox_with(tmp.path(), "", Some(&sources));
    let apt = |args: &[&str]| {
        sh(Command::new("apt-get")
            .env("APT_CONFIG", &apt_config)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(args))
    };
    apt(&["update", "-q"]);
    apt(&["install", "-y", "-q", &format!("{PKG}=1.0-1")]);
    let installed = root.join("usr/share/patchward-test/hello");
    assert_eq!(std::fs::read_to_string(&installed).unwrap(), "1.0-1");

    let token = ok(run(
        site.cmd(&["hosts", "token", "create", "--ring", "pilot"])
    ));
    let state = tmp.path().join("agent");
    let agent = |args: &[&str]| {
        let mut c = Command::new(AGENT);
        c.arg("--state-dir")
            .arg(&state)
            .args(args)
            .env("APT_CONFIG", &apt_config)
            .env("DPKG_ADMINDIR", &admin);
        ok(run(c))
    };
    agent(&[
        "enroll",
        "--server",
        &server.url,
        "--token",
        token.trim(),
        "--hostname",
        "deb2",
    ]);
    ok(run(site.cmd(&[
        "deploy",
        "--patch",
        "acme/hello-1.1",
        "--host",
        "deb2",
    ])));
    let out = agent(&["once"]);
    assert!(out.contains("succeeded"), "{out}");
    let job = by_patch(&site, "acme/hello-1.1");
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(std::fs::read_to_string(&installed).unwrap(), "1.1-1");
    let status = sh(Command::new("dpkg-query")
        .env("DPKG_ADMINDIR", &admin)
        .args(["-W", "-f", "${Version}", PKG]));
    assert_eq!(status, "1.1-1");
}

/// The rollout drives the apt rings: approving 1.1 puts it into the pilot repository
/// only; the pilot agent installs it from there (signed source, no `trusted=yes`);
/// only after the pilot gate passes does the broad repository carry it, and a broad
/// server's apt sees it.
#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "needs root, apt-get and dpkg-deb: cargo test --features system-tests"
)]
fn approval_and_the_pilot_gate_decide_what_each_apt_ring_holds() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the apt backend test installs packages with dpkg (into a sandbox) and needs root"
    );
    let tmp = tempfile::tempdir().unwrap();
    let debs = tmp.path().join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    let v11 = build_deb(tmp.path(), &debs, "1.1-1");
    let t = jiff::Timestamp::now();
    let feed = Feed::init(tmp.path(), "acme", t);
    add_apt_patch_with(
        &feed,
        "acme/hello-1.1",
        &v11,
        "[[applies_to]]\nlabels = [\"site=hq\"]\n",
    );
    feed.publish(t);
    let bundle = feed.export(&tmp.path().join("full.pwb"), None, t);
    let site = Site::new(tmp.path(), "s", &[&feed]);
    let mut cfg = std::fs::read_to_string(&site.config).unwrap();
    cfg.push_str(
        "\n[[policy.rings]]\nname = \"pilot\"\n\
         gate = { canary = true, min_successes = 1, success_ratio = 0.0, soak = \"1s\" }\n\
         [[policy.rings]]\nname = \"broad\"\ncatch_all = true\n\
         [policy.windows.default]\ntz = \"UTC\"\n\
         weekly = [{ days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"], \
         start = \"00:00\", duration = \"24h\" }]\n",
    );
    std::fs::write(&site.config, cfg).unwrap();
    ok(site.import(&bundle));
    let server = Server::start_with(&site.data, &["--config", site.config.to_str().unwrap()]);
    let packages = |ring: &str| {
        crate::support::http()
            .get(format!(
                "{}/apt/{ring}/dists/{ring}/main/binary-amd64/Packages",
                server.url
            ))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default()
    };
    let wait_for = |ring: &str, what: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !packages(ring).contains(what) {
            assert!(
                std::time::Instant::now() < deadline,
                "{ring} never got {what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };

    // The pilot server: its apt source is the signed pilot repository.
    let sources = ok(run(site.cmd(&[
        "apt",
        "client-config",
        "--ring",
        "pilot",
        "--url",
        &server.url,
    ])));
    let (apt_config, admin, root) = sandbox_with(tmp.path(), "", Some(&sources));
    let token = ok(run(site.cmd(&[
        "hosts", "token", "create", "--ring", "pilot", "--labels", "site=hq",
    ])));
    let state = tmp.path().join("agent");
    let agent = |args: &[&str]| {
        let mut c = Command::new(AGENT);
        c.arg("--state-dir")
            .arg(&state)
            .args(args)
            .env("APT_CONFIG", &apt_config)
            .env("DPKG_ADMINDIR", &admin);
        ok(run(c))
    };
    agent(&[
        "enroll",
        "--server",
        &server.url,
        "--token",
        token.trim(),
        "--hostname",
        "deb1",
    ]);

    // Not approved: in no ring.
    agent(&["once"]);
    assert!(!packages("pilot").contains("Version: 1.1-1"));
    ok(run(site.cmd(&[
        "approve",
        "acme/hello-1.1",
        "--reason",
        "tested",
    ])));
    // The pilot's next check-in releases it to pilot (the job waits for the publish).
    agent(&["once"]);
    wait_for("pilot", "Version: 1.1-1");
    assert!(
        !packages("broad").contains("Version: 1.1-1"),
        "broad before the gate"
    );
    let out = agent(&["once"]);
    assert!(out.contains("succeeded"), "{out}");
    assert_eq!(
        std::fs::read_to_string(root.join("usr/share/patchward-test/hello")).unwrap(),
        "1.1-1"
    );
    // Gate: one success and a 1 s soak, and the pilot checks in again (health).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    agent(&["once"]);
    // Broad is released at the next rollout tick or a broad host's check-in: enroll one.
    let btoken = ok(run(
        site.cmd(&["hosts", "token", "create", "--labels", "site=hq"])
    ));
    let bstate = tmp.path().join("agent-b");
    let mut c = Command::new(AGENT);
    c.arg("--state-dir").arg(&bstate).args([
        "--no-reboot",
        "enroll",
        "--server",
        &server.url,
        "--token",
        btoken.trim(),
        "--hostname",
        "deb2",
    ]);
    ok(run(c));
    let mut c = Command::new(AGENT);
    // Its apt is not set up: the offer waits for the publish, so `once` only checks in.
    c.arg("--state-dir").arg(&bstate).args(["once"]);
    ok(run(c));
    wait_for("broad", "Version: 1.1-1");
    let audit = ok(run(site.cmd(&["audit", "list", "--json"])));
    assert!(audit.contains("apt.released"), "{audit}");
    assert!(audit.contains("rollout:acme:acme/hello-1.1"), "{audit}");
}
