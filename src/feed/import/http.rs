//! A published feed served over HTTP(S) as a transport: the same layout as
//! [`DirTransport`](super::DirTransport) (`root/<N>.root.json`,
//! `catalog/<N>.catalog.json`, `catalog.json`, `timestamp.json`, `blobs/sha256/<hex>`)
//! under a base URL.
//!
//! The pipeline is synchronous, so this uses reqwest's blocking client (it runs its own
//! small runtime thread); the server calls sync on a blocking thread. Blobs are fetched
//! by a few worker threads sharing a queue, each streaming one blob into the import's
//! [`Staging`] area (`Store::put` beneath), which hashes while it writes.
//!
//! Interrupted downloads resume inside the reader ([`resume::ResumingReader`]): when a
//! body fails or ends short, it asks again with `Range: bytes=<received>-` (after a
//! backoff with jitter), so the store sees one continuous stream, hashes it once, and a
//! dropped connection costs only the bytes it lost, never a restart.
//!
//! This module moves bytes; it decides nothing about trust (the pipeline verifies every
//! document before parsing it and every blob against the verified catalog).

mod resume;

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::Client;

use super::dir::MAX_METADATA_BYTES;
use super::{ImportError, Progress, ProgressReader, Transport, layout};
use crate::store::{Sha256Hex, Staging, StoreError};

pub use resume::RetryPolicy;
use resume::{Attempt, ResumingReader};

/// Root versions fetched in one sync at most (a rotation chain is short; this bounds a
/// server that answers every `root/<N>.root.json`).
const MAX_ROOTS_PER_SYNC: u64 = 1000;

/// Bytes moved by one transport, for reports and benchmarks.
#[derive(Debug, Default)]
pub struct TransferStats {
    /// Body bytes received for metadata (roots, timestamp, catalog).
    pub metadata_bytes: AtomicU64,
    /// Body bytes received for blobs, including bytes of attempts that failed and
    /// prefixes skipped when a server ignored a Range request.
    pub blob_bytes: AtomicU64,
    /// HTTP requests sent (all kinds, including retries).
    pub requests: AtomicU64,
    /// Blob requests that asked to resume with a `Range` header.
    pub range_requests: AtomicU64,
    /// Attempts that failed and were retried (5xx, connection errors, short bodies).
    pub retries: AtomicU64,
}

/// A snapshot of [`TransferStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransferTotals {
    pub metadata_bytes: u64,
    pub blob_bytes: u64,
    pub requests: u64,
    pub range_requests: u64,
    pub retries: u64,
}

impl TransferStats {
    pub fn totals(&self) -> TransferTotals {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TransferTotals {
            metadata_bytes: g(&self.metadata_bytes),
            blob_bytes: g(&self.blob_bytes),
            requests: g(&self.requests),
            range_requests: g(&self.range_requests),
            retries: g(&self.retries),
        }
    }
}

/// Fetches a published feed from an `http://` or `https://` base URL.
pub struct HttpTransport {
    base: reqwest::Url,
    client: Client,
    /// Retries of a blob download (each attempt resumes where the last one stopped).
    blob_retry: RetryPolicy,
    /// Retries of a metadata request: fewer, so an unreachable upstream is reported
    /// quickly (the scheduler tries again on its next tick anyway).
    meta_retry: RetryPolicy,
    workers: usize,
    stats: TransferStats,
}

impl HttpTransport {
    /// Blob downloads running at once.
    pub const DEFAULT_WORKERS: usize = 4;

