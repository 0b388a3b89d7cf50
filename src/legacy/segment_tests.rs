//! Tests of `legacy::segment`. Enforce mode talks to a stand-in for `patchward-netd`
//! that speaks its wire protocol and keeps the applied text in memory (the real helper
//! and kernel are in the system suite, tests/it/legacy_segment_netns.rs).

use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex};

use super::*;
use crate::db::legacy_registry::{self as reg, AgentlessRow};
use crate::db::legacy_segment::FlowRow;
use crate::legacy::flows::Flow;
use crate::legacy::netd::{Request, Response};

pub(crate) fn now() -> Timestamp {
    "2026-12-07T12:00:00Z".parse().unwrap()
}

pub(crate) fn db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("t.db"), Default::default()).unwrap();
    (dir, db)
}

pub(crate) fn add_host(db: &Db, name: &str, address: &str) {
    db.write_blocking(|tx| {
        reg::insert_agentless(
            tx,
            &AgentlessRow {
                name: name.into(),
                addresses: format!("[\"{address}\"]"),
                product: "windows".into(),
                cycle: "xp".into(),
                owner: "ops".into(),
                notes: String::new(),
                added_at: now().to_string(),
                added_by: "admin".into(),
            },
        )
    })
    .unwrap();
}

pub(crate) fn add_flow(db: &Db, host: &str, flow: &str) {
    let f: Flow = flow.parse().unwrap();
    db.write_blocking(|tx| {
        q::insert_flow(
            tx,
            &FlowRow {
                host: host.into(),
                flow: f.to_string(),
                added_at: now().to_string(),
                added_by: "admin".into(),
            },
        )
    })
    .unwrap();
}

fn count(db: &Db, sql: &str) -> i64 {
    db.read_blocking(|c| {
        c.query_row(sql, [], |r| r.get(0))
            .map_err(crate::error::DbError::from)
    })
    .unwrap()
}

fn audits(db: &Db) -> i64 {
    count(db, "SELECT count(*) FROM audit_log")
}

fn fence_events(db: &Db) -> i64 {
    count(
        db,
        "SELECT count(*) FROM legacy_events WHERE kind = 'fence_applied'",
    )
}

/// A stand-in helper: answers `show` and `apply` like netd does, from memory.
pub(crate) struct FakeNetd {
    pub table: Arc<Mutex<Option<String>>>,
    pub applies: Arc<Mutex<usize>>,
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl FakeNetd {
    pub(crate) fn start() -> FakeNetd {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("netd.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let table: Arc<Mutex<Option<String>>> = Arc::default();
        let applies: Arc<Mutex<usize>> = Arc::default();
        let (t, a) = (table.clone(), applies.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(s) = stream else { return };
                let mut line = String::new();
                if BufReader::new(&s).read_line(&mut line).is_err() {
                    continue;
                }
                let answer = match serde_json::from_str::<Request>(&line) {
                    Ok(Request::Show) => {
                        let text = t.lock().unwrap().clone();
                        Response::Table {
                            sha256: text.as_deref().map(sha256_hex),
                            text,
                        }
                    }
                    Ok(Request::Apply { ruleset }) => {
                        let sha256 = sha256_hex(&ruleset);
                        let mut cur = t.lock().unwrap();
                        let changed = cur.as_deref().map(sha256_hex) != Some(sha256.clone());
                        if changed {
                            *cur = Some(ruleset);
                            *a.lock().unwrap() += 1;
                        }
                        Response::Applied { changed, sha256 }
                    }
                    other => Response::Error {
                        message: format!("not served here: {other:?}"),
                    },
                };
                let mut out = serde_json::to_vec(&answer).unwrap();
                out.push(b'\n');
                let _ = (&s).write_all(&out);
            }
        });
        FakeNetd {
            table,
            applies,
            socket,
            _dir: dir,
        }
    }

    pub(crate) fn cfg(&self) -> LegacyConfig {
        LegacyConfig {
            segment_mode: SegmentMode::Enforce,
            netd_socket: self.socket.clone(),
            ..LegacyConfig::default()
        }
    }

    fn applies(&self) -> usize {
        *self.applies.lock().unwrap()
    }
}

fn one_host(db: &Db) {
    add_host(db, "legacy-db", "192.0.2.10");
    add_flow(
        db,
        "legacy-db",
        "in tcp 198.51.100.0/24 port 1433 \"app servers\"",
    );
}

