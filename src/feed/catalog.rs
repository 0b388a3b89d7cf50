//! The catalog payload and its patch entries (DESIGN §3 "Patch entry").
//!
//! These are wire types: versioned, `deny_unknown_fields`, serialised exactly as signed.
//! Signature checks live in `trust::state`; [`Catalog::validate`] is the content check
//! that runs after them (and in `feed publish`, so an MSP cannot sign a broken catalog).
//!
//! Reference rules: `requires` must name patches in the same catalog (an install order
//! that cannot be satisfied is a publishing error), and `requires` must not form a cycle
//! (the message shows the cycle's path). `supersedes` and `conflicts` may name patches
//! that are absent: superseded patches are routinely dropped from later catalogs, and a
//! conflict with something not offered is simply never triggered.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::trust::error::TrustError;
use crate::trust::roles::{Role, SPEC_VERSION, check_range, parse_payload};

/// Largest artifact accepted: far above real firmware images, small enough that sums
/// over any catalog cannot overflow and a typo'd size is caught.
pub const MAX_ARTIFACT_SIZE: u64 = 16 << 30;

/// `_type` tag of a catalog payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatalogTag {
    #[default]
    #[serde(rename = "catalog")]
    Catalog,
}

/// The catalog payload: every patch the feed offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    #[serde(rename = "_type")]
    pub tag: CatalogTag,
    pub spec_version: u32,
    pub version: u64,
    /// When it was signed (feeds the freeze check).
    pub issued: Timestamp,
    pub expires: Timestamp,
    /// The feed's name, e.g. "example-msp".
    pub feed: String,
    pub patches: Vec<PatchEntry>,
    /// The lifecycle catalog (artifact kind `eol-catalog`) this feed ships, if any.
    /// Absent from catalogs without one, so they serialise exactly as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eol_catalog: Option<EolCatalogRef>,
}

/// A lifecycle catalog blob (endoflife.date JSON, `legacy::catalog`) named by a feed
/// catalog: addressed by sha256 like every artifact, fetched and verified by the same
/// import pipeline, and carrying its export date so an appliance can refuse an older
/// one without trusting anything but the signed catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EolCatalogRef {
    /// Lowercase hex sha256 of the JSON: the blob's address.
    pub sha256: String,
    pub size: u64,
    /// The lifecycle catalog's own version: its export date (`source_date`, YYYY-MM-DD).
    pub version: jiff::civil::Date,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchKind {
    Security,
    Maintenance,
    Firmware,
    Application,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    None,
}

impl PatchKind {
    pub const ALL: [PatchKind; 4] = [
        PatchKind::Security,
        PatchKind::Maintenance,
        PatchKind::Firmware,
        PatchKind::Application,
    ];

    /// The name used in catalogs and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            PatchKind::Security => "security",
            PatchKind::Maintenance => "maintenance",
            PatchKind::Firmware => "firmware",
            PatchKind::Application => "application",
        }
    }
}

impl Severity {
    /// Most severe first.
    pub const ALL: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::None,
    ];

    /// The name used in catalogs and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::None => "none",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CvssVersion {
    #[serde(rename = "3.1")]
    V3_1,
    #[serde(rename = "4.0")]
    V4_0,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cvss {
    pub version: CvssVersion,
    pub base_score: f64,
    pub vector: String,
}

/// Which hosts a patch is for. Any combination of an OS match, a package version bound
/// and labels; at least one must be given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below_version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactFormat {
    Deb,
    Script,
    Firmware,
    File,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// File name (safe: see [`is_safe_name`]).
    pub name: String,
    /// Lowercase hex sha256 of the content: the blob's address.
    pub sha256: String,
    pub size: u64,
    pub format: ArtifactFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstallMethod {
    Apt,
    Script,
}

