//! `feed add`: hash and store a patch's artifacts, and record its catalog entry.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::workspace::io_err;
use super::{FeedError, Workspace};
use crate::feed::catalog::{
    Artifact, ArtifactFormat, Cvss, InstallMethod, PatchEntry, PatchKind, Selector, Severity,
};
use crate::feed::hashing::{HashingReader, sha256_hex};
use crate::fsutil;

/// `PATCH.toml`: a catalog patch entry whose artifacts have no hash or size yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchSource {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub kind: PatchKind,
    pub severity: Severity,
    #[serde(default)]
    pub cvss: Option<Cvss>,
    #[serde(default)]
    pub cves: Vec<String>,
    pub released: Timestamp,
    #[serde(default)]
    pub applies_to: Vec<Selector>,
    pub artifacts: Vec<ArtifactSource>,
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
    #[serde(default)]
    pub needs_backup: Option<bool>,
}

/// An artifact as named in `PATCH.toml`; the file comes from the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSource {
    pub name: String,
    pub format: ArtifactFormat,
}

/// What `add` recorded.
#[derive(Debug, Clone)]
pub struct AddReport {
    pub id: String,
    pub file: PathBuf,
    /// An entry with this id existed and was replaced.
    pub replaced: bool,
    pub artifacts: Vec<Artifact>,
}

/// Adds (or replaces) the patch described by `patch_toml`, with `artifacts` matched to
/// its `[[artifacts]]` by file name.
pub fn add_patch(
    dir: &Path,
    patch_toml: &Path,
    artifacts: &[PathBuf],
) -> Result<AddReport, FeedError> {
    let ws = Workspace::open(dir)?;
    let text = fs::read_to_string(patch_toml).map_err(io_err(patch_toml))?;
    let src: PatchSource = toml::from_str(&text).map_err(|e| FeedError::PatchFile {
        path: patch_toml.to_path_buf(),
        reason: e.to_string(),
    })?;
    // The id first: an unsafe one is refused before any artifact is copied in.
    if !crate::feed::catalog::is_safe_patch_id(&src.id) {
        return Err(FeedError::PatchFile {
            path: patch_toml.to_path_buf(),
            reason: format!(
                "id {:?} is not a safe patch id ({})",
                src.id,
                crate::feed::catalog::PATCH_ID_RULE
            ),
        });
    }
    let files = match_artifacts(&src.artifacts, artifacts)?;
    let mut stored = Vec::new();
    for (a, file) in src.artifacts.iter().zip(&files) {
        let (sha256, size) = store_blob(&ws, file)?;
        stored.push(Artifact {
            name: a.name.clone(),
            sha256,
            size,
            format: a.format,
        });
    }
    let entry = PatchEntry {
        needs_backup: Some(src.needs_backup.unwrap_or(src.kind == PatchKind::Firmware)),
        id: src.id,
        title: src.title,
        description: src.description,
        kind: src.kind,
        severity: src.severity,
        cvss: src.cvss,
        cves: src.cves,
        released: src.released,
        applies_to: src.applies_to,
        artifacts: stored.clone(),
        install: src.install,
        requires: src.requires,
        supersedes: src.supersedes,
        conflicts: src.conflicts,
        reboot: src.reboot,
        est_minutes: src.est_minutes,
    };
    // Entry-local checks now; references between patches are checked at publish,
    // so patches may be added in any order.
    let problems = entry.problems();
    if !problems.is_empty() {
        return Err(FeedError::Invalid(crate::feed::catalog::InvalidCatalog(
            problems,
        )));
    }
    let file = ws.path("patches").join(patch_file_name(&entry.id));
    let replaced = file.exists();
    let text = toml::to_string_pretty(&entry).expect("patch entry serialises");
    fsutil::write_atomic(&file, text.as_bytes(), 0o644).map_err(io_err(&file))?;
    Ok(AddReport {
        id: entry.id,
        file,
        replaced,
        artifacts: stored,
    })
}

/// A file name for a patch id: readable, and unique because ids may contain `/`.
fn patch_file_name(id: &str) -> String {
    let slug: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    format!("{slug}-{}.toml", &sha256_hex(id.as_bytes())[..8])
}

fn match_artifacts(
    wanted: &[ArtifactSource],
    files: &[PathBuf],
) -> Result<Vec<PathBuf>, FeedError> {
    let name_of = |p: &PathBuf| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let mut out = Vec::new();
    for a in wanted {
        let matches: Vec<&PathBuf> = files
            .iter()
            .filter(|f| name_of(f).as_deref() == Some(a.name.as_str()))
            .collect();
        match matches.as_slice() {
            [one] => out.push((*one).clone()),
            [] => {
                return Err(FeedError::Artifacts(format!(
                    "no file named {:?} was given for the artifact of that name",
                    a.name
                )));
            }
            _ => {
                return Err(FeedError::Artifacts(format!(
                    "more than one file named {:?} was given",
                    a.name
                )));
            }
        }
    }
    if let Some(extra) = files.iter().find(|f| {
        !wanted
            .iter()
            .any(|a| name_of(f).as_deref() == Some(a.name.as_str()))
    }) {
        return Err(FeedError::Artifacts(format!(
            "{} is not listed in [[artifacts]]",
            extra.display()
        )));
    }
    Ok(out)
}

/// Copies `file` into `blobs/sha256/<hex>` while hashing it (temp file, fsync, rename).
fn store_blob(ws: &Workspace, file: &Path) -> Result<(String, u64), FeedError> {
    let dir = ws.path("blobs/sha256");
    let tmp = dir.join(format!(".incoming.{}", std::process::id()));
    let result = (|| {
        let mut src = HashingReader::new(File::open(file).map_err(io_err(file))?);
        let mut out = File::create(&tmp).map_err(io_err(&tmp))?;
        io::copy(&mut src, &mut out).map_err(io_err(file))?;
        out.sync_all().map_err(io_err(&tmp))?;
        let (sha256, size) = src.finish();
        let dest = ws.blob_path(&sha256);
        fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
        fsutil::sync_dir(&dir).map_err(io_err(&dir))?;
        Ok((sha256, size))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
