//! The audit trail from the CLI: notes, listing, and tamper detection.

use crate::support::{Server, patchward, run, stderr, stdout};

#[test]
fn tampered_audit_row_is_reported_with_its_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // First start: keys, certificate, the admin account and the start (entries 1..5).
    drop(Server::start(&data));
    for i in 0..3 {
        let out = run({
            let mut c = patchward(&data);
            c.args(["audit", "note", "--actor", "alice", "--message"])
                .arg(format!("replaced switch {i}"));
            c
        });
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let ok = run({
        let mut c = patchward(&data);
        c.args(["audit", "verify"]);
        c
    });
    assert!(ok.status.success());
    assert!(stdout(&ok).contains("intact: 8 entries"), "{}", stdout(&ok));

    // Someone with write access to the file rewrites entry 5 (and must first remove
    // the append-only triggers to do so).
    let conn = rusqlite::Connection::open(data.join("patchward.db")).unwrap();
    let refused = conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 5", []);
    assert!(refused.is_err());
    conn.execute_batch(
        "DROP TRIGGER audit_log_no_update;
         UPDATE audit_log SET details = '{\"message\":\"nothing happened\"}' WHERE seq = 5;",
    )
    .unwrap();
    drop(conn);

    let bad = run({
        let mut c = patchward(&data);
        c.args(["audit", "verify"]);
        c
    });
    assert_eq!(bad.status.code(), Some(1));
    let out = stdout(&bad);
    assert!(out.contains("BROKEN at entry 5"), "{out}");
    assert!(out.contains("modified"), "{out}");
    assert!(out.contains("entries before 5 are intact"), "{out}");
}

#[test]
fn empty_note_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    drop(Server::start(&data));
    let before = stdout(&run({
        let mut c = patchward(&data);
        c.args(["audit", "list", "--json"]);
        c
    }));
    let out = run({
        let mut c = patchward(&data);
        c.args(["audit", "note", "--message", "  "]);
        c
    });
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--message must not be empty"));
    let after = stdout(&run({
        let mut c = patchward(&data);
        c.args(["audit", "list", "--json"]);
        c
    }));
    assert_eq!(before, after);
}

/// The actors of the audit entries, oldest first.
fn actors(data: &std::path::Path) -> Vec<String> {
    let out = run({
        let mut c = patchward(data);
        c.args(["audit", "list", "--json"]);
        c
    });
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut a: Vec<(i64, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["seq"].as_i64().unwrap(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    a.sort();
    a.into_iter().map(|(_, s)| s).collect()
}

#[test]
fn the_cli_actor_comes_from_the_kernel_not_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    drop(Server::start(&data));
    // This test process and the CLI it starts share their ancestors, so both find
    // the same account (the real uid's, or for root the caller that became root).
    let me = format!("cli:{}", patchward::auth::actor::invoking_account());
    for (args, want) in [
        (&["audit", "note", "--message", "first"][..], me.clone()),
        (
            &["audit", "note", "--message", "for", "--actor", "alice"][..],
            format!("{me} for alice"),
        ),
    ] {
        let out = run({
            let mut c = patchward(&data);
            c.args(args)
                .env("USER", "mallory")
                .env("LOGNAME", "mallory")
                .env("SUDO_USER", "mallory")
                .env("SUDO_UID", "4242");
            c
        });
        assert!(out.status.success(), "{}", stderr(&out));
        let got = actors(&data);
        assert_eq!(got.last(), Some(&want), "{got:?}");
        assert!(got.iter().all(|a| !a.contains("mallory")), "{got:?}");
    }
}
