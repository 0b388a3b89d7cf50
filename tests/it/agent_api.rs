//! The agent API under hostile use, with the real server binary: a signed check-in
//! captured before a restart (clean or a crash) is refused after it and rolls nothing
//! back (issue [8] item 3); one enrolled host flooding requests and holding downloads
//! open does not stop another host's check-ins and downloads, whose p99 latencies the
//! test prints (item 2; figures in BENCHMARKS.md).

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use patchward::fleet::signing;
use patchward::trust::keys::Ed25519Key;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::feedkit::{Feed, Site, pseudo_random};
use crate::support::{Server, http, patchward, run, stderr, stdout};

const AGENT: &str = env!("CARGO_BIN_EXE_patchward-agent");
const CHECKIN: &str = "/api/agent/v1/checkin";

/// An enrolled host, signing its own requests.
struct Host {
    url: String,
    id: String,
    key: Ed25519Key,
}

impl Host {
    fn enroll(
        server: &Server,
        data: &Path,
        config: Option<&Path>,
        state: &Path,
        name: &str,
    ) -> Host {
        let o = run({
            let mut c = patchward(data);
            if let Some(cfg) = config {
                c.arg("--config").arg(cfg);
            }
            c.args(["hosts", "token", "create"]);
            c
        });
        assert!(o.status.success(), "{}", stderr(&o));
        let token = stdout(&o).trim().to_string();
        let o = run({
            let mut c = Command::new(AGENT);
            c.arg("--state-dir").arg(state);
            c.args(["enroll", "--server", &server.url, "--token", &token])
                .args(["--hostname", name]);
            c
        });
        assert!(o.status.success(), "{}", stderr(&o));
        let st: Value =
            serde_json::from_slice(&std::fs::read(state.join("state.json")).unwrap()).unwrap();
        Host {
            url: server.url.clone(),
            id: st["host_id"].as_str().unwrap().to_string(),
            key: Ed25519Key::load(&state.join("host.ed25519")).unwrap(),
        }
    }

    /// A check-in body reporting `kernel` (a small inventory, no packages).
    fn body(name: &str, kernel: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({ "inventory": {
            "os": { "id": "debian", "version_id": "12" },
            "kernel": kernel, "arch": "x86_64", "hostname": name,
            "packages": [], "uptime_s": 100, "reboot_required": false,
        }}))
        .unwrap()
    }

    fn sign(&self, method: &str, path: &str, body: &[u8]) -> signing::SignedHeaders {
        signing::sign(
            &self.key,
            &self.id,
            method,
            path,
            jiff::Timestamp::now(),
            body,
        )
    }

    fn send(&self, h: &signing::SignedHeaders, body: &[u8]) -> reqwest::blocking::Response {
        let mut r = http()
            .post(format!("{}{CHECKIN}", self.url))
            .body(body.to_vec());
        for (k, v) in h.pairs() {
            r = r.header(k, v);
        }
        r.send().unwrap()
    }

    fn get(&self, client: &reqwest::blocking::Client, hex: &str) -> reqwest::blocking::Response {
        let path = format!("/api/agent/v1/artifacts/sha256/{hex}");
        let h = self.sign("GET", &path, b"");
        let mut r = client.get(format!("{}{path}", self.url));
        for (k, v) in h.pairs() {
            r = r.header(k, v);
        }
        r.send().unwrap()
    }

    /// Starts a signed download and never reads the answer: the connection is kept.
    fn hold_download(&self, hex: &str) -> TcpStream {
        let path = format!("/api/agent/v1/artifacts/sha256/{hex}");
        let h = self.sign("GET", &path, b"");
        let addr = self.url.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).unwrap();
        let mut req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n");
        for (k, v) in h.pairs() {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s
    }
}

