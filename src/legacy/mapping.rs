//! From what a host says about itself to a (product, cycle) of the lifecycle catalog.
//! Pure.
//!
//! Agent hosts report their os-release `ID`, `VERSION_ID` and `ID_LIKE`. Each
//! distribution numbers its releases its own way, so the cycle is derived per `ID`, with
//! versions split into numeric parts and compared as numbers, never as strings
//! (`12.5` -> `12`, `7.9` -> `7`, `22.04` stays `22.04`, `3.18.4` -> `3.18`).
//!
//! `ID_LIKE` is consulted only for an `ID` this table does not know, and only for the
//! families whose derivatives keep their parent's release numbers (rebuilds of RHEL:
//! `ID_LIKE` naming `rhel`; Debian derivatives such as Raspberry Pi OS: `ID_LIKE=debian`
//! without `ubuntu`). A derivative with its own numbering (Linux Mint's `ID_LIKE` is
//! `ubuntu debian`, but its `VERSION_ID` is Mint's) would be mapped to the wrong cycle,
//! so it is left `unknown` rather than guessed.
//!
//! Agentless hosts name their product and cycle by hand; [`normalize_cycle`] accepts the
//! spellings people type (`2012 R2`, `2012r2` -> `2012-r2`).

use serde::Serialize;

/// A host's place in the lifecycle catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProductRef {
    pub product: String,
    pub cycle: String,
}

impl ProductRef {
    fn new(product: &str, cycle: String) -> Option<Self> {
        (!cycle.is_empty()).then(|| ProductRef {
            product: product.to_string(),
            cycle,
        })
    }
}

/// The numeric parts of a version (`"12.5"` -> `[12, 5]`); `None` when any part is not
/// a number.
fn parts(version: &str) -> Option<Vec<u64>> {
    let v = version.trim();
    if v.is_empty() {
        return None;
    }
    v.split('.').map(|p| p.parse::<u64>().ok()).collect()
}

