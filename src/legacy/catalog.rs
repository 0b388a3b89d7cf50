//! The lifecycle catalog (DESIGN §5): which operating systems and server products are
//! still supported on a given date. Pure: parsing and evaluation, no IO, no clock.
//!
//! The data is endoflife.date's: products, each with release cycles whose milestones are
//! an ISO date or a boolean. Two spellings are read:
//! - the project's own front matter (`releaseCycle`, `eoas`, `eol`, `eoes`), which is
//!   what the shipped snapshot and `../shared/fixtures/eol` hold. A boolean means
//!   `true` = the phase has ended, date unknown; `false` = no end planned (for `eoes`:
//!   no extended support is offered);
//! - the public API's (`cycle`, `support`, `eol`, `extendedSupport`). Its booleans for
//!   `support` and `extendedSupport` say whether the phase is *running* (`support: true`
//!   = still actively supported), the inverse of the front matter's, and are converted.
//!
//! Phases of a cycle, in order: active support (until `eoas`), security support (until
//! `eol`), paid extended support (until `eoes`), then nothing. A milestone date is the
//! first day the phase is over: on `eol` itself the cycle is out of security support.
//! See [`Catalog::lifecycle`] for the states.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

/// The snapshot built into the binary (`mirror/eol/snapshot.json`, trimmed from the
/// endoflife.date export by `mirror/eol/trim-snapshot.py`).
const SNAPSHOT: &[u8] = include_bytes!("../../mirror/eol/snapshot.json");

/// Largest catalog accepted (the full endoflife.date export is about 1.5 MB).
pub const MAX_CATALOG_BYTES: usize = 16 << 20;

/// Why a catalog file was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("the lifecycle catalog is {0} bytes; at most {MAX_CATALOG_BYTES} are accepted")]
    TooLarge(usize),
    #[error("the lifecycle catalog is not endoflife.date JSON: {0}")]
    Json(String),
    #[error("the lifecycle catalog has no products")]
    Empty,
    #[error("the lifecycle catalog names product {0:?} twice")]
    DuplicateProduct(String),
    #[error("product {product:?} in the lifecycle catalog: {reason}")]
    Product { product: String, reason: String },
}

/// When a phase ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "date")]
pub enum End {
    /// No end planned (or, for extended support, none offered).
    NotPlanned,
    /// Over, on a date the data does not give.
    Ended,
    /// Over from this date on.
    On(Date),
}

impl End {
    /// Whether the phase is over on `d`.
    pub fn over(self, d: Date) -> bool {
        match self {
            End::NotPlanned => false,
            End::Ended => true,
            End::On(x) => d >= x,
        }
    }

    pub fn date(self) -> Option<Date> {
        match self {
            End::On(x) => Some(x),
            _ => None,
        }
    }
}

/// One release cycle of a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cycle {
    pub cycle: String,
    pub codename: Option<String>,
    pub release_date: Option<Date>,
    /// End of active support; `None`: the data has no separate active phase.
    pub active_end: Option<End>,
    /// End of security support (endoflife.date's `eol`).
    pub security_end: End,
    /// End of paid extended support; `None`: none offered.
    pub extended_end: Option<End>,
    pub lts: bool,
}

/// One product with its cycles, newest first as in the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Product {
    pub name: String,
    pub title: String,
    pub category: String,
    pub cycles: Vec<Cycle>,
}

/// A parsed catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Catalog {
    /// Where the data came from (the export's `source`, with its commit when given).
    pub source: String,
    /// The export's date: catalogs are ordered by it (an older one is refused).
    pub version: Date,
    pub products: BTreeMap<String, Product>,
}

