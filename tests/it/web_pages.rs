//! The admin pages against the real `patchward serve` over HTTPS, signed in as the
//! first admin (after the forced password change) and as an auditor:
//! - every page renders for both roles; a patch title, an approval reason and an audit
//!   note full of markup and quotes are shown escaped;
//! - a bundle uploaded on the mirror page is imported; a token created on the hosts
//!   page enrolls a real agent; a patch approved on its page is not offered while the
//!   windows are closed, and is offered and installed at the next check-in once a
//!   window added on the windows page opens (the scheduler uses it at once);
//! - every state-changing page route is refused for an auditor and changes nothing;
//! - bad input (unknown ring, bad date, bad window, oversized or malformed upload) is
//!   refused with a message that says what is wrong, and changes nothing.

use std::path::PathBuf;

use jiff::Timestamp;
use serde_json::Value;

use crate::feedkit::Feed;
use crate::jobs::{agent, ok, script_archive};
use crate::support::{Admin, Server, patchward, run, stderr};

pub(crate) const NEW_PW: &str = "correct horse battery staple";
pub(crate) const EVIL: &str = "<script>alert(\"x\")</script> & 'q'";

const CONFIG_TAIL: &str = r#"
[import]
max_upload_mb = 2

[[policy.rings]]
name = "pilot"
gate = { canary = true, min_successes = 1, success_ratio = 0.0, soak = "1h", max_failures = 0 }

[[policy.rings]]
name = "broad"
catch_all = true

# Closed: only a one-off slot long past. The test opens it from the web page.
[policy.windows.default]
tz = "Europe/Berlin"
once = [{ start = "2020-01-01T00:00", duration = "1h" }]
"#;

/// A script patch with `title`, for hosts labelled site=hq.
fn add_patch(feed: &Feed, id: &str, title: &str) {
    let archive = script_archive(&[("install", "true".into()), ("verify", "true".into())]);
    let name = format!("{}.tar.zst", id.replace('/', "-"));
    let art = feed.dir.join(&name);
    std::fs::write(&art, &archive).unwrap();
    let toml = format!(
        "id = {id:?}\ntitle = {title:?}\nkind = \"application\"\nseverity = \"high\"\n\
         released = \"2026-10-01T00:00:00Z\"\ninstall = \"script\"\nest_minutes = 1\n\
         [[applies_to]]\nlabels = [\"site=hq\"]\n\
         [[artifacts]]\nname = {name:?}\nformat = \"script\"\n"
    );
    let p = feed.dir.join(format!("{name}.toml"));
    std::fs::write(&p, toml).unwrap();
    patchward::feed::tools::add_patch(&feed.dir, &p, &[art]).unwrap();
}

pub(crate) struct Site {
    pub dir: tempfile::TempDir,
    pub feed: Feed,
    pub data: PathBuf,
    pub config: PathBuf,
    pub server: Server,
    pub admin: Admin,
}

/// [`Site`] before anyone signed in (the first-start password still unused).
pub(crate) struct Fresh {
    pub dir: tempfile::TempDir,
    pub feed: Feed,
    pub data: PathBuf,
    pub config: PathBuf,
    pub server: Server,
}

impl Site {
    pub(crate) fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = patchward(&self.data);
        c.arg("--config").arg(&self.config).args(args);
        c
    }

    fn audit_count(&self) -> usize {
        let out = ok(run(
            self.cmd(&["audit", "list", "--limit", "100000", "--json"])
        ));
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    }

    /// What a refused request must leave alone.
    fn snapshot(&self) -> (usize, Vec<String>) {
        let conn = rusqlite::Connection::open(self.data.join("patchward.db")).unwrap();
        let q = |sql: &str| -> Vec<String> {
            let mut st = conn.prepare(sql).unwrap();
            st.query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let rows = [
            q("SELECT feed || patch_id || approval FROM approvals ORDER BY 1"),
            q("SELECT feed || patch_id || state FROM rollouts ORDER BY 1"),
            q("SELECT id || coalesce(revoked_at, '') FROM hosts ORDER BY 1"),
            q("SELECT id || '' FROM enrollment_tokens ORDER BY 1"),
            q("SELECT id || spec FROM window_entries ORDER BY 1"),
            q("SELECT feed || version FROM catalogs ORDER BY 1"),
            q("SELECT feed || id || entry_sha256 FROM patches ORDER BY 1"),
        ]
        .concat();
        (self.audit_count(), rows)
    }
}

