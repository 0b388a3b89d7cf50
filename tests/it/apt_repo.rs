//! The per-ring apt repositories end to end, with this machine's real `apt-get` in a
//! sandbox (`APT_CONFIG` with `Dir::Etc::main "/dev/null"`, `Dir::Etc::parts`, and
//! state, cache and lists in a temp dir) against the real `patchward serve`:
//!
//! - real `.deb` files (dpkg-deb) travel through a signed bundle into the store; the
//!   appliance reads their control data at import;
//! - `apt release` (the boundary the rollout engine calls) puts version 1.0 into both
//!   rings and 1.1 into pilot only: apt on a pilot server sees 1.1, on a broad server
//!   only 1.0, until 1.1 is released to broad ("the gate passed"); the running server
//!   republishes on its own;
//! - `apt-get download` fetches the package from the pool, byte-identical to the
//!   original; the source file comes from `patchward apt client-config` (key embedded,
//!   no `trusted=yes`);
//! - the pool serves only what a ring has; path tricks and HEAD are answered correctly;
//! - a hostile `.deb` is refused at import with nothing stored.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use sha2::Digest;

use crate::apt_agent::{PKG, add_apt_patch, build_deb, sh};
use crate::feedkit::{Feed, Site};
use crate::jobs::ok;
use crate::support::{Server, http, run};

/// An apt sandbox for one server of `ring`, its source from `apt client-config`.
pub(crate) struct AptBox {
    pub dir: PathBuf,
    pub conf: PathBuf,
}

impl AptBox {
    pub fn new(parent: &Path, site: &Site, url: &str, ring: &str) -> AptBox {
        let dir = parent.join(format!("aptbox-{ring}"));
        for d in [
            "etc/apt.conf.d",
            "etc/sources.list.d",
            "etc/preferences.d",
            "state/lists/partial",
            "cache/archives/partial",
            "log",
            "downloads",
        ] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(dir.join("state/status"), "").unwrap();
        let sources = ok(run(site.cmd(&[
            "apt",
            "client-config",
            "--ring",
            ring,
            "--url",
            url,
        ])));
        assert!(sources.contains("Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----"));
        assert!(!sources.contains("trusted"), "{sources}");
        std::fs::write(
            dir.join(format!("etc/sources.list.d/patchward-{ring}.sources")),
            sources,
        )
        .unwrap();
        let d = dir.display();
        let conf = dir.join("apt.conf");
        std::fs::write(
            &conf,
            format!(
                "Dir::Etc::main \"/dev/null\";\nDir::Etc::parts \"{d}/etc/apt.conf.d\";\n\
                 Dir::Etc::sourcelist \"/dev/null\";\n\
                 Dir::Etc::sourceparts \"{d}/etc/sources.list.d\";\n\
                 Dir::Etc::trusted \"/dev/null\";\nDir::Etc::trustedparts \"{d}/etc/apt.conf.d\";\n\
                 Dir::Etc::preferences \"/dev/null\";\n\
                 Dir::Etc::preferencesparts \"{d}/etc/preferences.d\";\n\
                 Dir::State \"{d}/state\";\nDir::State::status \"{d}/state/status\";\n\
                 Dir::Cache \"{d}/cache\";\nDir::Log \"{d}/log\";\nDebug::NoLocking \"true\";\n\
                 APT::Sandbox::User \"root\";\nAPT::Architecture \"amd64\";\n\
                 APT::Architectures {{ \"amd64\"; }};\nAcquire::Languages \"none\";\n\
                 Acquire::Retries \"0\";\n"
            ),
        )
        .unwrap();
        AptBox { dir, conf }
    }

    pub fn apt(&self, tool: &str, args: &[&str]) -> String {
        sh(Command::new(tool)
            .env("APT_CONFIG", &self.conf)
            .env("LC_ALL", "C")
            .current_dir(self.dir.join("downloads"))
            .args(args))
    }

    /// `apt-get update`, which must succeed without warnings.
    pub fn update(&self) {
        let out = Command::new("apt-get")
            .env("APT_CONFIG", &self.conf)
            .env("LC_ALL", "C")
            .args(["update", "-q"])
            .output()
            .unwrap();
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{log}");
        assert!(
            !log.lines()
                .any(|l| l.starts_with("W:") || l.starts_with("E:")),
            "{log}"
        );
    }

    /// The versions of `PKG` apt knows from this box's repository.
    pub fn versions(&self) -> Vec<String> {
        let out = self.apt("apt-cache", &["madison", PKG]);
        let mut v: Vec<String> = out
            .lines()
            .filter_map(|l| l.split('|').nth(1))
            .map(|v| v.trim().to_owned())
            .collect();
        v.sort();
        v
    }
}