#[test]
fn export_mode_plans_against_the_stored_input_and_refuses_apply_changing_nothing() {
    let (_d, db) = db();
    one_host(&db);
    let cfg = LegacyConfig::default();
    let p = plan(&db, &cfg, now()).unwrap();
    assert!(p.changed);
    assert_eq!(p.applied, None);
    assert_eq!(
        p.against,
        "export mode: nothing was applied yet, so everything is new"
    );
    assert!(
        p.diff.starts_with("--- applied\n+++ wanted\n"),
        "{}",
        p.diff
    );
    assert!(p.diff.contains("+table inet patchward {"), "{}", p.diff);
    assert!(
        p.wanted
            .contains("198.51.100.0/24 . 192.0.2.10 . tcp . 1433"),
        "{}",
        p.wanted
    );

    let before = audits(&db);
    let err = apply(&db, &cfg, now(), "admin", "fence it").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("segment_mode is export: use `patchward legacy segment export --out DIR`"),
        "{err}"
    );
    assert_eq!(audits(&db), before);
    assert_eq!(count(&db, "SELECT count(*) FROM legacy_segment"), 0);

    let st = status(&db, &cfg, now()).unwrap();
    assert_eq!(st.state, FenceState::ExportOnly);
    assert!(st.pending);
    assert_eq!(st.hosts["legacy-db"], HostFence::Pending);
}

#[test]
fn apply_records_audits_and_announces_and_a_second_apply_is_a_no_op() {
    let (_d, db) = db();
    one_host(&db);
    add_host(&db, "old-printer", "192.0.2.20");
    let netd = FakeNetd::start();
    let cfg = netd.cfg();
    let st = status(&db, &cfg, now()).unwrap();
    assert_eq!(st.state, FenceState::NotApplied);
    assert_eq!(st.hosts["legacy-db"], HostFence::Pending);
    assert_eq!(st.hosts["old-printer"], HostFence::NotFenced);

    let wanted = plan(&db, &cfg, now()).unwrap().wanted;
    let before = audits(&db);
    let out = apply(&db, &cfg, now(), "admin", "  CHG-42 fence the database ").unwrap();
    assert!(out.changed);
    assert_eq!(out.sha256, sha256_hex(&wanted));
    assert_eq!(netd.table.lock().unwrap().as_deref(), Some(wanted.as_str()));
    let row = db.read_blocking(q::applied).unwrap().unwrap();
    assert_eq!(row.sha256, out.sha256);
    assert_eq!(row.reason, "CHG-42 fence the database");
    assert_eq!(row.applied_by, "admin");
    let stored = applied_input(&row).unwrap();
    assert_eq!(stored.hosts.len(), 1);
    assert_eq!(stored.hosts[0].key, "legacy-db");
    assert_eq!(audits(&db), before + 1);
    let (action, details): (String, String) = db
        .read_blocking(|c| {
            c.query_row(
                "SELECT action, details FROM audit_log ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(crate::error::DbError::from)
        })
        .unwrap();
    assert_eq!(action, "legacy.segment_applied");
    let d: serde_json::Value = serde_json::from_str(&details).unwrap();
    assert_eq!(d["reason"], "CHG-42 fence the database");
    assert_eq!(d["changed"], true);
    assert_eq!(d["hosts"], json!(["legacy-db"]));
    assert_eq!(d["sha256"], out.sha256.as_str());
    let ev = db
        .read_blocking(|c| events::events_of(c, "legacy-db", 10))
        .unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, "fence_applied");
    assert_eq!(
        ev[0].text,
        "fence applied to legacy-db: 1 allowed flow(s), everything else dropped (by admin: CHG-42 fence the database)"
    );

    let st = status(&db, &cfg, now()).unwrap();
    assert_eq!(st.state, FenceState::Applied);
    assert!(!st.pending);
    assert_eq!(st.hosts["legacy-db"], HostFence::Fenced);
    assert_eq!(st.applied_by.as_deref(), Some("admin"));
    let p = plan(&db, &cfg, now()).unwrap();
    assert!(!p.changed && p.diff.is_empty(), "{}", p.diff);
    assert_eq!(p.against, "the kernel's table (it holds the last apply)");

    // Nothing changed: nothing sent, nothing stored, no event; the audit says so.
    let again = apply(&db, &cfg, now(), "admin", "again").unwrap();
    assert_eq!(
        again,
        ApplyOutcome {
            changed: false,
            sha256: out.sha256.clone()
        }
    );
    assert_eq!(netd.applies(), 1);
    assert_eq!(fence_events(&db), 1);
    assert_eq!(audits(&db), before + 2);
    let row2 = db.read_blocking(q::applied).unwrap().unwrap();
    assert_eq!(row2, row);

    // A new flow: the host is pending, the plan shows just that line.
    add_flow(&db, "legacy-db", "out udp 192.0.2.53 port 53");
    let st = status(&db, &cfg, now()).unwrap();
    assert!(st.pending);
    assert_eq!(st.hosts["legacy-db"], HostFence::Pending);
    assert_eq!(st.state, FenceState::Applied);
    let p = plan(&db, &cfg, now()).unwrap();
    assert!(p.changed);
    let added: Vec<&str> = p.diff.lines().filter(|l| l.starts_with('+')).collect();
    assert!(
        added.iter().any(|l| l.contains("192.0.2.53 . udp . 53")),
        "{}",
        p.diff
    );
    assert!(apply(&db, &cfg, now(), "admin", "dns").unwrap().changed);
    assert_eq!(netd.applies(), 2);
    assert_eq!(fence_events(&db), 2);
}

