//! The dashboard's and the patch page's SLA and approval lists on a seeded fleet (issue
//! [8] items 11 and 12): a KEV due date from before the release makes nothing late;
//! patches that are replaced, apply to no enrolled host, or are installed on every host
//! they apply to wait for no decision and are overdue nowhere; overdue counts hosts;
//! an approved patch whose selectors match no host says so.

use jiff::Timestamp;

use crate::db::Db;
use crate::feed::catalog::{PatchEntry, Selector, Severity};
use crate::rollout::planner::Planner;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn patch(id: &str, sev: Severity, released: &str, sel: Selector, cve: &str) -> PatchEntry {
    let mut e = crate::feed::catalog::tests::entry(id, id.as_bytes());
    e.severity = sev;
    e.released = t(released);
    e.applies_to = vec![sel];
    e.cves = vec![cve.into()];
    e
}

fn os(name: &str) -> Selector {
    Selector {
        os: Some(name.into()),
        ..Selector::default()
    }
}

fn arch(name: &str) -> Selector {
    Selector {
        os: Some("debian".into()),
        arch: Some(name.into()),
        ..Selector::default()
    }
}

const NOW: &str = "2026-11-27T10:00:00Z";

/// Three Debian 12 hosts (they report `x86_64`), seven patches, some jobs.
fn seeded() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("t.db"), Default::default()).unwrap();
    let old = "2026-01-01T00:00:00Z";
    // Released a week ago; its CVE was due on the KEV list in 2023. Selector in
    // Debian's arch name.
    let fresh = patch(
        "acme/fresh-kev",
        Severity::High,
        "2026-11-20T00:00:00Z",
        arch("amd64"),
        "CVE-2023-0001",
    );
    let done = patch(
        "acme/done-1",
        Severity::Critical,
        old,
        os("debian"),
        "CVE-2026-0002",
    );
    let nohost = patch(
        "acme/nohost-1",
        Severity::Critical,
        old,
        os("ubuntu"),
        "CVE-2026-0003",
    );
    let late = patch(
        "acme/late-1",
        Severity::Critical,
        old,
        os("debian"),
        "CVE-2026-0004",
    );
    let sup_old = patch(
        "acme/sup-old",
        Severity::Critical,
        old,
        os("debian"),
        "CVE-2026-0005",
    );
    let mut sup_new = patch(
        "acme/sup-new",
        Severity::Low,
        NOW,
        os("debian"),
        "CVE-2026-0006",
    );
    sup_new.supersedes = vec!["acme/sup-old".into()];
    let arm = patch(
        "acme/arm-1",
        Severity::Low,
        NOW,
        arch("arm64"),
        "CVE-2026-0007",
    );
    let all = [&fresh, &done, &nohost, &late, &sup_old, &sup_new, &arm];
    db.write_blocking(|tx| {
        tx.execute(
            "INSERT INTO feeds (name, trust_state, updated_at) VALUES ('acme', '{}', 't')",
            [],
        )?;
        tx.execute(
            "INSERT INTO kev (cve, date_added, due_date) VALUES ('CVE-2023-0001', '2023-10-16', '2023-11-06')",
            [],
        )?;
        for p in all {
            tx.execute(
                "INSERT INTO patches (feed, id, catalog_version, title, kind, severity,
                    cvss_score, cves, released, entry, entry_sha256, first_seen)
                 VALUES ('acme', ?1, 1, ?2, 'security', ?3, 7.5, ?4, ?5, ?6, '', ?7)",
                rusqlite::params![
                    p.id,
                    p.title,
                    p.severity.as_str(),
                    serde_json::to_string(&p.cves).unwrap(),
                    p.released.to_string(),
                    serde_json::to_string(p).unwrap(),
                    NOW,
                ],
            )?;
        }
        for id in ["h-1", "h-2", "h-3"] {
            tx.execute(
                "INSERT INTO hosts (id, hostname, public_key, ring, labels, enrolled_at, last_seen)
                 VALUES (?1, ?1, ?1, NULL, '{}', ?2, ?2)",
                rusqlite::params![id, NOW],
            )?;
            let inv = crate::fleet::inventory::sample(id);
            tx.execute(
                "INSERT INTO host_inventory (host_id, reported_at, inventory, packages_digest)
                 VALUES (?1, ?2, ?3, '')",
                rusqlite::params![id, NOW, serde_json::to_string(&inv).unwrap()],
            )?;
        }
        // done-1 everywhere it applies; late-1 on one host of three.
        for (n, (p, h)) in [
            ("acme/done-1", "h-1"),
            ("acme/done-1", "h-2"),
            ("acme/done-1", "h-3"),
            ("acme/late-1", "h-1"),
        ]
        .into_iter()
        .enumerate()
        {
            tx.execute(
                "INSERT INTO jobs (id, host_id, feed, patch_id, state, ticket, created_at, updated_at)
                 VALUES (?1, ?2, 'acme', ?3, 'succeeded', x'', ?4, ?4)",
                rusqlite::params![format!("j-{n}"), h, p, "2026-01-05T00:00:00Z"],
            )?;
        }
        let approved = serde_json::to_string(&crate::policy::Approval::Approved {
            rings: vec!["pilot".into(), "broad".into()],
            expedite: None,
        })
        .unwrap();
        for id in ["acme/arm-1", "acme/fresh-kev"] {
            tx.execute(
                "INSERT INTO approvals (feed, patch_id, approval, decided_at, decided_by)
                 VALUES ('acme', ?1, ?2, ?3, 'ann')",
                rusqlite::params![id, approved, NOW],
            )?;
        }
        Ok::<_, crate::error::DbError>(())
    })
    .unwrap();
    (dir, db)
}

