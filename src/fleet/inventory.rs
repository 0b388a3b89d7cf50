//! Host inventory: the wire type agents send (version 1 of the agent protocol), its
//! validation and bounds, the packages digest, and which fields changed between reports.
//!
//! An agent sends its full package list, or only `packages_digest` when the list is
//! unchanged since its last accepted report (the appliance then keeps the stored list).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{FleetError, invalid, validate_hostname};

/// At most this many packages in one report.
pub const MAX_PACKAGES: usize = 20_000;
/// At most this many addresses in one report.
pub const MAX_ADDRESSES: usize = 256;

/// `/etc/os-release` `ID`, `VERSION_ID` and `ID_LIKE` (the last is left out of the
/// JSON when empty, so an agent on a distribution without it still talks to an
/// appliance from before it existed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OsRelease {
    pub id: String,
    #[serde(default)]
    pub version_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id_like: String,
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
}

/// What an agent reports about its host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    pub os: OsRelease,
    pub kernel: String,
    pub arch: String,
    pub hostname: String,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<Vec<Package>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages_digest: Option<String>,
    pub uptime_s: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_boot: Option<Timestamp>,
    pub reboot_required: bool,
}

fn text(field: &str, s: &str, max: usize, allow_empty: bool) -> Result<(), FleetError> {
    if s.len() > max || (!allow_empty && s.is_empty()) {
        let min = if allow_empty { 0 } else { 1 };
        return Err(invalid(field, format!("must be {min}-{max} characters")));
    }
    if let Some(c) = s.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(field, format!("character {c:?} is not allowed")));
    }
    Ok(())
}

/// The digest of a package list: sha256 over sorted `name\tversion\tarch\n` lines.
pub fn packages_digest(packages: &[Package]) -> String {
    let mut sorted: Vec<&Package> = packages.iter().collect();
    sorted.sort();
    let mut h = Sha256::new();
    for p in sorted {
        h.update(format!("{}\t{}\t{}\n", p.name, p.version, p.arch).as_bytes());
    }
    hex::encode(h.finalize())
}

impl Inventory {
    /// Checks bounds and character sets. Oversized lists are `TooLarge` (HTTP 413),
    /// everything else `Invalid` (HTTP 400).
    pub fn validate(&self) -> Result<(), FleetError> {
        text("os.id", &self.os.id, 64, false)?;
        text("os.version_id", &self.os.version_id, 64, true)?;
        // ID_LIKE is a space-separated list of IDs.
        if self.os.id_like.len() > 128 {
            return Err(invalid("os.id_like", "must be 0-128 characters"));
        }
        for word in self.os.id_like.split(' ') {
            text("os.id_like", word, 64, true)?;
        }
        text("kernel", &self.kernel, 128, false)?;
        text("arch", &self.arch, 32, false)?;
        validate_hostname(&self.hostname)?;
        if self.addresses.len() > MAX_ADDRESSES {
            return Err(FleetError::TooLarge(format!(
                "{} addresses (at most {MAX_ADDRESSES})",
                self.addresses.len()
            )));
        }
        for a in &self.addresses {
            text("addresses", a, 64, false)?;
        }
        match (&self.packages, &self.packages_digest) {
            (Some(p), None) => {
                if p.len() > MAX_PACKAGES {
                    return Err(FleetError::TooLarge(format!(
                        "{} packages (at most {MAX_PACKAGES})",
                        p.len()
                    )));
                }
                for p in p {
                    text("package name", &p.name, 128, false)?;
                    text("package version", &p.version, 128, false)?;
                    text("package arch", &p.arch, 32, false)?;
                }
            }
            (None, Some(d)) => {
                if d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(invalid("packages_digest", "must be 64 hex digits"));
                }
            }
            _ => {
                return Err(invalid(
                    "packages",
                    "send exactly one of packages and packages_digest",
                ));
            }
        }
        if self.uptime_s > 100 * 365 * 24 * 3600 {
            return Err(invalid("uptime_s", "implausibly large"));
        }
        Ok(())
    }

    /// Replaces a digest-only report's package list with the stored one (the digests
    /// must match), so the stored inventory always holds the full list. Returns the
    /// digest of the resulting list.
    pub fn resolve_packages(&mut self, previous: Option<&Inventory>) -> Result<String, FleetError> {
        if let Some(p) = &self.packages {
            return Ok(packages_digest(p));
        }
        let wanted = self.packages_digest.take().unwrap_or_default();
        let prev = previous
            .and_then(|p| p.packages.clone())
            .ok_or(FleetError::DigestMismatch)?;
        if packages_digest(&prev) != wanted {
            return Err(FleetError::DigestMismatch);
        }
        self.packages = Some(prev);
        Ok(wanted)
    }
}

