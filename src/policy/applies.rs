//! Applicability: does a patch apply to a host?
//!
//! A patch applies when any of its `applies_to` selectors matches (OR); a selector
//! matches when every field it gives matches (AND):
//! - `os` equals the host's os-release `ID`, `version` its `VERSION_ID`, `arch` its
//!   architecture (both read as Debian names, [`super::arch`]: `x86_64` is `amd64`);
//! - `package` is installed, and with `below_version`, at least one installed version
//!   of it is lower (Debian ordering, [`super::debversion`]);
//! - each label is `key=value` (the host has that value) or `key` (the host has the key).
//!
//! Decisions where DESIGN is silent: a patch with no selector applies to no host (a
//! catalog mistake must not reach the whole fleet); an unparsable installed version does
//! not match. A host flagged end-of-life is excluded before any selector is looked at
//! (the EOL logic that sets the flag comes with `legacy/`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::debversion::DebVersion;
use super::why::{EndOfLife, WhyNot};
use crate::feed::catalog::{PatchEntry, Selector};
use crate::fleet::inventory::Inventory;

/// What policy needs to know about a host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostFacts {
    pub id: String,
    pub os: String,
    pub os_version: String,
    pub arch: String,
    /// Installed package versions by name (several for multi-arch).
    pub packages: BTreeMap<String, Vec<String>>,
    pub labels: BTreeMap<String, String>,
    /// The ring assigned at enrollment, if any.
    pub ring: Option<String>,
    /// Set for a legacy host kept out of rollouts (end of life and not included).
    pub eol: Option<EndOfLife>,
}

impl HostFacts {
    /// Facts from an agent's inventory (its package list, if it sent one).
    pub fn from_inventory(
        id: &str,
        inv: &Inventory,
        labels: BTreeMap<String, String>,
        ring: Option<String>,
        eol: Option<EndOfLife>,
    ) -> Self {
        let mut packages: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in inv.packages.iter().flatten() {
            packages
                .entry(p.name.clone())
                .or_default()
                .push(p.version.clone());
        }
        Self {
            id: id.into(),
            os: inv.os.id.clone(),
            os_version: inv.os.version_id.clone(),
            arch: super::arch::debian(&inv.arch).into_owned(),
            packages,
            labels,
            ring,
            eol,
        }
    }
}

/// The outcome, with the reason a selector did not match.
pub type Applicability = Result<(), WhyNot>;

fn selector_mismatch(s: &Selector, h: &HostFacts) -> Option<String> {
    if let Some(os) = &s.os
        && *os != h.os
    {
        return Some(format!("os is {:?}, not {os:?}", h.os));
    }
    if let Some(v) = &s.version
        && *v != h.os_version
    {
        return Some(format!("os version is {:?}, not {v:?}", h.os_version));
    }
    if let Some(a) = &s.arch
        && !super::arch::same(a, &h.arch)
    {
        return Some(format!("arch is {:?}, not {a:?}", h.arch));
    }
    if let Some(p) = &s.package {
        let Some(installed) = h.packages.get(p) else {
            return Some(format!("package {p} is not installed"));
        };
        if let Some(below) = &s.below_version {
            let Ok(bound) = DebVersion::parse(below) else {
                return Some(format!("below_version {below:?} is not a Debian version"));
            };
            let lower = installed
                .iter()
                .any(|v| DebVersion::parse(v).is_ok_and(|v| v < bound));
            if !lower {
                return Some(format!(
                    "package {p} is at {}, not below {below}",
                    installed.join(", ")
                ));
            }
        }
    }
    for l in &s.labels {
        let ok = match l.split_once('=') {
            Some((k, v)) => h.labels.get(k).is_some_and(|hv| hv == v),
            None => h.labels.contains_key(l),
        };
        if !ok {
            return Some(format!("label {l} is missing"));
        }
    }
    None
}