#[test]
fn a_table_gone_from_the_kernel_is_drifted_and_apply_puts_it_back() {
    let (_d, db) = db();
    one_host(&db);
    let netd = FakeNetd::start();
    let cfg = netd.cfg();
    let out = apply(&db, &cfg, now(), "admin", "first").unwrap();
    *netd.table.lock().unwrap() = None;
    let st = status(&db, &cfg, now()).unwrap();
    assert_eq!(st.state, FenceState::Drifted);
    assert!(!st.pending, "the input did not change, the kernel did");
    let p = plan(&db, &cfg, now()).unwrap();
    assert!(p.changed);
    assert_eq!(
        p.against,
        "the kernel has no table inet patchward: everything is new"
    );
    // Someone else's table: drifted, the plan diffs against what nft lists.
    *netd.table.lock().unwrap() = Some("table inet patchward {\n}\n".into());
    assert_eq!(status(&db, &cfg, now()).unwrap().state, FenceState::Drifted);
    let p = plan(&db, &cfg, now()).unwrap();
    assert_eq!(p.applied.as_deref(), Some("table inet patchward {\n}\n"));
    assert!(p.against.contains("drifted"), "{}", p.against);
    let again = apply(&db, &cfg, now(), "admin", "restore").unwrap();
    assert!(again.changed);
    assert_eq!(again.sha256, out.sha256);
    assert_eq!(status(&db, &cfg, now()).unwrap().state, FenceState::Applied);
    // The input did not change, so no host is announced again.
    assert_eq!(fence_events(&db), 1);
}

#[test]
fn without_the_helper_every_command_says_so_and_export_still_works() {
    let (d, db) = db();
    one_host(&db);
    let cfg = LegacyConfig {
        segment_mode: SegmentMode::Enforce,
        netd_socket: d.path().join("missing.sock"),
        ..LegacyConfig::default()
    };
    let why = format!(
        "patchward-netd is not reachable: its socket {} missing. Enable it with \
         `systemctl enable --now patchward-netd.socket` (this account must be root or in \
         group patchward); until then nothing is applied, and \
         `patchward legacy segment export --out DIR` still works",
        cfg.netd_socket.display()
    );
    let st = status(&db, &cfg, now()).unwrap();
    assert_eq!(st.state, FenceState::HelperAbsent(why.clone()));
    let p = plan(&db, &cfg, now()).unwrap();
    assert!(p.changed);
    assert_eq!(
        p.against,
        format!("{why}: nothing was applied yet, so everything is new")
    );
    let before = audits(&db);
    let err = apply(&db, &cfg, now(), "admin", "fence").unwrap_err();
    assert_eq!(err.to_string(), why);
    assert_eq!(audits(&db), before);
    assert_eq!(count(&db, "SELECT count(*) FROM legacy_segment"), 0);
    assert_eq!(fence_events(&db), 0);
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    assert_eq!(export(&db, &cfg, now(), "admin", &out).unwrap().len(), 3);
}

#[test]
fn an_empty_reason_is_refused_and_changes_nothing() {
    let (_d, db) = db();
    one_host(&db);
    let netd = FakeNetd::start();
    let cfg = netd.cfg();
    for reason in ["", "   ", &"x".repeat(MAX_REASON_CHARS + 1)] {
        let err = apply(&db, &cfg, now(), "admin", reason).unwrap_err();
        assert!(err.to_string().starts_with("invalid reason: "), "{err}");
    }
    assert_eq!(
        apply(&db, &cfg, now(), "admin", "")
            .unwrap_err()
            .to_string(),
        "invalid reason: a reason is required (--reason \"...\"): say why, for the audit log"
    );
    assert_eq!(netd.applies(), 0);
    assert_eq!(audits(&db), 0);
    assert_eq!(count(&db, "SELECT count(*) FROM legacy_segment"), 0);
}

