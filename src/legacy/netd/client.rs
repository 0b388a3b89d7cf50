//! The appliance's side of `patchward-netd`: what the unprivileged daemon calls.
//!
//! Blocking (call it from a blocking thread): one connection per request, like the
//! helper serves them. When the helper is not there, the error says so plainly and names
//! what still works, because a site in `export` mode never runs it.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{BlockedFlow, Counter, Request, Response};

/// Applying 1,000 hosts takes well under a second; this bounds a hung helper.
const TIMEOUT: Duration = Duration::from_secs(60);
/// An answer longer than this is not from the helper.
const MAX_ANSWER_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum NetdError {
    #[error(
        "patchward-netd is not running (socket {} {why}): segmentation cannot be applied; `patchward legacy segment export` still works",
        path.display()
    )]
    NotRunning { path: PathBuf, why: &'static str },
    #[error(
        "cannot connect to patchward-netd at {}: {cause} (the account must be root or in group patchward)",
        path.display()
    )]
    Connect { path: PathBuf, cause: io::Error },
    #[error("talking to patchward-netd at {}: {cause}", path.display())]
    Io { path: PathBuf, cause: io::Error },
    #[error("patchward-netd: {0}")]
    Refused(String),
    #[error("patchward-netd answered something unexpected: {0}")]
    Protocol(String),
}

/// The outcome of an apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// False when this exact ruleset was already applied.
    pub changed: bool,
    pub sha256: String,
}

/// The table's counters and the blocked flows it remembers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counters {
    pub counters: Vec<Counter>,
    pub blocked: Vec<BlockedFlow>,
}

/// The applied table as the kernel lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub text: Option<String>,
    pub sha256: Option<String>,
}

pub fn apply(socket: &Path, ruleset: &str) -> Result<Applied, NetdError> {
    let req = Request::Apply {
        ruleset: ruleset.to_string(),
    };
    match request(socket, &req)? {
        Response::Applied { changed, sha256 } => Ok(Applied { changed, sha256 }),
        other => Err(unexpected(other)),
    }
}

pub fn counters(socket: &Path) -> Result<Counters, NetdError> {
    match request(socket, &Request::Counters)? {
        Response::Counters { counters, blocked } => Ok(Counters { counters, blocked }),
        other => Err(unexpected(other)),
    }
}

pub fn show(socket: &Path) -> Result<Table, NetdError> {
    match request(socket, &Request::Show)? {
        Response::Table { text, sha256 } => Ok(Table { text, sha256 }),
        other => Err(unexpected(other)),
    }
}

fn unexpected(r: Response) -> NetdError {
    match r {
        Response::Error { message } => NetdError::Refused(message),
        other => NetdError::Protocol(format!("{other:?}")),
    }
}

/// One request, one answer.
pub fn request(socket: &Path, req: &Request) -> Result<Response, NetdError> {
    let path = socket.to_path_buf();
    let mut stream = UnixStream::connect(socket).map_err(|cause| match cause.kind() {
        io::ErrorKind::NotFound => NetdError::NotRunning {
            path: path.clone(),
            why: "missing",
        },
        io::ErrorKind::ConnectionRefused => NetdError::NotRunning {
            path: path.clone(),
            why: "has no listener",
        },
        _ => NetdError::Connect {
            path: path.clone(),
            cause,
        },
    })?;
    let io_err = |cause| NetdError::Io {
        path: path.clone(),
        cause,
    };
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io_err)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io_err)?;
    let mut line = serde_json::to_vec(req).map_err(|e| NetdError::Protocol(e.to_string()))?;
    line.push(b'\n');
    // If the helper answered early (a refusal) and closed, the write fails but its
    // answer may still be there to read: that answer is the better error.
    let sent = stream.write_all(&line);
    let mut answer = Vec::new();
    let read =
        BufReader::new(io::Read::take(&stream, MAX_ANSWER_BYTES)).read_until(b'\n', &mut answer);
    if answer.is_empty() {
        sent.map_err(io_err)?;
        read.map_err(io_err)?;
        return Err(NetdError::Protocol(
            "the connection closed without an answer".into(),
        ));
    }
    serde_json::from_slice(&answer).map_err(|e| NetdError::Protocol(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_socket_says_the_helper_is_not_running_and_export_still_works() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netd.sock");
        let err = counters(&path).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "patchward-netd is not running (socket {} missing): segmentation cannot be applied; `patchward legacy segment export` still works",
                path.display()
            )
        );
        // A stale socket file without a listener.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let err = apply(&path, "table inet patchward { }")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("has no listener): segmentation cannot be applied"),
            "{err}"
        );
    }

    #[test]
    fn the_helper_s_error_becomes_a_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netd.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).unwrap();
            assert_eq!(line, "{\"op\":\"show\"}\n");
            (&s).write_all(b"{\"status\":\"error\",\"message\":\"refused: no\"}\n")
                .unwrap();
        });
        let err = show(&path).unwrap_err().to_string();
        server.join().unwrap();
        assert_eq!(err, "patchward-netd: refused: no");
    }
}
