//! The append-only, hash-chained audit log.
//!
//! Every decision that changes what the appliance does (keys generated, approvals,
//! rollouts, enrollments, operator notes) is recorded with who, what, on what, details
//! and when. Each entry stores the hash of the previous entry and its own hash over a
//! length-prefixed encoding of all its fields, so editing, deleting or reordering any
//! entry breaks the chain at that point and `patchward audit verify` names it.
//! Triggers refuse UPDATE and DELETE, so application code cannot rewrite history by
//! accident; the chain catches deliberate edits of the file.
//!
//! Appends run inside the caller's write transaction (BEGIN IMMEDIATE), so the read of
//! the last hash and the insert are atomic across processes: the chain never forks.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::AuditError;

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    /// Canonical JSON (object keys sorted), exactly as hashed.
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

/// What a new entry says.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub subject: &'a str,
    pub details: serde_json::Value,
}

fn entry_hash(
    seq: i64,
    at: &str,
    actor: &str,
    action: &str,
    subject: &str,
    details: &str,
    prev_hash: &str,
) -> String {
    let mut h = Sha256::new();
    h.update(b"patchward-audit-v1\n");
    h.update(seq.to_be_bytes());
    for field in [at, actor, action, subject, details, prev_hash] {
        // Length prefixes make the encoding unambiguous: no two field lists collide.
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Appends an entry at time `at` within `tx`; returns its sequence number.
pub fn append(tx: &Transaction<'_>, at: Timestamp, e: &NewEntry<'_>) -> Result<i64, AuditError> {
    let last: Option<(i64, String)> = tx
        .query_row(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (seq, prev) = match last {
        Some((s, h)) => (s + 1, h),
        None => (1, GENESIS.to_string()),
    };
    // serde_json's default map is ordered, so this string is canonical.
    let details = serde_json::to_string(&e.details)?;
    let at = at.to_string();
    let hash = entry_hash(seq, &at, e.actor, e.action, e.subject, &details, &prev);
    tx.execute(
        "INSERT INTO audit_log (seq, at, actor, action, subject, details, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![seq, at, e.actor, e.action, e.subject, details, prev, hash],
    )?;
    Ok(seq)
}

/// The first place the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Broken {
    pub seq: i64,
    pub reason: String,
}

/// Result of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub entries: u64,
    pub head: Option<String>,
    pub first_broken: Option<Broken>,
}

/// Walks the whole chain and reports the first broken link.
pub fn verify(conn: &Connection) -> Result<VerifyReport, AuditError> {
    let mut stmt = conn.prepare(
        "SELECT seq, at, actor, action, subject, details, prev_hash, hash
         FROM audit_log ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    let mut expected_seq = 1i64;
    let mut prev = GENESIS.to_string();
    let mut entries = 0u64;
    while let Some(r) = rows.next()? {
        let e = row_to_entry(r)?;
        entries += 1;
        let broken = |reason: String| {
            Ok(VerifyReport {
                entries,
                head: None,
                first_broken: Some(Broken { seq: e.seq, reason }),
            })
        };
        if e.seq != expected_seq {
            return broken(format!(
                "expected entry {expected_seq} next but found {}: entries are missing",
                e.seq
            ));
        }
        if e.prev_hash != prev {
            return broken(
                "its prev_hash does not match the previous entry's hash: an earlier entry \
                 was changed or removed"
                    .into(),
            );
        }
        let h = entry_hash(
            e.seq,
            &e.at,
            &e.actor,
            &e.action,
            &e.subject,
            &e.details,
            &e.prev_hash,
        );
        if h != e.hash {
            return broken("its contents do not match its hash: the entry was modified".into());
        }
        prev = e.hash;
        expected_seq += 1;
    }
    Ok(VerifyReport {
        entries,
        head: (entries > 0).then_some(prev),
        first_broken: None,
    })
}

fn row_to_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        seq: r.get(0)?,
        at: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        subject: r.get(4)?,
        details: r.get(5)?,
        prev_hash: r.get(6)?,
        hash: r.get(7)?,
    })
}

/// The newest `limit` entries, newest first.
pub fn recent(conn: &Connection, limit: u32) -> Result<Vec<AuditEntry>, AuditError> {
    let mut stmt = conn.prepare(
        "SELECT seq, at, actor, action, subject, details, prev_hash, hash
         FROM audit_log ORDER BY seq DESC LIMIT ?1",
    )?;
    let v = stmt
        .query_map([limit], row_to_entry)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// Which entries [`search`] returns. Dates are UTC days, both ends included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Exactly this actor.
    pub actor: Option<String>,
    /// Actions starting with this (`patch.` matches `patch.approved`, ...).
    pub action: Option<String>,
    pub from: Option<jiff::civil::Date>,
    pub until: Option<jiff::civil::Date>,
    /// Exactly this subject (a host's history: its id, or an agentless host's name).
    pub subject: Option<String>,
}

