//! Queries for feeds, accepted catalogs, patches, KEV and mirror status.
//!
//! Only the import pipeline writes these tables, and always in one transaction, so a
//! reader sees either the previous catalog or the new one, never a mix.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

use crate::db::int;
use crate::error::DbError;
use crate::feed::catalog::{Catalog, PatchEntry};
use crate::trust::state::TrustState;

/// The stored trust state of `feed`, if it was ever imported.
pub fn trust_state(conn: &Connection, feed: &str) -> Result<Option<TrustState>, DbError> {
    let text: Option<String> = conn
        .query_row(
            "SELECT trust_state FROM feeds WHERE name = ?1",
            [feed],
            |r| r.get(0),
        )
        .optional()?;
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| {
            DbError::Worker(format!("stored trust state of {feed} is unreadable: {e}"))
        })
    })
    .transpose()
}

/// The signed catalog envelope of an accepted version.
pub fn catalog_envelope(
    conn: &Connection,
    feed: &str,
    version: u64,
) -> Result<Option<Vec<u8>>, DbError> {
    Ok(conn
        .query_row(
            "SELECT envelope FROM catalogs WHERE feed = ?1 AND version = ?2",
            params![feed, int::to_i64("catalog version", version)?],
            |r| r.get(0),
        )
        .optional()?)
}

/// Accepted catalog versions of `feed`, ascending.
pub fn catalog_versions(conn: &Connection, feed: &str) -> Result<Vec<u64>, DbError> {
    let mut st = conn.prepare("SELECT version FROM catalogs WHERE feed = ?1 ORDER BY version")?;
    let v = st
        .query_map([feed], |r| int::get_u64(r, 0))?
        .collect::<Result<_, _>>()?;
    Ok(v)
}

/// Every blob some feed's current catalog references (GC keeps these).
pub fn referenced_blobs(conn: &Connection) -> Result<BTreeSet<String>, DbError> {
    let mut st = conn.prepare("SELECT DISTINCT sha256 FROM patch_blobs")?;
    let v = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(v)
}

/// Every blob GC must keep: those a current catalog references, and those an unfinished
/// job's ticket names (its patch may have left the catalogs, but its agent may still
/// download it).
pub fn blobs_in_use(conn: &Connection) -> Result<BTreeSet<String>, DbError> {
    let mut v = referenced_blobs(conn)?;
    let mut st = conn.prepare(
        "SELECT DISTINCT ja.sha256 FROM job_artifacts ja JOIN jobs j ON j.id = ja.job_id
         WHERE j.state NOT IN ('succeeded', 'rolled_back', 'rollback_failed', 'expired',
                               'cancelled')",
    )?;
    for sha in st.query_map([], |r| r.get::<_, String>(0))? {
        v.insert(sha?);
    }
    Ok(v)
}

/// Whether some feed's current catalog references the blob `sha256` (the artifact
/// endpoint serves only these). A scan of `patch_blobs` (its key leads with the feed):
/// the table holds one row per artifact of the current catalogs, so it stays small.
pub fn is_referenced(conn: &Connection, sha256: &str) -> Result<bool, DbError> {
    let found = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM patch_blobs WHERE sha256 = ?1)",
        [sha256],
        |r| r.get(0),
    )?;
    Ok(found)
}

/// What committing a catalog changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CommitCounts {
    pub new: usize,
    pub updated: usize,
    pub removed: usize,
    pub unchanged: usize,
}

/// Everything one import makes visible, committed in the caller's transaction.
pub struct CatalogCommit<'a> {
    pub feed: &'a str,
    pub state: &'a TrustState,
    pub catalog: &'a Catalog,
    pub envelope: &'a [u8],
    pub envelope_sha256: &'a str,
    pub now: Timestamp,
    pub via: &'a str,
}

fn entry_json(e: &PatchEntry) -> Result<String, DbError> {
    serde_json::to_string(e).map_err(|e| DbError::Worker(format!("cannot encode patch: {e}")))
}

