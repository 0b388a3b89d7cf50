//! The `apt` install backend: installs the exact package versions a ticket names from
//! the apt sources the host is configured with (the appliance's ring repository, see
//! `patchward apt client-config`), so apt checks the repository's signature and the
//! package hashes as usual.
//!
//! The ticket's `deb` artifacts (downloaded and hash-checked against the signed ticket
//! like every artifact) say which packages and versions: their `control` files are read
//! here. Before installing, the installed version of each package is recorded; `verify`
//! checks with `dpkg-query` that exactly the pinned versions are installed; `rollback`
//! reinstalls the recorded versions (`--allow-downgrades`) and removes packages that
//! were not installed before.
//!
//! apt and dpkg are used as the host configures them; `APT_CONFIG` and
//! `DPKG_ADMINDIR` in the agent's environment are honoured by both, which is also how
//! the system tests run them against a sandbox.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use super::script::StepResult;

/// A package name and version.
pub type Pin = (String, String);

/// The packages and versions in `debs` (paths of hash-checked `.deb` files).
pub fn pins(debs: &[&Path]) -> Result<Vec<Pin>, String> {
    if debs.is_empty() {
        return Err("the ticket has no `deb` artifact".into());
    }
    debs.iter()
        .map(|p| {
            let c = crate::deb::read_control(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let (name, version, _) = c.identity().map_err(|e| format!("{}: {e}", p.display()))?;
            check_word(name, "package name")?;
            check_word(version, "version")?;
            Ok((name.to_string(), version.to_string()))
        })
        .collect()
}

/// Package names and versions go to apt as arguments: only the characters Debian
/// policy allows (no option-like leading `-`, no spaces or shell metacharacters).
fn check_word(s: &str, what: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 256
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.:~_".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("{what} {s:?} is not a valid Debian {what}"))
    }
}

/// The installed version of `package`, if it is installed (`dpkg-query`).
pub fn installed(package: &str) -> Result<Option<String>, String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Abbrev}\t${Version}", package])
        .output()
        .map_err(|e| format!("cannot run dpkg-query: {e}"))?;
    // Exit status 1 with "no packages found" means not known at all.
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(match text.split_once('\t') {
        Some((status, version)) if status.starts_with("ii") => Some(version.trim().to_string()),
        _ => None,
    })
}

/// What is installed now for each of `pins`' packages.
pub fn snapshot(pins: &[Pin]) -> Result<BTreeMap<String, Option<String>>, String> {
    pins.iter()
        .map(|(name, _)| Ok((name.clone(), installed(name)?)))
        .collect()
}

fn apt_get(args: &[&str]) -> Command {
    let mut c = Command::new("apt-get");
    c.env("DEBIAN_FRONTEND", "noninteractive")
        .args([
            "-y",
            "-q",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
        ])
        .args(args);
    c
}

/// `apt-get update`, so the ring repository's newest index is known before installing.
pub fn update_command() -> Command {
    apt_get(&["update"])
}

/// `apt-get install` of exactly the pinned versions.
pub fn install_command(pins: &[Pin]) -> Command {
    let mut c = apt_get(&["install", "--no-install-recommends", "--allow-downgrades"]);
    c.args(pins.iter().map(|(n, v)| format!("{n}={v}")));
    c
}

/// Checks that exactly the pinned versions are installed.
pub fn verify(pins: &[Pin]) -> StepResult {
    let mut output = String::new();
    let mut success = true;
    for (name, want) in pins {
        match installed(name) {
            Ok(Some(v)) if &v == want => output.push_str(&format!("{name} {v} installed\n")),
            Ok(Some(v)) => {
                success = false;
                output.push_str(&format!("{name}: {v} installed, not {want}\n"));
            }
            Ok(None) => {
                success = false;
                output.push_str(&format!("{name}: not installed\n"));
            }
            Err(e) => {
                success = false;
                output.push_str(&format!("{name}: {e}\n"));
            }
        }
    }
    StepResult { success, output }
}

/// The commands that put `before` back: reinstall earlier versions, remove packages
/// that were not installed.
pub fn rollback_commands(before: &BTreeMap<String, Option<String>>) -> Vec<Command> {
    let downgrade: Vec<String> = before
        .iter()
        .filter_map(|(n, v)| v.as_ref().map(|v| format!("{n}={v}")))
        .collect();
    let remove: Vec<&str> = before
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    let mut cmds = Vec::new();
    if !downgrade.is_empty() {
        let mut c = apt_get(&["install", "--no-install-recommends", "--allow-downgrades"]);
        c.args(downgrade);
        cmds.push(c);
    }
    if !remove.is_empty() {
        let mut c = apt_get(&["remove"]);
        c.args(remove);
        cmds.push(c);
    }
    cmds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_come_from_the_packages_and_hostile_names_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let good = d.path().join("good.deb");
        std::fs::write(
            &good,
            crate::deb::tests::build_deb(
                "Package: hello\nVersion: 1:2.10-3+deb12u1\nArchitecture: amd64\n",
                "xz",
            ),
        )
        .unwrap();
        assert_eq!(
            pins(&[&good]).unwrap(),
            [("hello".to_string(), "1:2.10-3+deb12u1".to_string())]
        );
        for (name, version) in [("-oAPT::x=1", "1"), ("a b", "1"), ("ok", "1;rm -rf /")] {
            let bad = d.path().join("bad.deb");
            std::fs::write(
                &bad,
                crate::deb::tests::build_deb(
                    &format!("Package: {name}\nVersion: {version}\nArchitecture: all\n"),
                    "gz",
                ),
            )
            .unwrap();
            let e = pins(&[&bad]).unwrap_err();
            assert!(e.contains("is not a valid Debian"), "{e}");
        }
        assert!(pins(&[]).unwrap_err().contains("no `deb` artifact"));
    }

    #[test]
    fn rollback_reinstalls_earlier_versions_and_removes_new_packages() {
        let before = BTreeMap::from([
            ("a".to_string(), Some("1.0".to_string())),
            ("b".to_string(), None),
        ]);
        let cmds: Vec<Vec<String>> = rollback_commands(&before)
            .iter()
            .map(|c| {
                c.get_args()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect()
            })
            .collect();
        assert_eq!(cmds.len(), 2);
        assert!(cmds[0].contains(&"a=1.0".to_string()) && cmds[0].contains(&"install".into()));
        assert!(cmds[1].contains(&"b".to_string()) && cmds[1].contains(&"remove".into()));
    }
}
