//! A compact, in-memory view of the fleet for the planner: per host only what
//! applicability, ring membership, windows and the health gate read, with package
//! names and versions interned. At 10,000 hosts with hundreds of packages each, full
//! [`HostFacts`] (a map of owned strings per host) would hold hundreds of MiB and take
//! seconds to build; this view is updated one host at a time when its inventory changes.
//!
//! [`FleetIndex::applies`] answers "which hosts does this patch apply to" for the whole
//! fleet. It must agree with [`crate::policy::applicability`] host by host (a test
//! checks that on generated fleets); it is faster only because it groups hosts by
//! platform and compares each distinct installed version once.

use std::collections::BTreeMap;

use foldhash::HashMap;

use jiff::Timestamp;

use crate::feed::catalog::{PatchEntry, Selector};
use crate::fleet::inventory::Inventory;
use crate::policy::debversion::DebVersion;
use crate::policy::{EndOfLife, HostFacts, Policy};

/// An interned string.
type Sym = u32;

#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<String, Sym>,
    names: Vec<String>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> Sym {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as Sym;
        self.names.push(s.to_string());
        self.ids.insert(s.to_string(), id);
        id
    }

    fn get(&self, s: &str) -> Option<Sym> {
        self.ids.get(s).copied()
    }

    fn name(&self, id: Sym) -> &str {
        &self.names[id as usize]
    }
}

/// One host as the planner sees it.
#[derive(Debug, Clone)]
pub struct CompactHost {
    pub id: String,
    /// (os, os version, arch), interned.
    platform: (Sym, Sym, Sym),
    /// (name, version), sorted by name; a name repeats for multi-arch packages.
    packages: Vec<(Sym, Sym)>,
    pub labels: BTreeMap<String, String>,
    /// The ring assigned at enrollment.
    pub assigned_ring: Option<String>,
    /// The ring the policy puts it in, as an index into `policy.rings`.
    pub ring: Option<usize>,
    /// Set for a legacy host kept out of rollouts (`legacy::offer`).
    pub eol: Option<EndOfLife>,
    pub last_seen: Option<Timestamp>,
}

impl CompactHost {
    /// The facts `policy` needs for rings and windows (no packages).
    pub fn facts_without_packages(&self) -> HostFacts {
        HostFacts {
            id: self.id.clone(),
            labels: self.labels.clone(),
            ring: self.assigned_ring.clone(),
            eol: self.eol.clone(),
            ..HostFacts::default()
        }
    }
}

/// The fleet, indexed by host position (stable: hosts are only ever added; a revoked
/// host is marked gone).
#[derive(Debug, Default)]
pub struct FleetIndex {
    strings: Interner,
    hosts: Vec<Option<CompactHost>>,
    by_id: HashMap<String, usize>,
    /// Hosts by platform, for selectors that name an os, version or arch.
    by_platform: HashMap<(Sym, Sym, Sym), Vec<usize>>,
    /// Hosts by installed package and version (positions ascending), for selectors
    /// that name a package: each distinct version is compared with the bound once.
    by_package: HashMap<Sym, HashMap<Sym, Vec<usize>>>,
}

/// What a host row and its inventory give the index.
pub struct HostInput<'a> {
    pub id: &'a str,
    pub assigned_ring: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub last_seen: Option<Timestamp>,
    pub inventory: &'a Inventory,
    pub eol: Option<EndOfLife>,
}

