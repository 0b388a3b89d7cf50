//! The apt tables (migration 7) and the boundary the rollout engine calls.
//!
//! - `deb_packages`: per deb blob, the control stanza and hashes read from the package
//!   itself when it entered the store ([`record_debs`], called by the import commit).
//! - `apt_ring_packages`: "this patch's debs are released to this ring"
//!   ([`release_to_ring`], [`withdraw_from_ring`]).
//! - `apt_rings`: per ring, a dirty flag and what was published last (digest of the
//!   content, time, `Valid-Until`, generation).
//!
//! **Architecture Invariant:** a ring's content is the join of `apt_ring_packages`,
//! `deb_packages` and `patch_blobs` (still referenced by a current catalog); the
//! publisher and the pool handler read it through [`ring_entries`] and [`in_ring`] only.

use std::collections::BTreeSet;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use sha2::{Digest, Sha256};

use super::AptError;
use super::index::PackageEntry;
use crate::audit::{self, NewEntry};
use crate::deb::DebMeta;
use crate::feed::catalog::{ArtifactFormat, PatchEntry};

/// Which of `shas` already have control data.
pub fn known_debs(conn: &Connection, shas: &[String]) -> Result<BTreeSet<String>, AptError> {
    let mut st = conn.prepare_cached("SELECT 1 FROM deb_packages WHERE sha256 = ?1")?;
    let mut out = BTreeSet::new();
    for s in shas {
        if st.exists([s])? {
            out.insert(s.clone());
        }
    }
    Ok(out)
}