/// Entries matching `f`, newest first, `limit` from `offset`, and how many match in all.
/// Actor, action and subject use their indexes; the day bounds compare the stored
/// RFC 3339 UTC text, whose date prefix orders like the date.
pub fn search(
    conn: &Connection,
    f: &Filter,
    offset: u64,
    limit: u32,
) -> Result<(Vec<AuditEntry>, u64), AuditError> {
    let like = f.action.as_ref().map(|a| {
        let escaped = a
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("{escaped}%")
    });
    let from = f.from.map(|d| d.to_string());
    let until = f
        .until
        .and_then(|d| d.tomorrow().ok())
        .map(|d| d.to_string());
    let cond = "(?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR action LIKE ?2 ESCAPE '\\')
                AND (?3 IS NULL OR at >= ?3) AND (?4 IS NULL OR at < ?4)
                AND (?5 IS NULL OR subject = ?5)";
    let args = params![f.actor, like, from, until, f.subject];
    let total: i64 = conn.query_row(
        &format!("SELECT count(*) FROM audit_log WHERE {cond}"),
        args,
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare(&format!(
        "SELECT seq, at, actor, action, subject, details, prev_hash, hash
         FROM audit_log WHERE {cond} ORDER BY seq DESC LIMIT ?6 OFFSET ?7"
    ))?;
    let v = stmt
        .query_map(
            params![f.actor, like, from, until, f.subject, limit, offset as i64],
            row_to_entry,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((v, total as u64))
}

/// Every actor that appears in the log (for a filter's choices).
pub fn actors(conn: &Connection) -> Result<Vec<String>, AuditError> {
    let mut stmt = conn.prepare("SELECT DISTINCT actor FROM audit_log ORDER BY actor")?;
    let v = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Db, DbOptions};
    use crate::error::DbError;

    fn db_with(n: usize) -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("a.db"), DbOptions::default()).unwrap();
        let t0: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        for i in 0..n {
            db.write_blocking(|tx| {
                append(
                    tx,
                    t0,
                    &NewEntry {
                        actor: "test",
                        action: "note",
                        subject: &format!("s{i}"),
                        details: serde_json::json!({"z": 1, "a": [i]}),
                    },
                )
            })
            .unwrap();
        }
        (dir, db)
    }

    fn tamper(db: &Db, sql: &str) {
        let c = Connection::open(db.path()).unwrap();
        c.execute_batch("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;")
            .unwrap();
        c.execute_batch(sql).unwrap();
    }

    fn report(db: &Db) -> VerifyReport {
        db.read_blocking(verify).unwrap()
    }

    #[test]
    fn intact_chain_verifies() {
        let (_d, db) = db_with(5);
        let r = report(&db);
        assert_eq!(r.entries, 5);
        assert!(r.first_broken.is_none());
        let recent = db.read_blocking(|c| recent(c, 2)).unwrap();
        assert_eq!(recent[0].seq, 5);
        assert_eq!(recent[0].details, r#"{"a":[4],"z":1}"#);
        assert_eq!(r.head.as_deref(), Some(recent[0].hash.as_str()));
    }

    #[test]
    fn each_tampering_is_found_at_the_right_entry() {
        let cases: &[(&str, i64, &str)] = &[
            (
                "UPDATE audit_log SET actor='mallory' WHERE seq=3",
                3,
                "modified",
            ),
            (
                "UPDATE audit_log SET details='{}' WHERE seq=2",
                2,
                "modified",
            ),
            ("DELETE FROM audit_log WHERE seq=2", 3, "missing"),
            ("UPDATE audit_log SET hash='00' WHERE seq=4", 4, "modified"),
        ];
        for (sql, seq, word) in cases {
            let (_d, db) = db_with(5);
            tamper(&db, sql);
            let b = report(&db)
                .first_broken
                .unwrap_or_else(|| panic!("{sql} not found"));
            assert_eq!(b.seq, *seq, "{sql}: {b:?}");
            assert!(b.reason.contains(word), "{sql}: {b:?}");
        }
    }

    #[test]
    fn search_by_subject_finds_one_subjects_history() {
        let (_d, db) = db_with(4);
        let f = Filter {
            subject: Some("s2".into()),
            ..Default::default()
        };
        let (v, total) = db.read_blocking(|c| search(c, &f, 0, 10)).unwrap();
        assert_eq!((v.len(), total), (1, 1));
        assert_eq!(v[0].subject, "s2");
        let (v, total) = db
            .read_blocking(|c| search(c, &Filter::default(), 1, 2))
            .unwrap();
        assert_eq!(
            (v.iter().map(|e| e.seq).collect::<Vec<_>>(), total),
            (vec![3, 2], 4)
        );
    }

    #[test]
    fn triggers_refuse_rewrites() {
        let (_d, db) = db_with(2);
        let e = db
            .write_blocking(|tx| {
                tx.execute("UPDATE audit_log SET actor='x'", [])
                    .map_err(DbError::from)
            })
            .unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
        assert!(report(&db).first_broken.is_none());
    }
}