/// A feed with two patches (one titled with markup) and an appliance trusting it,
/// started for the first time.
pub(crate) fn fresh() -> Fresh {
    let dir = tempfile::tempdir().unwrap();
    let t = Timestamp::now();
    let feed = Feed::init(dir.path(), "acme", t);
    add_patch(&feed, "acme/good-1", "Good patch");
    add_patch(&feed, "acme/evil-1", EVIL);
    feed.publish(t);
    let data = dir.path().join("data");
    let config = dir.path().join("site.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nfree_space_reserve_mb = 0\n\n[[mirror.sources]]\nname = \"acme\"\n\
             url = \"file://{}\"\nroot = {:?}\n{CONFIG_TAIL}",
            feed.public().display(),
            feed.pinned_root().display().to_string()
        ),
    )
    .unwrap();
    let server = Server::start_with(&data, &["--config", config.to_str().unwrap()]);
    Fresh {
        dir,
        feed,
        data,
        config,
        server,
    }
}

/// [`fresh`], with its admin signed in with a new password.
fn site() -> Site {
    let f = fresh();
    let admin = Admin::first_sign_in(&f.server, NEW_PW);
    Site {
        dir: f.dir,
        feed: f.feed,
        data: f.data,
        config: f.config,
        server: f.server,
        admin,
    }
}

/// The text of the one-time message a response sets (the flash cookie).
fn flash(r: &reqwest::blocking::Response) -> String {
    let v = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("pw_flash="))
        .unwrap_or_else(|| panic!("no flash in {:?}", r.headers()));
    let raw = v.split(';').next().unwrap();
    let text = raw.split_once('.').map_or(raw, |(_, t)| t);
    percent_decode(text)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn upload(a: &Admin, file_name: &str, bytes: &[u8]) -> reqwest::blocking::Response {
    let b = "----patchward-test-boundary";
    let mut body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"bundle\"; filename=\"{file_name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    a.client
        .post(format!("{}/mirror/upload", a.base))
        .header("Cookie", format!("__Host-patchward_session={}", a.cookie))
        .header("Origin", &a.base)
        .header("X-CSRF-Token", &a.csrf)
        .header("Content-Type", format!("multipart/form-data; boundary={b}"))
        .timeout(std::time::Duration::from_secs(60))
        .body(body)
        .send()
        .unwrap()
}

fn bundle(site: &Site, name: &str) -> Vec<u8> {
    std::fs::read(export(&site.feed, site.dir.path(), name)).unwrap()
}

/// A full bundle of `feed`, written into `dir`.
pub(crate) fn export(feed: &Feed, dir: &std::path::Path, name: &str) -> PathBuf {
    feed.export(&dir.join(name), None, Timestamp::now())
}

