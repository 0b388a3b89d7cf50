use super::*;
use crate::db::Db;
use crate::legacy::hosts::tests::{agentless, db, enroll, now};

fn host(name: &str, addresses: &str, product: &str, cycle: &str) -> NewHost {
    NewHost {
        name: name.into(),
        addresses: addresses.split(',').map(str::to_string).collect(),
        product: product.into(),
        cycle: cycle.into(),
        ..NewHost::default()
    }
}

fn try_add(db: &Db, h: &NewHost) -> Result<ValidHost, LegacyError> {
    db.write_blocking(|tx| add(tx, now(), Catalog::embedded(), h, "admin"))
}

fn try_import(db: &Db, csv: &str) -> Result<usize, LegacyError> {
    db.write_blocking(|tx| {
        import(
            tx,
            now(),
            Catalog::embedded(),
            "hosts.csv",
            csv.as_bytes(),
            "admin",
        )
    })
}

/// (legacy hosts, audit entries): what a refused command must leave as it was.
fn state(db: &Db) -> (Vec<String>, i64) {
    db.read_blocking(|c| {
        let names = crate::db::legacy::agentless_names(c)?;
        let n: i64 = c.query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0))?;
        Ok::<_, crate::error::DbError>((names, n))
    })
    .unwrap()
}

fn audit_actions(db: &Db) -> Vec<(String, String, serde_json::Value)> {
    db.read_blocking(|c| {
        let mut st = c.prepare(
            "SELECT action, subject, details FROM audit_log WHERE action LIKE 'legacy.%' ORDER BY seq",
        )?;
        let rows = st
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, crate::error::DbError>(
            rows.into_iter()
                .map(|(a, s, d)| (a, s, serde_json::from_str(&d).unwrap()))
                .collect(),
        )
    })
    .unwrap()
}

#[test]
fn add_stores_the_host_normalised_with_its_audit_entry() {
    let (_d, db) = db();
    let h = try_add(
        &db,
        &NewHost {
            owner: "<b>ops</b> & co".into(),
            notes: "line one\n<script>alert(1)</script>".into(),
            ..host(
                "Old-DC.corp.example",
                "192.0.2.7, 2001:db8::7",
                "Windows-Server",
                "2012 R2",
            )
        },
    )
    .unwrap();
    assert_eq!(
        (h.name.as_str(), h.product.as_str(), h.cycle.as_str()),
        ("old-dc.corp.example", "windows-server", "2012-r2")
    );
    let row = db
        .read_blocking(|c| crate::db::legacy_registry::agentless(c, "old-dc.corp.example"))
        .unwrap()
        .unwrap();
    assert_eq!(row.addresses, r#"["192.0.2.7","2001:db8::7"]"#);
    // HTML is text: stored exactly as typed.
    assert_eq!(row.owner, "<b>ops</b> & co");
    assert_eq!(row.notes, "line one\n<script>alert(1)</script>");
    assert_eq!(
        (row.added_by.as_str(), row.added_at),
        ("admin", now().to_string())
    );
    let audit = audit_actions(&db);
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].0.as_str(), audit[0].1.as_str()),
        ("legacy.add", "old-dc.corp.example")
    );
    assert_eq!(audit[0].2["cycle"], "2012-r2");
}

