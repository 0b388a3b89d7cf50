//! `patchward serve` as an operator runs it: start, answer, stop on SIGTERM, restart.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::support::{Server, http, patchward, run, stderr, stdout};

#[test]
fn serve_answers_health_and_metrics_stops_on_sigterm_and_restarts_with_same_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let mut s = Server::start(&data);
    assert!(s.banner.contains("first start"), "{}", s.banner);
    let c = http();
    let r = c.get(format!("{}/healthz", s.url)).send().unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["database"], "ok");

    let metrics = c.get(format!("{}/metrics", s.url)).send().unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().unwrap();
    assert!(
        text.contains(
            r#"patchward_http_requests_total{method="GET",route="/healthz",status="200"} 1"#
        ),
        "{text}"
    );
    // A scanner's random paths are one label value, not one each (on the HTTP
    // listener they are redirected to HTTPS; on HTTPS they get our own 404 page).
    let h = crate::support::https();
    h.get(format!("{}/nope/123", s.admin_url)).send().unwrap();
    h.get(format!("{}/nope/456", s.admin_url)).send().unwrap();
    let text = c
        .get(format!("{}/metrics", s.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        text.contains(r#"route="unmatched",status="404"} 2"#),
        "{text}"
    );
    assert!(text.contains("patchward_http_request_duration_seconds_bucket"));

    // The healthcheck subcommand agrees.
    let hc = run({
        let mut c = patchward(&data);
        c.args(["healthcheck", "--url", &format!("{}/healthz", s.url)]);
        c
    });
    assert!(hc.status.success(), "{}", stderr(&hc));

    // Keys are owner-only; the database too.
    for f in [
        "keys/appliance.ed25519",
        "keys/apt.pgp",
        "patchward.db",
        "tls/key.pem",
    ] {
        let mode = std::fs::metadata(data.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let key1 = s.banner_value("appliance key");
    let apt1 = s.banner_value("apt signing key");
    let tls1 = s.banner_value("tls certificate");
    assert!(s.banner.contains("admin password"), "{}", s.banner);

    let t = Instant::now();
    s.signal(libc::SIGTERM);
    let code = s.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0), "exit code after SIGTERM");
    assert!(t.elapsed() < Duration::from_secs(5));

    // Down: the healthcheck says so with exit 1.
    let hc = run({
        let mut c = patchward(&data);
        c.args([
            "healthcheck",
            "--timeout",
            "2",
            "--url",
            &format!("{}/healthz", s.url),
        ]);
        c
    });
    assert_eq!(hc.status.code(), Some(1));
    assert!(stderr(&hc).contains("did not answer"), "{}", stderr(&hc));

    // Second start: same keys, same database (the audit trail continues).
    let mut s2 = Server::start(&data);
    assert!(!s2.banner.contains("first start"), "{}", s2.banner);
    assert_eq!(s2.banner_value("appliance key"), key1);
    assert_eq!(s2.banner_value("apt signing key"), apt1);
    assert_eq!(s2.banner_value("tls certificate"), tls1);
    assert!(!s2.banner.contains("admin password"), "shown only once");
    s2.signal(libc::SIGINT);
    assert_eq!(s2.wait_exit(Duration::from_secs(5)), Some(0));

    let list = run({
        let mut c = patchward(&data);
        c.args(["audit", "list", "--json"]);
        c
    });
    let entries: Vec<serde_json::Value> = serde_json::from_str(&stdout(&list)).unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .rev()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "key.generated",
            "key.generated",
            "key.generated",
            "user.created",
            "appliance.started",
            "appliance.stopped",
            "appliance.started",
            "appliance.stopped"
        ]
    );
    let verify = run({
        let mut c = patchward(&data);
        c.args(["audit", "verify"]);
        c
    });
    assert!(verify.status.success(), "{}", stdout(&verify));
    assert!(stdout(&verify).contains("intact: 8 entries"));
}

#[test]
fn no_config_and_no_flags_uses_the_embedded_defaults() {
    // `patchward serve` with nothing else: data dir ./patchward-data under the working
    // directory. Run it in a temp working directory with the default listen address
    // overridden only through the environment, as the port may be taken on CI.
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut child = std::process::Command::new(crate::support::BIN)
        .arg("serve")
        .current_dir(dir.path())
        .env("PATCHWARD_LISTEN", format!("127.0.0.1:{port}"))
        .env("PATCHWARD_TLS_LISTEN", "127.0.0.1:0")
        .env("PATCHWARD_LOG", "warn")
        .env_remove("PATCHWARD_DATA_DIR")
        .env_remove("PATCHWARD_CONFIG")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let c = http();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ok = false;
    while Instant::now() < deadline {
        if let Ok(r) = c.get(&url).send() {
            ok = r.status() == 200;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "server with embedded defaults did not become healthy");
    assert!(dir.path().join("patchward-data/patchward.db").exists());
    assert!(dir.path().join("patchward-data/keys/apt.asc").exists());
}

#[test]
fn under_systemd_ready_comes_after_bind_and_the_watchdog_is_pinged() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // systemd sets WATCHDOG_PID to the main process; `exec` keeps the shell's pid.
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"WATCHDOG_PID=$$ exec "$0" --data-dir "$1" serve --listen 127.0.0.1:0 --tls-listen 127.0.0.1:0"#)
        .arg(crate::support::BIN)
        .arg(dir.path().join("data"))
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "200000")
        .env("PATCHWARD_LOG", "warn")
        .env_remove("PATCHWARD_CONFIG")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let mut messages = Vec::new();
    let mut watchdogs = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while watchdogs < 3 && Instant::now() < deadline {
        let n = sock.recv(&mut buf).unwrap();
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if m.contains("WATCHDOG=1") {
            watchdogs += 1;
        }
        messages.push(m);
    }
    assert!(messages[0].contains("READY=1"), "{messages:?}");
    assert!(
        messages[0].contains("STATUS=serving on 127.0.0.1:"),
        "{messages:?}"
    );
    assert_eq!(watchdogs, 3, "{messages:?}");
    // READY means answering: the port in STATUS is bound.
    let status = messages[0]
        .lines()
        .find_map(|l| l.strip_prefix("STATUS=serving on "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap();
    let r = http()
        .get(format!("http://{status}/healthz"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);

    // SAFETY: plain syscall on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut stopping = false;
    while Instant::now() < deadline {
        let n = sock.recv(&mut buf).unwrap();
        if String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    assert!(stopping);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
