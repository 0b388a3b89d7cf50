//! A small static HTTP/1.1 server for a published feed directory, with fault injection,
//! used by the sync tests and the `sync_incremental` benchmark (std only, so the bench
//! can include it with `#[path]`).
//!
//! It serves GET for files under its root, honours `Range: bytes=N-` / `bytes=N-M` with
//! 206 and `Content-Range`, keeps connections alive, and counts what it sent. For paths
//! given a [`Fault`], the first `errors` GETs answer 500 and the next `drops` GETs send
//! headers for the whole (range) response but only half its body, then close the
//! connection. Loopback only; every socket has a read timeout, so nothing hangs.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Faults for one path.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fault {
    /// The first `errors` GETs answer 500.
    pub errors: u32,
    /// The next `drops` GETs send half the body, then close.
    pub drops: u32,
    /// Answer every GET with the whole file (200), ignoring Range, like a server
    /// without Range support.
    pub ignore_range: bool,
}

#[derive(Default)]
struct State {
    faults: Mutex<HashMap<String, Fault>>,
    /// Body bytes written, all paths.
    body_bytes: AtomicU64,
    /// Body bytes written for `blobs/...` paths.
    blob_body_bytes: AtomicU64,
    requests: AtomicU64,
    range_requests: AtomicU64,
    /// Requests for `blobs/...` that carried a Range header.
    blob_range_requests: AtomicU64,
    errors_sent: AtomicU64,
    drops_done: AtomicU64,
}

/// A running server; stops when dropped.
pub struct Upstream {
    pub url: String,
    port: u16,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

/// Counters since start (or the last [`Upstream::reset`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub body_bytes: u64,
    pub blob_body_bytes: u64,
    pub requests: u64,
    pub range_requests: u64,
    pub blob_range_requests: u64,
    pub errors_sent: u64,
    pub drops_done: u64,
}

impl Upstream {
    /// Serves `root` on 127.0.0.1 (a free port).
    pub fn start(root: &Path) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let stop = Arc::new(AtomicBool::new(false));
        let root = root.to_path_buf();
        let (st, sp) = (state.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (st, root) = (st.clone(), root.clone());
                std::thread::spawn(move || {
                    let _ = serve_conn(conn, &root, &st);
                });
            }
        });
        Upstream {
            url: format!("http://127.0.0.1:{port}/"),
            port,
            state,
            stop,
            accept: Some(accept),
        }
    }

    /// Sets the faults for `rel` (e.g. `blobs/sha256/<hex>`).
    pub fn fault(&self, rel: &str, fault: Fault) {
        self.state
            .faults
            .lock()
            .unwrap()
            .insert(rel.to_string(), fault);
    }

    pub fn counters(&self) -> Counters {
        let s = &self.state;
        let g = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Counters {
            body_bytes: g(&s.body_bytes),
            blob_body_bytes: g(&s.blob_body_bytes),
            requests: g(&s.requests),
            range_requests: g(&s.range_requests),
            blob_range_requests: g(&s.blob_range_requests),
            errors_sent: g(&s.errors_sent),
            drops_done: g(&s.drops_done),
        }
    }

    pub fn reset(&self) {
        let s = &self.state;
        for a in [
            &s.body_bytes,
            &s.blob_body_bytes,
            &s.requests,
            &s.range_requests,
            &s.blob_range_requests,
            &s.errors_sent,
            &s.drops_done,
        ] {
            a.store(0, Ordering::SeqCst);
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

enum Action {
    Normal,
    Error,
    Drop,
}

/// What to do with this GET, and whether to ignore its Range header.
fn take_fault(state: &State, rel: &str) -> (Action, bool) {
    let mut faults = state.faults.lock().unwrap();
    let Some(f) = faults.get_mut(rel) else {
        return (Action::Normal, false);
    };
    let action = if f.errors > 0 {
        f.errors -= 1;
        Action::Error
    } else if f.drops > 0 {
        f.drops -= 1;
        Action::Drop
    } else {
        Action::Normal
    };
    (action, f.ignore_range)
}

fn safe_path(root: &Path, rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    if p.components().all(|c| matches!(c, Component::Normal(_))) {
        Some(root.join(p))
    } else {
        None
    }
}

/// `bytes=N-` or `bytes=N-M` -> (start, inclusive end) clipped to `len`.
fn parse_range(v: &str, len: u64) -> Option<(u64, u64)> {
    let spec = v.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end = if b.trim().is_empty() {
        len.checked_sub(1)?
    } else {
        b.trim().parse::<u64>().ok()?.min(len.checked_sub(1)?)
    };
    (start <= end).then_some((start, end))
}

fn serve_conn(conn: TcpStream, root: &Path, state: &State) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    conn.set_write_timeout(Some(Duration::from_secs(30)))?;
    conn.set_nodelay(true)?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut range = None;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("range")
            {
                range = Some(v.trim().to_string());
            }
        }
        state.requests.fetch_add(1, Ordering::SeqCst);
        let rel = target.trim_start_matches('/').to_string();
        let is_blob = rel.starts_with("blobs/");
        if range.is_some() {
            state.range_requests.fetch_add(1, Ordering::SeqCst);
            if is_blob {
                state.blob_range_requests.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = |n: u64| {
            state.body_bytes.fetch_add(n, Ordering::SeqCst);
            if is_blob {
                state.blob_body_bytes.fetch_add(n, Ordering::SeqCst);
            }
        };
        if method != "GET" {
            simple(&mut out, "405 Method Not Allowed", "")?;
            continue;
        }
        let file = safe_path(root, &rel).and_then(|p| std::fs::File::open(p).ok());
        let Some(mut file) = file.filter(|f| f.metadata().map(|m| m.is_file()).unwrap_or(false))
        else {
            simple(&mut out, "404 Not Found", "not found\n")?;
            continue;
        };
        let (action, ignore_range) = take_fault(state, &rel);
        if ignore_range {
            range = None;
        }
        if let Action::Error = action {
            state.errors_sent.fetch_add(1, Ordering::SeqCst);
            let body = "injected failure\n";
            simple(&mut out, "500 Internal Server Error", body)?;
            count(body.len() as u64);
            continue;
        }
        let len = file.metadata()?.len();
        let (status, start, end) = match range.as_deref().map(|r| parse_range(r, len)) {
            None => ("200 OK", 0, len),
            Some(Some((s, e))) => ("206 Partial Content", s, e + 1),
            Some(None) => {
                let head = format!(
                    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\n\r\n"
                );
                out.write_all(head.as_bytes())?;
                continue;
            }
        };
        let n = end - start;
        let mut head =
            format!("HTTP/1.1 {status}\r\nContent-Length: {n}\r\nAccept-Ranges: bytes\r\n");
        if start > 0 || end < len || range.is_some() {
            head.push_str(&format!(
                "Content-Range: bytes {start}-{}/{len}\r\n",
                end.max(1) - 1
            ));
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes())?;
        file.seek(SeekFrom::Start(start))?;
        let send = match action {
            Action::Drop => n / 2,
            _ => n,
        };
        let mut left = send;
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let want = buf.len().min(left as usize);
            let got = file.read(&mut buf[..want])?;
            if got == 0 {
                break;
            }
            out.write_all(&buf[..got])?;
            count(got as u64);
            left -= got as u64;
        }
        out.flush()?;
        if let Action::Drop = action {
            state.drops_done.fetch_add(1, Ordering::SeqCst);
            let _ = out.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

fn simple(out: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
        body.len()
    );
    out.write_all(head.as_bytes())
}