/// The first `n` numeric parts joined again (`[22, 4]`, 2 -> `"22.04"` with
/// `pad_minor`), or `None` when the version has fewer.
fn join(p: &[u64], n: usize, pad_minor: bool) -> Option<String> {
    if p.len() < n {
        return None;
    }
    Some(
        p[..n]
            .iter()
            .enumerate()
            .map(|(i, x)| {
                if i == 1 && pad_minor {
                    format!("{x:02}")
                } else {
                    x.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// The catalog product and cycle for an os-release `ID`, `VERSION_ID` and `ID_LIKE`;
/// `None` when it is not one this table knows (the host's state is then `unknown`).
pub fn from_os_release(id: &str, version_id: &str, id_like: &str) -> Option<ProductRef> {
    let id = id.trim().to_ascii_lowercase();
    if let Some(r) = known(&id, version_id) {
        return Some(r);
    }
    let like: Vec<String> = id_like
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let has = |x: &str| like.iter().any(|l| l == x);
    if has("rhel") {
        return known("rhel", version_id);
    }
    if has("debian") && !has("ubuntu") {
        return known("debian", version_id);
    }
    None
}

fn known(id: &str, version_id: &str) -> Option<ProductRef> {
    let p = parts(version_id)?;
    let major = || join(&p, 1, false);
    let cycle = match id {
        // Debian's VERSION_ID is the major release; before 4.0, releases were 3.0, 3.1.
        "debian" | "raspbian" => {
            let product = "debian";
            return ProductRef::new(
                product,
                if p[0] >= 4 {
                    major()?
                } else {
                    join(&p, 2, false)?
                },
            );
        }
        "ubuntu" => return ProductRef::new("ubuntu", join(&p, 2, true)?),
        "rhel" => ("rhel", major()?),
        // CentOS Linux ended with 8; ID=centos with 9 or later is CentOS Stream.
        "centos" if p[0] >= 9 => ("centos-stream", major()?),
        "centos" => ("centos", major()?),
        "rocky" => ("rocky-linux", major()?),
        "almalinux" => ("almalinux", major()?),
        "ol" => ("oracle-linux", major()?),
        // SLES numbers service packs as minor versions: 15 is 15.0, 15.5 stays 15.5.
        "sles" | "sles_sap" => ("sles", sles(&p)),
        "opensuse-leap" => ("opensuse", sles(&p)),
        // Amazon Linux: 2, 2023, and the old dated 2018.03.
        "amzn" if p[0] >= 2000 && p.len() >= 2 && p[0] < 2023 => {
            return ProductRef::new("amazon-linux", join(&p, 2, true)?);
        }
        "amzn" => ("amazon-linux", major()?),
        "alpine" => ("alpine-linux", join(&p, 2, false)?),
        _ => return None,
    };
    ProductRef::new(cycle.0, cycle.1)
}

fn sles(p: &[u64]) -> String {
    format!("{}.{}", p[0], p.get(1).copied().unwrap_or(0))
}

/// A cycle name as people type it, in the catalog's spelling: lower case, spaces and
/// underscores as dashes, and `r2`/`sp1` split off a year (`2012 R2`, `2012r2` ->
/// `2012-r2`; `2008 R2 SP1` -> `2008-r2-sp1`).
pub fn normalize_cycle(cycle: &str) -> String {
    let lower = cycle.trim().to_ascii_lowercase().replace([' ', '_'], "-");
    let mut out = String::with_capacity(lower.len() + 2);
    let bytes: Vec<char> = lower.chars().collect();
    for (i, &ch) in bytes.iter().enumerate() {
        // A letter right after a digit starts a suffix such as r2 or sp1.
        if i > 0 && ch.is_ascii_alphabetic() && bytes[i - 1].is_ascii_digit() {
            let rest: String = bytes[i..].iter().collect();
            if rest.starts_with('r') || rest.starts_with("sp") {
                out.push('-');
            }
        }
        out.push(ch);
    }
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every mapping the table knows, with the spellings real os-release files use.
    #[test]
    fn os_release_to_product_and_cycle() {
        type Row<'a> = (&'a str, &'a str, &'a str, Option<(&'a str, &'a str)>);
        let table: &[Row] = &[
            ("debian", "12", "", Some(("debian", "12"))),
            ("debian", "12.5", "", Some(("debian", "12"))),
            ("debian", "10", "", Some(("debian", "10"))),
            ("debian", "3.1", "", Some(("debian", "3.1"))),
            ("raspbian", "11", "debian", Some(("debian", "11"))),
            ("ubuntu", "22.04", "debian", Some(("ubuntu", "22.04"))),
            ("ubuntu", "24.10", "debian", Some(("ubuntu", "24.10"))),
            ("ubuntu", "22.4", "debian", Some(("ubuntu", "22.04"))),
            ("rhel", "7.9", "fedora", Some(("rhel", "7"))),
            ("rhel", "9.4", "fedora", Some(("rhel", "9"))),
            ("centos", "7", "rhel fedora", Some(("centos", "7"))),
            ("centos", "8", "rhel fedora", Some(("centos", "8"))),
            ("centos", "9", "rhel fedora", Some(("centos-stream", "9"))),
            (
                "rocky",
                "8.10",
                "rhel centos fedora",
                Some(("rocky-linux", "8")),
            ),
            (
                "almalinux",
                "9.4",
                "rhel centos fedora",
                Some(("almalinux", "9")),
            ),
            ("ol", "8.9", "fedora", Some(("oracle-linux", "8"))),
            ("sles", "15.5", "suse", Some(("sles", "15.5"))),
            ("sles", "15", "suse", Some(("sles", "15.0"))),
            ("sles", "12.5", "suse", Some(("sles", "12.5"))),
            ("sles_sap", "15.4", "suse", Some(("sles", "15.4"))),
            (
                "opensuse-leap",
                "15.5",
                "suse opensuse",
                Some(("opensuse", "15.5")),
            ),
            (
                "opensuse-leap",
                "42.3",
                "suse opensuse",
                Some(("opensuse", "42.3")),
            ),
            (
                "amzn",
                "2",
                "centos rhel fedora",
                Some(("amazon-linux", "2")),
            ),
            ("amzn", "2023", "fedora", Some(("amazon-linux", "2023"))),
            (
                "amzn",
                "2018.03",
                "rhel fedora",
                Some(("amazon-linux", "2018.03")),
            ),
            ("alpine", "3.18.4", "", Some(("alpine-linux", "3.18"))),
            ("alpine", "3.9.0", "", Some(("alpine-linux", "3.9"))),
            // ID_LIKE for derivatives that keep the parent's numbers.
            (
                "eurolinux",
                "9.2",
                "rhel fedora centos",
                Some(("rhel", "9")),
            ),
            ("kali-like", "12", "debian", Some(("debian", "12"))),
            // Own numbering: not guessed.
            ("linuxmint", "21.3", "ubuntu debian", None),
            ("fedora", "40", "", None),
            // No or broken version.
            ("debian", "", "", None),
            ("ubuntu", "jammy", "debian", None),
            ("linux", "", "", None),
        ];
        for &(id, ver, like, want) in table {
            let got = from_os_release(id, ver, like);
            let want = want.map(|(p, c)| ProductRef {
                product: p.into(),
                cycle: c.into(),
            });
            assert_eq!(got, want, "ID={id} VERSION_ID={ver} ID_LIKE={like}");
        }
    }

    /// Versions compare as numbers: 10 is not "1", and 3.10 is not 3.1.
    #[test]
    fn versions_are_numbers_not_strings() {
        assert_eq!(
            from_os_release("alpine", "3.10.2", "").unwrap().cycle,
            "3.10"
        );
        assert_eq!(from_os_release("debian", "10", "").unwrap().cycle, "10");
        assert_eq!(from_os_release("rhel", "10.0", "").unwrap().cycle, "10");
    }

    /// Every mapped cycle of a current release exists in the built-in catalog.
    #[test]
    fn mapped_cycles_exist_in_the_snapshot() {
        let cat = super::super::catalog::Catalog::embedded();
        for (id, ver) in [
            ("debian", "12"),
            ("ubuntu", "22.04"),
            ("rhel", "7.9"),
            ("centos", "7"),
            ("centos", "9"),
            ("rocky", "8.10"),
            ("almalinux", "9.4"),
            ("ol", "8.9"),
            ("sles", "15.5"),
            ("opensuse-leap", "15.5"),
            ("amzn", "2"),
            ("amzn", "2018.03"),
            ("alpine", "3.18.4"),
        ] {
            let r = from_os_release(id, ver, "").unwrap();
            assert!(cat.cycle(&r.product, &r.cycle).is_some(), "{r:?}");
        }
    }

    #[test]
    fn typed_cycles_take_the_catalog_spelling() {
        for (typed, want) in [
            ("2012 R2", "2012-r2"),
            ("2012r2", "2012-r2"),
            ("2012-R2", "2012-r2"),
            ("2008 R2 SP1", "2008-r2-sp1"),
            ("2008sp2", "2008-sp2"),
            ("22.04", "22.04"),
            ("23H2-AC", "23h2-ac"),
            (" 7 ", "7"),
        ] {
            assert_eq!(normalize_cycle(typed), want, "{typed}");
        }
    }
}