/// Adds an auditor (`carol`) and signs her in, past her own forced password change.
fn auditor(site: &Site) -> Admin {
    use std::io::Write;
    let mut c = site.cmd(&[
        "users",
        "add",
        "carol",
        "--role",
        "auditor",
        "--password-stdin",
        "--reason",
        "insurer",
    ]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"carol's first password\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut carol = Admin::sign_in(&site.server.admin_url, "carol", "carol's first password");
    let r = carol.post_form(
        "/password",
        &[
            ("current", "carol's first password"),
            ("new", "carol's own password"),
            ("repeat", "carol's own password"),
        ],
    );
    assert_eq!(r.status(), 303);
    carol.refresh_csrf();
    carol
}

const PAGES: &[&str] = &[
    "/",
    "/hosts",
    "/hosts?state=all&q=pilot",
    "/patches",
    "/patches?kind=application&state=new",
    "/patches/acme%3Aacme%2Fevil-1",
    "/rollouts",
    "/windows",
    "/mirror",
    "/audit",
    "/audit?action=patch.",
];

#[test]
fn upload_enroll_approve_and_a_web_window_the_scheduler_uses() {
    let site = site();
    let a = &site.admin;
    // The mirror page imports an uploaded bundle (bigger than server.max_body_bytes
    // would allow any other request; the upload has its own cap).
    let b = bundle(&site, "full.pwb");
    let r = upload(a, "full.pwb", &b);
    assert_eq!(r.status(), 303);
    let msg = flash(&r);
    assert!(
        msg.contains("full.pwb") && msg.contains("imported"),
        "{msg}"
    );
    let page = a.get("/mirror").text().unwrap();
    assert!(page.contains("catalog version 1 of acme"), "{page}");
    // Something that is not a bundle is called that, under the name it was uploaded as.
    let r = upload(a, "notes.txt", b"remember to patch the mail server\n");
    let msg = flash(&r);
    assert!(
        msg.contains("notes.txt is not a Patchward bundle (*.pwb): it looks like a text file"),
        "{msg}"
    );
    assert!(!msg.contains("upload-"), "no temporary name: {msg}");

    // Enroll a real agent with a token made on the hosts page.
    let r = a.post_form(
        "/hosts/tokens",
        &[
            ("ring", "pilot"),
            ("labels", "site=hq"),
            ("expires", "1h"),
            ("uses", "1"),
        ],
    );
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let page = r.text().unwrap();
    let cmd = page
        .lines()
        .find_map(|l| l.split("<code>").nth(1))
        .and_then(|l| l.split("</code>").next())
        .unwrap_or_else(|| panic!("{page}"));
    assert!(
        cmd.starts_with("patchward-agent enroll --server http://127.0.0.1:"),
        "{cmd}"
    );
    let token = cmd
        .split("--token ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let state = site.dir.path().join("agent");
    let out = ok(agent(
        &state,
        &[
            "enroll",
            "--server",
            &site.server.url,
            "--token",
            token,
            "--hostname",
            "pilot1",
        ],
    ));
    assert!(out.contains("enrolled as host"), "{out}");
    let hosts = a.get("/hosts").text().unwrap();
    assert!(hosts.contains(">pilot1</a>"), "{hosts}");

    // Approve on the patch page: the rollout page shows it, with live progress.
    let r = a.post_form(
        "/patches/acme%3Aacme%2Fgood-1/decide",
        &[
            ("action", "approve"),
            ("rings", "pilot"),
            ("reason", "tested"),
        ],
    );
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/rollouts/acme%3Aacme%2Fgood-1");
    let page = a.get("/rollouts/acme%3Aacme%2Fgood-1").text().unwrap();
    assert!(page.contains("hx-trigger=\"every 5s\""), "{page}");
    let frag = a.get("/rollouts/acme%3Aacme%2Fgood-1/rings");
    assert_eq!(frag.status(), 200);

    // The windows are closed: no offer, and the host page says why.
    ok(agent(&state, &["once"]));
    let jobs = ok(run(site.cmd(&["jobs", "list", "--json"])));
    assert_eq!(
        serde_json::from_str::<Value>(&jobs).unwrap(),
        serde_json::json!([])
    );
    let hosts = ok(run(site.cmd(&["hosts", "list", "--json"])));
    let id = serde_json::from_str::<Value>(&hosts).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let page = a.get(&format!("/hosts/{id}")).text().unwrap();
    assert!(page.contains("outside"), "{page}");

    // Open a window on the windows page: its preview lists openings, and the very next
    // check-in is offered the job and installs it.
    let days: Vec<(&str, &str)> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| ("days", *d))
        .collect();
    let mut form = vec![
        ("kind", "weekly"),
        ("set", "default"),
        ("start", "00:00"),
        ("duration", "24h"),
        ("reason", "open for the test"),
    ];
    form.extend(days);
    let r = a.post_form("/windows", &form);
    assert_eq!(r.status(), 303, "{}", r.text().unwrap_or_default());
    let page = a.get("/windows").text().unwrap();
    assert!(
        page.contains("every Mon, Tue, Wed, Thu, Fri, Sat, Sun at 00:00 for 24h"),
        "{page}"
    );
    assert!(page.contains("added here by web:admin"), "{page}");
    let out =
        ok(run(site.cmd(&[
            "windows", "next", "--ring", "pilot", "--count", "1",
        ])));
    assert!(
        out.contains("00:00 +01") || out.contains("00:00 +02"),
        "{out}"
    );
    let out = ok(agent(&state, &["once"]));
    assert!(out.contains("succeeded"), "{out}");
    let page = a
        .get("/rollouts/acme%3Aacme%2Fgood-1/rings")
        .text()
        .unwrap();
    assert!(page.contains("<strong>1</strong> of 1 installed"), "{page}");

    // Halt and resume from the rollout page; the audit log has the web user as actor.
    for action in ["halt", "resume"] {
        let r = a.post_form(
            "/rollouts/acme%3Aacme%2Fgood-1/control",
            &[("action", action), ("reason", "checking")],
        );
        assert_eq!(r.status(), 303, "{action}");
    }
    let audit = ok(run(site.cmd(&["audit", "list", "--json"])));
    for want in [
        "patch.approved",
        "window.added",
        "rollout.halted",
        "rollout.resumed",
        "token.created",
    ] {
        let v: Value = serde_json::from_str(&audit).unwrap();
        let e = v
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == want)
            .unwrap_or_else(|| panic!("no {want}"));
        assert_eq!(e["actor"], "web:admin", "{e}");
    }
    // Revoke needs the confirmation, then works.
    let r = a.post_form(&format!("/hosts/{id}/revoke"), &[("reason", "retired")]);
    assert_eq!(r.status(), 400);
    let r = a.post_form(
        &format!("/hosts/{id}/revoke"),
        &[("reason", "retired"), ("confirm", "yes")],
    );
    assert_eq!(r.status(), 303);
    assert!(flash(&r).contains("revoked"));
}