#[test]
fn each_bad_add_is_refused_with_its_reason_and_changes_nothing() {
    let (_d, db) = db();
    enroll(&db, "web1", "debian", "12");
    agentless(&db, "printer", "windows-server", "2012");
    let before = state(&db);
    let long_owner = "o".repeat(MAX_OWNER + 1);
    let many: Vec<String> = (1..=17).map(|i| format!("192.0.2.{i}")).collect();
    let cases: Vec<(NewHost, &str)> = vec![
        (
            host("<script>alert(1)</script>", "192.0.2.1", "debian", "10"),
            "invalid name: character '<' is not allowed",
        ),
        (
            host("", "192.0.2.1", "debian", "10"),
            "invalid name: must be 1-253 characters",
        ),
        (
            host("-dc", "192.0.2.1", "debian", "10"),
            "invalid name: label \"-dc\" must not start or end with '-'",
        ),
        (
            host("a..b", "192.0.2.1", "debian", "10"),
            "invalid name: each dot-separated label must be 1-63 characters",
        ),
        (
            host("dc", "300.1.1.1", "debian", "10"),
            "invalid address: \"300.1.1.1\" is not an IPv4 or IPv6 address",
        ),
        (
            host("dc", "192.0.2.0/24", "debian", "10"),
            "invalid address: \"192.0.2.0/24\" is not an IPv4",
        ),
        (
            host("dc", "0.0.0.0", "debian", "10"),
            "invalid address: 0.0.0.0 is an unspecified or multicast address",
        ),
        (
            host("dc", "ff02::1", "debian", "10"),
            "invalid address: ff02::1 is an unspecified or multicast",
        ),
        (
            host("dc", "192.0.2.1,192.0.2.1", "debian", "10"),
            "invalid address: 192.0.2.1 is given twice",
        ),
        (
            host("dc", "", "debian", "10"),
            "invalid address: give 1 to 16 addresses (got 0)",
        ),
        (
            host("dc", &many.join(","), "debian", "10"),
            "invalid address: give 1 to 16 addresses (got 17)",
        ),
        (
            host("dc", "192.0.2.1", "windows-servr", "2012"),
            "invalid product: \"windows-servr\" is not in the lifecycle catalog (did you mean \"windows-server\"?); use --unlisted",
        ),
        (
            host("dc", "192.0.2.1", "windows-server", "2013"),
            "invalid cycle: windows-server has no cycle \"2013\"; known cycles, newest first: 2025, 23h2-ac, 2022, 20h2-sac, 2004-sac, 1909-sac, 1903-sac, 1809-sac, 2019, 1803-sac, 1709-sac, 2016 and 8 older",
        ),
        (
            host("dc", "192.0.2.1", "acme<os>", "1").unlisted(),
            "invalid product: character '<' is not allowed",
        ),
        (
            NewHost {
                owner: long_owner,
                ..host("dc", "192.0.2.1", "debian", "10")
            },
            "invalid owner: is 201 characters; at most 200 are allowed",
        ),
        (
            NewHost {
                owner: "ops\nteam".into(),
                ..host("dc", "192.0.2.1", "debian", "10")
            },
            "invalid owner: control character '\\n' is not allowed",
        ),
        (
            NewHost {
                notes: "bell\u{7}".into(),
                ..host("dc", "192.0.2.1", "debian", "10")
            },
            "invalid notes: control character '\\u{7}' is not allowed",
        ),
        (
            host("PRINTER", "192.0.2.1", "debian", "10"),
            "a legacy host named \"printer\" is already registered; use `legacy remove` first",
        ),
        (
            host("web1", "192.0.2.1", "debian", "10"),
            "an enrolled host (h-",
        ),
    ];
    for (h, want) in cases {
        let e = try_add(&db, &h).unwrap_err().to_string();
        assert!(e.starts_with(want), "{h:?}:\n got: {e}\nwant: {want}");
        assert_eq!(state(&db), before, "{h:?} changed something");
    }
}

impl NewHost {
    fn unlisted(mut self) -> Self {
        self.unlisted = true;
        self
    }
}

#[test]
fn unlisted_registers_what_the_catalog_does_not_know_as_unknown() {
    let (_d, db) = db();
    let h = try_add(
        &db,
        &host("nas", "192.0.2.9", "Acme-OS", "7.1 LTS").unlisted(),
    )
    .unwrap();
    assert_eq!(
        (h.product.as_str(), h.cycle.as_str()),
        ("acme-os", "7.1-lts")
    );
    let v = db
        .read_blocking(|c| crate::legacy::hosts::show(c, "nas", now(), &Default::default()))
        .unwrap();
    assert_eq!(v.lifecycle.state, crate::legacy::catalog::State::Unknown);
}