/// One patch in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchEntry {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub kind: PatchKind,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cvss: Option<Cvss>,
    #[serde(default)]
    pub cves: Vec<String>,
    /// Vendor release time: the SLA clock starts here.
    pub released: Timestamp,
    #[serde(default)]
    pub applies_to: Vec<Selector>,
    pub artifacts: Vec<Artifact>,
    pub install: InstallMethod,
    #[serde(default)]
    pub requires: Vec<String>,
    #[serde(default)]
    pub supersedes: Vec<String>,
    #[serde(default)]
    pub conflicts: Vec<String>,
    #[serde(default)]
    pub reboot: bool,
    pub est_minutes: u32,
    /// Absent means the default: true for firmware, false otherwise ([`Self::needs_backup`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs_backup: Option<bool>,
}

impl PatchEntry {
    /// Whether a verified backup must succeed first (default: firmware only).
    pub fn needs_backup(&self) -> bool {
        self.needs_backup
            .unwrap_or(self.kind == PatchKind::Firmware)
    }

    /// Problems found in this entry alone (no cross-entry checks).
    pub fn problems(&self) -> Vec<CatalogProblem> {
        let mut out = Vec::new();
        let id = &self.id;
        let mut bad = |reason: String| {
            out.push(CatalogProblem::Patch {
                id: id.clone(),
                reason,
            })
        };
        if !is_safe_patch_id(id) {
            bad(format!("the id is not a safe patch id ({PATCH_ID_RULE})"));
        }
        if self.title.trim().is_empty() {
            bad("the title is empty".into());
        }
        if let Some(c) = &self.cvss
            && !(0.0..=10.0).contains(&c.base_score)
        {
            bad(format!("cvss base_score {} is outside 0..10", c.base_score));
        }
        for cve in &self.cves {
            if !is_cve(cve) {
                bad(format!("{cve:?} is not a CVE id like CVE-2025-12345"));
            }
        }
        for s in &self.applies_to {
            if s.os.is_none() && s.package.is_none() && s.labels.is_empty() {
                bad("an applies_to selector names no os, package or label".into());
            }
            if s.below_version.is_some() && s.package.is_none() {
                bad("an applies_to selector has below_version without package".into());
            }
        }
        if self.artifacts.is_empty() {
            bad("it has no artifacts".into());
        }
        let mut names = BTreeSet::new();
        for a in &self.artifacts {
            if !is_safe_name(&a.name) {
                bad(format!(
                    "artifact name {:?} is not a safe file name (letters, digits, `._+~-`, \
                     no leading dot, at most 255 bytes)",
                    a.name
                ));
            }
            if !names.insert(&a.name) {
                bad(format!("artifact name {:?} appears twice", a.name));
            }
            if !is_sha256_hex(&a.sha256) {
                bad(format!(
                    "artifact {:?} has sha256 {:?}, which is not 64 lowercase hex digits",
                    a.name, a.sha256
                ));
            }
            if a.size == 0 {
                bad(format!("artifact {:?} has size 0", a.name));
            } else if a.size > MAX_ARTIFACT_SIZE {
                bad(format!(
                    "artifact {:?} has size {} bytes, over the {MAX_ARTIFACT_SIZE}-byte limit",
                    a.name, a.size
                ));
            }
        }
        for (field, list) in [
            ("requires", &self.requires),
            ("supersedes", &self.supersedes),
            ("conflicts", &self.conflicts),
        ] {
            if list.contains(id) {
                bad(format!("it names itself in {field}"));
            }
            // References are ids too (of patches that may be absent): the same rule, so
            // nothing downstream ever meets an unsafe id.
            for other in list.iter().filter(|o| !is_safe_patch_id(o)) {
                bad(format!(
                    "{field} names {other:?}, which is not a safe patch id ({PATCH_ID_RULE})"
                ));
            }
        }
        out
    }
}

