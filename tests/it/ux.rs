//! What a new user trips over ([8] item 17) and apt clients without an agent (item 24),
//! with the real binaries: the start-up block apart from the logs and ending with the
//! next steps, logs without colours in a pipe, the ring every host is really in,
//! times without nanoseconds, "did you mean", a file that is not a bundle, and apt
//! fetches listed as apt clients.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{http, patchward, read_banner, run, stderr, stdout};

const AGENT: &str = env!("CARGO_BIN_EXE_patchward-agent");

/// Runs `patchward serve` with stdout and stderr piped (as under a service manager or
/// `| tee`), returns (child, start-up block, the HTTP URL).
fn serve_piped(data: &std::path::Path) -> (std::process::Child, String, String) {
    let mut c = patchward(data);
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--tls-listen",
        "127.0.0.1:0",
    ])
    .env("PATCHWARD_LOG", "info")
    .env_remove("NO_COLOR")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || read_banner(out, tx));
    let banner = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("start-up block within 30 s");
    let url = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("listening on"))
        .and_then(|r| r.split_whitespace().next())
        .expect("listening line")
        .to_string();
    (child, banner, url)
}

fn ok(o: std::process::Output) -> String {
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

/// `YYYY-MM-DDTHH:MM:SS` followed by something other than a fraction.
fn has_whole_second_time(s: &str) -> bool {
    let b = s.as_bytes();
    (0..b.len().saturating_sub(19)).any(|i| {
        let w = &b[i..i + 19];
        let digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
        digits.iter().all(|&j| w[j].is_ascii_digit())
            && w[4] == b'-'
            && w[10] == b'T'
            && w[13] == b':'
            && b.get(i + 19) == Some(&b'Z')
    })
}

#[test]
fn a_new_appliance_guides_its_operator_and_lists_agentless_apt_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (mut child, banner, url) = serve_piped(&data);
    let cli = format!("patchward --data-dir {}", data.display());

    // The block ends with the three next steps and their exact commands.
    let steps = banner
        .split("  next steps\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no next steps in {banner}"));
    assert!(steps.contains("1. pin a feed root\n"), "{steps}");
    assert!(
        steps.contains("install -D -m 0644 FEED.root.json /etc/patchward/roots/FEED.root.json"),
        "{steps}"
    );
    assert!(steps.contains("2. import a bundle or sync\n"), "{steps}");
    assert!(
        steps.contains(&format!("{cli} import FILE.pwb\n")),
        "{steps}"
    );
    assert!(steps.contains(&format!("{cli} mirror sync\n")), "{steps}");
    assert!(
        steps.contains("3. create an enrollment token for the first host\n"),
        "{steps}"
    );
    assert!(
        steps.ends_with(&format!("{cli} hosts token create --ring pilot\n")),
        "the block ends with the steps: {banner}"
    );

    // A machine running plain apt against the pilot ring's repository.
    let apt_ua = "Debian APT-HTTP/1.3 (2.6.1) non-interactive";
    let r = http()
        .get(format!("{url}/apt/pilot/dists/pilot/InRelease"))
        .header("User-Agent", apt_ua)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);

    // A host enrolled without a ring is in the catch-all ring ("broad"), and the list
    // says so; its times have whole seconds.
    let token = ok(run({
        let mut c = patchward(&data);
        c.args(["hosts", "token", "create"]);
        c
    }))
    .trim()
    .to_string();
    let key_id = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("appliance key"))
        .unwrap()
        .replace("ed25519", "");
    let st = tmp.path().join("agent");
    for args in [
        vec![
            "enroll",
            "--server",
            url.as_str(),
            "--token",
            token.as_str(),
            "--fingerprint",
            key_id.trim(),
            "--hostname",
            "web1",
        ],
        vec!["once"],
    ] {
        let o = run({
            let mut c = Command::new(AGENT);
            c.arg("--state-dir").arg(&st).args(&args);
            c
        });
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
    let list = ok(run({
        let mut c = patchward(&data);
        c.args(["hosts", "list"]);
        c
    }));
    let line = list
        .lines()
        .find(|l| l.contains("web1"))
        .expect("web1 listed");
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[2], "broad", "{list}");
    assert!(has_whole_second_time(line), "{list}");
    let json = ok(run({
        let mut c = patchward(&data);
        c.args(["hosts", "list", "--json"]);
        c
    }));
    assert!(json.contains("\"effective_ring\": \"broad\""), "{json}");
    let show = ok(run({
        let mut c = patchward(&data);
        c.args(["hosts", "show", "web1"]);
        c
    }));
    assert!(show.contains("ring        broad"), "{show}");
    for l in show
        .lines()
        .filter(|l| l.starts_with("enrolled") || l.starts_with("last seen"))
    {
        assert!(has_whole_second_time(l), "{show}");
    }

    // A mistyped host name gets a suggestion, and changes nothing.
    let o = run({
        let mut c = patchward(&data);
        c.args(["hosts", "revoke", "wbe1", "--reason", "typo"]);
        c
    });
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no host matches \"wbe1\" (did you mean \"web1\"?)"),
        "{}",
        stderr(&o)
    );
    assert!(
        ok(run({
            let mut c = patchward(&data);
            c.args(["hosts", "list"]);
            c
        }))
        .contains(" ok"),
        "web1 is not revoked"
    );

    // The apt fetch is listed (written within a few seconds, bounded wait).
    let deadline = Instant::now() + Duration::from_secs(20);
    let clients = loop {
        let out = ok(run({
            let mut c = patchward(&data);
            c.args(["hosts", "list", "--apt-clients"]);
            c
        }));
        if out.contains("Debian APT") || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let row = clients
        .lines()
        .find(|l| l.contains(apt_ua))
        .unwrap_or_else(|| panic!("no apt client: {clients}"));
    assert!(row.starts_with("127.0.0.1 "), "{clients}");
    assert!(row.contains(" pilot "), "{clients}");
    assert!(row.contains("(no agent)"), "{clients}");
    assert!(has_whole_second_time(row), "{clients}");

    // Stop, then look at what went to stderr: log lines without ANSI colours (a pipe
    // is not a terminal), and none of them on stdout with the block.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("ready"),
        "the ready log line is on stderr: {err}"
    );
    assert!(!err.contains('\u{1b}'), "ANSI escapes in a pipe: {err:?}");
    assert!(
        !banner.contains("INFO"),
        "a log line inside the block: {banner}"
    );
}

