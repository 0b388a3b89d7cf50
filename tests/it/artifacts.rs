//! The agent artifact endpoint end to end: a feed imported, `patchward serve` running,
//! agents enrolled with the real binary, jobs created with `patchward deploy`, and signed
//! GETs for whole blobs, ranges, conditional requests, a resumed download, and the
//! refusals: another host's blob and an unknown blob get the same 403 (a host cannot
//! probe the store), a blob its job names but the store lost gets 404.

use std::path::Path;
use std::process::Command;

use patchward::fleet::signing;
use patchward::trust::keys::Ed25519Key;
use sha2::{Digest, Sha256};

use crate::feedkit::{Feed, Site, pseudo_random};
use crate::support::{Server, http, patchward, run, stderr, stdout};

/// The 403 body for a blob no job of the host names (`web::artifacts::NOT_YOURS`).
const NOT_YOURS: &str = r#"{"error":"no job of this host lists this artifact"}"#;

const AGENT: &str = env!("CARGO_BIN_EXE_patchward-agent");
const SIZE: usize = 300_001;

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

struct Client {
    url: String,
    host: String,
    key: Ed25519Key,
}

impl Client {
    /// A GET signed over the path with an empty body, with extra headers.
    fn get(&self, hex: &str, extra: &[(&str, &str)]) -> reqwest::blocking::Response {
        let path = format!("/api/agent/v1/artifacts/sha256/{hex}");
        let h = signing::sign(
            &self.key,
            &self.host,
            "GET",
            &path,
            jiff::Timestamp::now(),
            b"",
        );
        let mut r = http().get(format!("{}{path}", self.url));
        for (k, v) in h.pairs().iter().chain(extra) {
            r = r.header(*k, *v);
        }
        r.send().unwrap()
    }
}

fn enroll(server: &Server, data: &Path, config: &Path, state: &Path, name: &str) -> Client {
    let o = run({
        let mut c = patchward(data);
        c.arg("--config").arg(config);
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
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("state.json")).unwrap()).unwrap();
    Client {
        url: server.url.clone(),
        host: st["host_id"].as_str().unwrap().to_string(),
        key: Ed25519Key::load(&state.join("host.ed25519")).unwrap(),
    }
}

