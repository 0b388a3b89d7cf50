//! The `script` install backend: a `.tar.zst` archive with `install`, `verify` and
//! optional `backup` and `rollback` executables plus payload.
//!
//! Extraction is hostile-input safe (the archive was hash-checked against a signed
//! ticket, but a feed's content is still not trusted to touch anything outside its own
//! directory): only regular files and directories, relative paths without `..`, no
//! links or devices, no duplicates, and caps on entries and bytes. Each step runs with
//! the extracted directory as working directory, a timeout, and its combined output
//! bounded to the last [`MAX_OUTPUT`] bytes.

use std::collections::{HashSet, VecDeque};
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tar::EntryType;

pub use crate::fleet::jobs::MAX_OUTPUT;

/// Caps on an archive's extracted content.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_entries: usize,
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 10_000,
            max_bytes: 2 << 30,
        }
    }
}

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("archive entry {name:?}: {reason}")]
    Entry { name: String, reason: String },
    #[error("the archive holds more than {0} entries")]
    TooManyEntries(usize),
    #[error("the archive unpacks to more than {0} bytes")]
    TooLarge(u64),
    #[error("cannot read the archive: {0}")]
    Io(io::Error),
}

// The cause is part of the message above, so it is not also exposed as `source()`
// (a chain printer would name it twice); hence these by hand instead of `#[from]`.
impl From<io::Error> for ExtractError {
    fn from(e: io::Error) -> Self {
        ExtractError::Io(e)
    }
}

fn refuse(name: &str, reason: impl Into<String>) -> ExtractError {
    ExtractError::Entry {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// A safe relative path for `raw`, or why not.
fn safe_path(raw: &[u8]) -> Result<PathBuf, ExtractError> {
    let name = String::from_utf8_lossy(raw).into_owned();
    let s = std::str::from_utf8(raw).map_err(|_| refuse(&name, "name is not UTF-8"))?;
    if s.is_empty() || s.contains('\0') {
        return Err(refuse(&name, "empty name"));
    }
    if s.starts_with('/') {
        return Err(refuse(&name, "absolute path"));
    }
    let mut out = PathBuf::new();
    for c in Path::new(s).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err(refuse(&name, "path contains `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(refuse(&name, "absolute path"));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(refuse(&name, "empty name"));
    }
    Ok(out)
}

/// Extracts the zstd-compressed tar `archive` into `dest`, which must not exist yet.
pub fn extract(archive: &Path, dest: &Path, limits: Limits) -> Result<(), ExtractError> {
    let file = std::fs::File::open(archive)?;
    let decoder = zstd::Decoder::new(file)?;
    // Headers add at most 1.5 KiB per entry on top of the content.
    let raw_cap = limits.max_bytes + (limits.max_entries as u64 + 2) * 1536;
    let mut ar = tar::Archive::new(decoder.take(raw_cap));
    std::fs::create_dir(dest)?;
    let mut seen = HashSet::new();
    let mut total = 0u64;
    for (n, entry) in ar.entries()?.enumerate() {
        if n >= limits.max_entries {
            return Err(ExtractError::TooManyEntries(limits.max_entries));
        }
        let mut entry = entry?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let rel = safe_path(&raw)?;
        let kind = entry.header().entry_type();
        let what = match kind {
            EntryType::Regular | EntryType::Directory => None,
            EntryType::Link => Some("hard link"),
            EntryType::Symlink => Some("symbolic link"),
            EntryType::Char => Some("character device"),
            EntryType::Block => Some("block device"),
            EntryType::Fifo => Some("fifo"),
            _ => Some("unsupported entry type"),
        };
        if let Some(w) = what {
            return Err(refuse(&name, format!("{w}s are not allowed")));
        }
        if !seen.insert(rel.clone()) {
            return Err(refuse(&name, "duplicate entry"));
        }
        let target = dest.join(&rel);
        if kind == EntryType::Directory {
            std::fs::create_dir_all(&target)?;
            continue;
        }
        let size = entry.header().size()?;
        total = total.saturating_add(size);
        if total > limits.max_bytes {
            return Err(ExtractError::TooLarge(limits.max_bytes));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let executable = entry.header().mode().is_ok_and(|m| m & 0o111 != 0);
        let mode = if executable { 0o755 } else { 0o644 };
        let mut out = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&target)
                .map_err(|e| refuse(&name, e.to_string()))?
        };
        let copied = io::copy(&mut (&mut entry).take(size), &mut out)?;
        if copied != size {
            return Err(refuse(&name, "truncated"));
        }
        out.sync_all()?;
    }
    Ok(())
}

/// The outcome of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    pub success: bool,
    /// The last `MAX_OUTPUT` bytes of stdout and stderr, interleaved as read.
    pub output: String,
}

type Ring = Arc<Mutex<VecDeque<u8>>>;

fn pump(mut r: impl Read + Send + 'static, ring: Ring, done: mpsc::Sender<()>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut q = ring.lock().unwrap_or_else(|p| p.into_inner());
            q.extend(&buf[..n]);
            let excess = q.len().saturating_sub(MAX_OUTPUT);
            q.drain(..excess);
        }
        let _ = done.send(());
    });
}

