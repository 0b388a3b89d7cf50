//! Running jobs on the agent: ticket checks, artifact checks, the `script` backend, and
//! the local journal.
//!
//! The journal (`jobs.jsonl` in the state directory) is JSON lines, each fsynced before
//! the step it records continues: `{"kind":"event", job_id, state, at, output}` for a
//! state the job reached, and `{"kind":"reported", job_id, state}` once the appliance
//! accepted that event. Unreported events go with the next check-in; a job the journal
//! knows is never run again; a job left mid-way by a crash is reported `failed` (or
//! `rollback_failed`) at the next start rather than silently lost. The appliance also
//! ignores a repeated (job, state), so a crash between its answer and the `reported`
//! line cannot apply an event twice.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::script::{self, Limits};
use super::{AgentError, AgentState, io_err};
use crate::feed::catalog::{ArtifactFormat, InstallMethod};
use crate::fleet::jobs::{JobEvent, JobState, Ticket};
use crate::trust::keys::Ed25519Key;

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    Event(JobEvent),
    Reported { job_id: String, state: JobState },
}

/// The local job journal.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    lines: Vec<Line>,
}

impl Journal {
    pub fn open(dir: &Path) -> Result<Journal, AgentError> {
        let path = dir.join("jobs.jsonl");
        let mut lines = Vec::new();
        match std::fs::File::open(&path) {
            Ok(f) => {
                let all: Vec<String> = std::io::BufReader::new(f)
                    .lines()
                    .collect::<Result<_, _>>()
                    .map_err(io_err(&path))?;
                // A line that does not parse is a torn write from a crash (the next
                // append starts on a new line); the step it belonged to never went on.
                lines.extend(all.iter().filter_map(|l| serde_json::from_str(l).ok()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
        Ok(Journal { path, lines })
    }

    fn append(&mut self, line: Line) -> Result<(), AgentError> {
        let mut text = serde_json::to_string(&line).expect("journal lines serialise");
        text.push('\n');
        let fresh = !self.path.exists();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io_err(&self.path))?;
        // A torn line from a crash is completed by this newline and then skipped.
        if !fresh && std::fs::metadata(&self.path).is_ok_and(|m| m.len() > 0) {
            let mut last = [0u8; 1];
            let mut r = std::fs::File::open(&self.path).map_err(io_err(&self.path))?;
            use std::io::Seek;
            r.seek(std::io::SeekFrom::End(-1))
                .and_then(|_| r.read_exact(&mut last))
                .map_err(io_err(&self.path))?;
            if last[0] != b'\n' {
                text.insert(0, '\n');
            }
        }
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(io_err(&self.path))?;
        if fresh && let Some(parent) = self.path.parent() {
            crate::fsutil::sync_dir(parent).map_err(io_err(parent))?;
        }
        self.lines.push(line);
        Ok(())
    }

    /// Records that `job_id` reached `state`.
    pub fn record(
        &mut self,
        job_id: &str,
        state: JobState,
        at: Timestamp,
        output: &str,
    ) -> Result<(), AgentError> {
        self.append(Line::Event(JobEvent {
            job_id: job_id.to_string(),
            state,
            at,
            output: crate::fleet::jobs::tail(output, script::MAX_OUTPUT).to_string(),
        }))
    }

    /// Events not yet accepted by the appliance, in order.
    pub fn pending(&self) -> Vec<JobEvent> {
        let done: HashSet<(&str, JobState)> = self
            .lines
            .iter()
            .filter_map(|l| match l {
                Line::Reported { job_id, state } => Some((job_id.as_str(), *state)),
                Line::Event(_) => None,
            })
            .collect();
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Event(e) if !done.contains(&(e.job_id.as_str(), e.state)) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn mark_reported(&mut self, events: &[JobEvent]) -> Result<(), AgentError> {
        for e in events {
            self.append(Line::Reported {
                job_id: e.job_id.clone(),
                state: e.state,
            })?;
        }
        Ok(())
    }

    /// The last state of every job the journal knows.
    pub fn last_states(&self) -> BTreeMap<String, JobState> {
        let mut m = BTreeMap::new();
        for l in &self.lines {
            if let Line::Event(e) = l {
                m.insert(e.job_id.clone(), e.state);
            }
        }
        m
    }

    /// Jobs left mid-way (by a crash or kill) are closed as failed, so they are
    /// reported rather than lost or run twice.
    pub fn close_interrupted(&mut self, now: Timestamp) -> Result<usize, AgentError> {
        let mut n = 0;
        for (job, state) in self.last_states() {
            if !state.is_open() {
                continue;
            }
            let to = if state == JobState::RollingBack {
                JobState::RollbackFailed
            } else {
                JobState::Failed
            };
            let why = format!("the agent stopped while the job was {state}; not resumed");
            self.record(&job, to, now, &why)?;
            n += 1;
        }
        Ok(n)
    }
}

fn artifacts_dir(dir: &Path) -> PathBuf {
    dir.join("artifacts")
}

/// sha256 and size of a file.
fn hash_file(p: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

/// Downloads a blob with a signed GET to `dest` (at most `size` + 1 bytes kept).
fn download(
    st: &AgentState,
    key: &Ed25519Key,
    sha256: &str,
    size: u64,
    dest: &Path,
) -> Result<(), String> {
    let path = format!("/api/agent/v1/artifacts/sha256/{sha256}");
    let url = super::endpoint(&st.server, &path);
    let h = crate::fleet::signing::sign(
        key,
        &st.host_id,
        "GET",
        &path,
        crate::clock::Clock::now(&crate::clock::SystemClock),
        b"",
    );
    let mut req = super::client().get(&url);
    for (k, v) in h.pairs() {
        req = req.header(k, v);
    }
    let resp = req.send().map_err(|e| format!("GET {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: {}", resp.status()));
    }
    let part = dest.with_extension("part");
    let mut f = std::fs::File::create(&part).map_err(|e| e.to_string())?;
    let copied = std::io::copy(&mut resp.take(size + 1), &mut f).map_err(|e| e.to_string());
    let synced = f.sync_all().map_err(|e| e.to_string());
    if let Err(e) = copied.and(synced) {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    std::fs::rename(&part, dest).map_err(|e| e.to_string())
}

/// Makes every artifact of `t` present under `artifacts/<sha256>` with the ticket's
/// sha256 and size (downloading what is missing). A mismatching file is deleted.
fn check_artifacts(
    dir: &Path,
    st: &AgentState,
    key: &Ed25519Key,
    t: &Ticket,
) -> Result<(), String> {
    let adir = artifacts_dir(dir);
    crate::fsutil::ensure_dir(&adir, 0o700).map_err(|e| format!("{}: {e}", adir.display()))?;
    for a in &t.artifacts {
        if a.sha256.len() != 64 || !a.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("artifact {}: malformed sha256", a.name));
        }
        let p = adir.join(&a.sha256);
        if !p.exists() {
            download(st, key, &a.sha256, a.size, &p)
                .map_err(|e| format!("artifact {}: cannot download: {e}", a.name))?;
        }
        let (sha, size) = hash_file(&p).map_err(|e| format!("artifact {}: {e}", a.name))?;
        if sha != a.sha256 || size != a.size {
            let _ = std::fs::remove_file(&p);
            return Err(format!(
                "artifact {}: got sha256 {sha} and {size} bytes, the ticket says {} and {}",
                a.name, a.sha256, a.size
            ));
        }
    }
    Ok(())
}

/// How long one step may run: three times the estimate, at least a minute.
fn step_timeout(t: &Ticket) -> Duration {
    Duration::from_secs(u64::from(t.est_minutes.max(1)) * 180)
}

/// Runs a verified ticket to a final (or `failed`) state, journaling every transition.
/// Returns the last state, or `None` when its window has not opened yet.
pub fn run_job(
    dir: &Path,
    st: &AgentState,
    key: &Ed25519Key,
    journal: &mut Journal,
    t: &Ticket,
    now: impl Fn() -> Timestamp,
) -> Result<Option<JobState>, AgentError> {
    let id = t.job_id.as_str();
    let start = now();
    if t.not_before.is_some_and(|nb| start < nb) {
        return Ok(None);
    }
    let mut go = |state: JobState, output: &str| -> Result<Option<JobState>, AgentError> {
        journal.record(id, state, now(), output)?;
        Ok(Some(state))
    };
    if t.latest_start.is_some_and(|ls| start > ls) {
        return go(
            JobState::Expired,
            "the window closed before the job started",
        );
    }
    go(JobState::Downloading, "")?;
    if let Err(why) = check_artifacts(dir, st, key, t) {
        return go(JobState::Failed, &why);
    }
    go(JobState::Downloaded, "")?;
    if t.method != InstallMethod::Script {
        return go(
            JobState::Failed,
            "this agent runs only the `script` install method",
        );
    }
    let Some(archive) = t
        .artifacts
        .iter()
        .find(|a| a.format == ArtifactFormat::Script)
    else {
        return go(JobState::Failed, "the ticket has no `script` artifact");
    };
    let work = dir.join("work").join(id);
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(io_err(&work))?;
    }
    crate::fsutil::ensure_dir(&dir.join("work"), 0o700).map_err(io_err(dir))?;
    let result = run_script(&artifacts_dir(dir).join(&archive.sha256), &work, t, &mut go);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn run_script(
    archive: &Path,
    work: &Path,
    t: &Ticket,
    go: &mut impl FnMut(JobState, &str) -> Result<Option<JobState>, AgentError>,
) -> Result<Option<JobState>, AgentError> {
    if let Err(e) = script::extract(archive, work, Limits::default()) {
        return go(
            JobState::Failed,
            &format!("unsafe or unreadable archive: {e}"),
        );
    }
    for needed in ["install", "verify"] {
        if !work.join(needed).is_file() {
            return go(
                JobState::Failed,
                &format!("the archive has no `{needed}` executable"),
            );
        }
    }
    let env = [
        ("PATCHWARD_JOB_ID", t.job_id.as_str()),
        ("PATCHWARD_PATCH_ID", t.patch_id.as_str()),
    ];
    let timeout = step_timeout(t);
    if t.needs_backup {
        if !work.join("backup").is_file() {
            return go(
                JobState::Failed,
                "the patch needs a backup but the archive has no `backup` step; not installed",
            );
        }
        let b = script::run_step(work, "backup", &env, timeout);
        if !b.success {
            return go(
                JobState::Failed,
                &format!("backup failed; not installed\n{}", b.output),
            );
        }
    }
    go(JobState::Installing, "")?;
    let i = script::run_step(work, "install", &env, timeout);
    let failure = if i.success {
        go(JobState::Verifying, &i.output)?;
        let v = script::run_step(work, "verify", &env, timeout);
        if v.success {
            let done = if t.reboot {
                JobState::RebootPending
            } else {
                JobState::Succeeded
            };
            return go(done, &v.output);
        }
        format!("verify failed\n{}", v.output)
    } else {
        format!("install failed\n{}", i.output)
    };
    go(JobState::Failed, &failure)?;
    if !work.join("rollback").is_file() {
        return Ok(Some(JobState::Failed));
    }
    go(JobState::RollingBack, "")?;
    let r = script::run_step(work, "rollback", &env, timeout);
    if r.success {
        go(JobState::RolledBack, &r.output)
    } else {
        go(JobState::RollbackFailed, &r.output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(job: &str, state: JobState) -> JobEvent {
        JobEvent {
            job_id: job.into(),
            state,
            at: "2026-11-27T10:00:00Z".parse().unwrap(),
            output: String::new(),
        }
    }

    #[test]
    fn journal_survives_restart_and_torn_lines() {
        let d = tempfile::tempdir().unwrap();
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let mut j = Journal::open(d.path()).unwrap();
        j.record("j-1", JobState::Downloading, now, "").unwrap();
        j.record("j-1", JobState::Downloaded, now, "").unwrap();
        j.mark_reported(&[ev("j-1", JobState::Downloading)])
            .unwrap();
        // A torn line, as a crash mid-write leaves it.
        let p = d.path().join("jobs.jsonl");
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"kind\":\"ev").unwrap();
        drop(f);
        let mut j = Journal::open(d.path()).unwrap();
        let pending = j.pending();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].state, JobState::Downloaded);
        // Interrupted mid-way: closed as failed, once.
        assert_eq!(j.close_interrupted(now).unwrap(), 1);
        assert_eq!(j.close_interrupted(now).unwrap(), 0);
        let j = Journal::open(d.path()).unwrap();
        assert_eq!(j.last_states()["j-1"], JobState::Failed);
        assert_eq!(j.pending().len(), 2);
    }
}
