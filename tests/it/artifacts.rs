//! The agent artifact endpoint end to end: a feed imported, `patchward serve` running, an
//! agent enrolled with the real binary, and signed GETs for whole blobs, ranges,
//! conditional requests, a resumed download, and the refusals.

use std::path::Path;
use std::process::Command;

use patchward::fleet::signing;
use patchward::trust::keys::Ed25519Key;
use sha2::{Digest, Sha256};

use crate::feedkit::{Feed, Site, pseudo_random};
use crate::support::{Server, http, patchward, run, stderr, stdout};

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

#[test]
fn signed_downloads_ranges_conditionals_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let t = jiff::Timestamp::now();
    let mut feed = Feed::init(tmp.path(), "msp-main", t);
    feed.add("DSA-1/openssl", "high", "CVE-2099-0001", SIZE, 7);
    feed.publish(t);
    let bundle = feed.export(&tmp.path().join("full.pwb"), None, t);
    let site = Site::new(tmp.path(), "a", &[&feed]);
    let out = site.import(&bundle);
    assert!(out.status.success(), "{}", stderr(&out));
    let server = Server::start_with(&site.data, &["--config", site.config.to_str().unwrap()]);

    let bytes = pseudo_random(SIZE, 7);
    let hex = sha(&bytes);
    let etag = format!("\"{hex}\"");
    let a = enroll(
        &server,
        &site.data,
        &site.config,
        &tmp.path().join("a1"),
        "web1",
    );

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

    // Malformed hash: 400; unknown blob: 404; neither names a path.
    let r = a.get(&hex.to_uppercase(), &[]);
    assert_eq!(r.status(), 400);
    let unknown = sha(b"not in any catalog");
    let r = a.get(&unknown, &[]);
    assert_eq!(r.status(), 404);
    let text = r.text().unwrap();
    assert!(!text.contains('/'), "{text}");

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

    // Revoked: 403.
    let b = enroll(
        &server,
        &site.data,
        &site.config,
        &tmp.path().join("a2"),
        "web2",
    );
    assert_eq!(b.get(&hex, &[]).status(), 200);
    let o = run({
        let mut c = patchward(&site.data);
        c.arg("--config").arg(&site.config);
        c.args(["hosts", "revoke", "web2"]);
        c
    });
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(b.get(&hex, &[]).status(), 403);
    // The other host still downloads.
    assert_eq!(a.get(&hex, &[("range", "bytes=0-0")]).status(), 206);
}