/// Waits (bounded) until the ring's published `Packages` satisfies `cond`.
fn wait_packages(url: &str, ring: &str, cond: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let u = format!("{url}/apt/{ring}/dists/{ring}/main/binary-amd64/Packages");
    loop {
        let text = http()
            .get(&u)
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default();
        if cond(&text) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ring {ring} was not republished within 20 s: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn sha256_file(p: &Path) -> String {
    hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

/// A site with patches `acme/hello-1.0` and `acme/hello-1.1` (real debs), imported.
pub(crate) fn hello_site(tmp: &Path) -> (Site, PathBuf, PathBuf) {
    let debs = tmp.join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    let v10 = build_deb(tmp, &debs, "1.0-1");
    let v11 = build_deb(tmp, &debs, "1.1-1");
    let t = Timestamp::now();
    let feed = Feed::init(tmp, "acme", t);
    add_apt_patch(&feed, "acme/hello-1.0", &v10);
    add_apt_patch(&feed, "acme/hello-1.1", &v11);
    feed.publish(t);
    let bundle = feed.export(&tmp.join("full.pwb"), None, t);
    let site = Site::new(tmp, "s", &[&feed]);
    ok(site.import(&bundle));
    (site, v10, v11)
}

#[test]
fn real_apt_sees_each_ring_and_downloads_the_original_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (site, v10, v11) = hello_site(tmp.path());
    let server = Server::start_with(&site.data, &["--config", site.config.to_str().unwrap()]);
    let url = server.url.clone();

    // Both default rings exist as signed, empty repositories from the start.
    let pilot = AptBox::new(tmp.path(), &site, &url, "pilot");
    let broad = AptBox::new(tmp.path(), &site, &url, "broad");
    pilot.update();
    broad.update();
    assert!(pilot.versions().is_empty());

    // 1.0 is everywhere; 1.1 is approved for pilot, whose gate has not passed yet.
    for (ring, patch) in [
        ("pilot", "acme/hello-1.0"),
        ("broad", "acme/hello-1.0"),
        ("pilot", "acme/hello-1.1"),
    ] {
        let out =
            ok(run(site.cmd(&[
                "apt", "release", "--ring", ring, "--patch", patch,
            ])));
        assert!(out.contains("released"), "{out}");
    }
    wait_packages(&url, "pilot", |p| p.contains("Version: 1.1-1"));
    wait_packages(&url, "broad", |p| p.contains("Version: 1.0-1"));
    pilot.update();
    broad.update();
    assert_eq!(pilot.versions(), ["1.0-1", "1.1-1"]);
    assert_eq!(broad.versions(), ["1.0-1"]);

    // apt-get download fetches the pool file: the original bytes.
    pilot.apt("apt-get", &["download", "-q", &format!("{PKG}=1.1-1")]);
    let got = pilot.dir.join(format!("downloads/{PKG}_1.1-1_all.deb"));
    assert_eq!(sha256_file(&got), sha256_file(&v11));

    // The pool serves a blob only to the rings it was released to.
    let sha11 = sha256_file(&v11);
    let pool = |ring: &str, sha: &str| {
        format!(
            "{url}/apt/{ring}/pool/main/{}/{sha}/{PKG}_1.1-1_all.deb",
            &sha[..2]
        )
    };
    assert_eq!(
        http().get(pool("pilot", &sha11)).send().unwrap().status(),
        200
    );
    assert_eq!(
        http().get(pool("broad", &sha11)).send().unwrap().status(),
        404
    );
    // HEAD and Range on a pool file.
    let head = http().head(pool("pilot", &sha11)).send().unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        std::fs::metadata(&v11).unwrap().len().to_string()
    );
    let part = http()
        .get(pool("pilot", &sha11))
        .header("Range", "bytes=0-7")
        .send()
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().unwrap().as_ref(), b"!<arch>\n");

    // The gate passes: 1.1 goes to broad, and broad's apt sees it without a restart.
    ok(run(site.cmd(&[
        "apt",
        "release",
        "--ring",
        "broad",
        "--patch",
        "acme/hello-1.1",
    ])));
    wait_packages(&url, "broad", |p| p.contains("Version: 1.1-1"));
    broad.update();
    assert_eq!(broad.versions(), ["1.0-1", "1.1-1"]);
    broad.apt("apt-get", &["download", "-q", &format!("{PKG}=1.0-1")]);
    let got = broad.dir.join(format!("downloads/{PKG}_1.0-1_all.deb"));
    assert_eq!(sha256_file(&got), sha256_file(&v10));

    // Withdrawn (a halted rollout): gone from the index and the pool.
    ok(run(site.cmd(&[
        "apt",
        "withdraw",
        "--ring",
        "pilot",
        "--patch",
        "acme/hello-1.1",
    ])));
    wait_packages(&url, "pilot", |p| !p.contains("Version: 1.1-1"));
    assert_eq!(
        http().get(pool("pilot", &sha11)).send().unwrap().status(),
        404
    );
    pilot.update();
    assert_eq!(pilot.versions(), ["1.0-1"]);

    // Audited, and `apt status` shows the rings.
    let audit = ok(run(site.cmd(&["audit", "list", "--json"])));
    assert!(audit.contains("apt.released") && audit.contains("apt.withdrawn"));
    let status = ok(run(site.cmd(&["apt", "status", "--json"])));
    let rows: serde_json::Value = serde_json::from_str(&status).unwrap();
    let broad_row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ring"] == "broad")
        .unwrap();
    assert_eq!(broad_row["packages"], 2, "{status}");
}