#[test]
fn a_file_that_is_not_a_bundle_is_called_that() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(run({
        let mut c = patchward(&data);
        c.arg("init");
        c
    }));
    let deb = tmp.path().join("openssl_3.0.16_amd64.deb");
    std::fs::write(
        &deb,
        b"!<arch>\ndebian-binary   1700000000  0     0     100644  4         `\n2.0\n",
    )
    .unwrap();
    let status = || {
        ok(run({
            let mut c = patchward(&data);
            c.args(["mirror", "status", "--json"]);
            c
        }))
    };
    let before = status();
    let o = run({
        let mut c = patchward(&data);
        c.arg("import").arg(&deb);
        c
    });
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(&format!(
            "{} is not a Patchward bundle (*.pwb): it is a Debian package",
            deb.display()
        )),
        "{e}"
    );
    assert_eq!(
        e.matches("not a Patchward bundle").count(),
        1,
        "said once: {e}"
    );
    assert_eq!(status(), before, "nothing changed");
}

#[test]
fn our_own_404_a_print_header_and_the_dashboard_words() {
    use crate::support::{Admin, Server, https};
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let base = &server.admin_url;
    let anon = https();

    // Not signed in: a plain page that names nothing but the sign-in.
    let r = anon.get(format!("{base}/no-such-page")).send().unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    let body = r.text().unwrap();
    assert!(body.contains("<h1>Page not found</h1>"), "{body}");
    assert!(body.contains("href=\"/login\""), "{body}");
    assert!(
        !body.contains("aria-label=\"Main\""),
        "no navigation: {body}"
    );
    // API paths answer JSON.
    let r = anon.get(format!("{base}/api/v1/nope")).send().unwrap();
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["code"], "not_found", "{v}");

    // Signed in: the admin layout, with its navigation and the print header.
    let a = Admin::first_sign_in(&server, "a long new password for the test");
    let r = a.get("/no-such-page");
    assert_eq!(r.status(), 404);
    let body = r.text().unwrap();
    assert!(body.contains("aria-label=\"Main\""), "{body}");
    assert!(
        body.contains("There is no page at <code>/no-such-page</code>"),
        "{body}"
    );

    // Every page links the print stylesheet and carries the site name and date for it.
    let dash = a.get("/").text().unwrap();
    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    for page in [&dash, &body] {
        assert!(page.contains("media=\"print\""), "{page}");
        assert!(page.contains("class=\"printed\">Patchward on "), "{page}");
        assert!(page.contains(&format!("· printed {today}")), "{page}");
    }
    let at = dash.find("/static/print.css?v=").expect("print.css linked");
    let href = &dash[at..dash[at..].find('"').unwrap() + at];
    let css = anon
        .get(format!("{base}{href}"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        css.contains("header.top nav") && css.contains("display: none"),
        "{css}"
    );
    assert!(css.contains(".printed"), "{css}");

    // The dashboard's host count is about checking in, not about patches.
    assert!(dash.contains("checking in</a>"), "{dash}");
    assert!(!dash.contains("up to date"), "{dash}");
}
