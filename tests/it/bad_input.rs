//! Bad input fails fast with a message that names the problem, and changes nothing.

use std::time::Duration;

use crate::support::{Server, http, patchward, run, stderr, stdout};

fn serve_fails(data: &std::path::Path, args: &[&str], config: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut c = patchward(data);
    if let Some(text) = config {
        let f = dir.path().join("site.toml");
        std::fs::write(&f, text).unwrap();
        c.arg("--config").arg(&f);
    }
    c.arg("serve").args(args);
    let start = std::time::Instant::now();
    let out = run(c);
    assert!(!out.status.success(), "serve should have failed");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "bad config must fail fast"
    );
    stderr(&out)
}

#[test]
fn invalid_configs_fail_fast_naming_the_problem_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let e = serve_fails(
        &data,
        &[],
        Some("[server]\nlisten = \"127.0.0.1:0\"\ncolour = 1\n"),
    );
    assert!(e.contains("site.toml:3"), "{e}");
    assert!(e.contains("unknown field `colour`"), "{e}");
    assert!(e.contains("expected one of `listen`"), "{e}");

    let e = serve_fails(&data, &[], Some("[server]\nlisten = \"localhost:80:80\"\n"));
    assert!(e.contains("site.toml:2: key `server.listen`"), "{e}");
    assert!(e.contains("is not a socket address"), "{e}");

    let e = serve_fails(&data, &["--listen", "not-an-address"], None);
    assert!(e.contains("--listen / PATCHWARD_LISTEN"), "{e}");

    // Nothing was created by any of these.
    assert!(!data.exists());

    // A data directory that is not a directory.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let e = serve_fails(&file, &["--listen", "127.0.0.1:0"], None);
    assert!(e.contains("is not a directory"), "{e}");
    assert_eq!(std::fs::read(&file).unwrap(), b"x");

    // A data directory under a path that cannot exist.
    let e = serve_fails(&file.join("sub"), &["--listen", "127.0.0.1:0"], None);
    assert!(e.contains("data directory"), "{e}");
}

#[test]
fn config_check_reports_line_key_and_allowed_values() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let f = dir.path().join("site.toml");

    std::fs::write(&f, "# site\n[log]\nformat = \"xml\"\n").unwrap();
    let out = run({
        let mut c = patchward(&data);
        c.args(["config", "check"]).arg(&f);
        c
    });
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("site.toml:3: key `log.format`"), "{e}");
    assert!(e.contains("allowed: \"text\", \"json\""), "{e}");

    std::fs::write(&f, "[server]\nlisten = \"[::]:8080\"\n").unwrap();
    let out = run({
        let mut c = patchward(&data);
        c.args(["config", "check"]).arg(&f);
        c
    });
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("configuration is valid"));

    // The shipped packaged config is valid too (its data dir need not exist here).
    let packaged = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/patchward.toml");
    let text = std::fs::read_to_string(packaged).unwrap();
    let c = patchward::config::Config::from_sources(
        Some(("patchward.toml", &text)),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(c.data_dir, std::path::PathBuf::from("/var/lib/patchward"));

    // So are the shipped mirror source examples.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/mirror/sources.example.toml");
    let text = std::fs::read_to_string(example).unwrap();
    let c = patchward::config::Config::from_sources(Some((example, &text)), &Default::default())
        .unwrap();
    assert_eq!(c.mirror.sources.len(), 2);
    assert!(
        c.mirror.sources[0]
            .root
            .ends_with("mirror/roots/acme.root.json")
    );

    // A data directory that is a file is reported by config check as well.
    let file = dir.path().join("plain");
    std::fs::write(&file, b"").unwrap();
    let out = run({
        let mut c = patchward(&file);
        c.args(["config", "check"]);
        c
    });
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is not a directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn oversized_request_body_gets_413_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let f = dir.path().join("small.toml");
    std::fs::write(&f, "[server]\nmax_body_bytes = 4096\n").unwrap();
    let s = Server::start_with(&data, &["--config", f.to_str().unwrap()]);
    let c = http();
    let r = c
        .post(format!("{}/healthz", s.url))
        .body(vec![b'x'; 4097])
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = c.get(format!("{}/healthz", s.url)).send().unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn admin_commands_refuse_a_missing_data_directory_instead_of_creating_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("typo");
    let out = run({
        let mut c = patchward(&data);
        c.args(["audit", "verify"]);
        c
    });
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert!(!data.exists());
}

/// Each distinct clause of a one-line error message, split where a chain printer joins
/// an error and its cause (`": "`), and the clauses that occur more than once.
fn repeated_clauses(err: &str) -> Vec<String> {
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line in {err:?}"));
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for part in line.trim_start_matches("error:").split(": ") {
        let part = part.trim();
        if part.len() > 8 {
            *seen.entry(part).or_default() += 1;
        }
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(p, _)| p.to_string())
        .collect()
}

#[test]
fn cli_errors_name_their_cause_once() {
    // `serve` on a busy port: the OS error once, with the hint.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let err = serve_fails(
        &data,
        &["--listen", &addr, "--tls-listen", "127.0.0.1:0"],
        None,
    );
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert_eq!(err.matches("os error 98").count(), 1, "{err}");
    assert!(repeated_clauses(&err).is_empty(), "{err}");

    // A bundle signed by another publisher's keys under the pinned feed's name.
    use crate::feedkit::{Feed, Site};
    let t = jiff::Timestamp::now();
    let tmp = tempfile::tempdir().unwrap();
    let mut good = Feed::init(&tmp.path().join("good"), "msp", t);
    good.add("P-1", "high", "CVE-2099-1001", 1000, 5);
    good.publish(t);
    let site = Site::new(tmp.path(), "s", &[&good]);
    let mut evil = Feed::init(&tmp.path().join("evil"), "msp", t);
    evil.add("P-1", "high", "CVE-2099-1001", 1000, 5);
    evil.publish(t);
    let forged = evil.export(&tmp.path().join("evil.pwb"), None, t);
    let before = site.snapshot();
    let out = site.import(&forged);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("which is not a timestamp key"), "{err}");
    assert_eq!(
        err.matches("which is not a timestamp key").count(),
        1,
        "{err}"
    );
    assert!(repeated_clauses(&err).is_empty(), "{err}");
    assert_eq!(site.snapshot(), before, "a refused import changes nothing");
}
