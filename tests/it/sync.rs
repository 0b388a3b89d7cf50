//! Online sync over HTTP against a local upstream ([`Upstream`]) serving a feed built
//! with the MSP tools: same result as the offline bundle, resume through injected
//! faults with near-zero extra bytes, an unreachable upstream as a normal state, and
//! incremental sync that moves only the new blob.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rand::RngCore;

use patchward::feed::tools::{self, InitOptions};

use crate::support::{Server, patchward, run, stderr, stdout};
use crate::upstream::{Fault, Upstream};

/// An MSP feed directory under construction.
struct Feed {
    dir: PathBuf,
    work: PathBuf,
}

impl Feed {
    fn new(work: &Path, name: &str) -> Feed {
        let dir = work.join(name);
        let opts = InitOptions {
            name: Some(name.into()),
            ..InitOptions::default()
        };
        tools::init(&dir, &opts, Timestamp::now()).unwrap();
        let work = work.join(format!("{name}-inputs"));
        std::fs::create_dir_all(&work).unwrap();
        Feed { dir, work }
    }

    /// Adds (or replaces) patch `id` with one artifact of `size` random bytes; returns
    /// the artifact's sha256.
    fn add(&self, id: &str, artifact: &str, size: usize) -> String {
        let toml = format!(
            "id = \"{id}\"\ntitle = \"Update {id}\"\nkind = \"security\"\nseverity = \"high\"\n\
             cves = [\"CVE-2026-0001\"]\nreleased = \"2026-11-01T00:00:00Z\"\ninstall = \"apt\"\n\
             est_minutes = 5\n\n[[applies_to]]\nos = \"debian\"\nversion = \"12\"\n\n\
             [[artifacts]]\nname = \"{artifact}\"\nformat = \"file\"\n"
        );
        let p = self.work.join(format!("{artifact}.toml"));
        std::fs::write(&p, toml).unwrap();
        let mut bytes = vec![0u8; size];
        rand::thread_rng().fill_bytes(&mut bytes);
        let a = self.work.join(artifact);
        std::fs::write(&a, &bytes).unwrap();
        let r = tools::add_patch(&self.dir, &p, std::slice::from_ref(&a)).unwrap();
        r.artifacts[0].sha256.clone()
    }

    fn publish(&self) -> u64 {
        tools::publish(&self.dir, &[], Timestamp::now())
            .unwrap()
            .catalog_version
    }

    fn public(&self) -> PathBuf {
        self.dir.join("public")
    }

    fn pinned_root(&self) -> PathBuf {
        self.public().join("root/1.root.json")
    }

    fn export_full(&self, out: &Path) {
        tools::export(&self.dir, out, None, Timestamp::now()).unwrap();
    }

    fn blob_size(&self, sha: &str) -> u64 {
        std::fs::metadata(self.public().join("blobs/sha256").join(sha))
            .unwrap()
            .len()
    }
}

/// An appliance data directory with a config naming one source.
struct Site {
    data: PathBuf,
    config: PathBuf,
}

impl Site {
    fn new(work: &Path, label: &str, feed: &str, url: &str, root: &Path) -> Site {
        let data = work.join(format!("{label}-data"));
        let config = work.join(format!("{label}.toml"));
        std::fs::write(
            &config,
            format!(
                "[[mirror.sources]]\nname = {feed:?}\nurl = {url:?}\nroot = {:?}\ninterval = \"1h\"\n",
                root.display().to_string()
            ),
        )
        .unwrap();
        let cfg = patchward::config::Config::load(
            Some(&config),
            &patchward::config::Overrides {
                data_dir: Some(data.clone()),
                ..Default::default()
            },
        )
        .unwrap();
        let clock: patchward::clock::SharedClock = Arc::new(patchward::clock::SystemClock);
        patchward::appliance::Appliance::init(&cfg, &clock).unwrap();
        Site { data, config }
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        let mut c = patchward(&self.data);
        c.arg("--config").arg(&self.config).args(args);
        c.env("PATCHWARD_LOG", "warn");
        run(c)
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.cmd(args);
        assert!(
            o.status.success(),
            "{args:?} failed:\n{}\n{}",
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    /// `patches list --json` without the per-site `first_seen`.
    fn patches(&self) -> serde_json::Value {
        let mut v: serde_json::Value =
            serde_json::from_str(&self.ok(&["patches", "list", "--json"])).unwrap();
        for row in v.as_array_mut().unwrap() {
            row.as_object_mut().unwrap().remove("first_seen");
        }
        v
    }

    fn has_blob(&self, sha: &str) -> bool {
        self.data
            .join("store/sha256")
            .join(&sha[..2])
            .join(sha)
            .is_file()
    }

    fn sync_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["mirror", "sync", "--json"])).unwrap()
    }
}