/// The lifecycle state of a cycle on a date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Supported,
    /// Security support ends within `legacy.eol_soon_days`.
    EolSoon,
    /// Active support is over; security fixes still come.
    SecurityOnly,
    /// Only paid extended support is left.
    ExtendedOnly,
    Eol,
    /// The product or cycle is not in the catalog.
    Unknown,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Supported,
        State::EolSoon,
        State::SecurityOnly,
        State::ExtendedOnly,
        State::Eol,
        State::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Supported => "supported",
            State::EolSoon => "eol_soon",
            State::SecurityOnly => "security_only",
            State::ExtendedOnly => "extended_only",
            State::Eol => "eol",
            State::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Whether a host in this state is a legacy host (listed on the Legacy page).
    pub fn is_legacy(self) -> bool {
        !matches!(self, State::Supported | State::SecurityOnly)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the catalog says about one (product, cycle) on a date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lifecycle {
    pub product: String,
    pub cycle: String,
    pub state: State,
    /// The product's display name, when known.
    pub title: Option<String>,
    pub codename: Option<String>,
    /// End of security support, when dated.
    pub security_end: Option<Date>,
    /// The day the cycle is (or was) out of every kind of support: the end of extended
    /// support when that comes later, else the end of security support. This is the
    /// "end-of-life date" people are shown.
    pub eol_date: Option<Date>,
}

impl Catalog {
    /// Parses an endoflife.date export (either spelling, see the module doc).
    pub fn parse(bytes: &[u8]) -> Result<Catalog, CatalogError> {
        if bytes.len() > MAX_CATALOG_BYTES {
            return Err(CatalogError::TooLarge(bytes.len()));
        }
        let raw: RawCatalog =
            serde_json::from_slice(bytes).map_err(|e| CatalogError::Json(e.to_string()))?;
        if raw.products.is_empty() {
            return Err(CatalogError::Empty);
        }
        let source = match &raw.source_commit {
            Some(c) if !c.is_empty() => format!("{} @ {}", raw.source, c),
            _ => raw.source.clone(),
        };
        let mut products = BTreeMap::new();
        for p in raw.products {
            let name = p.product.trim().to_ascii_lowercase();
            let bad = |reason: String| CatalogError::Product {
                product: name.clone(),
                reason,
            };
            if name.is_empty() || name.len() > 100 {
                return Err(bad("the product name must be 1 to 100 characters".into()));
            }
            let mut cycles = Vec::with_capacity(p.releases.len());
            for r in p.releases {
                cycles.push(r.into_cycle().map_err(&bad)?);
            }
            let product = Product {
                title: p.title.unwrap_or_else(|| name.clone()),
                category: p.category.unwrap_or_default(),
                name: name.clone(),
                cycles,
            };
            if products.insert(name.clone(), product).is_some() {
                return Err(CatalogError::DuplicateProduct(name));
            }
        }
        Ok(Catalog {
            source,
            version: raw.source_date,
            products,
        })
    }

    /// The snapshot built into the binary.
    pub fn embedded() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            Catalog::parse(SNAPSHOT).expect("the built-in lifecycle snapshot parses (tested)")
        })
    }

    pub fn product(&self, name: &str) -> Option<&Product> {
        self.products.get(&name.to_ascii_lowercase())
    }

    /// The cycle `cycle` of `product` (names compared without case).
    pub fn cycle(&self, product: &str, cycle: &str) -> Option<(&Product, &Cycle)> {
        let p = self.product(product)?;
        let c = p
            .cycles
            .iter()
            .find(|c| c.cycle.eq_ignore_ascii_case(cycle))?;
        Some((p, c))
    }

    /// The state of `product` `cycle` on `date`, with `eol_soon_days` as the warning
    /// horizon:
    /// - `eol`: security support is over and no extended support runs;
    /// - `extended_only`: security support is over, paid extended support still runs;
    /// - `eol_soon`: security support ends within `eol_soon_days` (from the day on
    ///   which `date + eol_soon_days` reaches the end date);
    /// - `security_only`: active support is over, security support runs;
    /// - `supported`: otherwise;
    /// - `unknown`: the product or cycle is not in the catalog.
    pub fn lifecycle(
        &self,
        product: &str,
        cycle: &str,
        date: Date,
        eol_soon_days: u32,
    ) -> Lifecycle {
        let Some((p, c)) = self.cycle(product, cycle) else {
            return Lifecycle {
                product: product.to_string(),
                cycle: cycle.to_string(),
                state: State::Unknown,
                title: self.product(product).map(|p| p.title.clone()),
                codename: None,
                security_end: None,
                eol_date: None,
            };
        };
        let extended = c.extended_end;
        let state = if c.security_end.over(date) {
            match extended {
                Some(e) if !e.over(date) => State::ExtendedOnly,
                _ => State::Eol,
            }
        } else if c
            .security_end
            .date()
            .is_some_and(|end| soon(date, end, eol_soon_days))
        {
            State::EolSoon
        } else if c.active_end.is_some_and(|a| a.over(date)) {
            State::SecurityOnly
        } else {
            State::Supported
        };
        let eol_date = match (c.security_end, extended) {
            // Extended support that runs with no end date given: no end-of-life date.
            (_, Some(End::NotPlanned)) | (End::NotPlanned, _) => None,
            (s, Some(e)) => match (s.date(), e.date()) {
                (Some(s), Some(e)) => Some(s.max(e)),
                (s, e) => s.or(e),
            },
            (s, None) => s.date(),
        };
        Lifecycle {
            product: p.name.clone(),
            cycle: c.cycle.clone(),
            state,
            title: Some(p.title.clone()),
            codename: c.codename.clone(),
            security_end: c.security_end.date(),
            eol_date,
        }
    }

    /// How many cycles the catalog holds.
    pub fn cycles(&self) -> usize {
        self.products.values().map(|p| p.cycles.len()).sum()
    }
}