#[test]
fn dashboard_lists_only_patches_some_host_still_lacks() {
    let (_d, db) = seeded();
    let policy = crate::policy::Policy::default();
    let planner = Planner::new();
    let d = db
        .read_blocking(|c| super::dashboard::load(c, &policy, &planner, None, t(NOW)))
        .unwrap();
    // Waiting for a decision: late-1 (critical, lacking on two hosts) and sup-new;
    // not done-1 (installed everywhere), nohost-1 (no host), sup-old (replaced).
    assert_eq!(
        d.waiting_total,
        2,
        "{:?}",
        d.urgent.iter().map(|u| &u.key).collect::<Vec<_>>()
    );
    let urgent: Vec<&str> = d.urgent.iter().map(|u| u.key.as_str()).collect();
    assert_eq!(urgent, ["acme:acme/late-1"]);
    // Overdue: only late-1, and per host. The fresh KEV patch is due 30 days after its
    // release, not in 2023.
    let overdue: Vec<(&str, usize, usize)> = d
        .overdue
        .iter()
        .map(|o| (o.key.as_str(), o.late_hosts, o.hosts))
        .collect();
    assert_eq!(overdue, [("acme:acme/late-1", 2, 3)]);
    assert_eq!(d.overdue_total, 1);
}

#[test]
fn the_patch_page_shows_the_deadline_per_host_and_warns_of_no_matching_host() {
    let (_d, db) = seeded();
    let policy = crate::policy::Policy::default();
    let planner = Planner::new();
    let page = |id: &str| {
        db.read_blocking(|c| super::patches::load_patch(c, &policy, &planner, t(NOW), id))
            .unwrap()
    };
    let fresh = page("acme:acme/fresh-kev");
    assert_eq!(fresh.standing.due, Some(t("2026-12-20T00:00:00Z")));
    assert_eq!((fresh.standing.hosts, fresh.standing.missing), (3, 3));
    assert!(!fresh.standing.overdue());
    // amd64 matches the hosts that report x86_64: no warning.
    assert_eq!(fresh.no_host, None);
    let arm = page("acme:acme/arm-1");
    let w = arm
        .no_host
        .expect("a warning for an approved patch no host matches");
    assert!(
        w.contains("match no enrolled host") && w.contains("arch=arm64"),
        "{w}"
    );
    let late = page("acme:acme/late-1");
    assert_eq!(late.standing.late_hosts, 2);
    let done = page("acme:acme/done-1");
    assert!(!done.standing.needed() && !done.standing.overdue());
    assert_eq!(
        (done.standing.installed, done.standing.late_installs),
        (3, 0)
    );
}
