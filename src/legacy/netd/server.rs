//! The helper's accept loop: one request per connection, one at a time.
//!
//! Requests are served in order on one thread, so two applies never interleave and a
//! `counters` never sees half a table. Each connection has a read and write timeout, and
//! a request line is read to at most `MAX_REQUEST_BYTES`, so a stuck or hostile client
//! holds the helper for seconds, not forever. Every refusal happens before `nft` runs.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::nft_cmd::{self, Nft};
use super::peer::{self, AllowedGroup};
use super::validate::validate;
use super::{MAX_REQUEST_BYTES, Request, Response};

/// How the helper runs.
#[derive(Clone, Debug)]
pub struct Config {
    pub nft: Nft,
    pub group: AllowedGroup,
    /// Per connection, for reading the request and writing the answer.
    pub io_timeout: Duration,
}

/// The listening socket systemd passed (`LISTEN_FDS=1`, fd 3), if it passed one.
pub fn listener_from_systemd() -> Option<io::Result<UnixListener>> {
    let for_us = std::env::var("LISTEN_PID").ok()? == std::process::id().to_string();
    let fds = std::env::var("LISTEN_FDS").ok()?;
    if !for_us {
        return None;
    }
    if fds != "1" {
        return Some(Err(io::Error::other(format!(
            "systemd passed {fds} sockets; patchward-netd.socket must have exactly one ListenStream="
        ))));
    }
    use std::os::fd::FromRawFd;
    // SAFETY: LISTEN_PID names this process and LISTEN_FDS=1, so by the sd_listen_fds
    // protocol fd 3 is an open listening socket handed to us, owned by nothing else.
    let listener = unsafe { UnixListener::from_raw_fd(3) };
    // The `nft` children must not inherit the listening socket.
    if let Err(e) = rustix::io::fcntl_setfd(&listener, rustix::io::FdFlags::CLOEXEC) {
        return Some(Err(e.into()));
    }
    Some(Ok(listener))
}

/// Binds `path` (for tests and manual runs): a stale socket file is replaced, and the
/// new one gets systemd's settings, `root:GROUP 0660`.
pub fn bind(path: &Path, group: &AllowedGroup) -> io::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.file_type().is_socket()
    {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::os::unix::fs::chown(path, Some(0), Some(group.gid))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Serves until the listener fails; a failed connection is logged and forgotten.
pub fn serve(listener: UnixListener, cfg: &Config) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept()?;
        if let Err(e) = handle(stream, cfg) {
            eprintln!("patchward-netd: connection failed: {e}");
        }
    }
}

/// One connection: who is it, what do they ask, answer.
pub fn handle(mut stream: UnixStream, cfg: &Config) -> io::Result<()> {
    stream.set_read_timeout(Some(cfg.io_timeout))?;
    stream.set_write_timeout(Some(cfg.io_timeout))?;
    let cred = peer::peer_cred(&stream)?;
    let who = format!("uid {} pid {}", cred.uid, cred.pid);
    // The request is read even from a peer that will be refused, so that it gets the
    // answer instead of a reset connection (its write would fail on a closed socket).
    let request = read_request(&stream);
    let allowed = peer::proc_groups(cred.pid)
        .map_err(|e| format!("refused: cannot read the groups of pid {}: {e}", cred.pid))
        .and_then(|groups| peer::authorize(cred, &groups, &cfg.group));
    let response = match (allowed, request) {
        (Err(message), _) | (Ok(()), Err(message)) => Response::Error { message },
        (Ok(()), Ok(req)) => dispatch(&req, &cfg.nft),
    };
    match &response {
        Response::Error { message } => eprintln!("patchward-netd: {who}: {message}"),
        Response::Applied { changed, sha256 } => {
            eprintln!("patchward-netd: {who}: apply sha256 {sha256}: changed {changed}")
        }
        _ => {}
    }
    let mut line = serde_json::to_string(&response).map_err(io::Error::other)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    stream.flush()
}

fn read_request(stream: &UnixStream) -> Result<Request, String> {
    let mut line = Vec::new();
    let mut reader = BufReader::new(stream.take(MAX_REQUEST_BYTES + 1));
    reader
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("cannot read the request: {e}"))?;
    if line.len() as u64 > MAX_REQUEST_BYTES {
        return Err(format!(
            "request larger than {MAX_REQUEST_BYTES} bytes: refused"
        ));
    }
    serde_json::from_slice(&line).map_err(|e| {
        format!(
            "malformed request ({e}): expected one JSON line {{\"op\":\"apply\",\"ruleset\":\"...\"}}, {{\"op\":\"counters\"}} or {{\"op\":\"show\"}}"
        )
    })
}

/// The answer to one request.
pub fn dispatch(req: &Request, nft: &Nft) -> Response {
    let result = match req {
        Request::Apply { ruleset } => apply(nft, ruleset),
        Request::Counters => nft
            .counters()
            .map(|(counters, blocked)| Response::Counters { counters, blocked })
            .map_err(|e| e.to_string()),
        Request::Show => nft
            .list_table()
            .map(|text| Response::Table {
                sha256: text.as_deref().and_then(nft_cmd::applied_hash),
                text,
            })
            .map_err(|e| e.to_string()),
    };
    result.unwrap_or_else(|message| Response::Error { message })
}

/// Whitelist, then unchanged?, then `nft -c`, then the one transaction.
fn apply(nft: &Nft, ruleset: &str) -> Result<Response, String> {
    validate(ruleset).map_err(|e| format!("refused: {e}"))?;
    let sha256 = hex::encode(Sha256::digest(ruleset.as_bytes()));
    let current = nft.applied_hash().map_err(|e| e.to_string())?;
    if current.as_deref() == Some(sha256.as_str()) {
        return Ok(Response::Applied {
            changed: false,
            sha256,
        });
    }
    let batch = nft_cmd::batch(ruleset, &sha256);
    nft.check(&batch)
        .map_err(|e| format!("refused by nft -c, nothing applied: {e}"))?;
    nft.apply(&batch)
        .map_err(|e| format!("apply failed, the previous table is still in place: {e}"))?;
    Ok(Response::Applied {
        changed: true,
        sha256,
    })
}