impl FleetIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of live (not removed) hosts.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn position(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    pub fn host(&self, pos: usize) -> Option<&CompactHost> {
        self.hosts.get(pos).and_then(Option::as_ref)
    }

    /// Every live host with its position.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &CompactHost)> {
        self.hosts
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_ref().map(|h| (i, h)))
    }

    /// Adds a host or replaces what is known about it.
    pub fn upsert(&mut self, policy: &Policy, h: HostInput<'_>) {
        let platform = (
            self.strings.intern(&h.inventory.os.id),
            self.strings.intern(&h.inventory.os.version_id),
            // Debian's name, as the selectors' are read (`policy::arch`).
            self.strings
                .intern(&crate::policy::arch::debian(&h.inventory.arch)),
        );
        let mut packages: Vec<(Sym, Sym)> = h
            .inventory
            .packages
            .iter()
            .flatten()
            .map(|p| {
                (
                    self.strings.intern(&p.name),
                    self.strings.intern(&p.version),
                )
            })
            .collect();
        packages.sort_unstable();
        packages.dedup();
        let ring = crate::policy::rings::ring_of(
            &policy.rings,
            h.id,
            h.assigned_ring.as_deref(),
            &h.labels,
        )
        .and_then(|r| policy.rings.iter().position(|x| x.name == r.name));
        let host = CompactHost {
            id: h.id.to_string(),
            platform,
            packages,
            labels: h.labels,
            assigned_ring: h.assigned_ring,
            ring,
            eol: h.eol,
            last_seen: h.last_seen,
        };
        let pos = match self.by_id.get(h.id) {
            Some(&pos) => {
                if let Some(old) = self.hosts[pos].take() {
                    self.unplace(&old, pos);
                }
                pos
            }
            None => {
                let pos = self.hosts.len();
                self.hosts.push(None);
                self.by_id.insert(h.id.to_string(), pos);
                pos
            }
        };
        insert_sorted(self.by_platform.entry(platform).or_default(), pos);
        for &(name, version) in &host.packages {
            insert_sorted(
                self.by_package
                    .entry(name)
                    .or_default()
                    .entry(version)
                    .or_default(),
                pos,
            );
        }
        self.hosts[pos] = Some(host);
    }

    /// Takes `pos` out of the platform and package lists `old` put it in.
    fn unplace(&mut self, old: &CompactHost, pos: usize) {
        if let Some(v) = self.by_platform.get_mut(&old.platform) {
            remove_sorted(v, pos);
        }
        for (name, version) in &old.packages {
            if let Some(v) = self
                .by_package
                .get_mut(name)
                .and_then(|versions| versions.get_mut(version))
            {
                remove_sorted(v, pos);
            }
        }
    }

    /// Removes a host (revoked).
    pub fn remove(&mut self, id: &str) {
        if let Some(pos) = self.by_id.remove(id)
            && let Some(old) = self.hosts[pos].take()
        {
            self.unplace(&old, pos);
        }
    }

    /// Sets a host's legacy end-of-life facts (recomputed when the catalog, the
    /// includes, `[legacy]` or the day change).
    pub fn set_eol(&mut self, id: &str, eol: Option<EndOfLife>) {
        if let Some(&pos) = self.by_id.get(id)
            && let Some(h) = self.hosts[pos].as_mut()
        {
            h.eol = eol;
        }
    }

    /// Updates a host's check-in time.
    pub fn touch(&mut self, id: &str, at: Option<Timestamp>) {
        if let Some(&pos) = self.by_id.get(id)
            && let Some(h) = self.hosts[pos].as_mut()
        {
            h.last_seen = at;
        }
    }

    /// Updates ring, labels and EOL flag (from the hosts table) without the inventory.
    pub fn set_attributes(
        &mut self,
        policy: &Policy,
        id: &str,
        assigned_ring: Option<String>,
        labels: BTreeMap<String, String>,
    ) {
        if let Some(&pos) = self.by_id.get(id)
            && let Some(h) = self.hosts[pos].as_mut()
            && (h.assigned_ring != assigned_ring || h.labels != labels)
        {
            h.ring =
                crate::policy::rings::ring_of(&policy.rings, id, assigned_ring.as_deref(), &labels)
                    .and_then(|r| policy.rings.iter().position(|x| x.name == r.name));
            h.assigned_ring = assigned_ring;
            h.labels = labels;
        }
    }

    /// The positions of the hosts `entry` applies to, ascending. Agrees with
    /// [`crate::policy::applicability`] for every host.
    pub fn applies(&self, entry: &PatchEntry) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        for s in &entry.applies_to {
            let Some(m) = self.selector_matcher(s) else {
                continue;
            };
            if let Some(name) = m.package {
                // Through the package index: only hosts that have the package, one
                // version comparison per distinct installed version.
                let Some(versions) = self.by_package.get(&name) else {
                    continue;
                };
                for (version, positions) in versions {
                    if let Some(bound) = &m.below
                        && !DebVersion::parse(self.strings.name(*version)).is_ok_and(|v| v < *bound)
                    {
                        continue;
                    }
                    for &pos in positions {
                        if let Some(h) = self.hosts[pos].as_ref()
                            && h.eol.is_none()
                            && m.platform_ok(h.platform)
                            && m.labels_ok(h)
                        {
                            out.push(pos);
                        }
                    }
                }
                continue;
            }
            for (platform, positions) in &self.by_platform {
                if !m.platform_ok(*platform) {
                    continue;
                }
                for &pos in positions {
                    let Some(h) = self.hosts[pos].as_ref() else {
                        continue;
                    };
                    if h.eol.is_none() && m.labels_ok(h) {
                        out.push(pos);
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The selector's fields resolved against the interned strings; `None` when it
    /// can match no host (it names a string no host has).
    fn selector_matcher<'a>(&self, s: &'a Selector) -> Option<Matcher<'a>> {
        let sym = |v: &Option<String>| -> Option<Option<Sym>> {
            match v {
                None => Some(None),
                Some(v) => self.strings.get(v).map(Some),
            }
        };
        let package = match &s.package {
            None => None,
            Some(p) => Some(self.strings.get(p)?),
        };
        let below = match &s.below_version {
            None => None,
            // An unparsable bound matches nothing (as in `applicability`).
            Some(b) => Some(DebVersion::parse(b).ok()?),
        };
        Some(Matcher {
            os: sym(&s.os)?,
            version: sym(&s.version)?,
            arch: sym(&s
                .arch
                .as_deref()
                .map(|a| crate::policy::arch::debian(a).into_owned()))?,
            package,
            below,
            labels: &s.labels,
        })
    }
}

struct Matcher<'a> {
    os: Option<Sym>,
    version: Option<Sym>,
    arch: Option<Sym>,
    package: Option<Sym>,
    below: Option<DebVersion<'a>>,
    labels: &'a [String],
}