/// The fields that differ between two stored reports (uptime always moves, so it is not
/// a change; the boot time counts only when it moves by more than a minute).
pub fn changed_fields(old: &Inventory, new: &Inventory) -> Vec<&'static str> {
    let mut f = Vec::new();
    if old.os != new.os {
        f.push("os");
    }
    if old.kernel != new.kernel {
        f.push("kernel");
    }
    if old.arch != new.arch {
        f.push("arch");
    }
    if old.hostname != new.hostname {
        f.push("hostname");
    }
    if old.addresses != new.addresses {
        f.push("addresses");
    }
    if old.packages.as_deref().map(packages_digest) != new.packages.as_deref().map(packages_digest)
    {
        f.push("packages");
    }
    let boot_moved = match (old.last_boot, new.last_boot) {
        (Some(a), Some(b)) => a.duration_since(b).abs() > jiff::SignedDuration::from_mins(1),
        (a, b) => a.is_some() != b.is_some(),
    };
    if boot_moved {
        f.push("last_boot");
    }
    if old.reboot_required != new.reboot_required {
        f.push("reboot_required");
    }
    f
}

#[cfg(test)]
pub(crate) fn sample(hostname: &str) -> Inventory {
    Inventory {
        os: OsRelease {
            id: "debian".into(),
            version_id: "12".into(),
            id_like: String::new(),
        },
        kernel: "6.1.0-28-amd64".into(),
        arch: "x86_64".into(),
        hostname: hostname.into(),
        addresses: vec!["10.0.0.5/24".into()],
        packages: Some(vec![Package {
            name: "openssl".into(),
            version: "3.0.15-1~deb12u1".into(),
            arch: "amd64".into(),
        }]),
        packages_digest: None,
        uptime_s: 3600,
        last_boot: Some("2026-11-27T09:00:00Z".parse().unwrap()),
        reboot_required: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(edit: impl FnOnce(&mut Inventory), expect: &str) {
        let mut inv = sample("web1");
        edit(&mut inv);
        match inv.validate() {
            Ok(()) => assert_eq!(expect, "ok"),
            Err(e) => assert!(e.to_string().contains(expect), "{e} !~ {expect}"),
        }
    }

    #[test]
    fn validation() {
        check(|_| {}, "ok");
        check(|i| i.hostname = "<b>x</b>".into(), "invalid hostname");
        check(|i| i.kernel = "6.1\n".into(), "invalid kernel");
        check(|i| i.os.id = String::new(), "invalid os.id");
        check(|i| i.os.id_like = "rhel centos fedora".into(), "ok");
        check(
            |i| i.os.id_like = "rhel\tfedora".into(),
            "invalid os.id_like",
        );
        check(|i| i.arch = "x".repeat(33), "invalid arch");
        check(
            |i| i.addresses = vec!["a".into(); 257],
            "too large: 257 addresses",
        );
        check(
            |i| {
                let p = i.packages.as_ref().unwrap()[0].clone();
                i.packages = Some(vec![p; MAX_PACKAGES + 1]);
            },
            "too large: 20001 packages",
        );
        check(
            |i| i.packages.as_mut().unwrap()[0].name = "a b".into(),
            "invalid package name",
        );
        check(|i| i.packages_digest = Some("0".repeat(64)), "exactly one");
        check(
            |i| {
                i.packages = None;
                i.packages_digest = Some("0".repeat(64));
            },
            "ok",
        );
        check(
            |i| {
                i.packages = None;
                i.packages_digest = Some("zz".into());
            },
            "invalid packages_digest",
        );
        let e = serde_json::from_str::<Inventory>(r#"{"os":{"id":"x"},"extra":1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    #[test]
    fn digest_only_reports_keep_the_stored_list() {
        let old = sample("web1");
        let digest = packages_digest(old.packages.as_ref().unwrap());
        let mut new = sample("web1");
        new.packages = None;
        new.packages_digest = Some(digest.clone());
        assert_eq!(new.resolve_packages(Some(&old)).unwrap(), digest);
        assert_eq!(new.packages, old.packages);
        let mut bad = sample("web1");
        bad.packages = None;
        bad.packages_digest = Some("0".repeat(64));
        assert!(matches!(
            bad.resolve_packages(Some(&old)),
            Err(FleetError::DigestMismatch)
        ));
    }

    #[test]
    fn changes() {
        let old = sample("web1");
        let mut new = sample("web1");
        new.uptime_s += 600;
        new.last_boot = Some("2026-11-27T09:00:30Z".parse().unwrap());
        assert!(changed_fields(&old, &new).is_empty());
        new.kernel = "6.1.0-29-amd64".into();
        new.reboot_required = true;
        new.packages.as_mut().unwrap()[0].version = "3.0.16".into();
        assert_eq!(
            changed_fields(&old, &new),
            ["kernel", "packages", "reboot_required"]
        );
    }
}