fn kernel_of(data: &Path, host: &str) -> String {
    let o = run({
        let mut c = patchward(data);
        c.args(["hosts", "show", host, "--json"]);
        c
    });
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    v["kernel"]
        .as_str()
        .unwrap_or_else(|| panic!("no kernel in {v}"))
        .to_string()
}

#[test]
fn a_check_in_captured_before_a_restart_is_refused_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Server::start(&data);
    let host = Host::enroll(&server, &data, None, &tmp.path().join("a"), "web1");

    // Two check-ins: the first (captured) reports kernel "old", the second "new".
    let old = Host::body("web1", "old");
    let captured = host.sign("POST", CHECKIN, &old);
    assert_eq!(host.send(&captured, &old).status(), 200);
    let new = Host::body("web1", "new");
    assert_eq!(
        host.send(&host.sign("POST", CHECKIN, &new), &new).status(),
        200
    );
    assert_eq!(kernel_of(&data, "web1"), "new");

    // A clean restart: the captured check-in is refused and changes nothing; a fresh
    // one is accepted at once.
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0));
    let server = Server::start(&data);
    let host = Host {
        url: server.url.clone(),
        ..host
    };
    let r = host.send(&captured, &old);
    let status = r.status();
    let why = r.text().unwrap();
    assert!(status == 401 || status == 503, "{status} {why}");
    assert!(
        why.contains("replayed") || why.contains("restarted"),
        "{why}"
    );
    assert_eq!(kernel_of(&data, "web1"), "new");
    let latest = Host::body("web1", "latest");
    let latest_h = host.sign("POST", CHECKIN, &latest);
    assert_eq!(host.send(&latest_h, &latest).status(), 200);
    assert_eq!(kernel_of(&data, "web1"), "latest");

    // A crash (SIGKILL, no shutdown path): both captured check-ins are refused after
    // the next start, and nothing rolls back.
    drop(server);
    let server = Server::start(&data);
    let host = Host {
        url: server.url.clone(),
        ..host
    };
    for (h, b) in [(&captured, &old), (&latest_h, &latest)] {
        let r = host.send(h, b);
        let status = r.status();
        let why = r.text().unwrap();
        assert!(status == 401 || status == 503, "{status} {why}");
        assert_eq!(kernel_of(&data, "web1"), "latest");
    }
    // And the host's next real check-in is accepted.
    let after = Host::body("web1", "after");
    assert_eq!(
        host.send(&host.sign("POST", CHECKIN, &after), &after)
            .status(),
        200
    );
    assert_eq!(kernel_of(&data, "web1"), "after");
}

fn p99(mut v: Vec<Duration>) -> Duration {
    assert!(!v.is_empty());
    v.sort();
    v[(v.len() * 99).div_ceil(100) - 1]
}

