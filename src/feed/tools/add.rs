//! `feed add`: check, hash and store a patch's artifacts, and record its catalog entry.
//! Nothing is stored for a patch that is refused.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::workspace::io_err;
use super::{FeedError, Workspace};
use crate::agent::archive::{self, ExtractError, Limits};
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
/// its `[[artifacts]]` by file name (a `.deb` also by its pool name, see
/// [`crate::deb::pool_file_name`]). The artifacts' content is checked before anything
/// is stored, so a refused patch leaves the feed as it was: a Debian package is
/// recorded under its pool name (so `apt-get download`'s `%3a` names work), and a
/// `script` archive must pass the very checks the agent makes before it runs a
/// step ([`crate::agent::archive`]).
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
    let needs_backup = src.needs_backup.unwrap_or(src.kind == PatchKind::Firmware);
    let names = check_contents(&src, &files, needs_backup)?;
    let mut staged = Vec::new();
    for (i, file) in files.iter().enumerate() {
        staged.push(stage_blob(&ws, file, i)?);
    }
    let stored: Vec<Artifact> = src
        .artifacts
        .iter()
        .zip(names)
        .zip(&staged)
        .map(|((a, name), b)| Artifact {
            name,
            sha256: b.sha256.clone(),
            size: b.size,
            format: a.format,
        })
        .collect();
    let entry = PatchEntry {
        needs_backup: Some(needs_backup),
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
    for b in &mut staged {
        b.commit(&ws)?;
    }
    let blobs = ws.path("blobs/sha256");
    fsutil::sync_dir(&blobs).map_err(io_err(&blobs))?;
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

/// Checks each artifact's content against its format; returns the names to record.
fn check_contents(
    src: &PatchSource,
    files: &[PathBuf],
    needs_backup: bool,
) -> Result<Vec<String>, FeedError> {
    let scripts = src
        .artifacts
        .iter()
        .filter(|a| a.format == ArtifactFormat::Script)
        .count();
    // The agent runs the one archive of a script patch; with two it refuses the job.
    if src.install == InstallMethod::Script && scripts > 1 {
        return Err(FeedError::Artifacts(format!(
            "an `install = \"script\"` patch has one artifact of format \"script\" (the \
             .tar.zst of its steps); this one has {scripts}"
        )));
    }
    let mut names = Vec::new();
    for (a, file) in src.artifacts.iter().zip(files) {
        let name = match a.format {
            // Content that is no package keeps its given name: the appliance refuses it
            // at import with the reason (`ImportError::BadDeb`).
            ArtifactFormat::Deb => pool_name(file).unwrap_or_else(|| a.name.clone()),
            ArtifactFormat::Script => {
                check_script(file, src.install == InstallMethod::Script && needs_backup).map_err(
                    |e| {
                        FeedError::Artifacts(format!(
                            "{} is not a script archive the agent can run: {e}",
                            file.display()
                        ))
                    },
                )?;
                a.name.clone()
            }
            ArtifactFormat::Firmware | ArtifactFormat::File => a.name.clone(),
        };
        names.push(name);
    }
    Ok(names)
}

/// The agent's own checks of a script archive: it unpacks safely, `install` and
/// `verify` (and `backup` when the patch needs one) are executables at its top level,
/// and every other step present is one.
fn check_script(file: &Path, needs_backup: bool) -> Result<(), ExtractError> {
    let contents = archive::inspect(file, Limits::default())?;
    let mut steps = vec!["install", "verify"];
    if needs_backup {
        steps.push("backup");
    }
    contents.require_steps(&steps)?;
    contents.check_present_steps()
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

/// The names a given file answers to: its file name, and for a readable `.deb` also
/// its pool name (so `bsdutils_1%3a2.38.1-5_amd64.deb` matches
/// `bsdutils_2.38.1-5_amd64.deb`).
fn names_of(p: &Path) -> Vec<String> {
    let Some(name) = p.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let mut out = vec![name.clone()];
    if name.ends_with(".deb")
        && let Some(pool) = pool_name(p)
        && pool != name
    {
        out.push(pool);
    }
    out
}

/// The pool name of the package file at `p`, when it is one.
fn pool_name(p: &Path) -> Option<String> {
    crate::deb::read_control(p)
        .and_then(|c| c.pool_file_name())
        .ok()
}

fn match_artifacts(
    wanted: &[ArtifactSource],
    files: &[PathBuf],
) -> Result<Vec<PathBuf>, FeedError> {
    let given: Vec<(&PathBuf, Vec<String>)> = files.iter().map(|f| (f, names_of(f))).collect();
    let answers = |names: &[String], a: &ArtifactSource| {
        names.first() == Some(&a.name)
            || (a.format == ArtifactFormat::Deb && names.contains(&a.name))
    };
    let mut out = Vec::new();
    for a in wanted {
        let matches: Vec<&PathBuf> = given
            .iter()
            .filter(|(_, names)| answers(names, a))
            .map(|(f, _)| *f)
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
    if let Some((extra, _)) = given
        .iter()
        .find(|(_, names)| !wanted.iter().any(|a| answers(names, a)))
    {
        return Err(FeedError::Artifacts(format!(
            "{} is not listed in [[artifacts]]",
            extra.display()
        )));
    }
    Ok(out)
}

/// A blob copied and hashed into a temporary file in `blobs/sha256/`, renamed to its
/// address by [`Staged::commit`] once the whole patch was accepted, removed otherwise.
struct Staged {
    tmp: PathBuf,
    sha256: String,
    size: u64,
    done: bool,
}

impl Staged {
    fn commit(&mut self, ws: &Workspace) -> Result<(), FeedError> {
        let dest = ws.blob_path(&self.sha256);
        fs::rename(&self.tmp, &dest).map_err(io_err(&dest))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Copies `file` to a temporary file in `blobs/sha256/` while hashing it (fsynced).
fn stage_blob(ws: &Workspace, file: &Path, i: usize) -> Result<Staged, FeedError> {
    let dir = ws.path("blobs/sha256");
    let mut staged = Staged {
        tmp: dir.join(format!(".incoming.{}.{i}", std::process::id())),
        sha256: String::new(),
        size: 0,
        done: false,
    };
    let mut src = HashingReader::new(File::open(file).map_err(io_err(file))?);
    let mut out = File::create(&staged.tmp).map_err(io_err(&staged.tmp))?;
    io::copy(&mut src, &mut out).map_err(io_err(file))?;
    out.sync_all().map_err(io_err(&staged.tmp))?;
    (staged.sha256, staged.size) = src.finish();
    Ok(staged)
}

#[cfg(test)]
#[path = "add_tests.rs"]
mod tests;
