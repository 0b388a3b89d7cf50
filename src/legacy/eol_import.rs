//! A lifecycle catalog brought by a feed import (artifact kind `eol-catalog`).
//!
//! The import pipeline (`feed::import`) fetches and hashes the blob like every artifact;
//! [`check`] then parses it, before anything of the import is stored, so a blob that is
//! no lifecycle catalog refuses the whole import (a signed catalog that names garbage is
//! a publishing error). [`apply`] runs inside the import's own transaction: it replaces
//! the `eol_catalog` row, or, when the brought catalog is older than the one in force,
//! refuses only the lifecycle catalog. One feed's stale lifecycle data must not hold back
//! another feed's security patches, so the rest of the verified import proceeds and the
//! refusal is reported in the import's summary and in the audit log.

use jiff::Timestamp;
use rusqlite::{Transaction, params};
use serde::Serialize;

use super::LegacyError;
use super::catalog::Catalog;
use crate::audit::{self, NewEntry};
use crate::feed::catalog::EolCatalogRef;

/// The audit subject of every lifecycle catalog entry.
pub const AUDIT_SUBJECT: &str = "eol-catalog";

/// What an import did with the lifecycle catalog its feed ships.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It is now the catalog in force.
    Replaced,
    /// It was already the catalog in force (same version, same sha256).
    Unchanged,
    /// It is older than the catalog in force, which stays.
    RefusedOlder,
}

/// The outcome with the versions involved, for the import summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EolImport {
    pub outcome: Outcome,
    pub version: String,
    pub sha256: String,
    /// The catalog in force before the import, and where it came from.
    pub active_version: String,
    pub active_origin: String,
    /// One sentence for the operator.
    pub message: String,
}

/// Parses the verified blob and checks that it is the version the signed catalog says.
pub fn check(reference: &EolCatalogRef, body: &[u8]) -> Result<Catalog, String> {
    let catalog = Catalog::parse(body).map_err(|e| e.to_string())?;
    if catalog.version != reference.version {
        return Err(format!(
            "its export date is {}, but the signed catalog names version {}",
            catalog.version, reference.version
        ));
    }
    Ok(catalog)
}

/// Makes `catalog` (the checked blob `body` named by `reference`) the catalog in force,
/// unless the one in force is newer; audits either way, within `tx`.
pub fn apply(
    tx: &Transaction<'_>,
    now: Timestamp,
    feed: &str,
    reference: &EolCatalogRef,
    catalog: &Catalog,
    body: &[u8],
    actor: &str,
) -> Result<EolImport, LegacyError> {
    // A stored row that no longer parses (only damage does that) must not block the
    // very import that repairs it: any verified catalog replaces it.
    let active = match super::active::load(tx) {
        Ok(a) => Some(a),
        Err(LegacyError::Refused(_)) => None,
        Err(e) => return Err(e),
    };
    let (active_version, active_origin) = match &active {
        Some(a) => (
            a.catalog.version.to_string(),
            match (&a.origin.feed, &a.origin.sha256) {
                (Some(f), Some(sha)) => format!("feed {f:?}, sha256 {sha}"),
                _ => "built-in snapshot".to_string(),
            },
        ),
        None => ("unreadable".to_string(), "a damaged stored row".to_string()),
    };
    let version = catalog.version.to_string();
    let report = |outcome, message| EolImport {
        outcome,
        version: version.clone(),
        sha256: reference.sha256.clone(),
        active_version: active_version.clone(),
        active_origin: active_origin.clone(),
        message,
    };
    let active_sha = active.as_ref().and_then(|a| a.origin.sha256.as_deref());
    if active_sha == Some(reference.sha256.as_str()) {
        return Ok(report(
            Outcome::Unchanged,
            format!("lifecycle catalog version {version} is already the one in force"),
        ));
    }
    if let Some(a) = &active
        && catalog.version < a.catalog.version
    {
        let message = format!(
            "lifecycle catalog version {version} from feed {feed:?} was refused: it is older \
             than version {active_version} in force ({active_origin}), which stays; the \
             rest of the import was not affected"
        );
        audit::append(
            tx,
            now,
            &NewEntry {
                actor,
                action: "legacy.catalog_refused",
                subject: AUDIT_SUBJECT,
                details: serde_json::json!({
                    "feed": feed,
                    "version": version,
                    "sha256": reference.sha256,
                    "active_version": active_version,
                    "active_origin": active_origin,
                    "reason": "older than the lifecycle catalog in force",
                }),
            },
        )?;
        return Ok(report(Outcome::RefusedOlder, message));
    }
    tx.execute(
        "INSERT INTO eol_catalog (id, version, source, sha256, feed, imported_at, body)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(id) DO UPDATE SET version = excluded.version, source = excluded.source,
             sha256 = excluded.sha256, feed = excluded.feed,
             imported_at = excluded.imported_at, body = excluded.body",
        params![
            version,
            catalog.source,
            reference.sha256,
            feed,
            now.to_string(),
            body
        ],
    )?;
    audit::append(
        tx,
        now,
        &NewEntry {
            actor,
            action: "legacy.catalog_replaced",
            subject: AUDIT_SUBJECT,
            details: serde_json::json!({
                "feed": feed,
                "from_version": active_version,
                "from_origin": active_origin,
                "to_version": version,
                "sha256": reference.sha256,
            }),
        },
    )?;
    Ok(report(
        Outcome::Replaced,
        format!(
            "lifecycle catalog version {version} from feed {feed:?} is now in force \
             (was {active_version}, {active_origin})"
        ),
    ))
}

/// The built-in snapshot's bytes with another export date, for tests.
#[cfg(test)]
pub(crate) fn dated_snapshot(date: &str) -> Vec<u8> {
    let snapshot = include_str!("../../mirror/eol/snapshot.json");
    let text = snapshot.replacen(
        "\"source_date\": \"2026-08-22\"",
        &format!("\"source_date\": \"{date}\""),
        1,
    );
    assert_ne!(text, snapshot, "the snapshot's source_date moved");
    text.into_bytes()
}

#[cfg(test)]
#[path = "eol_import_tests.rs"]
mod tests;
