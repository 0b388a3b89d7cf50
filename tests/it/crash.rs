//! Crash safety: SIGKILL the server and the admin CLI writers at random moments during a
//! burst of audited writes; the database and the audit chain must stay sound.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::Rng;

use crate::support::{BIN, Server, patchward, run, stdout};

const ROUNDS: usize = 20;
const WRITERS: usize = 3;

#[test]
fn sigkill_during_audited_writes_never_breaks_the_chain_or_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut rng = rand::thread_rng();

    for round in 0..ROUNDS {
        let server = Server::start(&data);
        // Each writer is a shell loop of `patchward audit note` processes, in its own
        // process group so one kill stops the loop and the note it is writing.
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                Command::new("sh")
                    .arg("-c")
                    .arg(format!(
                        "i=0; while [ $i -lt 500 ]; do \
                           \"{BIN}\" --data-dir \"{}\" audit note --actor w{w} \
                             --message \"round {round} writer {w} note $i\" >/dev/null || exit 1; \
                           i=$((i+1)); done",
                        data.display()
                    ))
                    .env_remove("PATCHWARD_CONFIG")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .process_group(0)
                    .spawn()
                    .unwrap()
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(80..400)));
        for mut w in writers {
            let pgid = i32::try_from(w.id()).unwrap();
            assert!(pgid > 1);
            // SAFETY: plain syscall; a negative pid names the writer's own process group.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            let _ = w.wait();
        }
        // The server dies the same way (SIGKILL, no shutdown path).
        drop(server);
    }

    let verify = run({
        let mut c = patchward(&data);
        c.args(["audit", "verify", "--json"]);
        c
    });
    let report: serde_json::Value = serde_json::from_str(&stdout(&verify)).unwrap();
    assert!(verify.status.success(), "{report}");
    assert!(report["first_broken"].is_null());
    // 2 key entries + one "started" per round + the notes that committed.
    let entries = report["entries"].as_u64().unwrap();
    assert!(
        entries > 2 + ROUNDS as u64,
        "too few writes happened: {entries}"
    );

    let conn = rusqlite::Connection::open(data.join("patchward.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    // No half-written row: every note is complete and its JSON parses.
    let mut stmt = conn
        .prepare("SELECT actor, action, details, length(hash) FROM audit_log")
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .unwrap();
    let mut notes = 0;
    for row in rows {
        let (actor, action, details, hash_len) = row.unwrap();
        assert_eq!(hash_len, 64);
        let v: serde_json::Value = serde_json::from_str(&details).unwrap();
        if action == "note" {
            notes += 1;
            // `--actor wN` is recorded beside the real caller: `cli:ACCOUNT for wN`.
            assert!(
                actor.starts_with("cli:") && actor.contains(" for w"),
                "{actor}"
            );
            let msg = v["message"].as_str().unwrap();
            assert!(msg.starts_with("round ") && msg.contains(" note "), "{msg}");
        }
    }
    assert!(notes > 0, "no note was written before the kills");

    // And the appliance starts again on the survived state.
    let s = Server::start(&data);
    let r = crate::support::http()
        .get(format!("{}/healthz", s.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}
