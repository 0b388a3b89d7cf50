//! The legacy host registry with the real binaries: agentless hosts added, listed,
//! shown and removed (`--json` and text), bad input refused with nothing stored, a CSV
//! import that is all or nothing and names every bad row by line number, HTML kept as
//! text, and an enrolled agent that plays debian 10 listed as end-of-life.

use std::path::Path;

use serde_json::Value;

use crate::support::{Server, patchward, run, stderr, stdout};

const AGENT: &str = env!("CARGO_BIN_EXE_patchward-agent");

fn legacy(data: &Path, args: &[&str]) -> std::process::Output {
    run({
        let mut c = patchward(data);
        c.arg("legacy").args(args);
        c
    })
}

fn ok(o: std::process::Output) -> String {
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    stdout(&o)
}

fn refused(o: std::process::Output) -> String {
    assert!(!o.status.success(), "succeeded: {}", stdout(&o));
    stderr(&o)
}

fn list(data: &Path) -> Vec<Value> {
    serde_json::from_str(&ok(legacy(data, &["list", "--json"]))).unwrap()
}

fn audit(data: &Path) -> Vec<Value> {
    let o = run({
        let mut c = patchward(data);
        c.args(["audit", "list", "--limit", "100", "--json"]);
        c
    });
    serde_json::from_str(&ok(o)).unwrap()
}

fn init(data: &Path) {
    ok(run({
        let mut c = patchward(data);
        c.arg("init");
        c
    }));
}