#[test]
fn one_host_flooding_and_holding_downloads_does_not_stop_another() {
    const BIG: usize = 16 << 20;
    const SMALL: usize = 200_000;
    let tmp = tempfile::tempdir().unwrap();
    let t = jiff::Timestamp::now();
    let mut feed = Feed::init(tmp.path(), "msp-main", t);
    feed.add("DSA-1/big", "high", "CVE-2099-0001", BIG, 7);
    feed.add("DSA-2/small", "high", "CVE-2099-0002", SMALL, 8);
    feed.publish(t);
    let bundle = feed.export(&tmp.path().join("full.pwb"), None, t);
    let site = Site::new(tmp.path(), "a", &[&feed]);
    // Generous enough for the measuring host's pace (10 requests a second), and a
    // stall time the test can wait out.
    let mut cfg = std::fs::read_to_string(&site.config).unwrap();
    cfg.push_str(
        "\n[agent_api]\nrequests_per_minute = 1200\nburst = 40\ndownloads_per_host = 4\n\
         download_stall_secs = 2\n",
    );
    std::fs::write(&site.config, cfg).unwrap();
    let out = site.import(&bundle);
    assert!(out.status.success(), "{}", stderr(&out));
    let server = Server::start_with(&site.data, &["--config", site.config.to_str().unwrap()]);
    let config = Some(site.config.as_path());
    let noisy = std::sync::Arc::new(Host::enroll(
        &server,
        &site.data,
        config,
        &tmp.path().join("n"),
        "noisy",
    ));
    let quiet = Host::enroll(&server, &site.data, config, &tmp.path().join("q"), "quiet");
    for (patch, host) in [("DSA-1/big", "noisy"), ("DSA-2/small", "quiet")] {
        let o = run(site.cmd(&["deploy", "--patch", patch, "--host", host]));
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let big = hex::encode(Sha256::digest(pseudo_random(BIG, 7)));
    let small = pseudo_random(SMALL, 8);
    let small_hex = hex::encode(Sha256::digest(&small));

    // The noisy host opens far more downloads than the 64 slots and reads none of
    // them, and floods signed check-ins from four threads.
    let held: Vec<TcpStream> = (0..80).map(|_| noisy.hold_download(&big)).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooders: Vec<_> = (0..4)
        .map(|_| {
            let (stop, h) = (stop.clone(), noisy.clone());
            std::thread::spawn(move || {
                let body = Host::body("noisy", "k");
                let (mut sent, mut limited) = (0u64, 0u64);
                let start = Instant::now();
                while !stop.load(std::sync::atomic::Ordering::Relaxed)
                    && start.elapsed() < Duration::from_secs(60)
                {
                    let r = h.send(&h.sign("POST", CHECKIN, &body), &body);
                    sent += 1;
                    if r.status() == 429 {
                        assert!(r.headers().contains_key("retry-after"));
                        limited += 1;
                    }
                }
                (sent, limited)
            })
        })
        .collect();

    // Meanwhile the quiet host checks in and downloads, ten requests a second.
    let client = http();
    let (mut checkins, mut downloads) = (Vec::new(), Vec::new());
    let body = Host::body("quiet", "k");
    for i in 0..100 {
        let paced = Instant::now();
        let t0 = Instant::now();
        if i % 2 == 0 {
            let r = quiet.send(&quiet.sign("POST", CHECKIN, &body), &body);
            assert_eq!(r.status(), 200, "check-in {i}: {}", r.text().unwrap());
            checkins.push(t0.elapsed());
        } else {
            let r = quiet.get(&client, &small_hex);
            assert_eq!(r.status(), 200, "download {i}");
            assert_eq!(&r.bytes().unwrap()[..], &small[..], "download {i}");
            downloads.push(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100).saturating_sub(paced.elapsed()));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut sent, mut limited) = (0, 0);
    for f in flooders {
        let (s, l) = f.join().unwrap();
        sent += s;
        limited += l;
    }
    // The flood was real, and the noisy host was held to its rate.
    assert!(
        sent > 200 && limited > sent / 2,
        "sent {sent}, limited {limited}"
    );

    let (pc, pd) = (p99(checkins.clone()), p99(downloads.clone()));
    println!(
        "while another host flooded ({sent} check-ins, {limited} refused with 429) and \
         held 80 downloads open: quiet host's check-ins p99 {:.1} ms ({} samples), \
         {SMALL}-byte downloads p99 {:.1} ms ({} samples)",
        pc.as_secs_f64() * 1e3,
        checkins.len(),
        pd.as_secs_f64() * 1e3,
        downloads.len()
    );
    assert!(
        pc < Duration::from_secs(2) && pd < Duration::from_secs(2),
        "{pc:?} {pd:?}"
    );

    // The held downloads stalled: after the stall time their slots are free, so the
    // noisy host may download again (its rate has refilled by then too).
    std::thread::sleep(Duration::from_secs(4));
    let r = noisy.get(&client, &big);
    assert_eq!(r.status(), 200, "{:?}", r.headers());
    assert_eq!(r.bytes().unwrap().len(), BIG);
    drop(held);
}
