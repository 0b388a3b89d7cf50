//! The lifecycle catalog in force, and a host's lifecycle under it.
//!
//! The catalog in force is the one the newest signed `eol-catalog` feed artifact
//! brought (`eol_catalog` table, replaced in the import's transaction), or the snapshot
//! built into the binary when none came. Evaluation dates are the appliance's `Clock`
//! read as a UTC calendar day: a lifecycle date is a day, and a site's few hours of
//! time-zone offset do not matter next to a 90-day warning horizon.

use std::sync::Arc;

use jiff::Timestamp;
use jiff::civil::Date;
use rusqlite::Connection;
use serde::Serialize;

use super::LegacyError;
use super::catalog::{Catalog, Lifecycle, State};
use super::mapping;
use crate::config::LegacyConfig;
use crate::fleet::inventory::OsRelease;

/// Where the catalog in force came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogOrigin {
    /// `built-in` or `feed`.
    pub kind: &'static str,
    /// The feed that brought it, its sha256 and when (for `feed`).
    pub feed: Option<String>,
    pub sha256: Option<String>,
    pub imported_at: Option<String>,
}

/// The catalog in force and its origin.
#[derive(Debug, Clone)]
pub struct ActiveCatalog {
    pub catalog: Arc<Catalog>,
    pub origin: CatalogOrigin,
}

/// Reads the catalog in force. A stored body that no longer parses (only damage does
/// that: it was verified and parsed before it was stored) is an error, not a silent
/// fallback to the older snapshot.
pub fn load(conn: &Connection) -> Result<ActiveCatalog, LegacyError> {
    match crate::db::legacy::eol_catalog(conn)? {
        None => Ok(ActiveCatalog {
            catalog: Arc::new(Catalog::embedded().clone()),
            origin: CatalogOrigin {
                kind: "built-in",
                feed: None,
                sha256: None,
                imported_at: None,
            },
        }),
        Some((_, _, sha, feed, at, body)) => {
            let catalog = Catalog::parse(&body).map_err(|e| {
                LegacyError::Refused(format!(
                    "the stored lifecycle catalog (sha256 {sha}) is damaged: {e}; \
                     import the eol-catalog bundle again"
                ))
            })?;
            Ok(ActiveCatalog {
                catalog: Arc::new(catalog),
                origin: CatalogOrigin {
                    kind: "feed",
                    feed: Some(feed),
                    sha256: Some(sha),
                    imported_at: Some(at),
                },
            })
        }
    }
}

/// The evaluation day for `now` (UTC).
pub fn day(now: Timestamp) -> Date {
    jiff::tz::TimeZone::UTC.to_datetime(now).date()
}

/// The lifecycle of an agent host from its reported os-release; `unknown` (with the
/// os-release ID and version as product and cycle) when the mapping does not know it.
pub fn of_os(catalog: &Catalog, os: &OsRelease, on: Date, cfg: &LegacyConfig) -> Lifecycle {
    match mapping::from_os_release(&os.id, &os.version_id, &os.id_like) {
        Some(r) => catalog.lifecycle(&r.product, &r.cycle, on, cfg.eol_soon_days),
        None => Lifecycle {
            product: os.id.clone(),
            cycle: os.version_id.clone(),
            state: State::Unknown,
            title: None,
            codename: None,
            security_end: None,
            eol_date: None,
        },
    }
}

/// Whether a host in `state` is kept out of rollouts unless included: `eol`, and
/// `unknown` when `legacy.unknown_is_eol` says so.
pub fn excluded(state: State, cfg: &LegacyConfig) -> bool {
    match state {
        State::Eol => true,
        State::Unknown => cfg.unknown_is_eol,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_hosts_are_evaluated_from_their_os_release() {
        let cat = Catalog::embedded();
        let cfg = LegacyConfig::default();
        let on = jiff::civil::date(2026, 12, 7);
        let os = |id: &str, v: &str| OsRelease {
            id: id.into(),
            version_id: v.into(),
            id_like: String::new(),
        };
        let l = of_os(cat, &os("debian", "10"), on, &cfg);
        assert_eq!(
            (l.state, l.eol_date),
            (State::Eol, Some(jiff::civil::date(2024, 6, 30)))
        );
        assert!(excluded(l.state, &cfg));
        let l = of_os(cat, &os("debian", "13"), on, &cfg);
        assert_eq!(l.state, State::Supported);
        let l = of_os(cat, &os("linux", ""), on, &cfg);
        assert_eq!((l.state, l.product.as_str()), (State::Unknown, "linux"));
        assert!(!excluded(l.state, &cfg));
        let strict = LegacyConfig {
            unknown_is_eol: true,
            ..cfg
        };
        assert!(excluded(State::Unknown, &strict));
        assert!(!excluded(State::ExtendedOnly, &strict));
    }
}