#[test]
fn pages_render_for_both_roles_and_show_hostile_text_escaped() {
    let site = site();
    let a = &site.admin;
    let b = bundle(&site, "full.pwb");
    assert_eq!(upload(a, "full.pwb", &b).status(), 303);
    ok(run(site.cmd(&["audit", "note", "--message", EVIL])));
    let r = a.post_form(
        "/patches/acme%3Aacme%2Fevil-1/decide",
        &[("action", "decline"), ("reason", EVIL)],
    );
    assert_eq!(r.status(), 303);
    let carol = auditor(&site);
    for (who, s) in [("admin", a), ("auditor", &carol)] {
        for path in PAGES {
            let r = s.get(path);
            assert_eq!(r.status(), 200, "{who} {path}");
            let body = r.text().unwrap();
            assert!(body.contains("<title>"), "{who} {path}");
            assert!(!body.contains("<script>alert"), "{who} {path}: raw markup");
            assert!(!body.contains("alert(\"x\")"), "{who} {path}: raw quotes");
        }
    }
    let escaped = "&#60;script&#62;alert(&#34;x&#34;)&#60;/script&#62; &#38; &#39;q&#39;";
    for path in ["/patches", "/patches/acme%3Aacme%2Fevil-1", "/audit"] {
        let body = a.get(path).text().unwrap();
        assert!(body.contains(escaped), "{path}: {body}");
    }
}

#[test]
fn an_auditor_is_refused_every_page_action_and_nothing_changes() {
    let site = site();
    let b = bundle(&site, "full.pwb");
    assert_eq!(upload(&site.admin, "full.pwb", &b).status(), 303);
    let r = site.admin.post_form(
        "/windows",
        &[
            ("kind", "once"),
            ("set", "default"),
            ("start", "2030-01-01T00:00"),
            ("duration", "1h"),
        ],
    );
    assert_eq!(r.status(), 303);
    let carol = auditor(&site);
    let before = site.snapshot();
    for (path, form) in [
        ("/hosts/tokens", vec![("ring", "pilot")]),
        (
            "/hosts/h-1/revoke",
            vec![("reason", "x"), ("confirm", "yes")],
        ),
        (
            "/patches/acme%3Aacme%2Fgood-1/decide",
            vec![("action", "approve"), ("rings", "pilot")],
        ),
        (
            "/rollouts/acme%3Aacme%2Fgood-1/control",
            vec![("action", "halt"), ("reason", "x")],
        ),
        (
            "/windows",
            vec![
                ("kind", "once"),
                ("set", "default"),
                ("start", "2031-01-01T00:00"),
                ("duration", "1h"),
            ],
        ),
        (
            "/windows/1",
            vec![
                ("kind", "once"),
                ("set", "default"),
                ("start", "2031-01-01T00:00"),
                ("duration", "1h"),
            ],
        ),
        ("/windows/1/remove", vec![("reason", "x")]),
        ("/mirror/sync", vec![]),
    ] {
        let r = carol.post_form(path, &form);
        assert_eq!(r.status(), 403, "{path}");
        assert!(r.text().unwrap().contains("auditor role"), "{path}");
    }
    let r = upload(&carol, "full.pwb", &b);
    assert_eq!(r.status(), 403);
    // Auditors see no action forms (only the layout's sign-out).
    for path in [
        "/hosts",
        "/patches/acme%3Aacme%2Fgood-1",
        "/windows",
        "/mirror",
    ] {
        let body = carol.get(path).text().unwrap();
        assert_eq!(body.matches("method=\"post\"").count(), 1, "{path}");
    }
    assert_eq!(site.snapshot(), before);
}