#[test]
fn the_apt_endpoints_serve_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let (site, _v10, v11) = hello_site(tmp.path());
    let server = Server::start_with(&site.data, &["--config", site.config.to_str().unwrap()]);
    let url = &server.url;
    let get = |path: &str| http().get(format!("{url}{path}")).send().unwrap();

    let key = get("/apt/key.asc");
    assert_eq!(key.status(), 200);
    assert!(key.text().unwrap().contains("BEGIN PGP PUBLIC KEY BLOCK"));
    let inrelease = get("/apt/pilot/dists/pilot/InRelease");
    assert_eq!(inrelease.status(), 200);
    let text = inrelease.text().unwrap();
    assert!(
        text.contains("Acquire-By-Hash: yes") && text.contains("Valid-Until: "),
        "{text}"
    );
    let head = http()
        .head(format!("{url}/apt/pilot/dists/pilot/Release"))
        .send()
        .unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.headers().contains_key("content-length"));
    let sources = get("/apt/pilot/patchward.sources").text().unwrap();
    assert!(
        sources.contains(&format!("URIs: {url}/apt/pilot")),
        "{sources}"
    );

    // Nothing outside the published trees, whatever the path says.
    let sha11 = sha256_file(&v11);
    for bad in [
        "/apt/pilot/dists/pilot/../../../../patchward.db",
        "/apt/pilot/dists/pilot/%2e%2e/%2e%2e/gen",
        "/apt/pilot/dists/pilot/.%2e/current",
        "/apt/pilot/dists/broad/InRelease",
        "/apt/nosuchring/dists/nosuchring/InRelease",
        "/apt/..%2f..%2fkeys/dists/x/InRelease",
        "/apt/pilot/dists/pilot/main/binary-amd64/by-hash/SHA256/..%2f..%2f..%2fcurrent",
        "/apt/pilot/keys/apt.pgp",
        "/apt/pilot/by-hash",
        &format!("/apt/pilot/pool/main/{}/{sha11}/x.deb", &sha11[..2]),
        &format!("/apt/pilot/pool/main/zz/{sha11}/x.deb"),
    ] {
        // A path that normalises to outside /apt/ (`..`) is the HTTP listener's
        // redirect to the admin page, which serves nothing without a session.
        let r = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(format!("{url}{bad}"))
            .send()
            .unwrap();
        let redirected_away = r.status() == 308 && !r.url().path().starts_with("/apt/");
        assert!(
            r.status() == 404 || redirected_away,
            "{bad}: {}",
            r.status()
        );
        let body = r.text().unwrap();
        assert!(
            !body.contains("/tmp") && !body.contains("BEGIN PGP PRIVATE"),
            "{bad}: {body}"
        );
    }
}

#[test]
fn a_hostile_deb_is_refused_at_import_and_nothing_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let t = Timestamp::now();
    let feed = Feed::init(tmp.path(), "acme", t);
    let work = tmp.path().join("w");
    std::fs::create_dir_all(&work).unwrap();
    // An ar archive whose control file has two Package fields, and one that is no
    // archive at all.
    let bad_control = work.join("dup_1_all.deb");
    let mut ar = b"!<arch>\n".to_vec();
    let mut member = |name: &str, body: &[u8]| {
        ar.extend_from_slice(
            format!(
                "{name:<16}0           0     0     100644  {:<10}`\n",
                body.len()
            )
            .as_bytes(),
        );
        ar.extend_from_slice(body);
        if body.len() % 2 == 1 {
            ar.push(b'\n');
        }
    };
    member("debian-binary", b"2.0\n");
    let mut t_ = tar::Builder::new(Vec::new());
    let control = b"Package: a\nPackage: b\nVersion: 1\nArchitecture: all\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(control.len() as u64);
    h.set_mode(0o644);
    t_.append_data(&mut h, "./control", &control[..]).unwrap();
    member("control.tar", &t_.into_inner().unwrap());
    std::fs::write(&bad_control, &ar).unwrap();
    let not_deb = work.join("junk_1_all.deb");
    std::fs::write(&not_deb, b"#!/bin/sh\necho not a package\n").unwrap();

    for (id, deb, why) in [
        ("acme/dup", &bad_control, "appears twice"),
        ("acme/junk", &not_deb, "not a Debian package"),
    ] {
        let before_dir = tmp.path().join(format!("case-{}", id.replace('/', "-")));
        std::fs::create_dir_all(&before_dir).unwrap();
        let f = Feed::init(&before_dir, "acme", t);
        add_apt_patch(&f, id, deb);
        f.publish(t);
        let bundle = f.export(&before_dir.join("b.pwb"), None, t);
        let site = Site::new(&before_dir, "s", &[&f]);
        let before = site.snapshot();
        let out = site.import(&bundle);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("is not a usable Debian package") && err.contains(why),
            "{err}"
        );
        // Nothing committed, and (issue [8] item 6) the package's blob is not left in
        // the store either: the snapshot covers the store's files too.
        assert_eq!(site.snapshot(), before, "{id}: nothing committed or stored");
        let conn = rusqlite::Connection::open(site.data.join("patchward.db")).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM deb_packages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }
    drop(feed);
}
