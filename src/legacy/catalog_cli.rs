//! `patchward legacy catalog [--json]`: which lifecycle catalog is in force, how old it
//! is, where it came from, and the products it knows.
//!
//! The age is counted from the catalog's version (its export date) to the appliance's
//! clock, in whole UTC days: what an operator needs to judge whether the data may have
//! missed a recent end-of-life announcement.

use std::collections::BTreeMap;
use std::io::Write;

use clap::Args;
use jiff::Timestamp;
use serde::Serialize;

use super::LegacyError;
use super::active::{self, ActiveCatalog, CatalogOrigin};
use crate::db::Db;

/// `legacy catalog`.
#[derive(Debug, Clone, Args)]
pub struct CatalogArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One product the catalog knows.
#[derive(Debug, Clone, Serialize)]
pub struct ProductInfo {
    pub name: String,
    pub title: String,
    pub category: String,
    pub cycles: usize,
}

/// What `legacy catalog` shows.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogInfo {
    pub source: String,
    pub version: String,
    /// Whole days from the version (export date) to today (UTC, appliance clock).
    pub age_days: i64,
    pub origin: CatalogOrigin,
    pub product_count: usize,
    pub cycle_count: usize,
    pub products: Vec<ProductInfo>,
}

/// The facts about the catalog in force on `now`'s day. Pure.
pub fn info(active: &ActiveCatalog, now: Timestamp) -> CatalogInfo {
    let c = &active.catalog;
    let today = active::day(now);
    let products: Vec<ProductInfo> = c
        .products
        .values()
        .map(|p| ProductInfo {
            name: p.name.clone(),
            title: p.title.clone(),
            category: p.category.clone(),
            cycles: p.cycles.len(),
        })
        .collect();
    CatalogInfo {
        source: c.source.clone(),
        version: c.version.to_string(),
        age_days: (today - c.version).get_days().into(),
        origin: active.origin.clone(),
        product_count: products.len(),
        cycle_count: products.iter().map(|p| p.cycles).sum(),
        products,
    }
}

/// The text form: a header, then the products grouped by category.
pub fn render(i: &CatalogInfo) -> String {
    let mut out = format!("Lifecycle catalog version {}\n", i.version);
    out.push_str(&format!("  source:   {}\n", i.source));
    let age = match i.age_days {
        1 => "1 day".to_string(),
        d if d < 0 => format!("dated {} days ahead of this appliance's clock", -d),
        d => format!("{d} days"),
    };
    out.push_str(&format!("  age:      {age}\n"));
    let origin = match (&i.origin.feed, &i.origin.sha256) {
        (Some(feed), Some(sha)) => format!(
            "feed {feed:?}, sha256 {sha}, imported {}",
            crate::timefmt::display_or(i.origin.imported_at.as_deref(), "-")
        ),
        _ => "built into this binary (no feed has brought a newer one)".to_string(),
    };
    out.push_str(&format!("  origin:   {origin}\n"));
    out.push_str(&format!(
        "  contents: {} products, {} cycles\n",
        i.product_count, i.cycle_count
    ));
    let mut by_category: BTreeMap<&str, Vec<&ProductInfo>> = BTreeMap::new();
    for p in &i.products {
        let cat = if p.category.is_empty() {
            "other"
        } else {
            p.category.as_str()
        };
        by_category.entry(cat).or_default().push(p);
    }
    let width = i.products.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for (cat, products) in by_category {
        out.push_str(&format!("\n{cat} ({}):\n", products.len()));
        for p in products {
            let cycles = if p.cycles == 1 { "cycle" } else { "cycles" };
            out.push_str(&format!(
                "  {:<width$}  {} ({} {cycles})\n",
                p.name, p.title, p.cycles
            ));
        }
    }
    out
}

/// Runs `legacy catalog`.
pub fn run(
    db: &Db,
    now: Timestamp,
    args: &CatalogArgs,
    out: &mut dyn Write,
) -> Result<(), LegacyError> {
    let active = db.read_blocking(active::load)?;
    let i = info(&active, now);
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&i).expect("catalog info serialises");
        s.push('\n');
        s
    } else {
        render(&i)
    };
    out.write_all(text.as_bytes())
        .map_err(|e| LegacyError::Refused(format!("cannot write output: {e}")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::legacy::catalog::Catalog;

    fn built_in() -> ActiveCatalog {
        ActiveCatalog {
            catalog: Arc::new(Catalog::embedded().clone()),
            origin: CatalogOrigin {
                kind: "built-in",
                feed: None,
                sha256: None,
                imported_at: None,
            },
        }
    }

    #[test]
    fn info_counts_products_and_cycles_and_ages_by_the_clock() {
        let a = built_in();
        let i = info(&a, "2026-12-07T23:59:00Z".parse().unwrap());
        assert_eq!(i.version, "2026-08-22");
        assert_eq!(i.age_days, 107);
        assert_eq!(i.product_count, a.catalog.products.len());
        let cycles: usize = a.catalog.products.values().map(|p| p.cycles.len()).sum();
        assert_eq!(i.cycle_count, cycles);
        let debian = i.products.iter().find(|p| p.name == "debian").unwrap();
        assert_eq!(
            (debian.title.as_str(), debian.category.as_str()),
            ("Debian", "os")
        );

        let text = render(&i);
        assert!(
            text.starts_with("Lifecycle catalog version 2026-08-22\n"),
            "{text}"
        );
        assert!(text.contains("  age:      107 days\n"), "{text}");
        assert!(
            text.contains("  origin:   built into this binary"),
            "{text}"
        );
        assert!(text.contains("\nos ("), "{text}");
        let early = render(&info(&a, "2026-08-20T00:00:00Z".parse().unwrap()));
        assert!(
            early.contains("dated 2 days ahead of this appliance's clock"),
            "{early}"
        );
    }
}