/// The command for step `dir/step`: `dir` as working directory, `env` added, stdin
/// from /dev/null.
pub fn step_command(dir: &Path, step: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(dir.join(step));
    cmd.current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `dir/step` (see [`step_command`]), killing it after `timeout`.
pub fn run_step(
    dir: &Path,
    step: &str,
    env: &[(&str, &str)],
    timeout: Duration,
    started: &mut dyn FnMut(u32),
) -> StepResult {
    run_command(step_command(dir, step, env), step, timeout, started)
}

/// Runs `cmd` with output captured (the last [`MAX_OUTPUT`] bytes), killing its whole
/// process group after `timeout`. `started` gets the pid once it runs. A command that
/// cannot start is a failure with the reason as output; `step` names it in notes.
pub fn run_command(
    mut cmd: Command,
    step: &str,
    timeout: Duration,
    started: &mut dyn FnMut(u32),
) -> StepResult {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The step leads its own process group, so a timeout stops everything it started.
    // It outlives a killed or restarted agent on purpose (an agent upgrade must not
    // cut dpkg off halfway); the resumed agent waits for it (see `wait_for_orphan`).
    cmd.process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return StepResult {
                success: false,
                output: format!("[patchward-agent: cannot start {step}: {e}]"),
            };
        }
    };
    started(child.id());
    let ring: Ring = Arc::default();
    let (tx, rx) = mpsc::channel();
    if let Some(o) = child.stdout.take() {
        pump(o, ring.clone(), tx.clone());
    }
    if let Some(e) = child.stderr.take() {
        pump(e, ring.clone(), tx.clone());
    }
    drop(tx);
    let start = Instant::now();
    let (status, note) = loop {
        match child.try_wait() {
            Ok(Some(s)) => break (Some(s), None),
            Ok(None) if start.elapsed() >= timeout => {
                if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                break (
                    None,
                    Some(format!("timed out after {} s; killed", timeout.as_secs())),
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => break (None, Some(format!("cannot wait for {step}: {e}"))),
        }
    };
    // A background process may hold the pipes open: wait a little, not forever.
    let grace = Instant::now() + Duration::from_secs(2);
    for _ in 0..2 {
        let left = grace.saturating_duration_since(Instant::now());
        if rx.recv_timeout(left).is_err() {
            break;
        }
    }
    let bytes: Vec<u8> = ring
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .copied()
        .collect();
    let mut output = String::from_utf8_lossy(&bytes).into_owned();
    let success = status.is_some_and(|s| s.success());
    match (status, note) {
        (_, Some(n)) => output.push_str(&format!("\n[patchward-agent: {step} {n}]")),
        (Some(s), None) if !s.success() => {
            output.push_str(&format!("\n[patchward-agent: {step} exited with {s}]"))
        }
        _ => {}
    }
    StepResult {
        success,
        output: crate::fleet::jobs::tail(&output, MAX_OUTPUT).to_string(),
    }
}

/// The start time (clock ticks since boot, `/proc/<pid>/stat` field 22) of a live,
/// non-zombie process, which tells a process from a later one that reused its pid.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ...`: comm may hold spaces and parentheses; split at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Waits until the step process `pid` (started at `start_time`) left behind by an
/// earlier agent has exited, at most `limit`; then its whole process group is killed.
/// Returns whether it was still running when the agent came back.
pub fn wait_for_orphan(pid: u32, start_time: u64, limit: Duration) -> bool {
    let alive = || process_start_time(pid) == Some(start_time);
    if !alive() {
        return false;
    }
    let deadline = Instant::now() + limit;
    while alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if alive()
        && let Some(p) = rustix::process::Pid::from_raw(pid as i32)
    {
        let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
    }
    true
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a `.tar.zst` from `(name, mode, content)` regular files.
    pub(crate) fn archive(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, mode, content) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(content.len() as u64);
            h.set_mode(*mode);
            h.set_entry_type(EntryType::Regular);
            b.append_data(&mut h, name, *content).unwrap();
        }
        zstd::encode_all(&b.into_inner().unwrap()[..], 3).unwrap()
    }

    /// A raw tar with one entry whose name and type are set byte by byte (the `tar`
    /// builder refuses `..` and absolute names).
    fn raw_entry(name: &[u8], kind: EntryType, link: &[u8], content: &[u8]) -> Vec<u8> {
        let mut h = tar::Header::new_old();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name);
            old.linkname[..link.len()].copy_from_slice(link);
        }
        h.set_mode(0o644);
        h.set_size(content.len() as u64);
        h.set_entry_type(kind);
        h.set_cksum();
        let mut v = h.as_bytes().to_vec();
        v.extend_from_slice(content);
        v.resize(v.len().div_ceil(512) * 512, 0);
        v.extend_from_slice(&[0u8; 1024]);
        zstd::encode_all(&v[..], 3).unwrap()
    }

    fn try_extract(bytes: &[u8], limits: Limits) -> (tempfile::TempDir, Result<(), ExtractError>) {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.tar.zst");
        std::fs::write(&a, bytes).unwrap();
        let r = extract(&a, &d.path().join("out"), limits);
        (d, r)
    }

    #[test]
    fn extracts_regular_files_with_modes() {
        let a = archive(&[
            ("install", 0o755, b"#!/bin/sh\necho hi\n"),
            ("payload/data.txt", 0o600, b"x"),
        ]);
        let (d, r) = try_extract(&a, Limits::default());
        r.unwrap();
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(d.path().join("out/install")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o755);
        assert_eq!(
            std::fs::read(d.path().join("out/payload/data.txt")).unwrap(),
            b"x"
        );
    }

    #[test]
    fn hostile_archives_are_refused() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "absolute path",
                raw_entry(b"/tmp/evil", EntryType::Regular, b"", b"x"),
            ),
            (
                "`..`",
                raw_entry(b"a/../../evil", EntryType::Regular, b"", b"x"),
            ),
            (
                "symbolic link",
                raw_entry(b"ln", EntryType::Symlink, b"/etc/passwd", b""),
            ),
            (
                "hard link",
                raw_entry(b"hl", EntryType::Link, b"/etc/passwd", b""),
            ),
            (
                "character device",
                raw_entry(b"dev", EntryType::Char, b"", b""),
            ),
            (
                "block device",
                raw_entry(b"blk", EntryType::Block, b"", b""),
            ),
            ("fifo", raw_entry(b"fifo", EntryType::Fifo, b"", b"")),
            (
                "duplicate",
                archive(&[("install", 0o755, b"a"), ("./install", 0o755, b"b")]),
            ),
        ];
        for (want, bytes) in cases {
            let (d, r) = try_extract(&bytes, Limits::default());
            let e = r.unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
            assert!(!Path::new("/tmp/evil").exists());
            assert!(!d.path().join("evil").exists());
        }
        let big = archive(&[("a", 0o644, &[0u8; 4096]), ("b", 0o644, &[0u8; 4096])]);
        let small = Limits {
            max_entries: 10,
            max_bytes: 5000,
        };
        let e = try_extract(&big, small).1.unwrap_err();
        assert!(matches!(e, ExtractError::TooLarge(_)), "{e}");
        let few = Limits {
            max_entries: 1,
            max_bytes: 1 << 20,
        };
        let e = try_extract(&big, few).1.unwrap_err();
        assert!(matches!(e, ExtractError::TooManyEntries(_)), "{e}");
        // Not zstd at all.
        assert!(try_extract(b"not an archive", Limits::default()).1.is_err());
    }

    fn script(dir: &Path, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn steps_capture_bounded_output_and_time_out() {
        let d = tempfile::tempdir().unwrap();
        script(d.path(), "ok", "echo out; echo err >&2; echo $PW_X");
        script(d.path(), "bad", "echo nope; exit 3");
        script(
            d.path(),
            "loud",
            "head -c 200000 /dev/zero | tr '\\0' x; echo END",
        );
        script(d.path(), "slow", "sleep 30");
        let t = Duration::from_secs(20);
        let r = run_step(d.path(), "ok", &[("PW_X", "env-ok")], t, &mut |_| {});
        assert!(r.success, "{r:?}");
        assert!(r.output.contains("out") && r.output.contains("err"));
        assert!(r.output.contains("env-ok"));
        let r = run_step(d.path(), "bad", &[], t, &mut |_| {});
        assert!(!r.success);
        assert!(
            r.output.contains("nope") && r.output.contains("exited"),
            "{r:?}"
        );
        let r = run_step(d.path(), "loud", &[], t, &mut |_| {});
        assert!(r.success);
        assert!(r.output.len() <= MAX_OUTPUT);
        assert!(r.output.ends_with("END\n"));
        let start = Instant::now();
        let r = run_step(
            d.path(),
            "slow",
            &[],
            Duration::from_millis(300),
            &mut |_| {},
        );
        assert!(!r.success);
        assert!(r.output.contains("timed out"), "{r:?}");
        assert!(start.elapsed() < Duration::from_secs(10));
        let r = run_step(d.path(), "missing", &[], t, &mut |_| {});
        assert!(!r.success && r.output.contains("cannot start"));
    }

    #[test]
    fn a_step_left_running_is_waited_for_and_a_reused_pid_is_not() {
        let mut child = Command::new("sleep").arg("0.4").spawn().unwrap();
        let pid = child.id();
        let start = process_start_time(pid).unwrap();
        // Another start time is another process: not waited for.
        assert!(!wait_for_orphan(pid, start + 1, Duration::from_secs(5)));
        let t = Instant::now();
        // (Reaped by the waiter thread below so the zombie goes away.)
        let reaper = std::thread::spawn(move || child.wait());
        assert!(wait_for_orphan(pid, start, Duration::from_secs(5)));
        assert!(
            t.elapsed() >= Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );
        reaper.join().unwrap().unwrap();
        assert!(!wait_for_orphan(pid, start, Duration::from_secs(5)));
        // Past the limit the step's process group is killed.
        let mut cmd = Command::new("sleep");
        cmd.arg("30").process_group(0);
        let mut child = cmd.spawn().unwrap();
        let pid = child.id();
        let start = process_start_time(pid).unwrap();
        let reaper = std::thread::spawn(move || child.wait());
        let t = Instant::now();
        assert!(wait_for_orphan(pid, start, Duration::from_millis(300)));
        let status = reaper.join().unwrap().unwrap();
        assert!(!status.success());
        assert!(t.elapsed() < Duration::from_secs(10));
    }
}