#[test]
fn sync_matches_the_bundle_and_incremental_sync_moves_only_the_new_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let feed = Feed::new(work, "msp");
    let blobs = [
        feed.add("DSA-1/openssl", "openssl_1_amd64.deb", 300 << 10),
        feed.add("DSA-2/curl", "curl_2_amd64.deb", 1 << 20),
        feed.add("DSA-3/zlib", "zlib_3_amd64.deb", (2 << 20) + 17),
    ];
    assert_eq!(feed.publish(), 1);
    let up = Upstream::start(&feed.public());

    // (a) Online sync gives what the offline bundle gives.
    let online = Site::new(work, "online", "msp", &up.url, &feed.pinned_root());
    let s = online.sync_json();
    assert_eq!(s["catalog_version"], 1, "{s}");
    let missing: u64 = blobs.iter().map(|b| feed.blob_size(b)).sum();
    assert_eq!(s["bytes_stored"], missing, "{s}");
    assert_eq!(up.counters().blob_body_bytes, missing);
    assert!(blobs.iter().all(|b| online.has_blob(b)));

    let bundle = work.join("full.pwb");
    feed.export_full(&bundle);
    let offline = Site::new(
        work,
        "offline",
        "msp",
        "file:///nonexistent",
        &feed.pinned_root(),
    );
    offline.ok(&["import", bundle.to_str().unwrap()]);
    let listed = online.patches();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert_eq!(listed, offline.patches());

    // A second sync of the same catalog moves only the timestamp: no blob, and not the
    // catalog either (the stored envelope matches what the timestamp names).
    up.reset();
    let s = online.sync_json();
    assert_eq!(s["already_current"], true, "{s}");
    let ts_len = std::fs::metadata(feed.public().join("timestamp.json"))
        .unwrap()
        .len();
    assert_eq!(up.counters().body_bytes, ts_len, "{:?}", up.counters());

    // (d) Version 2 replaces one artifact: only its bytes travel.
    let new_blob = feed.add("DSA-2/curl", "curl_2b_amd64.deb", 700 << 10);
    assert_eq!(feed.publish(), 2);
    up.reset();
    let s = online.sync_json();
    assert_eq!(s["catalog_version"], 2, "{s}");
    assert_eq!(s["previous_version"], 1, "{s}");
    let c = up.counters();
    assert_eq!(c.blob_body_bytes, feed.blob_size(&new_blob), "{c:?}");
    assert_eq!(s["bytes_stored"], feed.blob_size(&new_blob), "{s}");
    assert!(online.has_blob(&new_blob));
    let rows = online.patches();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["catalog_version"] == 2),
        "{rows}"
    );
}

#[test]
fn sync_resumes_through_500s_and_dropped_connections_within_5_percent_of_the_missing_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let feed = Feed::new(work, "msp");
    let blobs = [
        feed.add("DSA-1/openssl", "openssl_1_amd64.deb", 512 << 10),
        feed.add("DSA-2/curl", "curl_2_amd64.deb", 3 << 20),
        feed.add("DSA-3/zlib", "zlib_3_amd64.deb", (1 << 20) + 3),
    ];
    feed.publish();
    let up = Upstream::start(&feed.public());
    let fault = Fault {
        errors: 2,
        drops: 2,
        ..Fault::default()
    };
    for b in &blobs {
        up.fault(&format!("blobs/sha256/{b}"), fault);
    }
    // Metadata fails once too: retried like blobs.
    up.fault(
        "timestamp.json",
        Fault {
            errors: 1,
            ..Fault::default()
        },
    );

    let site = Site::new(work, "site", "msp", &up.url, &feed.pinned_root());
    let started = Instant::now();
    let s = site.sync_json();
    assert_eq!(s["catalog_version"], 1, "{s}");
    assert!(blobs.iter().all(|b| site.has_blob(b)));
    assert!(started.elapsed() < Duration::from_secs(60));

    let c = up.counters();
    let missing: u64 = blobs.iter().map(|b| feed.blob_size(b)).sum();
    assert_eq!(c.errors_sent, 3 * 2 + 1, "{c:?}");
    assert_eq!(c.drops_done, 3 * 2, "{c:?}");
    // Every dropped download continued with a Range request.
    assert!(c.blob_range_requests >= 3 * 2, "{c:?}");
    let ratio = c.blob_body_bytes as f64 / missing as f64;
    assert!(
        (1.0..=1.05).contains(&ratio),
        "sent {} blob bytes for {missing} missing ({ratio:.4}x)",
        c.blob_body_bytes
    );
    // What the appliance counted matches what the server sent (less the 500 bodies).
    let counted = s["bytes_stored"].as_u64().unwrap();
    assert!(
        counted >= missing && counted <= c.blob_body_bytes,
        "{s} {c:?}"
    );
    assert_eq!(site.patches().as_array().unwrap().len(), 3);
}