    /// A transport for the feed published under `url` (a trailing `/` is implied).
    pub fn new(url: &str) -> Result<Self, ImportError> {
        let bad = |reason: String| ImportError::Fetch {
            what: url.to_string(),
            reason,
        };
        let mut text = url.trim().to_string();
        if !text.ends_with('/') {
            text.push('/');
        }
        let base = reqwest::Url::parse(&text).map_err(|e| bad(format!("not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(bad("expected an http:// or https:// URL with a host".into()));
        }
        crate::tls::install_crypto_provider();
        let client = Client::builder()
            .user_agent(concat!("patchward/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            // The blocking client applies this to each read, so it is an idle timeout,
            // not a limit on how long a large blob may take.
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| bad(format!("cannot set up the HTTP client: {}", reason(&e))))?;
        Ok(Self {
            base,
            client,
            blob_retry: RetryPolicy::default(),
            meta_retry: RetryPolicy {
                attempts: 3,
                ..RetryPolicy::default()
            },
            workers: Self::DEFAULT_WORKERS,
            stats: TransferStats::default(),
        })
    }

    /// Uses `policy` for blob downloads and a shorter variant (at most 3 attempts) for
    /// metadata. Tests pass short delays.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.meta_retry = RetryPolicy {
            attempts: policy.attempts.min(3),
            ..policy.clone()
        };
        self.blob_retry = policy;
        self
    }

    /// Runs `n` (at least 1) blob downloads at once.
    pub fn with_workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// What this transport has moved so far.
    pub fn stats(&self) -> TransferTotals {
        self.stats.totals()
    }

    fn url(&self, rel: &str) -> Result<reqwest::Url, ImportError> {
        self.base.join(rel).map_err(|e| ImportError::Fetch {
            what: format!("{}{rel}", self.base),
            reason: e.to_string(),
        })
    }

    /// GETs a metadata document; `None` on 404. Retries 5xx and connection errors.
    fn get_meta(&self, rel: &str) -> Result<Option<Vec<u8>>, ImportError> {
        let url = self.url(rel)?;
        let fail = |reason: String| ImportError::Fetch {
            what: url.to_string(),
            reason,
        };
        let mut attempt = 0;
        loop {
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let outcome = match self.client.get(url.clone()).send() {
                Err(e) => Attempt::Retry(reason(&e)),
                Ok(resp) => match resp.status() {
                    StatusCode::OK => match self.read_meta_body(resp) {
                        Ok(bytes) => return Ok(Some(bytes)),
                        Err(Attempt::Final(r)) => return Err(fail(r)),
                        Err(a) => a,
                    },
                    StatusCode::NOT_FOUND | StatusCode::GONE => return Ok(None),
                    s => resume::classify_status(s),
                },
            };
            match outcome {
                Attempt::Final(r) => return Err(fail(r)),
                Attempt::Retry(r) => {
                    attempt += 1;
                    if attempt >= self.meta_retry.attempts {
                        return Err(fail(r));
                    }
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%url, attempt, reason = %r, "metadata fetch failed; retrying");
                    std::thread::sleep(self.meta_retry.delay(attempt - 1));
                }
            }
        }
    }

    fn read_meta_body(&self, resp: reqwest::blocking::Response) -> Result<Vec<u8>, Attempt> {
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_METADATA_BYTES)
        {
            return Err(Attempt::Final(format!(
                "{} bytes is more than metadata may be",
                resp.content_length().unwrap_or(0)
            )));
        }
        let mut buf = Vec::new();
        let read = resp.take(MAX_METADATA_BYTES + 1).read_to_end(&mut buf);
        self.stats
            .metadata_bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        match read {
            Err(e) => Err(Attempt::Retry(io_reason(&e))),
            Ok(_) if buf.len() as u64 > MAX_METADATA_BYTES => Err(Attempt::Final(format!(
                "more than {MAX_METADATA_BYTES} bytes is more than metadata may be"
            ))),
            Ok(_) => Ok(buf),
        }
    }

    /// Downloads and stores one blob; a failure names the URL and why.
    fn fetch_blob(
        &self,
        hash: &str,
        size: u64,
        staging: &Staging<'_>,
        progress: &dyn Progress,
    ) -> Result<(), ImportError> {
        let h = Sha256Hex::parse(hash)?;
        let url = self.url(&layout::blob(hash))?;
        let mut reader = ResumingReader::new(
            &self.client,
            url.clone(),
            size,
            &self.blob_retry,
            &self.stats,
        );
        let result = {
            let mut pr = ProgressReader {
                inner: &mut reader,
                progress,
            };
            staging.put(&h, size, &mut pr)
        };
        match result {
            Ok(_) => Ok(()),
            // The reader gave up: say why in HTTP terms rather than as a read error.
            Err(StoreError::Read { .. }) if reader.failure().is_some() => Err(ImportError::Fetch {
                what: url.to_string(),
                reason: reader.failure().unwrap_or_default().to_string(),
            }),
            Err(e) => Err(e.into()),
        }
    }
}