impl Matcher<'_> {
    fn platform_ok(&self, (os, version, arch): (Sym, Sym, Sym)) -> bool {
        self.os.is_none_or(|s| s == os)
            && self.version.is_none_or(|s| s == version)
            && self.arch.is_none_or(|s| s == arch)
    }

    fn labels_ok(&self, h: &CompactHost) -> bool {
        self.labels.iter().all(|l| match l.split_once('=') {
            Some((k, v)) => h.labels.get(k).is_some_and(|hv| hv == v),
            None => h.labels.contains_key(l),
        })
    }
}

fn insert_sorted(v: &mut Vec<usize>, pos: usize) {
    if let Err(i) = v.binary_search(&pos) {
        v.insert(i, pos);
    }
}

fn remove_sorted(v: &mut Vec<usize>, pos: usize) {
    if let Ok(i) = v.binary_search(&pos) {
        v.remove(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::catalog::tests::entry;
    use crate::fleet::inventory::Package;
    use proptest::prelude::*;

    fn inventory(os: &str, ver: &str, arch: &str, pkgs: &[(&str, &str)]) -> Inventory {
        let mut inv: Inventory = serde_json::from_value(serde_json::json!({
            "hostname": "h", "os": {"id": os, "version_id": ver}, "arch": arch,
            "kernel": "6.1", "uptime_s": 5, "reboot_required": false
        }))
        .unwrap();
        inv.packages = Some(
            pkgs.iter()
                .map(|(n, v)| Package {
                    name: n.to_string(),
                    version: v.to_string(),
                    arch: "amd64".into(),
                })
                .collect(),
        );
        inv
    }

    const OSES: &[(&str, &str)] = &[("debian", "12"), ("debian", "11"), ("ubuntu", "24.04")];
    // Both vocabularies: the agent may say x86_64 where a selector says amd64.
    const ARCHES: &[&str] = &["amd64", "arm64", "x86_64", "aarch64"];
    const PKGS: &[&str] = &["openssl", "libc6", "nginx"];
    const VERSIONS: &[&str] = &["1.0-1", "1.2-1", "2.0~rc1-1", "2.0-1", "bad version!"];

    prop_compose! {
        fn host()(os in 0..OSES.len(), arch in 0..ARCHES.len(),
                  pkgs in proptest::collection::vec((0..PKGS.len(), 0..VERSIONS.len()), 0..4),
                  site in proptest::option::of(0..2usize), eol in proptest::bool::weighted(0.1))
                  -> (usize, usize, Vec<(usize, usize)>, Option<usize>, bool) {
            (os, arch, pkgs, site, eol)
        }
    }

    prop_compose! {
        fn selector()(os in proptest::option::of(0..OSES.len()),
                      arch in proptest::option::of(0..ARCHES.len()),
                      pkg in proptest::option::of(0..PKGS.len()),
                      below in proptest::option::of(0..VERSIONS.len()),
                      label in proptest::option::of(0..3usize)) -> Selector {
            Selector {
                os: os.map(|i| OSES[i].0.to_string()),
                version: os.map(|i| OSES[i].1.to_string()),
                arch: arch.map(|i| ARCHES[i].to_string()),
                package: pkg.map(|i| PKGS[i].to_string()),
                below_version: pkg.and(below).map(|i| VERSIONS[i].to_string()),
                labels: match label {
                    Some(0) => vec!["site=hq".into()],
                    Some(1) => vec!["site".into()],
                    Some(_) => vec!["db".into()],
                    None => vec![],
                },
            }
        }
    }

    proptest! {
        /// The index and `applicability` agree on every (host, patch).
        #[test]
        fn applies_agrees_with_applicability(
            hosts in proptest::collection::vec(host(), 1..30),
            selectors in proptest::collection::vec(selector(), 0..3),
        ) {
            let policy = Policy::default();
            let mut index = FleetIndex::new();
            let mut facts = Vec::new();
            for (i, (os, arch, pkgs, site, eol)) in hosts.iter().enumerate() {
                let pk: Vec<(&str, &str)> =
                    pkgs.iter().map(|(p, v)| (PKGS[*p], VERSIONS[*v])).collect();
                let inv = inventory(OSES[*os].0, OSES[*os].1, ARCHES[*arch], &pk);
                let labels: BTreeMap<String, String> = site
                    .map(|s| ("site".to_string(), ["hq", "branch"][s].to_string()))
                    .into_iter()
                    .collect();
                let id = format!("h{i}");
                // First an older inventory (another platform, other packages), replaced
                // below: the index must forget what it listed the host under.
                let old = inventory(OSES[(*os + 1) % OSES.len()].0, "0", ARCHES[0],
                    &[(PKGS[i % PKGS.len()], VERSIONS[i % VERSIONS.len()])]);
                index.upsert(&policy, HostInput {
                    id: &id, assigned_ring: None, labels: labels.clone(), last_seen: None,
                    inventory: &old, eol: None,
                });
                let eol = eol.then(|| EndOfLife { host: id.clone(), ..EndOfLife::default() });
                facts.push(HostFacts::from_inventory(&id, &inv, labels.clone(), None, eol.clone()));
                index.upsert(&policy, HostInput {
                    id: &id, assigned_ring: None, labels, last_seen: None,
                    inventory: &inv, eol,
                });
            }
            let mut e = entry("p", b"x");
            e.applies_to = selectors;
            let want: Vec<usize> = facts
                .iter()
                .enumerate()
                .filter(|(_, f)| crate::policy::applicability(&e, f).is_ok())
                .map(|(i, _)| i)
                .collect();
            prop_assert_eq!(index.applies(&e), want);
        }
    }

    #[test]
    fn upsert_moves_a_host_between_platforms_and_remove_forgets_it() {
        let policy = Policy::default();
        let mut index = FleetIndex::new();
        let mut e = entry("p", b"x");
        e.applies_to = vec![Selector {
            os: Some("debian".into()),
            version: Some("12".into()),
            ..Selector::default()
        }];
        let add = |index: &mut FleetIndex, ver: &str| {
            let inv = inventory("debian", ver, "amd64", &[]);
            index.upsert(
                &policy,
                HostInput {
                    id: "h1",
                    assigned_ring: None,
                    labels: BTreeMap::new(),
                    last_seen: None,
                    inventory: &inv,
                    eol: None,
                },
            );
        };
        add(&mut index, "11");
        assert!(index.applies(&e).is_empty());
        add(&mut index, "12");
        assert_eq!(index.applies(&e), vec![0]);
        index.remove("h1");
        assert!(index.applies(&e).is_empty());
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn kernel_and_debian_arch_names_match_each_other() {
        // Issue [8] item 12: agents report x86_64/aarch64, selectors say amd64/arm64.
        let policy = Policy::default();
        let mut index = FleetIndex::new();
        for (id, arch) in [
            ("h1", "x86_64"),
            ("h2", "aarch64"),
            ("h3", "i686"),
            ("h4", "armv7l"),
        ] {
            let inv = inventory("debian", "12", arch, &[]);
            index.upsert(
                &policy,
                HostInput {
                    id,
                    assigned_ring: None,
                    labels: BTreeMap::new(),
                    last_seen: None,
                    inventory: &inv,
                    eol: None,
                },
            );
        }
        let mut e = entry("p", b"x");
        for (arch, want) in [
            ("amd64", vec![0]),
            ("arm64", vec![1]),
            ("ARM64", vec![1]),
            ("i386", vec![2]),
            ("armhf", vec![3]),
            ("x86_64", vec![0]),
            ("riscv64", vec![]),
        ] {
            e.applies_to = vec![Selector {
                arch: Some(arch.into()),
                ..Selector::default()
            }];
            assert_eq!(index.applies(&e), want, "{arch}");
        }
    }
}
