//! Shared helpers: run the real `patchward` binary, start a server fixture that is killed
//! on drop, and small HTTP helpers.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_patchward");

/// A `patchward` command with the data directory set and the caller's environment
/// cleaned of PATCHWARD_* so the host cannot leak settings into tests.
pub fn patchward(data_dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("PATCHWARD_") {
            c.env_remove(k);
        }
    }
    c.env_remove("NOTIFY_SOCKET").env_remove("JOURNAL_STREAM");
    c.arg("--data-dir").arg(data_dir);
    c
}

/// Runs a command to completion (no stdin, so it cannot wait for input).
pub fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null());
    cmd.output().expect("run patchward")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A running `patchward serve`, killed (SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// The start-up block as printed.
    pub banner: String,
}

impl Server {
    /// Starts `patchward serve --listen 127.0.0.1:0` on `data_dir` and waits (bounded)
    /// for the start-up block.
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, &[])
    }

    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
        let mut cmd = patchward(data_dir);
        cmd.args(extra)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("PATCHWARD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn patchward serve");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut banner = String::new();
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                banner.push_str(&line);
                banner.push('\n');
                if line.contains("stop with Ctrl-C") {
                    let _ = tx.send(banner.clone());
                }
            }
        });
        let banner = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(b) => b,
            Err(_) => {
                let _ = child.kill();
                panic!("patchward serve did not print its start-up block within 20 s");
            }
        };
        let url = banner
            .lines()
            .find_map(|l| l.trim().strip_prefix("listening on"))
            .and_then(|rest| rest.split_whitespace().next())
            .expect("listening line")
            .to_string();
        Server { child, url, banner }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.pid()).unwrap();
        assert!(pid > 1);
        // SAFETY: plain syscall on our own child's pid.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0);
    }

    /// Waits up to `limit` for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The value after `label` in the start-up block.
    pub fn banner_value(&self, label: &str) -> String {
        self.banner
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {label:?} in banner:\n{}", self.banner))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http() -> reqwest::blocking::Client {
    patchward::tls::install_crypto_provider();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}