#[test]
fn add_list_show_remove_round_trip_with_html_kept_as_text() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    init(&data);

    let out = ok(legacy(
        &data,
        &[
            "add",
            "Old-DC",
            "--address",
            "192.0.2.7,2001:db8::7",
            "--product",
            "windows-server",
            "--cycle",
            "2012 R2",
            "--owner",
            "<b>ops</b> & co",
            "--notes",
            "<script>alert(1)</script>",
        ],
    ));
    assert!(
        out.contains("registered legacy host old-dc (windows-server 2012-r2)"),
        "{out}"
    );

    // Refused, and nothing stored: a name with markup, an unknown cycle, a taken name.
    let before = list(&data);
    let e = refused(legacy(
        &data,
        &[
            "add",
            "<script>x</script>",
            "--address",
            "192.0.2.8",
            "--product",
            "debian",
            "--cycle",
            "10",
        ],
    ));
    assert!(
        e.contains("invalid name: character '<' is not allowed"),
        "{e}"
    );
    let e = refused(legacy(
        &data,
        &[
            "add",
            "dc2",
            "--address",
            "192.0.2.8",
            "--product",
            "debian",
            "--cycle",
            "99",
        ],
    ));
    assert!(
        e.contains(
            "invalid cycle: debian has no cycle \"99\"; known cycles, newest first: 13, 12, 11, 10"
        ),
        "{e}"
    );
    let e = refused(legacy(
        &data,
        &[
            "add",
            "old-dc",
            "--address",
            "192.0.2.8",
            "--product",
            "debian",
            "--cycle",
            "10",
        ],
    ));
    assert!(e.contains("use `legacy remove` first"), "{e}");
    assert_eq!(list(&data), before);

    let hosts = list(&data);
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    let h = &hosts[0];
    assert_eq!(
        h["host"],
        serde_json::json!({"kind": "agentless", "name": "old-dc"})
    );
    assert_eq!(
        h["addresses"],
        serde_json::json!(["192.0.2.7", "2001:db8::7"])
    );
    assert_eq!(
        (&h["product"], &h["cycle"]),
        (&"windows-server".into(), &"2012-r2".into())
    );
    assert_eq!(h["lifecycle"]["state"], "eol");
    assert_eq!(h["lifecycle"]["eol_date"], "2026-10-13");
    assert_eq!(h["owner"], "<b>ops</b> & co");
    assert_eq!(h["notes"], "<script>alert(1)</script>");
    assert_eq!(h["acceptance_status"], "missing");
    assert_eq!(h["excluded"], true);

    let text = ok(legacy(&data, &["list"]));
    let row = text.lines().find(|l| l.starts_with("old-dc")).expect(&text);
    for part in [
        "agentless",
        "eol",
        "windows-server 2012-r2",
        "2026-10-13 (",
        "missing",
        "no",
    ] {
        assert!(row.contains(part), "{part:?} in {row:?}");
    }
    let shown: Value =
        serde_json::from_str(&ok(legacy(&data, &["show", "OLD-DC", "--json"]))).unwrap();
    assert_eq!(&shown, h);
    let text = ok(legacy(&data, &["show", "old-dc"]));
    assert!(text.contains("owner:        <b>ops</b> & co"), "{text}");
    assert!(text.contains("  <script>alert(1)</script>"), "{text}");
    assert!(
        text.contains("rollouts:     never offered (no agent"),
        "{text}"
    );

    let e = refused(legacy(&data, &["remove", "old-dc", "--reason", ""]));
    assert!(e.contains("invalid reason: must not be empty"), "{e}");
    let out = ok(legacy(
        &data,
        &["remove", "old-dc", "--reason", "decommissioned"],
    ));
    assert!(out.contains("removed legacy host old-dc"), "{out}");
    assert!(list(&data).is_empty());
    let e = refused(legacy(&data, &["show", "old-dc"]));
    assert!(e.contains("no host \"old-dc\""), "{e}");

    let actions: Vec<(String, String)> = audit(&data)
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("legacy."))
        .map(|e| {
            (
                e["action"].as_str().unwrap().into(),
                e["subject"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut actions = actions;
    actions.sort();
    assert_eq!(
        actions,
        vec![
            ("legacy.add".to_string(), "old-dc".to_string()),
            ("legacy.remove".to_string(), "old-dc".to_string())
        ]
    );
}

#[test]
fn a_csv_with_bad_rows_imports_nothing_and_names_each_row() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    init(&data);
    let file = tmp.path().join("hosts.csv");

    std::fs::write(
        &file,
        "name,addresses,product,cycle,owner\n\
         dc1,192.0.2.1,windows-server,2012 R2,ops\n\
         dc2,192.0.2.2,windows-servr,2012,ops\n\
         dc3,192.0.2.3,debian,10,ops\n",
    )
    .unwrap();
    let e = refused(legacy(&data, &["import", file.to_str().unwrap()]));
    assert!(e.contains("hosts.csv: 1 bad row(s)"), "{e}");
    assert!(
        e.contains("line 3: invalid product: \"windows-servr\" is not in the lifecycle catalog (did you mean \"windows-server\"?)"),
        "{e}"
    );
    assert!(!e.contains("line 2") && !e.contains("line 4"), "{e}");
    assert!(list(&data).is_empty());

    std::fs::write(
        &file,
        "name,addresses,product,cycle\n\
         dc1,192.0.2.1;192.0.2.1,debian,10\n\
         ok1,192.0.2.9,debian,10\n\
         <b>dc</b>,192.0.2.2,debian,10\n\
         ok1,192.0.2.10,debian,10\n",
    )
    .unwrap();
    let e = refused(legacy(&data, &["import", file.to_str().unwrap()]));
    assert!(e.contains("3 bad row(s)"), "{e}");
    assert!(
        e.contains("line 2: invalid address: 192.0.2.1 is given twice"),
        "{e}"
    );
    assert!(
        e.contains("line 4: invalid name: character '<' is not allowed"),
        "{e}"
    );
    assert!(
        e.contains("line 5: name \"ok1\" is already on line 3"),
        "{e}"
    );
    assert!(list(&data).is_empty());

    std::fs::write(
        &file,
        "name,addresses,product,cycle,unlisted,notes\n\
         dc1,192.0.2.1 192.0.2.11,windows-server,2012 R2,,\n\
         nas,192.0.2.3,acme-os,7,yes,\"<i>vendor</i> appliance\"\n",
    )
    .unwrap();
    let out = ok(legacy(&data, &["import", file.to_str().unwrap()]));
    assert!(out.contains("imported 2 legacy host(s)"), "{out}");
    let hosts = list(&data);
    let names: Vec<(&str, &str)> = hosts
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap(),
                h["lifecycle"]["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(names, vec![("dc1", "eol"), ("nas", "unknown")]);
    assert_eq!(hosts[1]["notes"], "<i>vendor</i> appliance");
    let entry = audit(&data)
        .into_iter()
        .find(|e| e["action"] == "legacy.import")
        .unwrap();
    // `details` is the entry's JSON text, as hashed.
    let details: Value = serde_json::from_str(entry["details"].as_str().unwrap()).unwrap();
    assert_eq!(details["count"], 2);
    assert_eq!(details["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(entry["subject"], file.display().to_string());
}

#[test]
fn an_agent_on_debian_10_is_listed_as_end_of_life() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start(&data);
    let token = ok(run({
        let mut c = patchward(&data);
        c.args(["hosts", "token", "create", "--uses", "2"]);
        c
    }));
    let os_release = tmp.path().join("os-release");
    std::fs::write(
        &os_release,
        "PRETTY_NAME=\"Debian GNU/Linux 10 (buster)\"\nID=debian\nVERSION_ID=\"10\"\n",
    )
    .unwrap();
    for (name, os) in [("buster1", Some(&os_release)), ("current1", None)] {
        let o = run({
            let mut c = std::process::Command::new(AGENT);
            c.arg("--state-dir").arg(tmp.path().join(name));
            c.args(["enroll", "--server", &server.url, "--token", token.trim()])
                .args(["--hostname", name]);
            c.env_remove("PATCHWARD_AGENT_OS_RELEASE");
            if let Some(p) = os {
                c.env("PATCHWARD_AGENT_OS_RELEASE", p);
            } else {
                // A supported release, whatever the machine running the test is.
                let current = tmp.path().join("os-release-13");
                std::fs::write(&current, "ID=debian\nVERSION_ID=\"13\"\n").unwrap();
                c.env("PATCHWARD_AGENT_OS_RELEASE", current);
            }
            c
        });
        ok(o);
    }

    let hosts = list(&data);
    assert_eq!(
        hosts.len(),
        1,
        "only the debian 10 host is legacy: {hosts:?}"
    );
    let h = &hosts[0];
    assert_eq!(h["host"]["kind"], "agent");
    assert_eq!(h["name"], "buster1");
    assert!(h["host"]["id"].as_str().unwrap().starts_with("h-"));
    assert_eq!(
        (&h["product"], &h["cycle"]),
        (&"debian".into(), &"10".into())
    );
    assert_eq!(h["lifecycle"]["state"], "eol");
    assert_eq!(h["lifecycle"]["eol_date"], "2024-06-30");
    assert_eq!(h["excluded"], true);
    assert!(h["last_seen"].is_string() && h["added_at"].is_null());

    // Any enrolled host can be shown; a supported one says so.
    let shown: Value =
        serde_json::from_str(&ok(legacy(&data, &["show", "current1", "--json"]))).unwrap();
    assert_eq!(shown["lifecycle"]["state"], "supported");
    assert_eq!(shown["excluded"], false);

    // The registry does not take an enrolled host's name, nor remove an agent host.
    let e = refused(legacy(
        &data,
        &[
            "add",
            "buster1",
            "--address",
            "192.0.2.1",
            "--product",
            "debian",
            "--cycle",
            "10",
        ],
    ));
    assert!(e.contains("an enrolled host (h-"), "{e}");
    let e = refused(legacy(&data, &["remove", "buster1", "--reason", "x"]));
    assert!(
        e.contains("is an agent host") && e.contains("patchward hosts revoke"),
        "{e}"
    );
    assert_eq!(list(&data), hosts);
}