impl Transport for HttpTransport {
    fn describe(&self) -> String {
        format!("upstream {}", self.base)
    }

    fn roots_after(&mut self, known: u64) -> Result<Vec<Vec<u8>>, ImportError> {
        let mut out = Vec::new();
        for v in known + 1..=known + MAX_ROOTS_PER_SYNC {
            match self.get_meta(&layout::root(v))? {
                Some(bytes) => out.push(bytes),
                None => break,
            }
        }
        Ok(out)
    }

    fn timestamp(&mut self) -> Result<Option<Vec<u8>>, ImportError> {
        self.get_meta(layout::TIMESTAMP)
    }

    fn catalog(&mut self, version: Option<u64>) -> Result<Vec<u8>, ImportError> {
        let rel = layout::catalog(version);
        self.get_meta(&rel)?.ok_or_else(|| ImportError::Fetch {
            what: format!("{}{rel}", self.base),
            reason: "not found (HTTP 404)".into(),
        })
    }

    fn fetch_blobs(
        &mut self,
        needed: &BTreeMap<String, u64>,
        _all: &BTreeMap<String, u64>,
        staging: &Staging<'_>,
        progress: &dyn Progress,
    ) -> Result<u64, ImportError> {
        let before = self.stats.blob_bytes.load(Ordering::Relaxed);
        let queue: Vec<(&String, u64)> = needed.iter().map(|(h, s)| (h, *s)).collect();
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let first_error: Mutex<Option<ImportError>> = Mutex::new(None);
        let workers = self.workers.min(queue.len());
        let this = &*self;
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(hash, size)) = queue.get(i) else {
                            break;
                        };
                        if let Err(e) = this.fetch_blob(hash, size, staging, progress) {
                            stop.store(true, Ordering::Relaxed);
                            let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                            slot.get_or_insert(e);
                        }
                    }
                });
            }
        });
        if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        Ok(self.stats.blob_bytes.load(Ordering::Relaxed) - before)
    }
}

/// A short reason from a reqwest error: the innermost cause, in words an operator
/// reads ("connection refused"), not the whole chain.
pub(crate) fn reason(e: &reqwest::Error) -> String {
    let mut inner: &dyn std::error::Error = e;
    while let Some(next) = inner.source() {
        if let Some(io) = next.downcast_ref::<std::io::Error>() {
            return io_reason(io);
        }
        inner = next;
    }
    if e.is_timeout() {
        return "timed out".into();
    }
    if e.is_connect() {
        return format!("cannot connect: {inner}");
    }
    inner.to_string()
}

pub(crate) fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset".into(),
        K::TimedOut => "timed out".into(),
        K::UnexpectedEof => "the connection closed early".into(),
        _ => {
            // reqwest wraps its own errors in io::Error; unwrap to the root cause.
            let mut s = e.to_string();
            let mut inner: Option<&dyn std::error::Error> = e.get_ref().map(|x| x as _);
            while let Some(x) = inner {
                if let Some(io) = x.downcast_ref::<std::io::Error>()
                    && io.kind() != K::Other
                {
                    return io_reason(io);
                }
                s = x.to_string();
                inner = x.source();
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_http_and_https_base_urls_and_builds_the_tls_client() {
        for url in ["http://127.0.0.1:8080", "https://feeds.example/msp/"] {
            let t = HttpTransport::new(url).unwrap();
            assert!(t.describe().ends_with('/'), "{}", t.describe());
            assert_eq!(
                t.url("timestamp.json").unwrap().path().rsplit('/').next(),
                Some("timestamp.json")
            );
        }
        let t = HttpTransport::new("https://feeds.example/msp").unwrap();
        assert_eq!(
            t.url("blobs/sha256/ab").unwrap().as_str(),
            "https://feeds.example/msp/blobs/sha256/ab"
        );
        for bad in ["ftp://x/", "not a url", "file:///srv/feed"] {
            let e = HttpTransport::new(bad).err().unwrap().to_string();
            assert!(e.starts_with(&format!("cannot fetch {bad}")), "{e}");
        }
    }
}