fn deploy(data: &Path, config: &Path, patch: &str, host: &str) {
    let o = run({
        let mut c = patchward(data);
        c.arg("--config").arg(config);
        c.args(["deploy", "--patch", patch, "--host", host]);
        c
    });
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn signed_downloads_ranges_conditionals_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let t = jiff::Timestamp::now();
    let mut feed = Feed::init(tmp.path(), "msp-main", t);
    feed.add("DSA-1/openssl", "high", "CVE-2099-0001", SIZE, 7);
    feed.add("DSA-2/curl", "high", "CVE-2099-0002", 5000, 8);
    feed.publish(t);
    let bundle = feed.export(&tmp.path().join("full.pwb"), None, t);
    let site = Site::new(tmp.path(), "a", &[&feed]);
    let out = site.import(&bundle);
    assert!(out.status.success(), "{}", stderr(&out));
    let server = Server::start_with(&site.data, &["--config", site.config.to_str().unwrap()]);

    let bytes = pseudo_random(SIZE, 7);
    let hex = sha(&bytes);
    let other_hex = sha(&pseudo_random(5000, 8));
    let etag = format!("\"{hex}\"");
    let a = enroll(
        &server,
        &site.data,
        &site.config,
        &tmp.path().join("a1"),
        "web1",
    );
    let b = enroll(
        &server,
        &site.data,
        &site.config,
        &tmp.path().join("a2"),
        "web2",
    );

    // No job yet: 403, even with a matching If-None-Match (no 304 that would confirm
    // the blob exists).
    let r = a.get(&hex, &[]);
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().unwrap(), NOT_YOURS);
    assert_eq!(a.get(&hex, &[("if-none-match", &etag)]).status(), 403);

    // web1 gets a job for DSA-1, web2 one for DSA-2.
    deploy(&site.data, &site.config, "DSA-1/openssl", "web1");
    deploy(&site.data, &site.config, "DSA-2/curl", "web2");

    // The whole blob.
    let r = a.get(&hex, &[]);
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["etag"], etag.as_str());
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["content-length"], SIZE.to_string().as_str());
    assert_eq!(h["cache-control"], "private, max-age=31536000, immutable");
    let body = r.bytes().unwrap();
    assert_eq!(sha(&body), hex);

    // A middle slice.
    let r = a.get(&hex, &[("range", "bytes=1000-1999")]);
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 1000-1999/{SIZE}").as_str()
    );
    assert_eq!(&r.bytes().unwrap()[..], &bytes[1000..2000]);

    // The last ten bytes.
    let r = a.get(&hex, &[("range", "bytes=-10")]);
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes {}-{}/{SIZE}", SIZE - 10, SIZE - 1).as_str()
    );
    assert_eq!(&r.bytes().unwrap()[..], &bytes[SIZE - 10..]);

    // Past the end: 416 with the size.
    let r = a.get(&hex, &[("range", &format!("bytes={SIZE}-"))]);
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{SIZE}").as_str()
    );

    // Multi-range: the whole blob.
    let r = a.get(&hex, &[("range", "bytes=0-1,5-6")]);
    assert_eq!(r.status(), 200);
    assert_eq!(sha(&r.bytes().unwrap()), hex);

    // Conditional: 304 with the tag, no body.
    let r = a.get(&hex, &[("if-none-match", &etag)]);
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], etag.as_str());
    assert!(r.bytes().unwrap().is_empty());
    let r = a.get(&hex, &[("if-none-match", "\"other\"")]);
    assert_eq!(r.status(), 200);

    // A resumed download: first half, then the rest, reassembles to the name.
    let half = SIZE / 2;
    let r1 = a.get(&hex, &[("range", &format!("bytes=0-{}", half - 1))]);
    assert_eq!(r1.status(), 206);
    let mut got = r1.bytes().unwrap().to_vec();
    assert_eq!(got.len(), half);
    let r2 = a.get(&hex, &[("range", &format!("bytes={half}-"))]);
    assert_eq!(r2.status(), 206);
    got.extend_from_slice(&r2.bytes().unwrap());
    assert_eq!(sha(&got), hex);

    // Each host gets its own job's blob and not the other's: 403 with the same body as
    // a blob nobody has, so the refusal does not tell whether it exists.
    let r = b.get(&other_hex, &[]);
    assert_eq!(r.status(), 200);
    assert_eq!(sha(&r.bytes().unwrap()), other_hex);
    let r = a.get(&other_hex, &[]);
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().unwrap(), NOT_YOURS);
    let r = b.get(&hex, &[("range", "bytes=0-0")]);
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().unwrap(), NOT_YOURS);
    let unknown = sha(b"not in any catalog");
    let r = a.get(&unknown, &[]);
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().unwrap(), NOT_YOURS);

    // Malformed hash: 400.
    let r = a.get(&hex.to_uppercase(), &[]);
    assert_eq!(r.status(), 400);

    // Unsigned: 401.
    let r = http()
        .get(format!(
            "{}/api/agent/v1/artifacts/sha256/{hex}",
            server.url
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);

    // Signed for another path (a different blob): 401.
    let path = format!("/api/agent/v1/artifacts/sha256/{unknown}");
    let h = signing::sign(&a.key, &a.host, "GET", &path, jiff::Timestamp::now(), b"");
    let mut req = http().get(format!(
        "{}/api/agent/v1/artifacts/sha256/{hex}",
        server.url
    ));
    for (k, v) in h.pairs() {
        req = req.header(k, v);
    }
    assert_eq!(req.send().unwrap().status(), 401);

    // Revoked: 403 for its own job's blob too.
    let o = run({
        let mut c = patchward(&site.data);
        c.arg("--config").arg(&site.config);
        c.args(["hosts", "revoke", "web2"]);
        c
    });
    assert!(o.status.success(), "{}", stderr(&o));
    let r = b.get(&other_hex, &[]);
    assert_eq!(r.status(), 403);
    assert!(r.text().unwrap().contains("revoked"));
    // The other host still downloads.
    assert_eq!(a.get(&hex, &[("range", "bytes=0-0")]).status(), 206);

    // A blob web1's job names but the store lost: 404, naming no path.
    std::fs::remove_file(site.data.join("store/sha256").join(&hex[..2]).join(&hex)).unwrap();
    let r = a.get(&hex, &[]);
    assert_eq!(r.status(), 404);
    let text = r.text().unwrap();
    assert!(!text.contains('/'), "{text}");
}
