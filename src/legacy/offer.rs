//! Whether an agent host is offered rollouts, as a legacy host: the planner's and the
//! offer-time check's input. A host whose lifecycle state is excluded
//! ([`active::excluded`]: `eol`, or `unknown` with `legacy.unknown_is_eol`) and that has
//! no include gets [`EndOfLife`] facts, which policy turns into
//! `WhyNot::HostEndOfLife` with its sentence.
//!
//! The answer depends on the host's os-release, the catalog in force, the includes,
//! `[legacy]` and the DAY (a host turns eol at midnight UTC without anything else
//! changing). [`Fence`] holds all of these but the os-release; its [`Fence::key`]
//! tells the planner when to recompute every host's flag.

use std::collections::BTreeSet;
use std::sync::Arc;

use jiff::Timestamp;
use jiff::civil::Date;
use rusqlite::Connection;

use super::LegacyError;
use super::active::{self, excluded};
use super::catalog::{Catalog, Lifecycle, State};
use crate::config::LegacyConfig;
use crate::fleet::inventory::OsRelease;
use crate::policy::EndOfLife;

/// The end-of-life facts of a host in `lifecycle`, or `None` when it is offered
/// rollouts (not in an excluded state, or included). Pure.
pub fn end_of_life(
    lifecycle: &Lifecycle,
    included: bool,
    cfg: &LegacyConfig,
    host: &str,
) -> Option<EndOfLife> {
    if included || !excluded(lifecycle.state, cfg) {
        return None;
    }
    Some(EndOfLife {
        host: host.to_string(),
        product: lifecycle.product.clone(),
        cycle: lifecycle.cycle.clone(),
        state: lifecycle.state.as_str().to_string(),
        eol_date: match lifecycle.state {
            State::Eol => lifecycle.eol_date,
            _ => None,
        },
    })
}

/// What decides the flag besides each host's os-release.
#[derive(Debug, Clone)]
pub struct Fence {
    pub catalog: Arc<Catalog>,
    /// The catalog's identity (`built-in` or the feed artifact's sha256) and version.
    pub catalog_id: (String, String),
    /// Included host keys (agent host ids).
    pub includes: BTreeSet<String>,
    pub day: Date,
    pub cfg: LegacyConfig,
}

/// Changes whenever any input of the flag changes (cheap to compare).
pub type FenceKey = ((String, String), BTreeSet<String>, Date, LegacyConfig);

impl Fence {
    /// Reads the catalog in force and the includes on `conn`, for the UTC day of `now`.
    pub fn load(
        conn: &Connection,
        now: Timestamp,
        cfg: &LegacyConfig,
    ) -> Result<Self, LegacyError> {
        let active = active::load(conn)?;
        let includes = super::decisions::includes(conn)?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        Ok(Self {
            catalog_id: (
                active
                    .origin
                    .sha256
                    .clone()
                    .unwrap_or_else(|| "built-in".into()),
                active.catalog.version.to_string(),
            ),
            catalog: active.catalog,
            includes,
            day: active::day(now),
            cfg: cfg.clone(),
        })
    }

    pub fn key(&self) -> FenceKey {
        (
            self.catalog_id.clone(),
            self.includes.clone(),
            self.day,
            self.cfg.clone(),
        )
    }

    /// The end-of-life facts of agent host `id` (named `hostname`) running `os`.
    pub fn of(&self, id: &str, hostname: &str, os: &OsRelease) -> Option<EndOfLife> {
        let lifecycle = active::of_os(&self.catalog, os, self.day, &self.cfg);
        end_of_life(&lifecycle, self.includes.contains(id), &self.cfg, hostname)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(id: &str, v: &str) -> OsRelease {
        OsRelease {
            id: id.into(),
            version_id: v.into(),
            id_like: String::new(),
        }
    }

    fn fence(day: Date, includes: &[&str], cfg: LegacyConfig) -> Fence {
        Fence {
            catalog: Arc::new(Catalog::embedded().clone()),
            catalog_id: ("built-in".into(), Catalog::embedded().version.to_string()),
            includes: includes.iter().map(|s| s.to_string()).collect(),
            day,
            cfg,
        }
    }

    #[test]
    fn eol_hosts_are_fenced_unless_included() {
        let f = fence(jiff::civil::date(2026, 12, 7), &[], LegacyConfig::default());
        let e = f.of("h-1", "old", &os("debian", "10")).unwrap();
        assert_eq!(
            e.to_string(),
            "debian 10 reached end of life on 2024-06-30; legacy hosts are not offered \
             patches unless included (patchward legacy include old --reason ...)"
        );
        assert_eq!(f.of("h-2", "new", &os("debian", "12")), None);
        // Unknown hosts are offered unless legacy.unknown_is_eol says otherwise.
        assert_eq!(f.of("h-3", "odd", &os("linux", "")), None);
        let strict = fence(
            f.day,
            &[],
            LegacyConfig {
                unknown_is_eol: true,
                ..LegacyConfig::default()
            },
        );
        let e = strict.of("h-3", "odd", &os("linux", "")).unwrap();
        assert!(
            e.to_string()
                .starts_with("the lifecycle catalog does not know linux; legacy.unknown_is_eol"),
            "{e}"
        );
        let included = fence(f.day, &["h-1"], LegacyConfig::default());
        assert_eq!(included.of("h-1", "old", &os("debian", "10")), None);
        assert_ne!(included.key(), f.key());
    }

    #[test]
    fn a_day_rollover_alone_turns_a_host_eol() {
        // Debian 11's end of life in the snapshot.
        let eol = Catalog::embedded()
            .lifecycle("debian", "11", jiff::civil::date(2020, 1, 1), 90)
            .eol_date
            .unwrap();
        let before = fence(eol.yesterday().unwrap(), &[], LegacyConfig::default());
        let on = fence(eol, &[], LegacyConfig::default());
        assert_eq!(before.of("h-1", "b", &os("debian", "11")), None);
        assert!(on.of("h-1", "b", &os("debian", "11")).is_some());
        assert_ne!(before.key(), on.key());
    }
}