/// Makes `c.catalog` the feed's current catalog and stores the new trust state.
pub fn commit_catalog(
    tx: &Transaction<'_>,
    c: &CatalogCommit<'_>,
) -> Result<CommitCounts, DbError> {
    let now = c.now.to_string();
    let version = int::to_i64("catalog version", c.catalog.version)?;
    let state = serde_json::to_string(c.state)
        .map_err(|e| DbError::Worker(format!("cannot encode trust state: {e}")))?;
    tx.execute(
        "INSERT INTO feeds (name, trust_state, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(name) DO UPDATE SET trust_state = excluded.trust_state,
                                         updated_at = excluded.updated_at",
        params![c.feed, state, now],
    )?;
    tx.execute(
        "INSERT OR IGNORE INTO catalogs
             (feed, version, sha256, envelope, issued, expires, imported_at, via)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            c.feed,
            version,
            c.envelope_sha256,
            c.envelope,
            c.catalog.issued.to_string(),
            c.catalog.expires.to_string(),
            now,
            c.via
        ],
    )?;

    let mut old: BTreeMap<String, String> = BTreeMap::new();
    {
        let mut st = tx.prepare("SELECT id, entry_sha256 FROM patches WHERE feed = ?1")?;
        for row in st.query_map([c.feed], |r| Ok((r.get(0)?, r.get(1)?)))? {
            let (id, sha): (String, String) = row?;
            old.insert(id, sha);
        }
    }
    let mut counts = CommitCounts::default();
    let mut seen = BTreeSet::new();
    for p in &c.catalog.patches {
        let json = entry_json(p)?;
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(json.as_bytes()));
        seen.insert(p.id.clone());
        match old.get(&p.id) {
            Some(prev) if *prev == sha => counts.unchanged += 1,
            Some(_) => counts.updated += 1,
            None => counts.new += 1,
        }
        tx.execute(
            "INSERT INTO patches (feed, id, catalog_version, title, kind, severity, cvss_score,
                                  cves, released, entry, entry_sha256, first_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT(feed, id) DO UPDATE SET
                catalog_version = excluded.catalog_version, title = excluded.title,
                kind = excluded.kind, severity = excluded.severity,
                cvss_score = excluded.cvss_score, cves = excluded.cves,
                released = excluded.released, entry = excluded.entry,
                entry_sha256 = excluded.entry_sha256",
            params![
                c.feed,
                p.id,
                version,
                p.title,
                serde_json::to_value(p.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned)),
                serde_json::to_value(p.severity)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned)),
                p.cvss.as_ref().map(|c| c.base_score),
                serde_json::to_string(&p.cves).unwrap_or_else(|_| "[]".into()),
                p.released.to_string(),
                json,
                sha,
                now
            ],
        )?;
    }
    for id in old.keys().filter(|id| !seen.contains(*id)) {
        tx.execute(
            "DELETE FROM patches WHERE feed = ?1 AND id = ?2",
            params![c.feed, id],
        )?;
        counts.removed += 1;
    }
    tx.execute("DELETE FROM patch_blobs WHERE feed = ?1", [c.feed])?;
    for (sha, size) in c.catalog.blobs() {
        tx.execute(
            "INSERT INTO patch_blobs (feed, sha256, size) VALUES (?1, ?2, ?3)",
            params![c.feed, sha, int::to_i64("blob size", size)?],
        )?;
    }
    Ok(counts)
}

/// One row of `patchward patches list`.
#[derive(Debug, Clone, Serialize)]
pub struct PatchRow {
    pub feed: String,
    pub id: String,
    pub title: String,
    pub kind: String,
    pub severity: String,
    pub cvss: Option<f64>,
    pub cves: Vec<String>,
    pub kev: bool,
    /// Earliest KEV due date among its CVEs.
    pub kev_due: Option<String>,
    pub released: String,
    pub first_seen: String,
    pub catalog_version: u64,
}

/// Patches of all feeds' current catalogs, newest release first, with the KEV flag.
pub fn list_patches(conn: &Connection) -> Result<Vec<PatchRow>, DbError> {
    let mut st = conn.prepare(
        "SELECT feed, id, title, kind, severity, cvss_score, cves, released, first_seen,
                catalog_version
         FROM patches ORDER BY released DESC, feed, id",
    )?;
    let mut kev = conn.prepare("SELECT due_date, date_added FROM kev WHERE cve = ?1")?;
    let mut out = Vec::new();
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, Option<f64>>(5)?,
            r.get::<_, String>(6)?,
            r.get::<_, String>(7)?,
            r.get::<_, String>(8)?,
            int::get_u64(r, 9)?,
        ))
    })?;
    for row in rows {
        let (feed, id, title, kind, severity, cvss, cves, released, first_seen, version) = row?;
        let cves: Vec<String> = serde_json::from_str(&cves).unwrap_or_default();
        let mut is_kev = false;
        let mut due: Option<String> = None;
        for cve in &cves {
            let hit: Option<(Option<String>, String)> = kev
                .query_row([cve], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some((d, _)) = hit {
                is_kev = true;
                if let Some(d) = d
                    && due.as_ref().is_none_or(|cur| d < *cur)
                {
                    due = Some(d);
                }
            }
        }
        out.push(PatchRow {
            feed,
            id,
            title,
            kind,
            severity,
            cvss,
            cves,
            kev: is_kev,
            kev_due: due,
            released,
            first_seen,
            catalog_version: version,
        });
    }
    Ok(out)
}

/// A feed's mirror state for `mirror status`.
#[derive(Debug, Clone, Serialize)]
pub struct FeedStatus {
    pub feed: String,
    pub catalog_version: Option<u64>,
    pub catalog_issued: Option<String>,
    pub catalog_expires: Option<String>,
    pub imported_at: Option<String>,
    pub patches: u64,
    pub blob_bytes: u64,
    pub last_attempt: Option<String>,
    pub last_success: Option<String>,
    pub last_error: Option<String>,
    pub bytes_fetched: u64,
    /// The newest signed time this appliance has seen for the feed (its trust state):
    /// expiry is judged against max(clock, this), as the import pipeline judges it.
    pub newest_signed_time: Option<String>,
}