#[test]
fn an_unreachable_upstream_fails_the_sync_clearly_and_keeps_serving_the_catalog() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let feed = Feed::new(work, "msp");
    feed.add("DSA-1/openssl", "openssl_1_amd64.deb", 64 << 10);
    feed.publish();
    let bundle = work.join("full.pwb");
    feed.export_full(&bundle);

    // A port with nothing listening: bind, note, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/");
    let site = Site::new(work, "site", "msp", &url, &feed.pinned_root());
    site.ok(&["import", bundle.to_str().unwrap()]);

    let started = Instant::now();
    let o = site.cmd(&["mirror", "sync"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains(&format!("cannot fetch {url}")), "{e}");
    assert!(e.contains("connection refused"), "{e}");
    assert!(
        e.contains("the appliance keeps serving catalog version 1"),
        "{e}"
    );
    assert!(!e.contains("panicked"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(20));

    let status = site.ok(&["mirror", "status"]);
    assert!(status.contains("last error"), "{status}");
    assert!(status.contains("connection refused"), "{status}");
    assert!(status.contains("catalog version  1"), "{status}");
    assert_eq!(site.patches().as_array().unwrap().len(), 1);
}

#[test]
fn the_server_syncs_each_source_on_its_schedule() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let feed = Feed::new(work, "msp");
    let blob = feed.add("DSA-1/openssl", "openssl_1_amd64.deb", 100 << 10);
    feed.publish();
    let up = Upstream::start(&feed.public());
    let site = Site::new(work, "site", "msp", &up.url, &feed.pinned_root());
    let _server = Server::start_with(&site.data, &["--config", site.config.to_str().unwrap()]);

    // The first scheduled sync runs 2-10 s after start.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let st: serde_json::Value =
            serde_json::from_str(&site.ok(&["mirror", "status", "--json"])).unwrap();
        let src = &st["sources"][0];
        if src["last_success"].is_string() {
            assert_eq!(src["catalog_version"], 1, "{st}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled sync within 40 s: {st}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(site.has_blob(&blob));
    let audit = site.ok(&["audit", "list", "--json"]);
    assert!(audit.contains("scheduler"), "{audit}");
}

#[test]
fn a_server_without_range_support_still_completes_and_a_missing_blob_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let feed = Feed::new(work, "msp");
    let blob = feed.add("DSA-1/openssl", "openssl_1_amd64.deb", 1 << 20);
    feed.publish();
    let up = Upstream::start(&feed.public());
    // Drops once, then answers the resume with the whole blob (200): the reader skips
    // the prefix it has, so the store still sees one stream.
    up.fault(
        &format!("blobs/sha256/{blob}"),
        Fault {
            drops: 1,
            ignore_range: true,
            ..Fault::default()
        },
    );
    let site = Site::new(work, "site", "msp", &up.url, &feed.pinned_root());
    let s = site.sync_json();
    assert_eq!(s["catalog_version"], 1, "{s}");
    assert!(site.has_blob(&blob));
    let c = up.counters();
    let size = feed.blob_size(&blob);
    assert_eq!(c.blob_range_requests, 1, "{c:?}");
    assert_eq!(c.blob_body_bytes, size / 2 + size, "{c:?}");

    // Version 2 names a blob the server does not have: 404 is final, reported with its
    // URL, and version 1 stays in service.
    let gone = feed.add("DSA-2/curl", "curl_2_amd64.deb", 10 << 10);
    feed.publish();
    std::fs::remove_file(feed.public().join("blobs/sha256").join(&gone)).unwrap();
    let started = Instant::now();
    let o = site.cmd(&["mirror", "sync"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&format!(
            "cannot fetch {}blobs/sha256/{gone}: HTTP 404",
            up.url
        )),
        "{e}"
    );
    assert!(e.contains("keeps serving catalog version 1"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "404 must not be retried"
    );
    let rows = site.patches();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert!(!site.has_blob(&gone));
}