#[test]
fn import_stores_every_row_in_one_audited_step() {
    let (_d, db) = db();
    let csv = "cycle,name,product,addresses,owner,notes,unlisted\n\
               2012 R2,dc1,windows-server,192.0.2.1;192.0.2.2,ops,\"two\nlines\",\n\
               7,nas,acme-os,192.0.2.3 2001:db8::3,storage,,yes\n";
    assert_eq!(try_import(&db, csv).unwrap(), 2);
    assert_eq!(state(&db).0, vec!["dc1", "nas"]);
    let row = db
        .read_blocking(|c| crate::db::legacy_registry::agentless(c, "dc1"))
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.cycle.as_str(), row.notes.as_str()),
        ("2012-r2", "two\nlines")
    );
    let audit = audit_actions(&db);
    assert_eq!(audit.len(), 1);
    let (action, subject, d) = &audit[0];
    assert_eq!(
        (action.as_str(), subject.as_str()),
        ("legacy.import", "hosts.csv")
    );
    assert_eq!(d["count"], 2);
    assert_eq!(
        d["sha256"],
        hex::encode(Sha256::digest(csv.as_bytes())).as_str()
    );
}

#[test]
fn an_import_with_bad_rows_names_every_one_and_imports_nothing() {
    let (_d, db) = db();
    agentless(&db, "printer", "windows-server", "2012");
    let before = state(&db);
    let csv = "name,addresses,product,cycle\n\
               dc1,192.0.2.1,windows-server,2012-r2\n\
               <script>,192.0.2.2,windows-server,2012\n\
               dc3,192.0.2.3,debian\n\
               dc1,192.0.2.4,debian,10\n\
               printer,192.0.2.5,debian,10\n\
               dc6,999.1.1.1,debian,10\n";
    let e = try_import(&db, csv).unwrap_err().to_string();
    assert_eq!(
        e,
        "nothing imported from hosts.csv: 5 bad row(s)\n  \
         line 3: invalid name: character '<' is not allowed (a host name is labels of a-z 0-9 - separated by dots)\n  \
         line 4: 3 fields where the header has 4\n  \
         line 5: name \"dc1\" is already on line 2\n  \
         line 6: a legacy host named \"printer\" is already registered; use `legacy remove` first\n  \
         line 7: invalid address: \"999.1.1.1\" is not an IPv4 or IPv6 address (no prefix length or port)"
    );
    assert_eq!(state(&db), before);
}

#[test]
fn an_import_with_a_bad_header_is_refused_whole() {
    let (_d, db) = db();
    let before = state(&db);
    for (csv, want) in [
        (
            "name,addresses,product,cycle,site\ndc,192.0.2.1,debian,10,hq\n",
            "hosts.csv: unknown column \"site\" in the header row; the columns are name,addresses,product,cycle (required) and owner,notes,unlisted (optional); nothing imported",
        ),
        (
            "dc1,192.0.2.1,debian,10\n",
            "hosts.csv: unknown column \"dc1\"",
        ),
        (
            "name,addresses,product\ndc,192.0.2.1,debian\n",
            "hosts.csv: the header row lacks the column(s) cycle;",
        ),
        (
            "name,name,addresses,product,cycle\n",
            "hosts.csv: column \"name\" is named twice",
        ),
        (
            "name,addresses,product,cycle\n",
            "hosts.csv has a header but no hosts; nothing imported",
        ),
        (
            "name,addresses,product,cycle,unlisted\ndc,192.0.2.1,debian,10,maybe\n",
            "nothing imported from hosts.csv: 1 bad row(s)\n  line 2: unlisted must be yes or no, not \"maybe\"",
        ),
    ] {
        let e = try_import(&db, csv).unwrap_err().to_string();
        assert!(e.starts_with(want), "{csv:?}:\n got: {e}\nwant: {want}");
        assert_eq!(state(&db), before);
    }
}