/// One thing wrong with a catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogProblem {
    #[error("the feed name {0:?} is not 1-100 printable ASCII characters")]
    FeedName(String),
    #[error("spec_version {0} is not supported (this binary reads 1); upgrade patchward")]
    SpecVersion(u32),
    #[error(
        "catalog version {0} is out of range (at most {max}, what an appliance can store)",
        max = crate::trust::roles::MAX_VERSION
    )]
    VersionRange(u64),
    #[error("patch id {0:?} appears more than once")]
    DuplicateId(String),
    #[error("patch {id:?}: {reason}")]
    Patch { id: String, reason: String },
    #[error("patch {id:?} requires {missing:?}, which is not in the catalog")]
    UnknownRequires { id: String, missing: String },
    #[error("requires cycle: {}", .0.join(" -> "))]
    RequiresCycle(Vec<String>),
    #[error("the eol_catalog entry: {0}")]
    EolCatalog(String),
    #[error("blob {sha256} is listed with sizes {first} and {second}")]
    BlobSizeConflict {
        sha256: String,
        first: u64,
        second: u64,
    },
}

/// A catalog that failed [`Catalog::validate`], with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
pub struct InvalidCatalog(pub Vec<CatalogProblem>);

impl Catalog {
    /// Parses a catalog payload (signatures are checked by the caller).
    pub fn parse(payload: &[u8]) -> Result<Self, TrustError> {
        let c: Catalog = parse_payload(Role::Catalog, payload)?;
        check_range(Role::Catalog, "version", c.version)?;
        Ok(c)
    }

    /// Checks ids, references, cycles, hashes, sizes and names; reports every problem.
    pub fn validate(&self) -> Result<(), InvalidCatalog> {
        let mut problems = Vec::new();
        if self.spec_version != SPEC_VERSION {
            problems.push(CatalogProblem::SpecVersion(self.spec_version));
        }
        if self.version > crate::trust::roles::MAX_VERSION {
            problems.push(CatalogProblem::VersionRange(self.version));
        }
        if self.feed.is_empty() || self.feed.len() > 100 || !self.feed.bytes().all(is_graphic) {
            problems.push(CatalogProblem::FeedName(self.feed.clone()));
        }
        let mut ids = BTreeSet::new();
        for p in &self.patches {
            if !ids.insert(p.id.as_str()) {
                problems.push(CatalogProblem::DuplicateId(p.id.clone()));
            }
            problems.extend(p.problems());
        }
        for p in &self.patches {
            for r in &p.requires {
                if !ids.contains(r.as_str()) {
                    problems.push(CatalogProblem::UnknownRequires {
                        id: p.id.clone(),
                        missing: r.clone(),
                    });
                }
            }
        }
        if let Some(cycle) = self.requires_cycle() {
            problems.push(CatalogProblem::RequiresCycle(cycle));
        }
        if let Some(e) = &self.eol_catalog {
            problems.extend(e.problems());
        }
        let mut sizes: BTreeMap<&str, u64> = BTreeMap::new();
        let refs = self.patches.iter().flat_map(|p| &p.artifacts);
        let refs = refs
            .map(|a| (a.sha256.as_str(), a.size))
            .chain(self.eol_catalog.iter().map(|e| (e.sha256.as_str(), e.size)));
        for (sha256, size) in refs {
            match sizes.get(sha256) {
                Some(&first) if first != size => problems.push(CatalogProblem::BlobSizeConflict {
                    sha256: sha256.to_string(),
                    first,
                    second: size,
                }),
                _ => {
                    sizes.insert(sha256, size);
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(InvalidCatalog(problems))
        }
    }

    /// Every blob the catalog references, by sha256, with its size: the patches'
    /// artifacts and the lifecycle catalog. One blob may back several artifacts (the
    /// same .deb in two patches). Export, import, the blob records and GC all go by
    /// this list, so the lifecycle catalog travels and is verified like any artifact.
    pub fn blobs(&self) -> BTreeMap<String, u64> {
        self.patches
            .iter()
            .flat_map(|p| &p.artifacts)
            .map(|a| (a.sha256.clone(), a.size))
            .chain(self.eol_catalog.iter().map(|e| (e.sha256.clone(), e.size)))
            .collect()
    }

    /// The first `requires` cycle found, as a path that starts and ends with the same id.
    /// Iterative depth-first search, so a hostile catalog with a long chain cannot
    /// overflow the stack.
    fn requires_cycle(&self) -> Option<Vec<String>> {
        let index: BTreeMap<&str, usize> = self
            .patches
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.as_str(), i))
            .collect();
        let edges: Vec<Vec<usize>> = self
            .patches
            .iter()
            .map(|p| {
                p.requires
                    .iter()
                    .filter_map(|r| index.get(r.as_str()).copied())
                    .collect()
            })
            .collect();
        // 0 = unvisited, 1 = on the current path, 2 = finished.
        let mut state = vec![0u8; self.patches.len()];
        for start in 0..self.patches.len() {
            if state[start] != 0 {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            state[start] = 1;
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                if let Some(&to) = edges[node].get(*next) {
                    *next += 1;
                    match state[to] {
                        0 => {
                            state[to] = 1;
                            stack.push((to, 0));
                        }
                        1 => {
                            let from = stack.iter().position(|&(n, _)| n == to).unwrap_or(0);
                            let mut path: Vec<String> = stack[from..]
                                .iter()
                                .map(|&(n, _)| self.patches[n].id.clone())
                                .collect();
                            path.push(self.patches[to].id.clone());
                            return Some(path);
                        }
                        _ => {}
                    }
                } else {
                    state[node] = 2;
                    stack.pop();
                }
            }
        }
        None
    }
}

