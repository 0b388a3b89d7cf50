//! One probe: a full TCP connect to one port, an optional banner read, and a clean close.
//!
//! Legacy devices are fragile: half-open scans, RSTs and floods of connections have
//! crashed PLCs and old print servers. So a probe does what a well-behaved client does:
//! a full three-way handshake, then (on banner ports) reads the first line the server
//! sends, bounded in bytes and time, then `shutdown()` so the peer sees a FIN, and waits
//! briefly for the peer's own FIN while draining what it sends. Closing a socket with
//! unread data makes the kernel send an RST; draining first avoids that by design.
//! The prober only connects to the address and port it is given: it never sweeps.
//!
//! Latency is the connect time (SYN to established), measured with tokio's monotonic
//! clock; it is a measurement, not a decision time, so it does not go through `Clock`.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// At most this many bytes of a banner are read; the first line is what is hashed.
pub const BANNER_MAX_BYTES: usize = 256;
/// At most this many bytes are drained while waiting for the peer's FIN.
const DRAIN_MAX_BYTES: usize = 16 * 1024;

/// The sha256 of a banner's first line (without its line ending).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BannerHash(pub [u8; 32]);

impl BannerHash {
    /// Hashes the first line of `bytes`: up to the first `\n`, without a trailing `\r`;
    /// all of `bytes` if there is no line end.
    pub fn of_first_line(bytes: &[u8]) -> Self {
        let line = match bytes.iter().position(|&b| b == b'\n') {
            Some(end) => &bytes[..end],
            None => bytes,
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        Self(Sha256::digest(line).into())
    }

    /// The full hash in lower-case hex (for storage).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 16 hex digits (for sentences).
    pub fn short(&self) -> String {
        hex::encode(&self.0[..8])
    }
}

impl fmt::Debug for BannerHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BannerHash({})", self.short())
    }
}

/// The result of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The handshake completed. `banner_hash` is set when a banner was asked for and a
    /// first line (or `BANNER_MAX_BYTES` bytes) arrived before the probe's deadline.
    Open {
        latency: Duration,
        banner_hash: Option<BannerHash>,
    },
    /// The host answered the SYN with an RST: nothing listens there.
    Refused,
    /// No answer within the probe's timeout.
    Timeout,
    /// The connect failed otherwise (no route, host unreachable, ...): the OS's words.
    Unreachable(String),
}

impl ProbeOutcome {
    pub fn is_open(&self) -> bool {
        matches!(self, ProbeOutcome::Open { .. })
    }
}

impl fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeOutcome::Open { latency, .. } => {
                write!(f, "open in {:.1} ms", latency.as_secs_f64() * 1000.0)
            }
            ProbeOutcome::Refused => f.write_str("refused"),
            ProbeOutcome::Timeout => f.write_str("timed out"),
            ProbeOutcome::Unreachable(why) => write!(f, "unreachable ({why})"),
        }
    }
}

/// Time limits of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeOptions {
    /// Connect plus banner read must finish within this.
    pub timeout: Duration,
    /// After our FIN, how long to wait for the peer's FIN (draining what it sends) before
    /// letting the socket go. Not counted in `timeout`.
    pub close_grace: Duration,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3),
            close_grace: Duration::from_secs(1),
        }
    }
}

/// Probes `addr` once. Records the connect latency of open ports in the
/// `patchward_legacy_probe_seconds` histogram.
pub async fn probe(addr: SocketAddr, read_banner: bool, opts: &ProbeOptions) -> ProbeOutcome {
    let started = Instant::now();
    let deadline = started + opts.timeout;
    let mut stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_elapsed) => return ProbeOutcome::Timeout,
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            return ProbeOutcome::Refused;
        }
        Ok(Err(e)) if e.kind() == io::ErrorKind::TimedOut => return ProbeOutcome::Timeout,
        Ok(Err(e)) => return ProbeOutcome::Unreachable(e.to_string()),
        Ok(Ok(stream)) => stream,
    };
    let latency = started.elapsed();
    metrics::histogram!("patchward_legacy_probe_seconds").record(latency.as_secs_f64());
    let banner_hash = if read_banner {
        read_first_line(&mut stream, deadline)
            .await
            .map(|line| BannerHash::of_first_line(&line))
    } else {
        None
    };
    close_cleanly(stream, opts.close_grace).await;
    ProbeOutcome::Open {
        latency,
        banner_hash,
    }
}

/// Reads until a line end, `BANNER_MAX_BYTES`, the peer's EOF or the deadline. `None`
/// when nothing arrived (a silent server is not a changed banner).
async fn read_first_line(stream: &mut TcpStream, deadline: Instant) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; BANNER_MAX_BYTES];
    let mut len = 0;
    while len < BANNER_MAX_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf[len..])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                let had_line_end = buf[len..len + n].contains(&b'\n');
                len += n;
                if had_line_end {
                    break;
                }
            }
        }
    }
    buf.truncate(len);
    (len > 0).then_some(buf)
}

/// Half-closes (the peer sees a FIN), then drains until the peer's FIN, a bound on
/// bytes, or `grace`. Dropping the socket with an empty receive buffer after that sends
/// no RST.
async fn close_cleanly(mut stream: TcpStream, grace: Duration) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let deadline = Instant::now() + grace;
    let mut buf = [0u8; 1024];
    let mut drained = 0;
    while drained < DRAIN_MAX_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => drained += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_is_hashed_without_its_line_end() {
        let a = BannerHash::of_first_line(b"SSH-2.0-OpenSSH_7.4\r\nmore");
        let b = BannerHash::of_first_line(b"SSH-2.0-OpenSSH_7.4");
        let c = BannerHash::of_first_line(b"SSH-2.0-OpenSSH_7.4\n");
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_ne!(a, BannerHash::of_first_line(b"SSH-2.0-OpenSSH_9.6\r\n"));
        // sha256("SSH-2.0-OpenSSH_7.4"), computed independently with sha256sum.
        assert_eq!(
            a.to_hex(),
            "be0da7ee170f9a69bc13b9e61ecfc9110c27db40f3f2e4c0ffae6741f064af8a"
        );
        assert_eq!(a.short(), "be0da7ee170f9a69");
    }

    #[test]
    fn outcomes_read_as_words() {
        let open = ProbeOutcome::Open {
            latency: Duration::from_micros(1250),
            banner_hash: None,
        };
        assert_eq!(open.to_string(), "open in 1.2 ms");
        assert_eq!(ProbeOutcome::Refused.to_string(), "refused");
        assert_eq!(ProbeOutcome::Timeout.to_string(), "timed out");
        assert_eq!(
            ProbeOutcome::Unreachable("No route to host (os error 113)".into()).to_string(),
            "unreachable (No route to host (os error 113))"
        );
    }
}