/// Stores the control data of package files (idempotent: a blob's bytes never change).
pub fn record_debs(tx: &Transaction<'_>, debs: &[DebMeta], now: Timestamp) -> Result<(), AptError> {
    let mut st = tx.prepare_cached(
        "INSERT OR IGNORE INTO deb_packages
             (sha256, package, version, architecture, size, md5, control, filename, read_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for meta in debs {
        let e = PackageEntry::from_meta(meta).map_err(|source| AptError::BadPackage {
            patch_id: String::new(),
            name: meta.sha256.clone(),
            cause: source,
        })?;
        st.execute(params![
            e.sha256,
            e.package,
            e.version,
            e.architecture,
            crate::db::int::to_i64("package size", e.size)?,
            e.md5,
            e.control,
            e.filename,
            now.to_string()
        ])?;
    }
    Ok(())
}

/// The deb artifacts (sha256, name) of a patch in a current catalog.
fn patch_debs(
    conn: &Connection,
    feed: &str,
    patch_id: &str,
) -> Result<Vec<(String, String)>, AptError> {
    let entry: Option<String> = conn
        .query_row(
            "SELECT entry FROM patches WHERE feed = ?1 AND id = ?2",
            params![feed, patch_id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(entry) = entry else {
        return Err(unknown_patch(
            conn,
            feed,
            patch_id,
            &format!("{feed}:{patch_id}"),
        ));
    };
    let entry: PatchEntry = serde_json::from_str(&entry).map_err(|e| {
        crate::error::DbError::Worker(format!("stored patch entry unreadable: {e}"))
    })?;
    Ok(entry
        .artifacts
        .iter()
        .filter(|a| a.format == ArtifactFormat::Deb)
        .map(|a| (a.sha256.clone(), a.name.clone()))
        .collect())
}

/// The refusal for a patch that is not in the current catalogs, with a suggestion for
/// `typed` (what the operator wrote). A failing suggestion query only loses the hint.
fn unknown_patch(conn: &Connection, feed: &str, patch_id: &str, typed: &str) -> AptError {
    let keys = crate::db::jobs::patch_keys(conn).unwrap_or_default();
    AptError::UnknownPatch {
        feed: feed.into(),
        patch_id: patch_id.into(),
        hint: crate::suggest::patch_hint(typed, keys.iter().map(|(f, i)| (f.as_str(), i.as_str()))),
    }
}

/// Resolves `ID` or `FEED:ID` to (feed, id) among the current catalogs.
pub fn resolve_patch(conn: &Connection, needle: &str) -> Result<(String, String), AptError> {
    if let Some((feed, id)) = needle.split_once(':') {
        let found: Option<i64> = conn
            .query_row(
                "SELECT 1 FROM patches WHERE feed = ?1 AND id = ?2",
                params![feed, id],
                |r| r.get(0),
            )
            .optional()?;
        if found.is_some() {
            return Ok((feed.into(), id.into()));
        }
    }
    let mut st = conn.prepare("SELECT feed FROM patches WHERE id = ?1 ORDER BY feed")?;
    let feeds: Vec<String> = st
        .query_map([needle], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    match feeds.as_slice() {
        [one] => Ok((one.clone(), needle.into())),
        [] => Err(unknown_patch(conn, "(any)", needle, needle)),
        many => Err(AptError::Ring(crate::fleet::FleetError::Invalid {
            field: "patch".into(),
            reason: format!(
                "{needle:?} is in several feeds ({}); give it as FEED:ID",
                many.join(", ")
            ),
        })),
    }
}

fn mark_dirty(tx: &Transaction<'_>, ring: &str, now: Timestamp) -> Result<(), AptError> {
    tx.execute(
        "INSERT INTO apt_rings (ring, dirty, changed_at) VALUES (?1, 1, ?2)
         ON CONFLICT(ring) DO UPDATE SET dirty = 1, changed_at = excluded.changed_at",
        params![ring, now.to_string()],
    )?;
    Ok(())
}

/// Releases a patch's debs to `ring`'s repository: called when the patch is approved
/// for the ring and the previous ring's gate passed. Idempotent; audited
/// (`apt.released`); the ring is marked dirty so the publisher republishes it.
/// Returns how many deb files the patch has.
pub fn release_to_ring(
    tx: &Transaction<'_>,
    now: Timestamp,
    ring: &str,
    feed: &str,
    patch_id: &str,
    actor: &str,
) -> Result<usize, AptError> {
    crate::fleet::validate_ring(ring)?;
    let debs = patch_debs(tx, feed, patch_id)?;
    if debs.is_empty() {
        return Err(AptError::NoDebs {
            patch_id: patch_id.into(),
        });
    }
    let shas: Vec<String> = debs.iter().map(|(s, _)| s.clone()).collect();
    let known = known_debs(tx, &shas)?;
    if let Some(missing) = shas.iter().find(|s| !known.contains(*s)) {
        return Err(AptError::NoMetadata {
            patch_id: patch_id.into(),
            sha256: missing.clone(),
        });
    }
    let mut added = 0;
    for sha in &shas {
        added += tx.execute(
            "INSERT OR IGNORE INTO apt_ring_packages
                 (ring, feed, patch_id, sha256, released_at, released_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![ring, feed, patch_id, sha, now.to_string(), actor],
        )?;
    }
    mark_dirty(tx, ring, now)?;
    audit::append(
        tx,
        now,
        &NewEntry {
            actor,
            action: "apt.released",
            subject: &format!("{feed}:{patch_id}"),
            details: serde_json::json!({ "ring": ring, "debs": shas, "new": added }),
        },
    )?;
    Ok(shas.len())
}

/// Takes a patch's debs out of `ring`'s repository (a halted or rolled-back rollout).
/// Audited (`apt.withdrawn`); returns how many rows were removed (0: it was not there).
pub fn withdraw_from_ring(
    tx: &Transaction<'_>,
    now: Timestamp,
    ring: &str,
    feed: &str,
    patch_id: &str,
    actor: &str,
) -> Result<usize, AptError> {
    crate::fleet::validate_ring(ring)?;
    let removed = tx.execute(
        "DELETE FROM apt_ring_packages WHERE ring = ?1 AND feed = ?2 AND patch_id = ?3",
        params![ring, feed, patch_id],
    )?;
    mark_dirty(tx, ring, now)?;
    audit::append(
        tx,
        now,
        &NewEntry {
            actor,
            action: "apt.withdrawn",
            subject: &format!("{feed}:{patch_id}"),
            details: serde_json::json!({ "ring": ring, "removed": removed }),
        },
    )?;
    Ok(removed)
}

/// The packages in `ring`'s repository now.
pub fn ring_entries(conn: &Connection, ring: &str) -> Result<Vec<PackageEntry>, AptError> {
    let mut st = conn.prepare_cached(
        "SELECT DISTINCT d.sha256, d.package, d.version, d.architecture, d.size, d.md5,
                d.control, d.filename
         FROM apt_ring_packages r
         JOIN deb_packages d ON d.sha256 = r.sha256
         WHERE r.ring = ?1
           AND EXISTS (SELECT 1 FROM patch_blobs b WHERE b.sha256 = r.sha256)
           AND EXISTS (SELECT 1 FROM patches p WHERE p.feed = r.feed AND p.id = r.patch_id)
         ORDER BY d.sha256",
    )?;
    let rows = st.query_map([ring], |r| {
        Ok(PackageEntry {
            sha256: r.get(0)?,
            package: r.get(1)?,
            version: r.get(2)?,
            architecture: r.get(3)?,
            size: crate::db::int::get_u64(r, 4)?,
            md5: r.get(5)?,
            control: r.get(6)?,
            filename: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Whether the blob `sha256` is in `ring`'s repository now (what the pool serves).
pub fn in_ring(conn: &Connection, ring: &str, sha256: &str) -> Result<bool, AptError> {
    let mut st = conn.prepare_cached(
        "SELECT 1 FROM apt_ring_packages r
         WHERE r.ring = ?1 AND r.sha256 = ?2
           AND EXISTS (SELECT 1 FROM deb_packages d WHERE d.sha256 = r.sha256)
           AND EXISTS (SELECT 1 FROM patch_blobs b WHERE b.sha256 = r.sha256)
           AND EXISTS (SELECT 1 FROM patches p WHERE p.feed = r.feed AND p.id = r.patch_id)",
    )?;
    Ok(st.exists(params![ring, sha256])?)
}

/// A digest of a ring's content (and the settings that shape its files): when it differs
/// from the published one, the ring is republished.
pub fn content_digest(entries: &[PackageEntry], settings_fingerprint: &str) -> String {
    let mut h = Sha256::new();
    h.update(settings_fingerprint.as_bytes());
    let mut shas: Vec<&str> = entries.iter().map(|e| e.sha256.as_str()).collect();
    shas.sort_unstable();
    for s in shas {
        h.update(b"\n");
        h.update(s.as_bytes());
    }
    hex::encode(h.finalize())
}

/// A ring's publish state.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RingState {
    pub ring: String,
    pub dirty: bool,
    pub changed_at: Option<String>,
    pub published_at: Option<String>,
    pub valid_until: Option<String>,
    pub published_digest: Option<String>,
    pub generation: u64,
    pub packages: usize,
    pub last_error: Option<String>,
}

/// Every ring with a state row or a released package, plus `always`.
pub fn ring_names(conn: &Connection, always: &[String]) -> Result<Vec<String>, AptError> {
    let mut names: BTreeSet<String> = always.iter().cloned().collect();
    let mut st = conn
        .prepare("SELECT ring FROM apt_rings UNION SELECT DISTINCT ring FROM apt_ring_packages")?;
    for r in st.query_map([], |r| r.get::<_, String>(0))? {
        names.insert(r?);
    }
    Ok(names.into_iter().collect())
}

/// The stored state of `ring` (defaults when it was never published).
pub fn ring_state(conn: &Connection, ring: &str) -> Result<RingState, AptError> {
    let row = conn
        .query_row(
            "SELECT dirty, changed_at, published_at, valid_until, published_digest, generation,
                    last_error
             FROM apt_rings WHERE ring = ?1",
            [ring],
            |r| {
                Ok(RingState {
                    ring: ring.into(),
                    dirty: r.get::<_, i64>(0)? != 0,
                    changed_at: r.get(1)?,
                    published_at: r.get(2)?,
                    valid_until: r.get(3)?,
                    published_digest: r.get(4)?,
                    generation: r.get::<_, i64>(5)? as u64,
                    packages: 0,
                    last_error: r.get(6)?,
                })
            },
        )
        .optional()?;
    Ok(row.unwrap_or_else(|| RingState {
        ring: ring.into(),
        ..Default::default()
    }))
}

/// Records a successful publish. The dirty flag is cleared only if nothing changed the
/// ring since `seen_changed_at` (a release during the publish keeps it dirty).
#[allow(clippy::too_many_arguments)]
pub fn mark_published(
    tx: &Transaction<'_>,
    ring: &str,
    seen_changed_at: Option<&str>,
    now: Timestamp,
    valid_until: Timestamp,
    digest: &str,
    generation: u64,
) -> Result<(), AptError> {
    tx.execute(
        "INSERT INTO apt_rings (ring, dirty, changed_at, published_at, valid_until,
                                published_digest, generation, last_error)
         VALUES (?1, 0, NULL, ?2, ?3, ?4, ?5, NULL)
         ON CONFLICT(ring) DO UPDATE SET
            dirty = CASE WHEN changed_at IS ?6 THEN 0 ELSE dirty END,
            published_at = excluded.published_at, valid_until = excluded.valid_until,
            published_digest = excluded.published_digest, generation = excluded.generation,
            last_error = NULL",
        params![
            ring,
            now.to_string(),
            valid_until.to_string(),
            digest,
            generation as i64,
            seen_changed_at
        ],
    )?;
    Ok(())
}

/// Records a failed publish (shown by `patchward apt status`).
pub fn mark_failed(tx: &Transaction<'_>, ring: &str, error: &str) -> Result<(), AptError> {
    tx.execute(
        "INSERT INTO apt_rings (ring, dirty, last_error) VALUES (?1, 1, ?2)
         ON CONFLICT(ring) DO UPDATE SET last_error = excluded.last_error",
        params![ring, error],
    )?;
    Ok(())
}