impl EolCatalogRef {
    /// Problems with the reference itself (its content is checked where it is read).
    pub fn problems(&self) -> Vec<CatalogProblem> {
        let mut out = Vec::new();
        if !is_sha256_hex(&self.sha256) {
            out.push(CatalogProblem::EolCatalog(format!(
                "sha256 {:?} is not 64 lowercase hex digits",
                self.sha256
            )));
        }
        let max = crate::legacy::catalog::MAX_CATALOG_BYTES as u64;
        if self.size == 0 || self.size > max {
            out.push(CatalogProblem::EolCatalog(format!(
                "size {} bytes is outside 1..={max}",
                self.size
            )));
        }
        out
    }
}

fn is_graphic(b: u8) -> bool {
    b.is_ascii_graphic()
}

/// Longest patch id accepted (the ids of real advisories are a few dozen bytes).
pub const MAX_PATCH_ID: usize = 128;

/// The patch id rule in words, for error messages and documentation.
pub const PATCH_ID_RULE: &str = "at most 128 bytes of segments separated by single `/`; \
    each segment starts with a letter or digit and continues with letters, digits or \
    `._+~:-`, e.g. \"DSA-5912-1/openssl\" or \"vendor/fw-2.3.1\"";

/// Whether `id` is a safe patch id ([`PATCH_ID_RULE`]). Ids end up in URLs, file names
/// (`feed add` slugs them), audit subjects and the environment of scripts, so the rule
/// excludes everything that could mean something there: no leading, trailing or double
/// `/` (so never an absolute path or an empty segment), no `.`/`..` segment or any
/// segment that starts with `.` or `-` (hidden files, traversal, option injection),
/// no backslash, space, quote or control character.
pub fn is_safe_patch_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_PATCH_ID
        && id.split('/').all(|seg| {
            let mut b = seg.bytes();
            b.next().is_some_and(|c| c.is_ascii_alphanumeric())
                && b.all(|c| {
                    c.is_ascii_alphanumeric()
                        || matches!(c, b'.' | b'_' | b'+' | b'~' | b':' | b'-')
                })
        })
}

fn is_cve(s: &str) -> bool {
    let mut parts = s.split('-');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some("CVE"), Some(y), Some(n), None)
            if y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit())
            && n.len() >= 4 && n.len() <= 19 && n.bytes().all(|b| b.is_ascii_digit())
    )
}