/// Status of `feed` (which may never have been imported).
pub fn feed_status(conn: &Connection, feed: &str) -> Result<FeedStatus, DbError> {
    let cat: Option<(u64, String, String, String)> = conn
        .query_row(
            "SELECT version, issued, expires, imported_at FROM catalogs
             WHERE feed = ?1 ORDER BY version DESC LIMIT 1",
            [feed],
            |r| Ok((int::get_u64(r, 0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let patches: i64 = conn.query_row(
        "SELECT count(*) FROM patches WHERE feed = ?1",
        [feed],
        |r| r.get(0),
    )?;
    let bytes: i64 = conn.query_row(
        "SELECT coalesce(sum(size), 0) FROM patch_blobs WHERE feed = ?1",
        [feed],
        |r| r.get(0),
    )?;
    // (last_attempt, last_success, last_error, bytes_fetched)
    type MirrorRow = (Option<String>, Option<String>, Option<String>, i64);
    let ms: Option<MirrorRow> = conn
        .query_row(
            "SELECT last_attempt, last_success, last_error, bytes_fetched
             FROM mirror_status WHERE source = ?1",
            [feed],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let (last_attempt, last_success, last_error, fetched) = ms.unwrap_or((None, None, None, 0));
    let newest_signed_time = trust_state(conn, feed)?
        .map(|t| t.newest_signed_time)
        .filter(|t| *t > Timestamp::UNIX_EPOCH)
        .map(|t| t.to_string());
    Ok(FeedStatus {
        feed: feed.to_string(),
        catalog_version: cat.as_ref().map(|c| c.0),
        catalog_issued: cat.as_ref().map(|c| c.1.clone()),
        catalog_expires: cat.as_ref().map(|c| c.2.clone()),
        imported_at: cat.as_ref().map(|c| c.3.clone()),
        patches: int::to_u64(patches)?,
        blob_bytes: int::to_u64(bytes)?,
        last_attempt,
        last_success,
        last_error,
        bytes_fetched: int::to_u64(fetched)?,
        newest_signed_time,
    })
}

/// Records a sync attempt's outcome for a source.
pub fn record_sync(
    tx: &Transaction<'_>,
    source: &str,
    at: Timestamp,
    result: Result<u64, &str>,
) -> Result<(), DbError> {
    let at = at.to_string();
    let result = match result {
        Ok(b) => Ok(int::to_i64("bytes fetched", b)?),
        Err(e) => Err(e),
    };
    match result {
        Ok(bytes) => tx.execute(
            "INSERT INTO mirror_status (source, last_attempt, last_success, last_error, bytes_fetched)
             VALUES (?1, ?2, ?2, NULL, ?3)
             ON CONFLICT(source) DO UPDATE SET last_attempt = ?2, last_success = ?2,
                 last_error = NULL, bytes_fetched = bytes_fetched + ?3",
            params![source, at, bytes],
        )?,
        Err(e) => tx.execute(
            "INSERT INTO mirror_status (source, last_attempt, last_error) VALUES (?1, ?2, ?3)
             ON CONFLICT(source) DO UPDATE SET last_attempt = ?2, last_error = ?3",
            params![source, at, e],
        )?,
    };
    Ok(())
}

/// One KEV catalog entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KevEntry {
    pub cve: String,
    pub date_added: String,
    pub due_date: Option<String>,
    pub ransomware: Option<String>,
}

/// Replaces the KEV table with `entries`.
pub fn replace_kev(tx: &Transaction<'_>, entries: &[KevEntry]) -> Result<usize, DbError> {
    tx.execute("DELETE FROM kev", [])?;
    let mut st = tx.prepare(
        "INSERT OR REPLACE INTO kev (cve, date_added, due_date, ransomware) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for e in entries {
        st.execute(params![e.cve, e.date_added, e.due_date, e.ransomware])?;
    }
    Ok(entries.len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn gc_keeps_the_blobs_of_unfinished_jobs() {
        let d = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&d.path().join("t.db"), Default::default()).unwrap();
        let (open, done) = ("a".repeat(64), "b".repeat(64));
        db.write_blocking(|tx| {
            tx.execute(
                "INSERT INTO hosts (id, hostname, public_key, labels, enrolled_at)
                 VALUES ('h-1', 'h1', 'k', '{}', 't')",
                [],
            )?;
            for (job, state, sha) in [("j-1", "offered", &open), ("j-2", "succeeded", &done)] {
                tx.execute(
                    "INSERT INTO jobs (id, host_id, feed, patch_id, state, ticket, created_at,
                     updated_at) VALUES (?1, 'h-1', 'f', 'p', ?2, x'', 't', 't')",
                    [job, state],
                )?;
                crate::db::jobs::insert_job_artifacts(tx, job, "h-1", [sha.as_str()])?;
            }
            Ok::<_, crate::error::DbError>(())
        })
        .unwrap();
        let kept = db.read_blocking(super::blobs_in_use).unwrap();
        assert!(kept.contains(&open), "{kept:?}");
        assert!(!kept.contains(&done), "{kept:?}");
    }
}
