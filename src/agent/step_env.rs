//! What a script patch's steps are told: the job, the patch, and where the verified
//! artifacts are, as environment variables and one JSON file.
//!
//! Before the first step the agent makes `work/<job id>.files/` beside the unpacked
//! archive, holding `artifacts/<name>` for every artifact of the ticket (hard links to
//! the cache entries it just hashed, so a 1 GiB firmware image is not copied; a copy
//! where a link cannot be made) and `job.json`. Every step gets:
//!
//! | variable | value |
//! | --- | --- |
//! | `PATCHWARD_JOB_ID`, `PATCHWARD_PATCH_ID`, `PATCHWARD_FEED` | the job, the patch id, its feed |
//! | `PATCHWARD_PATCH_TITLE`, `PATCHWARD_PATCH_KIND` | the catalog's title and kind (`firmware`, ...) |
//! | `PATCHWARD_STEP` | `backup`, `install`, `verify`, `health` or `rollback` |
//! | `PATCHWARD_ROLLBACK_OF` | on a rollback job, the job it undoes |
//! | `PATCHWARD_ARTIFACTS_DIR` | the directory of the artifacts, by their catalog names |
//! | `PATCHWARD_ARTIFACT_<NAME>` | one artifact's path; `<NAME>` is its name in upper case with every other character than `A-Z0-9` as `_` (`fw-2.1.bin`: `PATCHWARD_ARTIFACT_FW_2_1_BIN`) |
//! | `PATCHWARD_JOB_FILE` | `job.json`: all of the above, and each artifact's format, sha256 and size |
//!
//! Two names that map to the same variable get none (the directory and `job.json`
//! still name both): a variable never silently points at the wrong file. The files are
//! the checked content, shared with the cache: steps must treat them as read-only (the
//! cache is hashed again before every use, so a changed file is downloaded afresh).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::feed::catalog::{ArtifactFormat, is_safe_name};
use crate::fleet::jobs::Ticket;

/// The per-job files and the variables that name them; the files are removed when
/// this is dropped.
#[derive(Debug)]
pub struct JobFiles {
    root: PathBuf,
    vars: Vec<(String, String)>,
}

#[derive(Serialize)]
struct JobJson<'a> {
    job_id: &'a str,
    feed: &'a str,
    patch: PatchJson<'a>,
    reboot: bool,
    needs_backup: bool,
    rollback_of: Option<&'a str>,
    artifacts_dir: &'a Path,
    artifacts: Vec<ArtifactJson<'a>>,
}

#[derive(Serialize)]
struct PatchJson<'a> {
    id: &'a str,
    title: &'a str,
    kind: Option<crate::feed::catalog::PatchKind>,
}

#[derive(Serialize)]
struct ArtifactJson<'a> {
    name: &'a str,
    format: ArtifactFormat,
    sha256: &'a str,
    size: u64,
    path: PathBuf,
    /// The variable naming it, absent when two names collide.
    variable: Option<String>,
}

/// `PATCHWARD_ARTIFACT_<NAME>` for the artifact `name`.
pub fn artifact_variable(name: &str) -> String {
    let upper: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("PATCHWARD_ARTIFACT_{upper}")
}

/// Places `from` at `to`: a hard link, or a copy (fsynced) across file systems.
fn place(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(_) => {
            std::fs::copy(from, to)?;
            std::fs::File::open(to)?.sync_all()
        }
    }
}

impl JobFiles {
    /// Makes `<work_root>/<job id>.files/` for ticket `t`, whose artifacts were checked
    /// into `cache/<sha256>`.
    pub fn create(work_root: &Path, cache: &Path, t: &Ticket) -> Result<JobFiles, String> {
        let root = work_root.join(format!("{}.files", t.job_id));
        let err = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
        if root.exists() {
            std::fs::remove_dir_all(&root).map_err(|e| err(&root, e))?;
        }
        let files = JobFiles {
            root,
            vars: Vec::new(),
        };
        files.fill(cache, t)
    }

    fn fill(mut self, cache: &Path, t: &Ticket) -> Result<JobFiles, String> {
        let err = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
        let dir = self.root.join("artifacts");
        crate::fsutil::ensure_dir(&self.root, 0o700).map_err(|e| err(&self.root, e))?;
        crate::fsutil::ensure_dir(&dir, 0o755).map_err(|e| err(&dir, e))?;
        let mut artifacts = Vec::new();
        for a in &t.artifacts {
            // The appliance checked the names; a ticket is still checked on its own.
            if !is_safe_name(&a.name) {
                return Err(format!(
                    "artifact name {:?} is not a safe file name",
                    a.name
                ));
            }
            let path = dir.join(&a.name);
            if path.exists() {
                return Err(format!("artifact name {:?} appears twice", a.name));
            }
            place(&cache.join(&a.sha256), &path).map_err(|e| err(&path, e))?;
            let var = artifact_variable(&a.name);
            let unique = t
                .artifacts
                .iter()
                .filter(|b| artifact_variable(&b.name) == var)
                .count()
                == 1;
            artifacts.push(ArtifactJson {
                name: &a.name,
                format: a.format,
                sha256: &a.sha256,
                size: a.size,
                path,
                variable: unique.then_some(var),
            });
        }
        let job_file = self.root.join("job.json");
        let json = JobJson {
            job_id: &t.job_id,
            feed: &t.feed,
            patch: PatchJson {
                id: &t.patch_id,
                title: &t.title,
                kind: t.kind,
            },
            reboot: t.reboot,
            needs_backup: t.needs_backup,
            rollback_of: t.rollback_of.as_deref(),
            artifacts_dir: &dir,
            artifacts,
        };
        let bytes = serde_json::to_vec_pretty(&json).expect("the job file serialises");
        crate::fsutil::write_atomic(&job_file, &bytes, 0o644).map_err(|e| err(&job_file, e))?;

        let mut vars = vec![
            ("PATCHWARD_JOB_ID".to_string(), t.job_id.clone()),
            ("PATCHWARD_PATCH_ID".to_string(), t.patch_id.clone()),
            ("PATCHWARD_FEED".to_string(), t.feed.clone()),
            ("PATCHWARD_PATCH_TITLE".to_string(), t.title.clone()),
        ];
        if let Some(k) = t.kind {
            vars.push(("PATCHWARD_PATCH_KIND".into(), k.as_str().to_string()));
        }
        if let Some(r) = &t.rollback_of {
            vars.push(("PATCHWARD_ROLLBACK_OF".into(), r.clone()));
        }
        vars.push(("PATCHWARD_ARTIFACTS_DIR".into(), dir.display().to_string()));
        vars.push(("PATCHWARD_JOB_FILE".into(), job_file.display().to_string()));
        for a in &json.artifacts {
            if let Some(v) = &a.variable {
                vars.push((v.clone(), a.path.display().to_string()));
            }
        }
        self.vars = vars;
        Ok(self)
    }