/// 64 lowercase hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A file name that is safe anywhere: no separators, no leading dot (hidden files,
/// `.` and `..`), only characters that need no quoting, at most 255 bytes.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'~' | b'-'))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn entry(id: &str, content: &[u8]) -> PatchEntry {
        use sha2::{Digest, Sha256};
        PatchEntry {
            id: id.into(),
            title: format!("Fix for {id}"),
            description: String::new(),
            kind: PatchKind::Security,
            severity: Severity::High,
            cvss: Some(Cvss {
                version: CvssVersion::V3_1,
                base_score: 7.5,
                vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H".into(),
            }),
            cves: vec!["CVE-2025-12345".into()],
            released: "2026-11-01T00:00:00Z".parse().unwrap(),
            applies_to: vec![Selector {
                os: Some("debian".into()),
                version: Some("12".into()),
                ..Default::default()
            }],
            artifacts: vec![Artifact {
                name: format!("{}.deb", id.replace('/', "_")),
                sha256: hex::encode(Sha256::digest(content)),
                size: content.len() as u64,
                format: ArtifactFormat::Deb,
            }],
            install: InstallMethod::Apt,
            requires: vec![],
            supersedes: vec![],
            conflicts: vec![],
            reboot: false,
            est_minutes: 5,
            needs_backup: None,
        }
    }

    pub fn catalog(version: u64, patches: Vec<PatchEntry>) -> Catalog {
        Catalog {
            tag: CatalogTag::Catalog,
            spec_version: 1,
            version,
            issued: "2026-11-20T00:00:00Z".parse().unwrap(),
            expires: "2027-02-18T00:00:00Z".parse().unwrap(),
            feed: "example-msp".into(),
            patches,
            eol_catalog: None,
        }
    }

    fn problems(c: &Catalog) -> String {
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn a_good_catalog_validates_and_round_trips() {
        let mut b = entry("b", b"bee");
        b.requires = vec!["a".into()];
        b.supersedes = vec!["gone-from-catalog".into()];
        let c = catalog(1, vec![entry("a", b"ay"), b]);
        c.validate().unwrap();
        let json = serde_json::to_vec(&c).unwrap();
        assert_eq!(Catalog::parse(&json).unwrap(), c);
        assert_eq!(c.blobs().len(), 2);
    }

    #[test]
    fn duplicate_ids_unknown_requires_and_cycles_are_reported() {
        let c = catalog(1, vec![entry("a", b"1"), entry("a", b"2")]);
        assert_eq!(problems(&c), "patch id \"a\" appears more than once");

        let mut a = entry("a", b"1");
        a.requires = vec!["nope".into()];
        assert_eq!(
            problems(&catalog(1, vec![a])),
            "patch \"a\" requires \"nope\", which is not in the catalog"
        );

        let mut a = entry("a", b"1");
        let mut b = entry("b", b"2");
        let mut c = entry("c", b"3");
        let d = entry("d", b"4");
        a.requires = vec!["d".into(), "b".into()];
        b.requires = vec!["c".into()];
        c.requires = vec!["a".into()];
        assert_eq!(
            problems(&catalog(1, vec![d, a, b, c])),
            "requires cycle: a -> b -> c -> a"
        );
    }

    /// Issue [8] item 8: ids are safe identifiers; a single `/` between safe segments
    /// (as in real advisory ids) is allowed, traversal and anything odd is not.
    #[test]
    fn patch_ids_are_safe_identifiers() {
        // The entry's artifact is named after its id; keep that name simple here.
        let entry = |id: &str, c: &[u8]| {
            let mut e = entry(id, c);
            e.artifacts[0].name = "p.deb".into();
            e
        };
        for good in [
            "DSA-5912-1/openssl",
            "vendor/fw-2.3.1",
            "RHSA-2024:1234",
            "a",
            "USN-7000-1/linux+hwe~22.04",
            &"x".repeat(MAX_PATCH_ID),
        ] {
            assert!(is_safe_patch_id(good), "{good:?} refused");
            catalog(1, vec![entry(good, b"1")]).validate().unwrap();
        }
        for bad in [
            "../../x",
            "..",
            ".",
            "a/../b",
            "a/./b",
            "/etc/passwd",
            "a/",
            "a//b",
            "a\\b",
            ".hidden",
            "a/.hidden",
            "-rf",
            "a b",
            "a\u{7f}b",
            "a\nb",
            "a\tb",
            "caf\u{e9}",
            "a\"b",
            "a;b",
            "",
            &"x".repeat(MAX_PATCH_ID + 1),
        ] {
            assert!(!is_safe_patch_id(bad), "{bad:?} accepted");
            let e = problems(&catalog(1, vec![entry(bad, b"1")]));
            assert!(
                e.contains(&format!("patch {bad:?}: the id is not a safe patch id")),
                "{bad:?}: {e}"
            );
        }
        // References are held to the same rule.
        let mut a = entry("a", b"1");
        a.supersedes = vec!["../../x".into()];
        a.conflicts = vec!["ok/fine".into()];
        let e = problems(&catalog(1, vec![a]));
        assert_eq!(
            e,
            format!(
                "patch \"a\": supersedes names \"../../x\", which is not a safe patch id \
                 ({PATCH_ID_RULE})"
            )
        );
    }

    #[test]
    fn bad_artifacts_are_reported() {
        let mut a = entry("a", b"1");
        a.artifacts[0].name = "../etc/passwd".into();
        a.artifacts[0].sha256 = "ABC".into();
        a.artifacts[0].size = 0;
        let e = problems(&catalog(1, vec![a]));
        assert!(
            e.contains("artifact name \"../etc/passwd\" is not a safe file name"),
            "{e}"
        );
        assert!(e.contains("which is not 64 lowercase hex digits"), "{e}");
        assert!(e.contains("has size 0"), "{e}");

        let mut a = entry("a", b"1");
        a.artifacts[0].size = MAX_ARTIFACT_SIZE + 1;
        assert!(problems(&catalog(1, vec![a])).contains("over the 17179869184-byte limit"));

        let a = entry("a", b"same");
        let mut b = entry("b", b"same");
        b.artifacts[0].size = 99;
        assert!(problems(&catalog(1, vec![a, b])).contains("is listed with sizes 4 and 99"));
    }

    #[test]
    fn the_eol_catalog_reference_is_optional_checked_and_one_of_the_blobs() {
        let c = catalog(1, vec![entry("a", b"1")]);
        let json = String::from_utf8(serde_json::to_vec(&c).unwrap()).unwrap();
        assert!(!json.contains("eol_catalog"), "{json}");

        let mut c = c;
        c.eol_catalog = Some(EolCatalogRef {
            sha256: "e".repeat(64),
            size: 1000,
            version: jiff::civil::date(2026, 10, 1),
        });
        c.validate().unwrap();
        let json = serde_json::to_vec(&c).unwrap();
        assert!(
            String::from_utf8_lossy(&json).contains(r#""eol_catalog":{"sha256":"eeee"#),
            "{}",
            String::from_utf8_lossy(&json)
        );
        assert_eq!(Catalog::parse(&json).unwrap(), c);
        assert_eq!(c.blobs().get(&"e".repeat(64)), Some(&1000));

        let e = c.eol_catalog.as_mut().unwrap();
        e.sha256 = "E".into();
        e.size = 0;
        let p = problems(&c);
        assert!(
            p.contains("the eol_catalog entry: sha256 \"E\" is not 64 lowercase hex digits")
                && p.contains("the eol_catalog entry: size 0 bytes is outside 1..=16777216"),
            "{p}"
        );
        // The same blob named by an artifact with another size.
        let mut c = catalog(1, vec![entry("a", b"1")]);
        let a = &c.patches[0].artifacts[0];
        c.eol_catalog = Some(EolCatalogRef {
            sha256: a.sha256.clone(),
            size: 5,
            version: jiff::civil::date(2026, 10, 1),
        });
        assert!(problems(&c).contains("is listed with sizes 1 and 5"));
    }

    #[test]
    fn firmware_needs_backup_by_default() {
        let mut a = entry("fw", b"1");
        assert!(!a.needs_backup());
        a.kind = PatchKind::Firmware;
        assert!(a.needs_backup());
        a.needs_backup = Some(false);
        assert!(!a.needs_backup());
    }
}