#[test]
fn export_writes_the_table_and_both_csvs_into_an_existing_directory_only() {
    let (d, db) = db();
    one_host(&db);
    let cfg = LegacyConfig::default();
    let missing = d.path().join("nope");
    let err = export(&db, &cfg, now(), "admin", &missing).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "invalid --out: {} is not an existing directory: create it first",
            missing.display()
        )
    );
    assert!(!missing.exists());
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let files = export(&db, &cfg, now(), "admin", &out).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["patchward.nft", "flows.csv", "sets.csv"]);
    let table = std::fs::read_to_string(out.join("patchward.nft")).unwrap();
    assert_eq!(table, plan(&db, &cfg, now()).unwrap().wanted);
    assert_eq!(
        std::fs::read_to_string(out.join("flows.csv")).unwrap(),
        "host,direction,peer,proto,ports,comment\r\nlegacy-db,in,198.51.100.0/24,tcp,1433,app servers\r\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("sets.csv")).unwrap(),
        "set,member\r\n"
    );
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 3);
}

#[test]
fn changed_hosts_names_added_changed_and_removed_hosts() {
    let h = |key: &str, addr: &str| InputHost {
        key: key.into(),
        display: key.into(),
        nft_name: key.into(),
        addresses: vec![addr.parse().unwrap()],
        flows: vec![],
    };
    let old = SegmentInput {
        hosts: vec![
            h("a", "192.0.2.1"),
            h("b", "192.0.2.2"),
            h("c", "192.0.2.3"),
        ],
        sets: BTreeMap::new(),
    };
    let new = SegmentInput {
        hosts: vec![
            h("a", "192.0.2.1"),
            h("b", "192.0.2.9"),
            h("d", "192.0.2.4"),
        ],
        sets: BTreeMap::new(),
    };
    let keys: Vec<(String, bool, bool)> = changed_hosts(Some(&old), &new)
        .into_iter()
        .map(|(k, o, n)| (k, o.is_some(), n.is_some()))
        .collect();
    assert_eq!(
        keys,
        [
            ("b".to_string(), true, true),
            ("c".to_string(), true, false),
            ("d".to_string(), false, true)
        ]
    );
}

#[test]
fn in_export_mode_hosts_are_exported_until_their_flows_change_and_a_stale_mark_changes_nothing() {
    let (d, db) = db();
    one_host(&db);
    add_host(&db, "old-printer", "192.0.2.20");
    let cfg = LegacyConfig::default();
    let st = status(&db, &cfg, now()).unwrap();
    assert_eq!(st.hosts["legacy-db"], HostFence::Pending);
    assert_eq!(st.exported_at, None);
    let seen_before_edit = st.wanted_input_sha256.clone();

    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    export(&db, &cfg, now(), "alice", &out).unwrap();
    let st = status(&db, &cfg, now()).unwrap();
    assert_eq!(st.state, FenceState::ExportOnly);
    assert!(!st.pending);
    assert_eq!(st.hosts["legacy-db"], HostFence::Exported);
    assert_eq!(st.hosts["old-printer"], HostFence::NotFenced);
    assert_eq!(st.exported_by.as_deref(), Some("alice"));
    assert_eq!(
        st.exported_to.as_deref(),
        Some(out.display().to_string().as_str())
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM audit_log WHERE action = 'legacy.segment_exported'"
        ),
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM legacy_events WHERE kind = 'fence_exported' AND host = 'legacy-db'"
        ),
        1
    );

    // A new flow: pending until exported again.
    add_flow(&db, "old-printer", "in tcp 198.51.100.7 port 9100");
    let st = status(&db, &cfg, now()).unwrap();
    assert!(st.pending);
    assert_eq!(st.hosts["legacy-db"], HostFence::Exported);
    assert_eq!(st.hosts["old-printer"], HostFence::Pending);

    // A mark naming the flows seen before the edit is refused and records nothing.
    let (audits_before, row_before) =
        (audits(&db), db.read_blocking(q::exported).unwrap().unwrap());
    let err =
        mark_exported(&db, &cfg, now(), "bob", &seen_before_edit, "the firewall").unwrap_err();
    assert!(
        err.to_string()
            .contains("the flows changed since these files were made: nothing was recorded"),
        "{err}"
    );
    assert_eq!(audits(&db), audits_before);
    assert_eq!(db.read_blocking(q::exported).unwrap().unwrap(), row_before);

    // Naming the current flows records them.
    let seen = st.wanted_input_sha256.clone();
    mark_exported(&db, &cfg, now(), "bob", &seen, "the firewall").unwrap();
    let st = status(&db, &cfg, now()).unwrap();
    assert!(!st.pending);
    assert_eq!(st.hosts["old-printer"], HostFence::Exported);
    assert_eq!(st.exported_by.as_deref(), Some("bob"));
    let text = crate::legacy::segment_cli::status_text(&st);
    assert!(
        text.contains("  last exported ") && text.contains(" by bob to the firewall\n"),
        "{text}"
    );
}
