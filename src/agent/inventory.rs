//! Collecting this host's inventory (best effort: a missing source leaves its field
//! empty rather than failing the check-in).

use std::path::Path;
use std::process::Command;

use jiff::{SignedDuration, Timestamp};

use crate::fleet::inventory::{Inventory, OsRelease, Package};

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// `ID`, `VERSION_ID` and `ID_LIKE` from os-release text.
pub fn parse_os_release(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().trim_matches('"').to_string();
            match k.trim() {
                "ID" => os.id = v,
                "VERSION_ID" => os.version_id = v,
                "ID_LIKE" => os.id_like = v,
                _ => {}
            }
        }
    }
    if os.id.is_empty() {
        os.id = "linux".into();
    }
    os
}

/// Where the OS identity is read: `/etc/os-release`, or the file
/// `PATCHWARD_AGENT_OS_RELEASE` names (containers whose image is not the host's OS,
/// and tests that play an older distribution).
fn os_release_path() -> String {
    std::env::var("PATCHWARD_AGENT_OS_RELEASE").unwrap_or_else(|_| "/etc/os-release".into())
}

/// `dpkg-query -W` lines: `name\tversion\tarch`.
pub fn parse_dpkg(text: &str) -> Vec<Package> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (n, v, a) = (f.next()?, f.next()?, f.next()?);
            (!n.is_empty() && !v.is_empty()).then(|| Package {
                name: n.into(),
                version: v.into(),
                arch: if a.is_empty() {
                    "none".into()
                } else {
                    a.into()
                },
            })
        })
        .collect()
}

/// Addresses from `ip -j addr` JSON (`addr/prefix`, loopback excluded).
pub fn parse_ip_json(text: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for iface in v.as_array().into_iter().flatten() {
        if iface["ifname"] == "lo" {
            continue;
        }
        for a in iface["addr_info"].as_array().into_iter().flatten() {
            if let (Some(ip), Some(p)) = (a["local"].as_str(), a["prefixlen"].as_u64()) {
                out.push(format!("{ip}/{p}"));
            }
        }
    }
    out.truncate(crate::fleet::inventory::MAX_ADDRESSES);
    out
}

fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    let o = Command::new(cmd).args(args).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Collects the inventory now. `hostname` overrides the kernel's hostname.
pub fn collect(now: Timestamp, hostname: Option<&str>) -> Inventory {
    let uptime_s = read("/proc/uptime")
        .split_whitespace()
        .next()
        .and_then(|s| s.parse::<f64>().ok())
        .map_or(0, |f| f as u64);
    let packages = command_output(
        "dpkg-query",
        &["-W", "-f", "${Package}\t${Version}\t${Architecture}\n"],
    )
    .map(|t| parse_dpkg(&t))
    .unwrap_or_default();
    Inventory {
        os: parse_os_release(&read(&os_release_path())),
        kernel: read("/proc/sys/kernel/osrelease"),
        // dpkg's architecture is the one patch selectors name; without dpkg, the
        // agent's own build architecture in Debian's vocabulary.
        arch: command_output("dpkg", &["--print-architecture"])
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| crate::policy::arch::debian(std::env::consts::ARCH).into_owned()),
        hostname: hostname
            .map(str::to_string)
            .unwrap_or_else(|| read("/proc/sys/kernel/hostname")),
        addresses: command_output("ip", &["-j", "addr"])
            .map(|t| parse_ip_json(&t))
            .unwrap_or_default(),
        packages: Some(packages),
        packages_digest: None,
        uptime_s,
        // An uptime that does not fit a signed duration gives no boot time (not a
        // wrapped, negative one).
        last_boot: i64::try_from(uptime_s)
            .ok()
            .and_then(|s| now.checked_sub(SignedDuration::from_secs(s)).ok())
            .map(|t| Timestamp::from_second(t.as_second()).unwrap_or(t)),
        reboot_required: Path::new("/var/run/reboot-required").exists(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        let os = parse_os_release("PRETTY_NAME=\"Debian\"\nID=debian\nVERSION_ID=\"12\"\n");
        assert_eq!((os.id.as_str(), os.version_id.as_str()), ("debian", "12"));
        let os =
            parse_os_release("ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"8.10\"\n");
        assert_eq!(os.id_like, "rhel centos fedora");
        let p = parse_dpkg("openssl\t3.0.15\tamd64\nbad line\n");
        assert_eq!(p.len(), 1);
        let a = parse_ip_json(
            r#"[{"ifname":"lo","addr_info":[{"local":"127.0.0.1","prefixlen":8}]},
                {"ifname":"eth0","addr_info":[{"local":"10.0.0.5","prefixlen":24}]}]"#,
        );
        assert_eq!(a, ["10.0.0.5/24"]);
    }
}