    /// The environment of `step`.
    pub fn vars<'a>(&'a self, step: &'a str) -> Vec<(&'a str, &'a str)> {
        let mut v: Vec<(&str, &str)> = self
            .vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        v.push(("PATCHWARD_STEP", step));
        v
    }
}

impl Drop for JobFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::catalog::{Artifact, InstallMethod, PatchKind};

    fn ticket(artifacts: Vec<Artifact>) -> Ticket {
        Ticket {
            job_id: "j-7".into(),
            host_id: "h-1".into(),
            feed: "acme".into(),
            patch_id: "acme/bios-2.1".into(),
            title: "BIOS 2.1".into(),
            kind: Some(PatchKind::Firmware),
            artifacts,
            method: InstallMethod::Script,
            not_before: None,
            latest_start: None,
            reboot: true,
            est_minutes: 1,
            needs_backup: true,
            health_check: false,
            rollback_of: None,
            issued: "2026-11-27T10:00:00Z".parse().unwrap(),
        }
    }

    fn art(name: &str, sha: &str, format: ArtifactFormat) -> Artifact {
        Artifact {
            name: name.into(),
            sha256: sha.into(),
            size: 3,
            format,
        }
    }

    #[test]
    fn every_artifact_is_named_by_path_and_in_the_job_file() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        for (sha, body) in [("aa", "fw!"), ("bb", "tar"), ("cc", "one"), ("dd", "two")] {
            std::fs::write(cache.join(sha), body).unwrap();
        }
        let t = ticket(vec![
            art("bios-2.1.bin", "aa", ArtifactFormat::Firmware),
            art("steps.tar.zst", "bb", ArtifactFormat::Script),
            art("a-b", "cc", ArtifactFormat::File),
            art("a.b", "dd", ArtifactFormat::File),
        ]);
        let files = JobFiles::create(d.path(), &cache, &t).unwrap();
        let vars: std::collections::BTreeMap<&str, &str> =
            files.vars("install").into_iter().collect();
        let fw = vars["PATCHWARD_ARTIFACT_BIOS_2_1_BIN"];
        assert_eq!(std::fs::read_to_string(fw).unwrap(), "fw!");
        assert_eq!(
            Path::new(fw),
            Path::new(vars["PATCHWARD_ARTIFACTS_DIR"]).join("bios-2.1.bin")
        );
        assert_eq!(vars["PATCHWARD_STEP"], "install");
        assert_eq!(vars["PATCHWARD_PATCH_KIND"], "firmware");
        assert_eq!(vars["PATCHWARD_PATCH_TITLE"], "BIOS 2.1");
        // `a-b` and `a.b` collide: neither gets a variable, both are in the directory.
        assert!(!vars.contains_key("PATCHWARD_ARTIFACT_A_B"));
        let dir = Path::new(vars["PATCHWARD_ARTIFACTS_DIR"]);
        assert_eq!(std::fs::read_to_string(dir.join("a.b")).unwrap(), "two");
        let job: serde_json::Value =
            serde_json::from_slice(&std::fs::read(vars["PATCHWARD_JOB_FILE"]).unwrap()).unwrap();
        assert_eq!(job["patch"]["id"], "acme/bios-2.1");
        assert_eq!(job["patch"]["kind"], "firmware");
        assert_eq!(job["artifacts"][0]["path"], fw);
        assert_eq!(job["artifacts"][0]["format"], "firmware");
        assert_eq!(job["artifacts"][2]["variable"], serde_json::Value::Null);
        let root = Path::new(vars["PATCHWARD_JOB_FILE"])
            .parent()
            .unwrap()
            .to_path_buf();
        drop(files);
        assert!(!root.exists());
        // The cache is untouched by the clean-up.
        assert_eq!(std::fs::read_to_string(cache.join("aa")).unwrap(), "fw!");
    }

    #[test]
    fn an_unsafe_name_in_a_ticket_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let t = ticket(vec![art("../evil", "aa", ArtifactFormat::File)]);
        let e = JobFiles::create(d.path(), d.path(), &t).unwrap_err();
        assert!(e.contains("not a safe file name"), "{e}");
        assert!(!d.path().join("evil").exists());
    }
}
