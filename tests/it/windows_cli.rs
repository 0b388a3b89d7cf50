//! `patchward windows add|remove|list` with the real binary: an entry added from a
//! script is checked like one from the Windows page, audited with the invoking user,
//! used by `windows next`, and removed again; bad input is refused with a message that
//! names the field, and changes nothing (entries and audit log as they were).

use serde_json::Value;

use crate::feedkit::Site;
use crate::jobs::ok;
use crate::support::{run, stderr};

fn json(site: &Site, args: &[&str]) -> Value {
    serde_json::from_str(&ok(run(site.cmd(args)))).unwrap()
}

/// The window entries and the audit log: what a refused command must leave alone.
fn snapshot(site: &Site) -> (Value, usize) {
    let audit = json(site, &["audit", "list", "--limit", "100000", "--json"]);
    (
        json(site, &["windows", "list", "--json"]),
        audit.as_array().unwrap().len(),
    )
}

#[test]
fn windows_are_added_listed_used_and_removed_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::new(tmp.path(), "w", &[]);
    assert_eq!(
        json(&site, &["windows", "list", "--json"]),
        Value::Array(vec![])
    );
    let added = ok(run(site.cmd(&[
        "windows",
        "add",
        "--set",
        "default",
        "--kind",
        "weekly",
        "--days",
        "sat,sun",
        "--start",
        "10:00",
        "--duration",
        "2h",
        "--reason",
        "weekend maintenance",
    ])));
    assert!(
        added.contains("window entry 1 added to the set default"),
        "{added}"
    );
    assert!(added.contains("next opening"), "{added}");
    let list = json(&site, &["windows", "list", "--json"]);
    assert_eq!(list[0]["id"], 1);
    assert_eq!(list[0]["kind"], "weekly");
    assert!(
        list[0]["spec"].as_str().unwrap().contains("\"sat\""),
        "{list}"
    );
    assert_eq!(list[0]["problem"], Value::Null);
    let text = ok(run(site.cmd(&["windows", "list"])));
    assert!(text.contains("default") && text.contains("10:00"), "{text}");
    // The scheduler's calculation sees it: a 2 h weekend opening at 10:00.
    let next =
        ok(run(site.cmd(&[
            "windows", "next", "--ring", "pilot", "--count", "20",
        ])));
    assert!(
        next.lines()
            .any(|l| (l.contains("Sat ") || l.contains("Sun ")) && l.contains("10:00")),
        "{next}"
    );
    let audit = json(&site, &["audit", "list", "--json"]);
    let entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "window.added")
        .expect("window.added audited");
    assert_eq!(entry["subject"], "window:1");
    assert!(!entry["actor"].as_str().unwrap().is_empty());
    assert!(
        entry["details"].to_string().contains("weekend maintenance"),
        "{entry}"
    );

    // Refused, each with its reason, and nothing changes.
    let before = snapshot(&site);
    for (args, want) in [
        (
            vec![
                "windows",
                "add",
                "--set",
                "default",
                "--kind",
                "fortnightly",
                "--reason",
                "x",
            ],
            "is not a kind of window",
        ),
        (
            vec![
                "windows",
                "add",
                "--set",
                "default",
                "--kind",
                "weekly",
                "--days",
                "sat",
                "--duration",
                "2h",
                "--reason",
                "x",
            ],
            "start: required",
        ),
        (
            vec![
                "windows",
                "add",
                "--set",
                "nope",
                "--kind",
                "once",
                "--start",
                "2027-01-02T08:00",
                "--duration",
                "1h",
                "--reason",
                "x",
            ],
            "nope",
        ),
        (
            vec![
                "windows",
                "add",
                "--set",
                "default",
                "--kind",
                "weekly",
                "--days",
                "sat",
                "--start",
                "25:00",
                "--duration",
                "2h",
                "--reason",
                "x",
            ],
            "25:00",
        ),
        (
            vec![
                "windows",
                "add",
                "--set",
                "default",
                "--kind",
                "once",
                "--start",
                "2027-01-02T08:00",
                "--duration",
                "1h",
                "--reason",
                " ",
            ],
            "--reason",
        ),
        (
            vec!["windows", "remove", "99", "--reason", "x"],
            "no window entry 99",
        ),
        (vec!["windows", "remove", "1", "--reason", ""], "--reason"),
    ] {
        let out = run(site.cmd(&args));
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
        assert_eq!(snapshot(&site), before, "{args:?} changed something");
    }

    let removed = ok(run(
        site.cmd(&["windows", "remove", "1", "--reason", "done"])
    ));
    assert!(removed.contains("window entry 1 removed"), "{removed}");
    assert_eq!(
        json(&site, &["windows", "list", "--json"]),
        Value::Array(vec![])
    );
    let audit = json(&site, &["audit", "list", "--json"]);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "window.removed" && e["subject"] == "window:1"),
        "{audit}"
    );
}
