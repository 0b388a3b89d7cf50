//! One blob download as one continuous [`Read`]: when the body fails or ends before
//! `size` bytes, the reader waits (exponential backoff with jitter) and asks again with
//! `Range: bytes=<received>-`, so the store hashes a single stream and an interrupted
//! download continues rather than starts over.
//!
//! What counts as retryable: connection errors, timeouts, 5xx, 408 and 429, and bodies
//! that fail or end short. Any other status (404, 403, 416, ...) is final. The budget
//! ([`RetryPolicy::attempts`]) counts consecutive failed attempts: an attempt that
//! delivered bytes resets it, so a long download over a flaky link finishes as long as
//! it keeps making progress.

use std::io::{self, Read};
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_RANGE, RANGE};

use super::{TransferStats, io_reason, reason};

/// How often and how long to wait between attempts.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in a row that may fail before the download is given up.
    pub attempts: u32,
    /// The first delay; doubled per failed attempt.
    pub base: Duration,
    /// No delay is longer than this.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 8,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait after failure number `n` (0-based): half of `min(cap, base * 2^n)` plus
    /// a random part up to the other half ("equal jitter"), so many appliances that
    /// lost the same upstream do not come back in step.
    pub fn delay(&self, n: u32) -> Duration {
        let full = self
            .base
            .saturating_mul(1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX))
            .min(self.cap);
        let half = full / 2;
        let jitter =
            rand::thread_rng().gen_range(0..=half.as_micros().min(u64::MAX as u128) as u64);
        half + Duration::from_micros(jitter)
    }
}

/// What one attempt's failure means.
pub(super) enum Attempt {
    Retry(String),
    Final(String),
}

/// Retry or give up on an HTTP status that is not a success.
pub(super) fn classify_status(s: StatusCode) -> Attempt {
    let r = format!("HTTP {s}");
    if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT || s == StatusCode::TOO_MANY_REQUESTS
    {
        Attempt::Retry(r)
    } else {
        Attempt::Final(r)
    }
}

/// The blob at `url` (`size` bytes) as one stream; see the module doc.
pub(super) struct ResumingReader<'a> {
    client: &'a Client,
    url: reqwest::Url,
    size: u64,
    policy: &'a RetryPolicy,
    stats: &'a TransferStats,
    body: Option<Response>,
    /// Bytes handed to the caller so far (the next byte's offset).
    received: u64,
    /// Bytes still to discard from the current body (a server that answered a Range
    /// request with the whole blob).
    skip: u64,
    /// Failed attempts in a row.
    failures: u32,
    /// Bytes the current body has delivered (to reset `failures` on progress).
    this_attempt: u64,
    /// Why the download was given up, once it was.
    failure: Option<String>,
}

impl<'a> ResumingReader<'a> {
    pub(super) fn new(
        client: &'a Client,
        url: reqwest::Url,
        size: u64,
        policy: &'a RetryPolicy,
        stats: &'a TransferStats,
    ) -> Self {
        Self {
            client,
            url,
            size,
            policy,
            stats,
            body: None,
            received: 0,
            skip: 0,
            failures: 0,
            this_attempt: 0,
            failure: None,
        }
    }

    /// Why the download was given up, if it was.
    pub(super) fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Records a failed attempt; waits before the next one, or gives up.
    fn failed(&mut self, why: String) -> io::Result<()> {
        self.body = None;
        if self.this_attempt > 0 {
            self.failures = 0;
        }
        self.this_attempt = 0;
        self.failures += 1;
        if self.failures >= self.policy.attempts {
            let msg = format!(
                "{why} (gave up after {} attempts in a row, {} of {} bytes received)",
                self.failures, self.received, self.size
            );
            self.failure = Some(msg.clone());
            return Err(io::Error::other(msg));
        }
        self.stats.retries.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            url = %self.url, received = self.received, size = self.size, reason = %why,
            "blob download interrupted; resuming"
        );
        std::thread::sleep(self.policy.delay(self.failures - 1));
        Ok(())
    }

    fn give_up(&mut self, why: String) -> io::Error {
        self.body = None;
        self.failure = Some(why.clone());
        io::Error::other(why)
    }

    /// Sends the next request (ranged when resuming) and checks its answer.
    fn open(&mut self) -> Result<Response, Attempt> {
        let mut req = self.client.get(self.url.clone());
        if self.received > 0 {
            req = req.header(RANGE, format!("bytes={}-", self.received));
            self.stats.range_requests.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let resp = req.send().map_err(|e| Attempt::Retry(reason(&e)))?;
        match resp.status() {
            StatusCode::OK => {
                // A server without Range support sends everything again: skip what we
                // already have.
                self.skip = self.received;
                Ok(resp)
            }
            StatusCode::PARTIAL_CONTENT if self.received > 0 => {
                let cr = resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                match parse_content_range(cr) {
                    Some((start, total))
                        if start == self.received && total.is_none_or(|t| t == self.size) =>
                    {
                        self.skip = 0;
                        Ok(resp)
                    }
                    _ => Err(Attempt::Final(format!(
                        "asked for bytes {}- and got Content-Range {cr:?}",
                        self.received
                    ))),
                }
            }
            StatusCode::PARTIAL_CONTENT => {
                Err(Attempt::Final("HTTP 206 to a request without Range".into()))
            }
            s => Err(classify_status(s)),
        }
    }
}

impl Read for ResumingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(why) = &self.failure {
                return Err(io::Error::other(why.clone()));
            }
            let Some(body) = self.body.as_mut() else {
                if self.received >= self.size {
                    return Ok(0);
                }
                match self.open() {
                    Ok(resp) => {
                        self.body = Some(resp);
                        self.this_attempt = 0;
                    }
                    Err(Attempt::Retry(why)) => self.failed(why)?,
                    Err(Attempt::Final(why)) => return Err(self.give_up(why)),
                }
                continue;
            };
            let want = if self.skip > 0 {
                buf.len()
                    .min(usize::try_from(self.skip).unwrap_or(usize::MAX))
            } else {
                buf.len()
            };
            match body.read(&mut buf[..want]) {
                Ok(0) if self.skip == 0 && self.received >= self.size => {
                    self.body = None;
                    return Ok(0);
                }
                Ok(0) => {
                    let why = format!(
                        "the body ended after {} of {} bytes",
                        self.received, self.size
                    );
                    self.failed(why)?;
                }
                Ok(n) => {
                    self.stats.blob_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    self.this_attempt += n as u64;
                    if self.skip > 0 {
                        self.skip -= n as u64;
                        continue;
                    }
                    self.received += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Everything arrived and the connection failed afterwards: done.
                Err(_) if self.skip == 0 && self.received >= self.size => {
                    self.body = None;
                    return Ok(0);
                }
                Err(e) => {
                    let why = io_reason(&e);
                    self.failed(why)?;
                }
            }
        }
    }
}

/// `bytes <start>-<end>/<total|*>` -> (start, total).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    if end < start {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses_what_servers_send() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("bytes */200"), None);
        assert_eq!(parse_content_range("bytes 9-5/200"), None);
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }

    #[test]
    fn delays_grow_to_the_cap_with_bounded_jitter() {
        let p = RetryPolicy {
            attempts: 8,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(10),
        };
        for n in 0..40 {
            let full = (Duration::from_millis(200) * 2u32.saturating_pow(n.min(20)))
                .min(Duration::from_secs(10));
            let d = p.delay(n);
            assert!(d >= full / 2 && d <= full, "n={n} d={d:?} full={full:?}");
        }
    }
}
