//! A legacy host's flows and the named sets with the real binary: added (the words
//! after the host are the flow, `--comment` gives its comment), listed as text and
//! JSON, re-added without change, removed; every refusal names what is wrong and
//! stores nothing.

use std::path::Path;

use serde_json::Value;

use crate::support::{patchward, run, stderr, stdout};

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

fn flows(data: &Path, host: &str) -> Vec<String> {
    let v: Value =
        serde_json::from_str(&ok(legacy(data, &["flow", "list", host, "--json"]))).unwrap();
    v["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["flow"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn flows_and_sets_are_added_listed_and_removed_and_bad_input_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(run({
        let mut c = patchward(&data);
        c.arg("init");
        c
    }));
    ok(legacy(
        &data,
        &[
            "add",
            "legacy-db",
            "--address",
            "192.0.2.10",
            "--product",
            "windows-server",
            "--cycle",
            "2012-r2",
        ],
    ));
    let text = ok(legacy(&data, &["flow", "list", "legacy-db"]));
    assert!(text.contains("has no flows: it is not fenced"), "{text}");

    // A flow that names an undefined set is refused; nothing is stored.
    let e = refused(legacy(
        &data,
        &[
            "flow",
            "add",
            "legacy-db",
            "in",
            "tcp",
            "@lan-clients",
            "port",
            "1433",
        ],
    ));
    assert!(e.contains("lan-clients"), "{e}");
    assert!(flows(&data, "legacy-db").is_empty());

    let out = ok(legacy(
        &data,
        &["set", "add", "lan-clients", "192.0.2.0/25", "192.0.2.200"],
    ));
    assert!(
        out.contains("set @lan-clients defined with 2 member(s)"),
        "{out}"
    );
    let out = ok(legacy(
        &data,
        &[
            "flow",
            "add",
            "legacy-db",
            "in",
            "tcp",
            "@lan-clients",
            "port",
            "1433,1434",
            "--comment",
            "ERP <clients>",
        ],
    ));
    assert!(
        out.contains("flow `in tcp @lan-clients port 1433-1434 \"ERP <clients>\"` added"),
        "{out}"
    );
    assert!(out.contains("legacy segment plan"), "{out}");
    // The same flow again: nothing changes.
    let out = ok(legacy(
        &data,
        &[
            "flow",
            "add",
            "legacy-db",
            "in tcp @lan-clients port 1433-1434 \"ERP <clients>\"",
        ],
    ));
    assert!(out.contains("already has flow"), "{out}");
    assert_eq!(
        flows(&data, "legacy-db"),
        ["in tcp @lan-clients port 1433-1434 \"ERP <clients>\""]
    );

    // Bad flows: each refused with its reason, nothing stored.
    for (args, want) in [
        (vec!["in", "tcp", "192.0.2.0/24"], "need ports"),
        (
            vec!["sideways", "tcp", "192.0.2.1", "port", "22"],
            "unknown direction",
        ),
        (
            vec!["in", "icmp", "192.0.2.1", "port", "22"],
            "icmp has no ports",
        ),
        (vec!["in", "tcp", "2001:db8::1", "port", "22"], "IPv6"),
    ] {
        let mut a = vec!["flow", "add", "legacy-db"];
        a.extend(args);
        let e = refused(legacy(&data, &a));
        assert!(e.contains(want), "{a:?}: {e}");
    }
    let e = refused(legacy(
        &data,
        &["flow", "add", "no-such-host", "in", "icmp", "192.0.2.1"],
    ));
    assert!(e.contains("no-such-host"), "{e}");
    assert_eq!(flows(&data, "legacy-db").len(), 1);

    // A set in use cannot be removed; after the flow goes, it can.
    let e = refused(legacy(&data, &["set", "remove", "lan-clients"]));
    assert!(e.contains("legacy-db"), "{e}");
    let sets: Value = serde_json::from_str(&ok(legacy(&data, &["set", "list", "--json"]))).unwrap();
    assert_eq!(
        sets[0]["members"],
        serde_json::json!(["192.0.2.0/25", "192.0.2.200/32"])
    );
    let out = ok(legacy(
        &data,
        &[
            "flow",
            "remove",
            "legacy-db",
            "in",
            "tcp",
            "@lan-clients",
            "port",
            "1433-1434",
        ],
    ));
    assert!(out.contains("removed"), "{out}");
    assert!(flows(&data, "legacy-db").is_empty());
    let e = refused(legacy(
        &data,
        &[
            "flow",
            "remove",
            "legacy-db",
            "in",
            "tcp",
            "@lan-clients",
            "port",
            "1433",
        ],
    ));
    assert!(e.contains("has no flow"), "{e}");
    ok(legacy(&data, &["set", "remove", "lan-clients"]));
    assert!(ok(legacy(&data, &["set", "list"])).contains("no named sets"));
}