/// Whether `entry` applies to the host; the refusal names the first selector's mismatch.
pub fn applicability(entry: &PatchEntry, host: &HostFacts) -> Applicability {
    if let Some(e) = &host.eol {
        return Err(WhyNot::HostEndOfLife(e.clone()));
    }
    let mut first = None;
    for s in &entry.applies_to {
        match selector_mismatch(s, host) {
            None => return Ok(()),
            Some(why) => {
                first.get_or_insert(why);
            }
        }
    }
    Err(WhyNot::NotApplicable {
        reason: first.unwrap_or_else(|| "the patch names no applies_to selector".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::catalog::tests::entry;

    fn host() -> HostFacts {
        HostFacts {
            id: "h1".into(),
            os: "debian".into(),
            os_version: "12".into(),
            arch: "amd64".into(),
            packages: [
                ("openssl".to_string(), vec!["3.0.15-1~deb12u1".to_string()]),
                (
                    "libc6".to_string(),
                    vec!["2.36-9+deb12u9".to_string(), "2.36-9+deb12u10".to_string()],
                ),
            ]
            .into_iter()
            .collect(),
            labels: [
                ("site".to_string(), "hq".to_string()),
                ("db".to_string(), String::new()),
            ]
            .into_iter()
            .collect(),
            ring: None,
            eol: None,
        }
    }

    fn sel(toml_text: &str) -> Selector {
        toml::from_str(toml_text).unwrap()
    }

    #[track_caller]
    fn check(selectors: &[&str], h: &HostFacts, want: Result<(), &str>) {
        let mut e = entry("p", b"x");
        e.applies_to = selectors.iter().map(|s| sel(s)).collect();
        let got = applicability(&e, h).map_err(|w| w.to_string());
        assert_eq!(got, want.map_err(String::from), "{selectors:?}");
    }

    #[test]
    fn selectors() {
        let h = host();
        check(&["os = \"debian\"\nversion = \"12\""], &h, Ok(()));
        check(
            &["os = \"debian\"\nversion = \"12\"\narch = \"amd64\""],
            &h,
            Ok(()),
        );
        check(
            &["os = \"debian\"\nversion = \"11\""],
            &h,
            Err("does not apply: os version is \"12\", not \"11\""),
        );
        check(
            &["os = \"ubuntu\""],
            &h,
            Err("does not apply: os is \"debian\", not \"ubuntu\""),
        );
        check(
            &["os = \"debian\"\narch = \"arm64\""],
            &h,
            Err("does not apply: arch is \"amd64\", not \"arm64\""),
        );
        // Package bounds use Debian ordering.
        check(
            &["package = \"openssl\"\nbelow_version = \"3.0.15-1+deb12u1\""],
            &h,
            Ok(()),
        );
        check(
            &["package = \"openssl\"\nbelow_version = \"3.0.15-1~deb12u1\""],
            &h,
            Err(
                "does not apply: package openssl is at 3.0.15-1~deb12u1, not below 3.0.15-1~deb12u1",
            ),
        );
        check(
            &["package = \"openssl\"\nbelow_version = \"3.0.9\""],
            &h,
            Err("does not apply: package openssl is at 3.0.15-1~deb12u1, not below 3.0.9"),
        );
        check(&["package = \"openssl\""], &h, Ok(()));
        check(
            &["package = \"nginx\"\nbelow_version = \"1.0\""],
            &h,
            Err("does not apply: package nginx is not installed"),
        );
        // One of two installed versions below the bound is enough.
        check(
            &["package = \"libc6\"\nbelow_version = \"2.36-9+deb12u10\""],
            &h,
            Ok(()),
        );
        // Labels: key=value and bare key.
        check(&["labels = [\"site=hq\", \"db\"]"], &h, Ok(()));
        check(
            &["labels = [\"site=branch\"]"],
            &h,
            Err("does not apply: label site=branch is missing"),
        );
        check(
            &["labels = [\"web\"]"],
            &h,
            Err("does not apply: label web is missing"),
        );
        // OR across selectors, AND within one.
        check(&["os = \"ubuntu\"", "labels = [\"site=hq\"]"], &h, Ok(()));
        check(
            &["os = \"debian\"\nlabels = [\"site=branch\"]"],
            &h,
            Err("does not apply: label site=branch is missing"),
        );
        check(
            &[],
            &h,
            Err("does not apply: the patch names no applies_to selector"),
        );
    }

    #[test]
    fn arch_names_are_compared_in_debian_s_vocabulary() {
        // Issue [8] item 12: an agent reports x86_64, a selector says amd64.
        let mut h = host();
        h.arch = "x86_64".into();
        check(&["arch = \"amd64\""], &h, Ok(()));
        h.arch = "aarch64".into();
        check(&["arch = \"arm64\""], &h, Ok(()));
        check(
            &["arch = \"amd64\""],
            &h,
            Err("does not apply: arch is \"aarch64\", not \"amd64\""),
        );
        h.arch = "ppc64le".into();
        check(&["arch = \"ppc64el\""], &h, Ok(()));
        // Facts from an inventory carry the Debian name.
        let inv: Inventory = serde_json::from_value(serde_json::json!({
            "os": {"id": "debian", "version_id": "12"},
            "kernel": "6.1.0", "arch": "x86_64", "hostname": "web1",
            "uptime_s": 5, "reboot_required": false
        }))
        .unwrap();
        let f = HostFacts::from_inventory("h9", &inv, BTreeMap::new(), None, None);
        assert_eq!(f.arch, "amd64");
    }

    #[test]
    fn eol_hosts_are_excluded() {
        let mut h = host();
        h.eol = Some(EndOfLife {
            host: "web1".into(),
            product: "debian".into(),
            cycle: "10".into(),
            state: "eol".into(),
            eol_date: Some(jiff::civil::date(2024, 6, 30)),
        });
        check(
            &["os = \"debian\""],
            &h,
            Err(
                "debian 10 reached end of life on 2024-06-30; legacy hosts are not offered \
                 patches unless included (patchward legacy include web1 --reason ...)",
            ),
        );
        // An included host (no end-of-life facts) is judged by its selectors alone.
        h.eol = None;
        check(&["os = \"debian\""], &h, Ok(()));
    }

    #[test]
    fn facts_from_inventory() {
        let inv: Inventory = serde_json::from_value(serde_json::json!({
            "os": {"id": "debian", "version_id": "12"},
            "kernel": "6.1.0", "arch": "amd64", "hostname": "web1",
            "packages": [{"name": "openssl", "version": "3.0.15-1", "arch": "amd64"}],
            "uptime_s": 5, "reboot_required": false
        }))
        .unwrap();
        let h = HostFacts::from_inventory("h9", &inv, BTreeMap::new(), Some("pilot".into()), None);
        assert_eq!(h.os, "debian");
        assert_eq!(h.packages["openssl"], vec!["3.0.15-1".to_string()]);
        assert_eq!(h.ring.as_deref(), Some("pilot"));
    }
}
