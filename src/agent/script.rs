//! The `script` install backend: running the `install`, `verify` and optional
//! `backup`, `rollback` and `health` executables of a `.tar.zst` archive (unpacked by
//! [`super::archive`], whose rules `feed add` shares).
//!
//! Each step runs with the extracted directory as working directory, the job's
//! environment (see [`super::step_env`]), a timeout, and its combined output bounded to
//! the last [`MAX_OUTPUT`] bytes.

use std::collections::VecDeque;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub use crate::fleet::jobs::MAX_OUTPUT;

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
