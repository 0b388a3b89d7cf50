//! Issue [10], the fence end to end in a real kernel: the real `patchward` binary in
//! `segment_mode = "enforce"` talking to the real `patchward-netd` running in the
//! appliance namespace of a `netns_support::Lab` (three namespaces, always removed).
//! `segment plan` shows the diff, `apply --reason` fences (the allowed flow passes, the
//! forbidden one is dropped), a second apply is a no-op, and after the table is deleted
//! by hand `status` says drifted and the keeper of `patchward serve` restores it. A
//! sentinel table and the host's own ruleset are unchanged.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use patchward::db::Db;
use patchward::db::legacy_segment::{FlowRow, insert_flow};
use patchward::legacy::flows::Flow;
use serde_json::Value;

use crate::netns_support::{LEGACY, Lab, host_ruleset, require_root_and_tools};
use crate::support::{Server, patchward, run, stderr, stdout};

struct Site {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    config: PathBuf,
}

impl Site {
    fn run(&self, args: &[&str]) -> String {
        let mut c = patchward(&self.data);
        c.arg("--config").arg(&self.config).args(args);
        let o = run(c);
        assert!(
            o.status.success(),
            "{args:?}: {}\n{}",
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.run(&["legacy", "segment", "status", "--json"])).unwrap()
    }

    fn audit_actions(&self) -> Vec<String> {
        let v: Vec<Value> =
            serde_json::from_str(&self.run(&["audit", "list", "--limit", "1000", "--json"]))
                .unwrap();
        v.iter()
            .map(|e| e["action"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

fn sentinel(lab: &Lab) -> String {
    let file = lab.dir.path().join("sentinel.nft");
    std::fs::write(
        &file,
        "table inet sentinel {\n\
         set admins { type ipv4_addr; elements = { 192.0.2.99 } }\n\
         chain passthrough { type filter hook forward priority 10; policy accept; ip saddr @admins accept; }\n\
         }\n",
    )
    .unwrap();
    lab.router.ok(&["nft", "-f", file.to_str().unwrap()]);
    lab.router.ok(&["nft", "list", "table", "inet", "sentinel"])
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "needs root and nft: cargo test --features system-tests"
)]
fn the_cli_fences_a_host_and_the_keeper_restores_a_deleted_table() {
    require_root_and_tools();
    let host_before = host_ruleset();
    let mut lab = Lab::new("daemon");
    let sentinel_before = sentinel(&lab);
    lab.listen_on_legacy(&[2222, 4445]);
    assert_eq!(lab.connect_from_client(4445), "hello");

    let tmp = tempfile::tempdir().unwrap();
    let site = Site {
        data: tmp.path().join("data"),
        config: tmp.path().join("patchward.toml"),
        _tmp: tmp,
    };
    std::fs::write(
        &site.config,
        format!(
            "[legacy]\nsegment_mode = \"enforce\"\nnetd_socket = \"{}\"\ndns_refresh = \"10s\"\n",
            lab.socket.display()
        ),
    )
    .unwrap();
    site.run(&["init"]);
    site.run(&[
        "legacy",
        "add",
        "legacy-db",
        "--address",
        LEGACY,
        "--product",
        "windows-server",
        "--cycle",
        "2012 R2",
    ]);
    let flow: Flow = "in tcp 192.0.2.0/24 port 2222 \"admins\"".parse().unwrap();
    let db = Db::open(&site.data.join("patchward.db"), Default::default()).unwrap();
    db.write_blocking(|tx| {
        insert_flow(
            tx,
            &FlowRow {
                host: "legacy-db".into(),
                flow: flow.to_string(),
                added_at: "2026-12-07T12:00:00Z".into(),
                added_by: "test".into(),
            },
        )
    })
    .unwrap();
    drop(db);

    let plan = site.run(&["legacy", "segment", "plan"]);
    assert!(
        plan.starts_with(
            "Compared with the kernel has no table inet patchward: everything is new.\n"
        ),
        "{plan}"
    );
    assert!(
        plan.contains("192.0.2.0/24 . 198.51.100.10 . tcp . 2222"),
        "{plan}"
    );
    assert_eq!(site.status()["state"], "not_applied");

    let out = site.run(&[
        "legacy",
        "segment",
        "apply",
        "--reason",
        "CHG-7 fence the db",
    ]);
    assert!(out.starts_with("Applied the fence (sha256 "), "{out}");
    assert_eq!(lab.connect_from_client(2222), "hello");
    assert_eq!(lab.connect_from_client(4445), "timeout");
    let st = site.status();
    assert_eq!(st["state"], "applied");
    assert_eq!(st["hosts"]["legacy-db"], "fenced");
    // The dynamic set's `expires` countdown moves between two listings.
    let stable = |listing: String| -> String {
        listing
            .split(' ')
            .scan(false, |skip, w| {
                let drop = *skip;
                *skip = w == "expires";
                Some(if w == "expires" || drop {
                    None
                } else {
                    Some(w)
                })
            })
            .flatten()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let listing = stable(
        lab.router
            .ok(&["nft", "list", "table", "inet", "patchward"]),
    );

    let again = site.run(&["legacy", "segment", "apply", "--reason", "again"]);
    assert!(again.starts_with("Nothing changed"), "{again}");
    assert_eq!(
        stable(
            lab.router
                .ok(&["nft", "list", "table", "inet", "patchward"])
        ),
        listing
    );
    let plan = site.run(&["legacy", "segment", "plan"]);
    assert!(
        plan.ends_with("No changes: applying would do nothing.\n"),
        "{plan}"
    );

    // Gone by hand (as after a reboot): drifted, and the keeper puts it back.
    lab.router
        .ok(&["nft", "delete", "table", "inet", "patchward"]);
    assert_eq!(lab.connect_from_client(4445), "hello");
    assert_eq!(site.status()["state"], "drifted");
    let text = site.run(&["legacy", "segment", "status"]);
    assert!(
        text.starts_with("Segment mode enforce: drifted\n"),
        "{text}"
    );

    let server = Server::start_with(&site.data, &["--config", site.config.to_str().unwrap()]);
    let start = Instant::now();
    while site.status()["state"] != "applied" {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the keeper did not restore the table"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(lab.connect_from_client(2222), "hello");
    assert_eq!(lab.connect_from_client(4445), "timeout");
    let actions = site.audit_actions();
    assert!(
        actions.iter().any(|a| a == "legacy.segment_restored"),
        "{actions:?}"
    );
    // Deleted again while it runs: restored on its next tick (every 10 s).
    lab.router
        .ok(&["nft", "delete", "table", "inet", "patchward"]);
    let start = Instant::now();
    while lab
        .router
        .cmd(&["nft", "list", "table", "inet", "patchward"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        assert!(
            start.elapsed() < Duration::from_secs(25),
            "the keeper did not restore the table on its tick"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(site.status()["state"], "applied");
    drop(server);

    assert_eq!(
        lab.router.ok(&["nft", "list", "table", "inet", "sentinel"]),
        sentinel_before
    );
    drop(lab);
    assert_eq!(
        host_ruleset(),
        host_before,
        "the init namespace's ruleset changed"
    );
}