/// Whether `end` is within `days` days after `date` (`date < end` is given).
fn soon(date: Date, end: Date, days: u32) -> bool {
    date.checked_add(jiff::Span::new().days(i64::from(days)))
        .is_ok_and(|horizon| horizon >= end)
}

#[derive(Deserialize)]
struct RawCatalog {
    #[serde(default = "default_source")]
    source: String,
    #[serde(default)]
    source_commit: Option<String>,
    source_date: Date,
    products: Vec<RawProduct>,
}

fn default_source() -> String {
    "endoflife.date".into()
}

#[derive(Deserialize)]
struct RawProduct {
    product: String,
    title: Option<String>,
    category: Option<String>,
    releases: Vec<RawRelease>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DateOrBool {
    Bool(bool),
    Date(Date),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRelease {
    #[serde(alias = "cycle")]
    release_cycle: String,
    codename: Option<String>,
    release_date: Option<Date>,
    eoas: Option<DateOrBool>,
    /// The API's name for active support (booleans inverted, see the module doc).
    support: Option<DateOrBool>,
    eol: Option<DateOrBool>,
    eoes: Option<DateOrBool>,
    extended_support: Option<DateOrBool>,
    lts: Option<DateOrBool>,
}

/// A front-matter milestone: `true` = ended, `false` = not planned.
fn ended_if_true(v: DateOrBool) -> End {
    match v {
        DateOrBool::Bool(true) => End::Ended,
        DateOrBool::Bool(false) => End::NotPlanned,
        DateOrBool::Date(d) => End::On(d),
    }
}

/// An API "is it running" flag: `true` = still running, `false` = over.
fn running_if_true(v: DateOrBool) -> End {
    match v {
        DateOrBool::Bool(true) => End::NotPlanned,
        DateOrBool::Bool(false) => End::Ended,
        DateOrBool::Date(d) => End::On(d),
    }
}

impl RawRelease {
    fn into_cycle(self) -> Result<Cycle, String> {
        let cycle = self.release_cycle.trim().to_string();
        if cycle.is_empty() || cycle.len() > 64 {
            return Err("a release cycle name must be 1 to 64 characters".into());
        }
        let Some(eol) = self.eol else {
            return Err(format!("cycle {cycle:?} has no `eol`"));
        };
        let active_end = match (self.eoas, self.support) {
            (Some(v), _) => Some(ended_if_true(v)),
            (None, Some(v)) => Some(running_if_true(v)),
            (None, None) => None,
        };
        let extended_end = match (self.eoes, self.extended_support) {
            (Some(DateOrBool::Bool(false)), _) => None,
            (Some(v), _) => Some(ended_if_true(v)),
            // The API's `extendedSupport: true` means it runs with no end date given;
            // `false`, that there is none (or no longer).
            (None, Some(DateOrBool::Bool(true))) => Some(End::NotPlanned),
            (None, Some(DateOrBool::Bool(false))) => None,
            (None, Some(DateOrBool::Date(d))) => Some(End::On(d)),
            (None, None) => None,
        };
        Ok(Cycle {
            cycle,
            codename: self.codename.filter(|c| !c.is_empty()),
            release_date: self.release_date,
            active_end,
            security_end: ended_if_true(eol),
            extended_end,
            lts: match self.lts {
                Some(DateOrBool::Bool(b)) => b,
                Some(DateOrBool::Date(_)) => true,
                None => false,
            },
        })
    }
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
