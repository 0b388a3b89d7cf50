//! Running jobs on the agent: ticket checks, artifact checks, the `script` backend,
//! resuming after a crash or a reboot, and the local journal.
//!
//! The journal (`jobs.jsonl` in the state directory) is JSON lines, each fsynced before
//! the step it records continues:
//! - `{"kind":"event", job_id, state, at, output}`: a state the job reached;
//! - `{"kind":"reported", job_id, state}`: the appliance accepted that event;
//! - `{"kind":"refused", job_id, state, reason}`: the appliance refused it for good
//!   (never sent again, kept for the operator);
//! - `{"kind":"closed", job_id, reason}`: the agent stopped tracking a job it had not
//!   started installing, because the appliance no longer offers it (cancelled or
//!   expired there);
//! - `{"kind":"boot", job_id, boot_id}`: the boot a `reboot_pending` job waits to leave;
//! - `{"kind":"reboot_requested", job_id}`: the agent asked the system to reboot;
//! - `{"kind":"step", job_id, step, pid, start_time}`: a step process was started;
//! - `{"kind":"apt_before", job_id, installed}`: package versions before an apt job.
//!
//! Unreported events go with the next check-in. The verified ticket of every job the
//! agent starts is kept under `tickets/<job id>.json`, so a job cut off by a crash is
//! resumed even when the appliance is unreachable or has cancelled it meanwhile:
//! - cut off while downloading: started again if the appliance still offers it,
//!   otherwise closed;
//! - cut off while installing or verifying: a step the dead agent started keeps running
//!   (an agent upgrade must not cut dpkg off), so the agent first waits for it to
//!   exit (same pid and start time, at most the step timeout); then `verify` decides:
//!   if it passes the job succeeded, otherwise it failed and `rollback` runs;
//! - cut off while rolling back: `rollback_failed` (a half-run rollback needs a person);
//! - `reboot_pending`: once the boot id differs from the one recorded, `verify` runs
//!   again and confirms success (or fails and rolls back).
//!
//! The appliance ignores a repeated (job, state), so a crash between its answer and the
//! `reported` line cannot apply an event twice.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::apt;
use super::archive::{self, Limits};
use super::script;
use super::step_env::JobFiles;
use super::{AgentError, AgentState, io_err};
use crate::feed::catalog::{ArtifactFormat, InstallMethod};
use crate::fleet::jobs::{JobEvent, JobState, Ticket};
use crate::trust::dsse::Envelope;
use crate::trust::keys::Ed25519Key;

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    Event(JobEvent),
    Reported {
        job_id: String,
        state: JobState,
    },
    Refused {
        job_id: String,
        state: JobState,
        reason: String,
    },
    Closed {
        job_id: String,
        reason: String,
    },
    Boot {
        job_id: String,
        boot_id: String,
    },
    RebootRequested {
        job_id: String,
    },
    Step {
        job_id: String,
        step: String,
        pid: u32,
        start_time: u64,
    },
    AptBefore {
        job_id: String,
        installed: BTreeMap<String, Option<String>>,
    },
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

    /// Records that `job_id` reached `state`. A state the job already reached is not
    /// recorded twice (a resumed job passes some states again).
    pub fn record(
        &mut self,
        job_id: &str,
        state: JobState,
        at: Timestamp,
        output: &str,
    ) -> Result<(), AgentError> {
        if self.has_event(job_id, state) {
            return Ok(());
        }
        self.append(Line::Event(JobEvent {
            job_id: job_id.to_string(),
            state,
            at,
            output: crate::fleet::jobs::tail(output, script::MAX_OUTPUT).to_string(),
        }))
    }

    fn has_event(&self, job_id: &str, state: JobState) -> bool {
        self.lines
            .iter()
            .any(|l| matches!(l, Line::Event(e) if e.job_id == job_id && e.state == state))
    }

    /// Events not yet accepted (or refused for good) by the appliance, in order.
    pub fn pending(&self) -> Vec<JobEvent> {
        let done: HashSet<(&str, JobState)> = self
            .lines
            .iter()
            .filter_map(|l| match l {
                Line::Reported { job_id, state } | Line::Refused { job_id, state, .. } => {
                    Some((job_id.as_str(), *state))
                }
                _ => None,
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

    /// The appliance refused `job_id`'s pending events for good; they are kept here
    /// and not sent again. Returns how many there were.
    pub fn mark_refused(&mut self, job_id: &str, reason: &str) -> Result<usize, AgentError> {
        let mine: Vec<JobEvent> = self
            .pending()
            .into_iter()
            .filter(|e| e.job_id == job_id)
            .collect();
        for e in &mine {
            self.append(Line::Refused {
                job_id: e.job_id.clone(),
                state: e.state,
                reason: reason.to_string(),
            })?;
        }
        Ok(mine.len())
    }

    /// The last state of every job the journal knows (closed jobs included).
    pub fn last_states(&self) -> BTreeMap<String, JobState> {
        let mut m = BTreeMap::new();
        for l in &self.lines {
            if let Line::Event(e) = l {
                m.insert(e.job_id.clone(), e.state);
            }
        }
        m
    }

    fn is_closed(&self, job_id: &str) -> bool {
        self.lines
            .iter()
            .any(|l| matches!(l, Line::Closed { job_id: j, .. } if j == job_id))
    }

    /// Jobs still the agent's business, with their last state.
    pub fn open_jobs(&self) -> Vec<(String, JobState)> {
        self.last_states()
            .into_iter()
            .filter(|(j, s)| s.is_open() && !self.is_closed(j))
            .collect()
    }

    fn close(&mut self, job_id: &str, reason: &str) -> Result<(), AgentError> {
        self.append(Line::Closed {
            job_id: job_id.to_string(),
            reason: reason.to_string(),
        })
    }

    fn boot_of(&self, job_id: &str) -> Option<&str> {
        self.lines.iter().rev().find_map(|l| match l {
            Line::Boot { job_id: j, boot_id } if j == job_id => Some(boot_id.as_str()),
            _ => None,
        })
    }

    /// The last step process started for `job_id`: (step, pid, start time).
    fn last_step(&self, job_id: &str) -> Option<(&str, u32, u64)> {
        self.lines.iter().rev().find_map(|l| match l {
            Line::Step {
                job_id: j,
                step,
                pid,
                start_time,
            } if j == job_id => Some((step.as_str(), *pid, *start_time)),
            _ => None,
        })
    }

    /// What was installed before an apt job first ran (for its rollback).
    fn apt_before(&self, job_id: &str) -> Option<&BTreeMap<String, Option<String>>> {
        self.lines.iter().find_map(|l| match l {
            Line::AptBefore {
                job_id: j,
                installed,
            } if j == job_id => Some(installed),
            _ => None,
        })
    }

    fn reboot_requested(&self, job_id: &str) -> bool {
        self.lines
            .iter()
            .any(|l| matches!(l, Line::RebootRequested { job_id: j } if j == job_id))
    }
}

/// What the agent does when a job needs a reboot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebootPolicy {
    /// Run this command (program and arguments) once the job's `reboot_pending` has
    /// been reported.
    Command(Vec<String>),
    /// Leave the reboot to the operator; the job stays `reboot_pending` until the host
    /// has booted again.
    Never,
}

impl Default for RebootPolicy {
    /// A one-minute warning to logged-in users, then a clean reboot.
    fn default() -> Self {
        RebootPolicy::Command(
            [
                "shutdown",
                "-r",
                "+1",
                "patchward: rebooting to finish a patch",
            ]
            .map(String::from)
            .to_vec(),
        )
    }
}

/// Where the current boot's identity is read: the kernel's random boot id, which
/// changes on every boot. `PATCHWARD_AGENT_BOOT_ID_FILE` points elsewhere (containers
/// that share the host's boot id, and tests that simulate a reboot).
pub fn current_boot_id() -> String {
    let path = std::env::var_os("PATCHWARD_AGENT_BOOT_ID_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/proc/sys/kernel/random/boot_id"));
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn artifacts_dir(dir: &Path) -> PathBuf {
    dir.join("artifacts")
}

fn tickets_dir(dir: &Path) -> PathBuf {
    dir.join("tickets")
}

/// Keeps the signed ticket of a job the agent starts (atomically), so the job can be
/// resumed without the appliance.
pub fn save_ticket(dir: &Path, job_id: &str, env: &Envelope) -> Result<(), AgentError> {
    let tdir = tickets_dir(dir);
    crate::fsutil::ensure_dir(&tdir, 0o700).map_err(io_err(&tdir))?;
    let p = tdir.join(format!("{job_id}.json"));
    crate::fsutil::write_atomic(&p, &env.to_json(), 0o600).map_err(io_err(&p))
}

/// The kept ticket of `job_id`, verified again against the pinned appliance key.
pub fn load_ticket(
    dir: &Path,
    job_id: &str,
    appliance: &ed25519_dalek::VerifyingKey,
    host_id: &str,
) -> Result<Ticket, String> {
    let p = tickets_dir(dir).join(format!("{job_id}.json"));
    let bytes = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    let env = Envelope::from_json(&bytes).map_err(|e| format!("{}: {e}", p.display()))?;
    let t = crate::fleet::jobs::verify_ticket(&env, appliance, host_id)
        .map_err(|e| format!("{}: {e}", p.display()))?;
    if t.job_id != job_id {
        return Err(format!(
            "{}: the ticket is for job {}",
            p.display(),
            t.job_id
        ));
    }
    Ok(t)
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

/// A progress bar on stderr while downloading, only when stderr is a terminal.
fn progress(name: &str, size: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:24!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("a valid progress template")
        .progress_chars("=> "),
    );
    bar.set_message(name.to_string());
    bar
}

/// Downloads a blob with a signed GET to `dest` (at most `size` + 1 bytes kept). A
/// partial download (`.part`) from an earlier attempt is resumed with a Range request.
fn download(
    st: &AgentState,
    key: &Ed25519Key,
    name: &str,
    sha256: &str,
    size: u64,
    dest: &Path,
) -> Result<(), String> {
    let path = format!("/api/agent/v1/artifacts/sha256/{sha256}");
    let url = super::endpoint(&st.server, &path);
    let part = dest.with_extension("part");
    let have = std::fs::metadata(&part)
        .map(|m| m.len())
        .unwrap_or(0)
        .min(size);
    let client = super::client();
    // Signed afresh for each attempt: a 429 or 503 with Retry-After is waited out.
    let make = || {
        let h = crate::fleet::signing::sign(
            key,
            &st.host_id,
            "GET",
            &path,
            crate::clock::Clock::now(&crate::clock::SystemClock),
            b"",
        );
        let mut req = client.get(&url);
        for (k, v) in h.pairs() {
            req = req.header(k, v);
        }
        if have > 0 && have < size {
            req = req.header("range", format!("bytes={have}-"));
        }
        req
    };
    let resp =
        super::retry::send(make, &mut std::thread::sleep).map_err(|e| format!("GET {url}: {e}"))?;
    let resumed = resp.status() == reqwest::StatusCode::PARTIAL_CONTENT;
    if !resp.status().is_success() {
        let status = resp.status();
        let why = resp
            .json::<serde_json::Value>()
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_default();
        return Err(format!("GET {url}: {status} {why}"));
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(&part)
        .map_err(|e| e.to_string())?;
    let start = if resumed { have } else { 0 };
    let bar = progress(name, size);
    bar.set_position(start);
    let copied = std::io::copy(&mut bar.wrap_read(resp.take(size + 1 - start)), &mut f)
        .map_err(|e| e.to_string());
    bar.finish_and_clear();
    // A partial file is kept for the next attempt; a full one is checked by the caller.
    let synced = f.sync_all().map_err(|e| e.to_string());
    copied.and(synced)?;
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
            download(st, key, &a.name, &a.sha256, a.size, &p)
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

/// Runs jobs for one check-in.
pub struct Runner<'a> {
    pub dir: &'a Path,
    pub st: &'a AgentState,
    pub key: &'a Ed25519Key,
    /// This boot's identity ([`current_boot_id`]).
    pub boot_id: String,
    /// Set when a job ended `reboot_pending` in this boot and asks for a reboot.
    pub reboot_wanted: Option<String>,
}

/// An extracted script archive, removed when dropped.
struct Workdir(PathBuf);

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How a job's steps are carried out.
enum Backend {
    /// The archive's `backup`, `install`, `verify`, `rollback` executables, run with
    /// the job's files and environment.
    Script {
        work: Workdir,
        contents: archive::Contents,
        files: JobFiles,
    },
    /// apt with the pinned versions; `before` is what was installed before the job.
    Apt {
        pins: Vec<apt::Pin>,
        before: BTreeMap<String, Option<String>>,
    },
}

impl Runner<'_> {
    /// Runs one step command, journaling its process before waiting for it.
    fn step_command(
        journal: &mut Journal,
        t: &Ticket,
        name: &str,
        cmd: std::process::Command,
    ) -> Result<script::StepResult, AgentError> {
        let mut failed = None;
        let r = script::run_command(cmd, name, step_timeout(t), &mut |pid| {
            let line = Line::Step {
                job_id: t.job_id.clone(),
                step: name.to_string(),
                pid,
                start_time: script::process_start_time(pid).unwrap_or(0),
            };
            if let Err(e) = journal.append(line) {
                failed = Some(e);
            }
        });
        match failed {
            Some(e) => Err(e),
            None => Ok(r),
        }
    }

    /// Whether the backend has a `step` (`backup`, `rollback`).
    fn has_step(backend: &Backend, step: &str) -> bool {
        match backend {
            Backend::Script { contents, .. } => contents.has(step),
            Backend::Apt { before, .. } => step == "rollback" && !before.is_empty(),
        }
    }

    /// Runs `step` (`backup`, `install`, `verify` or `rollback`) with `backend`.
    fn step(
        journal: &mut Journal,
        backend: &Backend,
        t: &Ticket,
        step: &str,
    ) -> Result<script::StepResult, AgentError> {
        match backend {
            Backend::Script { work, files, .. } => Self::step_command(
                journal,
                t,
                step,
                script::step_command(&work.0, step, &files.vars(step)),
            ),
            Backend::Apt { pins, .. } if step == "install" => {
                let u = Self::step_command(journal, t, step, apt::update_command())?;
                if !u.success {
                    return Ok(script::StepResult {
                        success: false,
                        output: format!("apt-get update failed\n{}", u.output),
                    });
                }
                let mut i = Self::step_command(journal, t, step, apt::install_command(pins))?;
                i.output = format!("{}{}", u.output, i.output);
                Ok(i)
            }
            Backend::Apt { pins, .. } if step == "verify" => Ok(apt::verify(pins)),
            Backend::Apt { before, .. } if step == "rollback" => {
                let mut output = String::new();
                for cmd in apt::rollback_commands(before) {
                    let r = Self::step_command(journal, t, step, cmd)?;
                    output.push_str(&r.output);
                    if !r.success {
                        return Ok(script::StepResult {
                            success: false,
                            output,
                        });
                    }
                }
                Ok(script::StepResult {
                    success: true,
                    output,
                })
            }
            Backend::Apt { .. } => Ok(script::StepResult {
                success: false,
                output: format!("the apt backend has no `{step}` step"),
            }),
        }
    }

    /// Waits for a step a previous agent left running for `job_id`; a note for the
    /// job's output when there was one.
    fn wait_left_behind(journal: &Journal, t: &Ticket) -> String {
        match journal.last_step(&t.job_id) {
            Some((step, pid, start)) if script::wait_for_orphan(pid, start, step_timeout(t)) => {
                format!("waited for `{step}` (pid {pid}) left running by the previous agent; ")
            }
            _ => String::new(),
        }
    }

    /// The checked artifacts of `format`, re-hashed (the cache may have changed).
    fn cached(&self, t: &Ticket, format: ArtifactFormat) -> Result<Vec<PathBuf>, String> {
        t.artifacts
            .iter()
            .filter(|a| a.format == format)
            .map(|a| {
                let path = artifacts_dir(self.dir).join(&a.sha256);
                let (sha, size) =
                    hash_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                if sha != a.sha256 || size != a.size {
                    return Err(format!(
                        "the cached artifact {} no longer matches its ticket",
                        a.name
                    ));
                }
                Ok(path)
            })
            .collect()
    }

    /// Sets up the ticket's backend: extracts the `script` archive to a fresh work
    /// dir, or reads the `deb` artifacts' package pins (and, on a first run, journals
    /// what is installed now, for a rollback).
    fn prepare(
        &self,
        journal: &mut Journal,
        t: &Ticket,
    ) -> Result<Result<Backend, String>, AgentError> {
        Ok(match t.method {
            InstallMethod::Script => self.unpack(t),
            InstallMethod::Apt if t.health_check => Err(
                "the patch's class requires an application health check, which only a \
                 `script` patch can carry (its `health` executable); nothing was installed. \
                 Publish it as a script patch, or set [policy.classes.application] \
                 health_check = false on the appliance"
                    .into(),
            ),
            InstallMethod::Apt => {
                let pins = match self.cached(t, ArtifactFormat::Deb).and_then(|debs| {
                    apt::pins(&debs.iter().map(PathBuf::as_path).collect::<Vec<_>>())
                }) {
                    Ok(p) => p,
                    Err(why) => return Ok(Err(why)),
                };
                let before = match journal.apt_before(&t.job_id) {
                    Some(b) => b.clone(),
                    // A rollback job restores what was there before the job it undoes.
                    None if t.rollback_of.is_some() => {
                        let orig = t.rollback_of.as_deref().unwrap_or_default();
                        match journal.apt_before(orig) {
                            Some(b) => b.clone(),
                            None => {
                                return Ok(Err(format!(
                                    "this host's journal has no record of the versions before \
                                     job {orig}; nothing was changed, downgrade by hand"
                                )));
                            }
                        }
                    }
                    None => match apt::snapshot(&pins) {
                        Ok(b) => {
                            journal.append(Line::AptBefore {
                                job_id: t.job_id.clone(),
                                installed: b.clone(),
                            })?;
                            b
                        }
                        Err(why) => return Ok(Err(why)),
                    },
                };
                Ok(Backend::Apt { pins, before })
            }
        })
    }

    /// Unpacks the ticket's script archive (checked as `feed add` checks it) and lays
    /// out the job's artifacts for its steps.
    fn unpack(&self, t: &Ticket) -> Result<Backend, String> {
        let archive = self.cached(t, ArtifactFormat::Script)?;
        let path = match archive.as_slice() {
            [one] => one,
            [] => return Err("the ticket has no `script` artifact".into()),
            _ => return Err("the ticket has more than one `script` artifact".into()),
        };
        let work_root = self.dir.join("work");
        crate::fsutil::ensure_dir(&work_root, 0o700).map_err(|e| e.to_string())?;
        let work = Workdir(work_root.join(&t.job_id));
        if work.0.exists() {
            std::fs::remove_dir_all(&work.0).map_err(|e| e.to_string())?;
        }
        let contents = archive::extract(path, &work.0, Limits::default())
            .map_err(|e| format!("unsafe or unreadable archive: {e}"))?;
        contents
            .require_steps(&["install", "verify"])
            .and_then(|()| contents.check_present_steps())
            .map_err(|e| e.to_string())?;
        if t.health_check && !contents.has("health") {
            return Err(
                "the patch's class requires an application health check, but the archive \
                 has no `health` executable"
                    .into(),
            );
        }
        let files = JobFiles::create(&work_root, &artifacts_dir(self.dir), t)?;
        Ok(Backend::Script {
            work,
            contents,
            files,
        })
    }

    /// Runs a verified, newly offered ticket to a final (or `reboot_pending`) state,
    /// journaling every transition. Returns the last state, or `None` when its window
    /// has not opened yet.
    pub fn run(
        &mut self,
        journal: &mut Journal,
        env: &Envelope,
        t: &Ticket,
        now: &dyn Fn() -> Timestamp,
    ) -> Result<Option<JobState>, AgentError> {
        let start = now();
        if t.not_before.is_some_and(|nb| start < nb) {
            return Ok(None);
        }
        if t.latest_start.is_some_and(|ls| start > ls) {
            journal.record(
                &t.job_id,
                JobState::Expired,
                now(),
                "the window closed before the job started",
            )?;
            return Ok(Some(JobState::Expired));
        }
        save_ticket(self.dir, &t.job_id, env)?;
        self.download_and_install(journal, t, now)
    }

    fn download_and_install(
        &mut self,
        journal: &mut Journal,
        t: &Ticket,
        now: &dyn Fn() -> Timestamp,
    ) -> Result<Option<JobState>, AgentError> {
        let id = t.job_id.as_str();
        journal.record(id, JobState::Downloading, now(), "")?;
        if let Err(why) = check_artifacts(self.dir, self.st, self.key, t) {
            return fail(journal, id, now(), &why);
        }
        journal.record(id, JobState::Downloaded, now(), "")?;
        let backend = match self.prepare(journal, t)? {
            Ok(b) => b,
            Err(why) => return fail(journal, id, now(), &why),
        };
        if let Some(orig) = &t.rollback_of {
            return self.roll_back_installed(journal, &backend, t, now, orig);
        }
        if t.needs_backup {
            if !Self::has_step(&backend, "backup") {
                return fail(
                    journal,
                    id,
                    now(),
                    "the patch needs a backup but has no `backup` step; not installed",
                );
            }
            let b = Self::step(journal, &backend, t, "backup")?;
            if !b.success {
                return fail(
                    journal,
                    id,
                    now(),
                    &format!("backup failed; not installed\n{}", b.output),
                );
            }
        }
        journal.record(id, JobState::Installing, now(), "")?;
        let i = Self::step(journal, &backend, t, "install")?;
        if !i.success {
            let why = format!("install failed\n{}", i.output);
            return self.fail_and_roll_back(journal, &backend, t, now, &why);
        }
        journal.record(id, JobState::Verifying, now(), &i.output)?;
        self.verify(journal, &backend, t, now, "")
    }

    /// Runs `verify`; success ends the job (`reboot_pending` first when it reboots).
    fn verify(
        &mut self,
        journal: &mut Journal,
        backend: &Backend,
        t: &Ticket,
        now: &dyn Fn() -> Timestamp,
        note: &str,
    ) -> Result<Option<JobState>, AgentError> {
        let v = Self::step(journal, backend, t, "verify")?;
        if !v.success {
            let why = format!("{note}verify failed\n{}", v.output);
            return self.fail_and_roll_back(journal, backend, t, now, &why);
        }
        let mut output = format!("{note}{}", v.output);
        let confirming = journal.last_states().get(&t.job_id) == Some(&JobState::RebootPending);
        if t.reboot && !confirming {
            journal.append(Line::Boot {
                job_id: t.job_id.clone(),
                boot_id: self.boot_id.clone(),
            })?;
            journal.record(&t.job_id, JobState::RebootPending, now(), &output)?;
            self.reboot_wanted = Some(t.job_id.clone());
            return Ok(Some(JobState::RebootPending));
        }
        if t.health_check {
            // After the reboot, for patches that reboot: the application as it will run.
            let h = Self::step(journal, backend, t, "health")?;
            if !h.success {
                let why = format!("{output}application health check failed\n{}", h.output);
                return self.fail_and_roll_back(journal, backend, t, now, &why);
            }
            output.push_str(&h.output);
        }
        journal.record(&t.job_id, JobState::Succeeded, now(), &output)?;
        Ok(Some(JobState::Succeeded))
    }

    /// A rollback job: undoes what job `orig` installed, with the patch's own rollback.
    fn roll_back_installed(
        &mut self,
        journal: &mut Journal,
        backend: &Backend,
        t: &Ticket,
        now: &dyn Fn() -> Timestamp,
        orig: &str,
    ) -> Result<Option<JobState>, AgentError> {
        let id = t.job_id.as_str();
        if !Self::has_step(backend, "rollback") {
            return fail(
                journal,
                id,
                now(),
                &format!(
                    "the patch has no rollback (no `rollback` executable, or no versions \
                     recorded before job {orig}); nothing was changed, undo it by hand"
                ),
            );
        }
        journal.record(
            id,
            JobState::RollingBack,
            now(),
            &format!("undoing job {orig}"),
        )?;
        let r = Self::step(journal, backend, t, "rollback")?;
        let to = if r.success {
            JobState::RolledBack
        } else {
            JobState::RollbackFailed
        };
        journal.record(id, to, now(), &r.output)?;
        Ok(Some(to))
    }

    fn fail_and_roll_back(
        &mut self,
        journal: &mut Journal,
        backend: &Backend,
        t: &Ticket,
        now: &dyn Fn() -> Timestamp,
        why: &str,
    ) -> Result<Option<JobState>, AgentError> {
        let id = t.job_id.as_str();
        journal.record(id, JobState::Failed, now(), why)?;
        if !Self::has_step(backend, "rollback") {
            return Ok(Some(JobState::Failed));
        }
        journal.record(id, JobState::RollingBack, now(), "")?;
        let r = Self::step(journal, backend, t, "rollback")?;
        let to = if r.success {
            JobState::RolledBack
        } else {
            JobState::RollbackFailed
        };
        journal.record(id, to, now(), &r.output)?;
        Ok(Some(to))
    }

    /// Carries on with a job the journal has open (`state`) after a crash, a kill or a
    /// reboot. `offered` is the appliance's current ticket when it still offers the
    /// job; the kept ticket is used otherwise. Returns the new state (`None`: nothing
    /// to do yet).
    pub fn resume(
        &mut self,
        journal: &mut Journal,
        job_id: &str,
        state: JobState,
        offered: Option<&Ticket>,
        appliance: &ed25519_dalek::VerifyingKey,
        now: &dyn Fn() -> Timestamp,
    ) -> Result<Option<JobState>, AgentError> {
        let kept = load_ticket(self.dir, job_id, appliance, &self.st.host_id);
        let ticket = match (offered, &kept) {
            (Some(t), _) => t.clone(),
            (None, Ok(t)) => t.clone(),
            (None, Err(why)) => {
                // Without a ticket nothing can be checked or run.
                let to = if state == JobState::RollingBack {
                    JobState::RollbackFailed
                } else {
                    JobState::Failed
                };
                let why = format!("cannot resume: the job's ticket is unusable ({why})");
                journal.record(job_id, to, now(), &why)?;
                return Ok(Some(to));
            }
        };
        let t = &ticket;
        match state {
            JobState::Offered | JobState::Downloading | JobState::Downloaded => {
                if offered.is_none() {
                    journal.close(
                        job_id,
                        "the appliance no longer offers this job (cancelled or expired there); \
                         it was not installed",
                    )?;
                    return Ok(None);
                }
                self.download_and_install(journal, t, now)
            }
            JobState::Installing | JobState::Verifying => {
                let waited = Self::wait_left_behind(journal, t);
                let note = format!("resumed after the agent stopped while {state}: {waited}");
                if let Err(why) = check_artifacts(self.dir, self.st, self.key, t) {
                    return fail(journal, job_id, now(), &format!("{note}{why}"));
                }
                let backend = match self.prepare(journal, t)? {
                    Ok(b) => b,
                    Err(why) => return fail(journal, job_id, now(), &format!("{note}{why}")),
                };
                journal.record(job_id, JobState::Verifying, now(), &note)?;
                self.verify(journal, &backend, t, now, &note)
            }
            JobState::RollingBack => {
                let waited = Self::wait_left_behind(journal, t);
                journal.record(
                    job_id,
                    JobState::RollbackFailed,
                    now(),
                    &format!(
                        "the agent stopped while rolling back; {waited}the rollback's outcome \
                         is unknown and it is not repeated, check the host"
                    ),
                )?;
                Ok(Some(JobState::RollbackFailed))
            }
            JobState::RebootPending => {
                let booted_in = journal.boot_of(job_id).unwrap_or_default();
                if booted_in == self.boot_id && !booted_in.is_empty() {
                    return Ok(None);
                }
                let note = "confirmed after reboot: ".to_string();
                if let Err(why) = check_artifacts(self.dir, self.st, self.key, t) {
                    return fail(journal, job_id, now(), &format!("{note}{why}"));
                }
                let backend = match self.prepare(journal, t)? {
                    Ok(b) => b,
                    Err(why) => return fail(journal, job_id, now(), &format!("{note}{why}")),
                };
                self.verify(journal, &backend, t, now, &note)
            }
            JobState::Succeeded
            | JobState::Failed
            | JobState::RolledBack
            | JobState::RollbackFailed
            | JobState::Expired
            | JobState::Cancelled => Ok(None),
        }
    }

    /// Asks the system to reboot for `job_id` (once per job), after its
    /// `reboot_pending` was reported.
    pub fn request_reboot(
        journal: &mut Journal,
        job_id: &str,
        policy: &RebootPolicy,
    ) -> Result<String, AgentError> {
        if journal.reboot_requested(job_id) {
            return Ok(format!(
                "job {job_id}: waiting for the reboot already requested"
            ));
        }
        let RebootPolicy::Command(cmd) = policy else {
            return Ok(format!(
                "job {job_id}: reboot_pending; reboot this host to finish it (the agent \
                 was told not to reboot)"
            ));
        };
        let Some((prog, args)) = cmd.split_first() else {
            return Ok(format!("job {job_id}: no reboot command configured"));
        };
        journal.append(Line::RebootRequested {
            job_id: job_id.to_string(),
        })?;
        let out = std::process::Command::new(prog)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output();
        Ok(match out {
            Ok(o) if o.status.success() => {
                format!("job {job_id}: reboot requested ({})", cmd.join(" "))
            }
            Ok(o) => format!(
                "job {job_id}: the reboot command `{}` failed ({}): {}; reboot this host to \
                 finish the job",
                cmd.join(" "),
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!(
                "job {job_id}: cannot run the reboot command `{}`: {e}; reboot this host to \
                 finish the job",
                cmd.join(" ")
            ),
        })
    }
}

fn fail(
    journal: &mut Journal,
    job_id: &str,
    at: Timestamp,
    why: &str,
) -> Result<Option<JobState>, AgentError> {
    journal.record(job_id, JobState::Failed, at, why)?;
    Ok(Some(JobState::Failed))
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
        // A state already reached is not recorded twice.
        j.record("j-1", JobState::Downloading, now, "again")
            .unwrap();
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
        assert_eq!(j.open_jobs(), [("j-1".to_string(), JobState::Downloaded)]);
        // Refused for good: not pending any more, never sent again.
        assert_eq!(j.mark_refused("j-1", "illegal").unwrap(), 1);
        assert!(j.pending().is_empty());
        // Closed: no longer open.
        j.close("j-1", "gone").unwrap();
        let j = Journal::open(d.path()).unwrap();
        assert!(j.open_jobs().is_empty());
        assert!(j.pending().is_empty());
        assert_eq!(j.last_states()["j-1"], JobState::Downloaded);
    }
}