#[test]
fn remove_takes_the_host_with_its_decisions_and_refuses_agent_hosts() {
    let (_d, db) = db();
    agentless(&db, "printer", "windows-server", "2012");
    enroll(&db, "buster", "debian", "10");
    db.write_blocking(|tx| {
        tx.execute_batch(
            "INSERT INTO legacy_includes VALUES ('printer', 'r', '2026-12-01T00:00:00Z', 'admin');
             INSERT INTO legacy_acceptances (host, reason, controls, accepted_at, until, actor)
             VALUES ('printer', 'r', '[]', '2026-12-01T00:00:00Z', '2027-01-01T00:00:00Z', 'admin');",
        )
        .map_err(crate::error::DbError::from)
    })
    .unwrap();
    let before = state(&db);
    for (needle, reason, want) in [
        (
            "printer",
            " ",
            "invalid reason: must not be empty (it is audited)",
        ),
        ("buster", "gone", "buster (h-"),
        (
            "printr",
            "gone",
            "no host \"printr\" (neither a registered legacy host nor an enrolled one) (did you mean \"printer\"?)",
        ),
    ] {
        let e = db
            .write_blocking(|tx| remove(tx, now(), needle, reason, "admin"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(want), "{needle}: {e}");
        assert_eq!(state(&db), before);
    }
    let e = db
        .write_blocking(|tx| remove(tx, now(), "buster", "gone", "admin"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("retire it with `patchward hosts revoke h-"),
        "{e}"
    );

    let name = db
        .write_blocking(|tx| remove(tx, now(), "Printer", "decommissioned", "admin"))
        .unwrap();
    assert_eq!(name, "printer");
    let left: (i64, i64, i64) = db
        .read_blocking(|c| {
            c.query_row(
                "SELECT (SELECT count(*) FROM legacy_hosts), (SELECT count(*) FROM legacy_includes),
                        (SELECT count(*) FROM legacy_acceptances)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(crate::error::DbError::from)
        })
        .unwrap();
    assert_eq!(left, (0, 0, 0));
    let audit = audit_actions(&db);
    let last = audit.last().unwrap();
    assert_eq!(
        (last.0.as_str(), last.1.as_str()),
        ("legacy.remove", "printer")
    );
    assert_eq!(last.2["reason"], "decommissioned");
}

#[test]
fn import_bounds_and_line_numbers_across_quoted_newlines() {
    let (_d, db) = db();
    let before = state(&db);
    // A quoted newline in notes: the bad row after it is named by its line in the file.
    let csv = "name,addresses,product,cycle,notes\n\
               dc1,192.0.2.1,debian,10,\"one\ntwo\"\n\
               dc2,192.0.2.2,debian,1O,\n";
    let e = try_import(&db, csv).unwrap_err().to_string();
    assert!(
        e.contains("\n  line 4: invalid cycle: debian has no cycle \"1o\""),
        "{e}"
    );
    let big = format!(
        "name,addresses,product,cycle,notes\ndc,192.0.2.1,debian,10,{}\n",
        "x".repeat(MAX_IMPORT_BYTES)
    );
    let e = try_import(&db, &big).unwrap_err().to_string();
    assert!(e.starts_with("hosts.csv: the file is 4194"), "{e}");
    assert!(
        e.ends_with("at most 4194304 are accepted; nothing imported"),
        "{e}"
    );
    let mut many = String::from("name,addresses,product,cycle\n");
    for i in 0..=MAX_IMPORT_ROWS {
        many.push_str(&format!("h{i},192.0.2.1,debian,10\n"));
    }
    let e = try_import(&db, &many).unwrap_err().to_string();
    assert_eq!(
        e,
        "hosts.csv: more than 10000 hosts; split the file; nothing imported"
    );
    assert_eq!(state(&db), before);
}