#[test]
fn bad_input_is_refused_with_a_clear_message_and_changes_nothing() {
    let site = site();
    let a = &site.admin;
    let b = bundle(&site, "full.pwb");
    assert_eq!(upload(a, "full.pwb", &b).status(), 303);
    let before = site.snapshot();
    for (path, form, want) in [
        (
            "/hosts/tokens",
            vec![("ring", "moon")],
            "is not a configured ring (rings: pilot, broad)",
        ),
        (
            "/hosts/tokens",
            vec![("expires", "someday")],
            "use e.g. 30m, 12h or 7d",
        ),
        (
            "/patches/acme%3Aacme%2Fgood-1/decide",
            vec![("action", "approve"), ("rings", "moon")],
            "not a configured ring",
        ),
        (
            "/patches/acme%3Aacme%2Fgood-1/decide",
            vec![("action", "defer"), ("until", "next tuesday")],
            "is not a date and time",
        ),
        (
            "/patches/acme%3Aacme%2Fgood-1/decide",
            vec![("action", "defer"), ("until", "2001-01-01T00:00")],
            "not in the future",
        ),
        (
            "/windows",
            vec![
                ("kind", "weekly"),
                ("set", "default"),
                ("days", "sat"),
                ("start", "25:00"),
                ("duration", "1h"),
            ],
            "start = &#34;25:00&#34;",
        ),
        (
            "/windows",
            vec![
                ("kind", "blackout"),
                ("set", "default"),
                ("from", "2027-01-02T00:00"),
                ("until", "2027-01-01T00:00"),
            ],
            "`until` must be after `from`",
        ),
        (
            "/rollouts/acme%3Aacme%2Fgood-1/control",
            vec![("action", "halt"), ("reason", "x")],
            "approve the patch first",
        ),
    ] {
        let r = a.post_form(path, &form);
        assert!(
            r.status().is_client_error(),
            "{path} {form:?}: {}",
            r.status()
        );
        let body = r.text().unwrap();
        assert!(body.contains(want), "{path} {form:?}: {body}");
    }
    // Uploads: over the 2 MiB cap, and a malformed one larger than the 1 MiB limit of
    // other requests (so it reaches the import pipeline, which refuses it).
    let r = upload(a, "huge.pwb", &vec![7u8; 3 << 20]);
    assert_eq!(r.status(), 303);
    assert!(
        flash(&r).contains("larger than the upload limit of 2 MiB"),
        "{}",
        flash(&r)
    );
    let r = upload(a, "junk.pwb", &vec![7u8; 1_500_000]);
    assert_eq!(r.status(), 303);
    let msg = flash(&r);
    assert!(
        msg.starts_with("Bundle not imported: junk.pwb is not a Patchward bundle (*.pwb): "),
        "{msg}"
    );
    let mut truncated = b.clone();
    truncated.truncate(b.len() / 2);
    let r = upload(a, "cut.pwb", &truncated);
    assert!(
        flash(&r).starts_with("Bundle not imported: cut.pwb:"),
        "{}",
        flash(&r)
    );
    // The current bundle cut short near its end (its metadata intact): broken, not
    // "already at catalog version" (issue [8] item 7).
    let r = upload(a, "short.pwb", &b[..b.len() - 20]);
    let msg = flash(&r);
    assert!(
        msg.starts_with("Bundle not imported: short.pwb:") && msg.contains("truncated"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_dir(site.data.join("uploads"))
            .unwrap()
            .count(),
        0,
        "the temporary files are gone"
    );
    assert_eq!(site.snapshot(), before);
    let r = a.get("/audit?from=yesterday");
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("is not a date; use YYYY-MM-DD"));
}
