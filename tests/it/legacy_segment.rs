//! `patchward legacy segment plan|apply|export|status` with the real binary: export
//! mode (apply refused, files written), enforce mode without the helper (every command
//! says so, exit codes, nothing stored), bad input refused with nothing changed.
//! Flows are stored through `db::legacy_segment` (the flow CLI is another module's).

use std::path::{Path, PathBuf};

use patchward::db::Db;
use patchward::db::legacy_segment::{FlowRow, insert_flow};
use patchward::legacy::flows::Flow;
use serde_json::Value;

use crate::support::{patchward, run, stderr, stdout};

struct Site {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    config: PathBuf,
    socket: PathBuf,
}

impl Site {
    fn new(mode: &str) -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let config = tmp.path().join("patchward.toml");
        let socket = tmp.path().join("netd.sock");
        std::fs::write(
            &config,
            format!(
                "[legacy]\nsegment_mode = \"{mode}\"\nnetd_socket = \"{}\"\n",
                socket.display()
            ),
        )
        .unwrap();
        let s = Site {
            _tmp: tmp,
            data,
            config,
            socket,
        };
        ok(s.run(&["init"]));
        ok(s.run(&[
            "legacy",
            "add",
            "legacy-db",
            "--address",
            "192.0.2.10",
            "--product",
            "windows-server",
            "--cycle",
            "2012 R2",
        ]));
        s.flow(
            "legacy-db",
            "in tcp 198.51.100.0/24 port 1433 \"app servers\"",
        );
        s
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut c = patchward(&self.data);
        c.arg("--config").arg(&self.config).args(args);
        run(c)
    }

    fn segment(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["legacy", "segment"];
        all.extend_from_slice(args);
        self.run(&all)
    }

    fn flow(&self, host: &str, flow: &str) {
        let db = Db::open(&self.data.join("patchward.db"), Default::default()).unwrap();
        let f: Flow = flow.parse().unwrap();
        db.write_blocking(|tx| {
            insert_flow(
                tx,
                &FlowRow {
                    host: host.into(),
                    flow: f.to_string(),
                    added_at: "2026-12-07T12:00:00Z".into(),
                    added_by: "test".into(),
                },
            )
        })
        .unwrap();
    }

    fn audit_len(&self) -> usize {
        let o = self.run(&["audit", "list", "--limit", "1000", "--json"]);
        serde_json::from_str::<Vec<Value>>(&ok(o)).unwrap().len()
    }

    fn status(&self) -> Value {
        serde_json::from_str(&ok(self.segment(&["status", "--json"]))).unwrap()
    }
}

fn ok(o: std::process::Output) -> String {
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    stdout(&o)
}

fn refused(o: std::process::Output) -> String {
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    stderr(&o)
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn export_mode_plans_exports_and_refuses_apply() {
    let site = Site::new("export");
    let plan = ok(site.segment(&["plan"]));
    assert!(
        plan.starts_with(
            "Compared with export mode: nothing was applied yet, so everything is new.\n--- applied\n+++ wanted\n"
        ),
        "{plan}"
    );
    assert!(
        plan.contains("198.51.100.0/24 . 192.0.2.10 . tcp . 1433"),
        "{plan}"
    );
    let status = site.status();
    assert_eq!(status["mode"], "export");
    assert_eq!(status["state"], "export_only");
    assert_eq!(status["hosts"]["legacy-db"], "pending");

    let before = site.audit_len();
    let err = refused(site.segment(&["apply", "--reason", "fence it"]));
    assert!(
        err.contains("segment_mode is export: use `patchward legacy segment export --out DIR`"),
        "{err}"
    );
    assert_eq!(site.audit_len(), before);
    assert_eq!(site.status()["applied_at"], Value::Null);

    let out = site.data.parent().unwrap().join("fw");
    let err = refused(site.segment(&["export", "--out", out.to_str().unwrap()]));
    assert!(
        err.contains(&format!(
            "invalid --out: {} is not an existing directory: create it first",
            out.display()
        )),
        "{err}"
    );
    assert!(!out.exists());
    std::fs::create_dir(&out).unwrap();
    let said = ok(site.segment(&["export", "--out", out.to_str().unwrap()]));
    assert_eq!(
        said,
        format!(
            "wrote {0}/patchward.nft\nwrote {0}/flows.csv\nwrote {0}/sets.csv\n",
            out.display()
        )
    );
    assert_eq!(files(&out), ["flows.csv", "patchward.nft", "sets.csv"]);
    let table = std::fs::read_to_string(out.join("patchward.nft")).unwrap();
    assert!(table.starts_with("table inet patchward {"), "{table}");
    assert!(
        table.contains("198.51.100.0/24 . 192.0.2.10 . tcp . 1433"),
        "{table}"
    );
    let json: Value = serde_json::from_str(&ok(site.segment(&["plan", "--json"]))).unwrap();
    assert_eq!(json["wanted"].as_str().unwrap(), table);
    assert_eq!(
        std::fs::read_to_string(out.join("flows.csv")).unwrap(),
        "host,direction,peer,proto,ports,comment\r\nlegacy-db,in,198.51.100.0/24,tcp,1433,app servers\r\n"
    );
}

#[test]
fn enforce_mode_without_the_helper_says_so_everywhere_and_stores_nothing() {
    let site = Site::new("enforce");
    let why = format!(
        "patchward-netd is not reachable: its socket {} missing. Enable it with \
         `systemctl enable --now patchward-netd.socket`",
        site.socket.display()
    );
    let text = ok(site.segment(&["status"]));
    assert!(
        text.starts_with("Segment mode enforce: helper absent\n"),
        "{text}"
    );
    assert!(text.contains(&why), "{text}");
    assert!(
        text.contains("`patchward legacy segment export --out DIR` still works"),
        "{text}"
    );
    assert!(text.contains("legacy-db  pending"), "{text}");
    let status = site.status();
    assert!(
        status["state"]["helper_absent"]
            .as_str()
            .unwrap()
            .starts_with(&why),
        "{status}"
    );
    let plan = ok(site.segment(&["plan"]));
    assert!(plan.starts_with(&format!("Compared with {why}")), "{plan}");
    assert!(plan.contains("+table inet patchward {"), "{plan}");

    let before = site.audit_len();
    let err = refused(site.segment(&["apply", "--reason", "fence it"]));
    assert!(err.contains(&why), "{err}");
    assert!(err.contains("still works"), "{err}");
    // A reason is required, before anything else is looked at.
    let err = refused(site.segment(&["apply"]));
    assert!(
        err.contains("invalid reason: a reason is required (--reason \"...\")"),
        "{err}"
    );
    assert_eq!(site.audit_len(), before);
    assert_eq!(site.status()["applied_at"], Value::Null);

    let out = site.data.parent().unwrap().join("fw");
    std::fs::create_dir(&out).unwrap();
    ok(site.segment(&["export", "--out", out.to_str().unwrap()]));
    assert_eq!(files(&out), ["flows.csv", "patchward.nft", "sets.csv"]);
}
