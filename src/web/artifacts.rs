//! `GET /api/agent/v1/artifacts/sha256/{hex}`: blobs for agents, streamed from the store.
//!
//! Authenticated like every agent call ([`AgentRequest`], signed over the GET with an
//! empty body). **Authorization:** a host may fetch a blob only if the ticket of one of
//! its own jobs (any state) names it (`job_artifacts`, filled when `fleet::jobs::create`
//! commits the job; migration 5 backfilled older jobs from their tickets). Anything else
//! is 403 [`NOT_YOURS`], whether or not the blob exists, so a host cannot probe which
//! blobs the store holds; this check comes before the conditional headers. A blob a job
//! names but the store no longer holds (gc removed it) is 404. Whether a current catalog
//! still references the blob does not matter: a job keeps working after its patch was
//! superseded, as long as the blob is kept.
//!
//! HTTP semantics, for resumable downloads behind caches:
//! - `ETag: "<sha256>"`, strong: the name is the content hash, so the bytes behind a name
//!   never change. `If-None-Match` with that tag (or `*`) answers 304.
//! - `Accept-Ranges: bytes`; one range (`bytes=a-b`, `a-`, `-n`) answers 206 with
//!   `Content-Range`; an unsatisfiable one 416 with `Content-Range: bytes */<size>`. A
//!   multi-range request, a malformed `Range` header, or an `If-Range` that is not our tag
//!   gets the whole blob (200), as RFC 9110 allows.
//! - `Cache-Control: private, max-age=31536000, immutable`.
//! - At most [`MAX_CONCURRENT_DOWNLOADS`] bodies stream at once, and at most
//!   `agent_api.downloads_per_host` of one host's ([`DownloadSlots`]); a request over
//!   its host's share gets 429, one that cannot get a slot within [`QUEUE_WAIT`] 503,
//!   both with `Retry-After`. A body the client takes nothing of for
//!   `agent_api.download_stall_secs` gives its slot back at once and ends (with an
//!   error) when next polled: a client that stops reading cannot hold a slot.
//!
//! Errors never name store paths: 400 (malformed hash), 403 (not this host's), 404 (named
//! by a job but gone from the store), 503, 500.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::OwnedSemaphorePermit;

use super::AppState;
use super::agent_auth::{AgentRequest, refusal, retry_later};
use crate::store::{BlobFile, Sha256Hex, StoreError};

/// Bodies streamed at once (each holds an open file and up to a few chunk buffers).
pub const MAX_CONCURRENT_DOWNLOADS: usize = 64;
/// How long a request waits for a download slot before it gets 503.
pub const QUEUE_WAIT: Duration = Duration::from_secs(2);
/// Seconds sent in `Retry-After` with that 503 (and the 429 over a host's share).
const RETRY_AFTER_S: u64 = 2;
/// Bytes read from the file per body chunk. 1 MiB measured no faster in
/// `benches/artifacts.rs` and nearly doubled the peak RSS (62 MiB against 35 MiB).
const CHUNK: usize = 256 * 1024;
const CACHE_CONTROL: &str = "private, max-age=31536000, immutable";
/// The 403 reason for a blob no job of the requesting host names.
pub const NOT_YOURS: &str = "no job of this host lists this artifact";

/// The download slots: a semaphore for all hosts and a count per host. A std Mutex
/// for the counts: one short map operation per download start and end.
pub struct DownloadSlots {
    all: Arc<tokio::sync::Semaphore>,
    per_host: usize,
    stall: Duration,
    hosts: Mutex<HashMap<String, usize>>,
}

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSlot {
    /// The host already streams its share.
    HostShare(usize),
    /// Every slot stayed taken for [`QUEUE_WAIT`].
    AllBusy,
}

/// A held download slot; both counts are given back when it is dropped or
/// [`Slot::release`]d, whichever comes first.
pub struct Slot {
    slots: Arc<DownloadSlots>,
    host: String,
    permit: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Slot {
    /// Gives the slot back now (idempotent).
    fn release(&self) {
        let permit = self.permit.lock().unwrap_or_else(|p| p.into_inner()).take();
        if permit.is_none() {
            return;
        }
        drop(permit);
        let mut hosts = self.slots.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = hosts.get_mut(&self.host) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                hosts.remove(&self.host);
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.release();
    }
}

impl DownloadSlots {
    pub fn new(all: usize, c: &crate::config::AgentApiConfig) -> Self {
        Self {
            all: Arc::new(tokio::sync::Semaphore::new(all)),
            per_host: c.downloads_per_host.max(1),
            stall: c.download_stall,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// How many downloads `host` is streaming.
    pub fn of_host(&self, host: &str) -> usize {
        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts.get(host).copied().unwrap_or(0)
    }

    /// A slot for `host`: refused at once over the host's share, else waits up to
    /// `wait` for one of all.
    pub async fn acquire(self: &Arc<Self>, host: &str, wait: Duration) -> Result<Slot, NoSlot> {
        {
            let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
            let n = hosts.entry(host.to_string()).or_insert(0);
            if *n >= self.per_host {
                return Err(NoSlot::HostShare(self.per_host));
            }
            // Counted before the wait, so a host cannot queue more than its share.
            *n += 1;
        }
        let slot = Slot {
            slots: self.clone(),
            host: host.to_string(),
            permit: Mutex::new(None),
        };
        match tokio::time::timeout(wait, self.all.clone().acquire_owned()).await {
            Ok(Ok(p)) => {
                *slot.permit.lock().unwrap_or_else(|p| p.into_inner()) = Some(p);
                Ok(slot)
            }
            _ => {
                // Not holding a permit: `release` would not uncount the host.
                let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(n) = hosts.get_mut(host) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        hosts.remove(host);
                    }
                }
                Err(NoSlot::AllBusy)
            }
        }
    }
}

/// Which bytes of a blob a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    Full,
    /// Inclusive first and last byte.
    Range(u64, u64),
    Unsatisfiable,
}

/// Interprets a `Range` header against a blob of `size` bytes.
pub fn parse_range(value: Option<&str>, size: u64) -> Wanted {
    let Some(v) = value else {
        return Wanted::Full;
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Wanted::Full; // Unknown unit: ignore the header.
    };
    if spec.contains(',') {
        return Wanted::Full; // Multi-range: answered with the whole blob.
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Wanted::Full;
    };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    match (a.trim().is_empty(), b.trim().is_empty()) {
        // `-n`: the last n bytes.
        (true, false) => match num(b) {
            Some(0) => Wanted::Unsatisfiable,
            Some(n) if size > 0 => Wanted::Range(size - n.min(size), size - 1),
            Some(_) => Wanted::Unsatisfiable,
            None => Wanted::Full,
        },
        // `a-`: from a to the end.
        (false, true) => match num(a) {
            Some(first) if first < size => Wanted::Range(first, size - 1),
            Some(_) => Wanted::Unsatisfiable,
            None => Wanted::Full,
        },
        // `a-b`.
        (false, false) => match (num(a), num(b)) {
            (Some(first), Some(last)) if first > last => Wanted::Full, // invalid: ignore
            (Some(first), Some(last)) if first < size => Wanted::Range(first, last.min(size - 1)),
            (Some(_), Some(_)) => Wanted::Unsatisfiable,
            _ => Wanted::Full,
        },
        (true, true) => Wanted::Full,
    }
}

/// Whether an `If-None-Match` value matches `etag` (weak comparison, as RFC 9110 says).
fn none_match(value: &str, etag: &str) -> bool {
    value
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

fn hv(s: &str) -> HeaderValue {
    // Only called with ASCII built here (hex, digits, fixed strings).
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub async fn get_artifact(
    State(st): State<AppState>,
    Path(hex): Path<String>,
    req: AgentRequest,
) -> Response {
    let headers = req.headers;
    let Some(mirror) = st.inner.mirror.as_ref() else {
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "artifact store not available",
        );
    };
    let hash = match Sha256Hex::parse(&hex) {
        Ok(h) => h,
        Err(_) => return refusal(StatusCode::BAD_REQUEST, "malformed sha256"),
    };
    let etag = format!("\"{}\"", hash.as_str());
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| none_match(v, &etag));

    // Authorization before anything else is looked at, so a host learns nothing about
    // blobs outside its own jobs: not whether they exist, not their tag.
    let host_id = req.host_id;
    let (host, sha) = (host_id.clone(), hash.as_str().to_owned());
    match st
        .db
        .read(move |c| crate::db::jobs::host_may_fetch(c, &host, &sha))
        .await
    {
        Ok(true) => {}
        Ok(false) => return refusal(StatusCode::FORBIDDEN, NOT_YOURS),
        Err(e) => {
            tracing::error!(error = %e, "artifact authorization lookup failed");
            return refusal(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    }
    if cached {
        return not_modified(&etag);
    }

    let permit = match st.inner.downloads.acquire(&host_id, QUEUE_WAIT).await {
        Ok(p) => p,
        Err(NoSlot::HostShare(n)) => {
            return retry_later(
                StatusCode::TOO_MANY_REQUESTS,
                format!("this host already has {n} downloads running"),
                RETRY_AFTER_S,
            );
        }
        Err(NoSlot::AllBusy) => {
            return retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many downloads",
                RETRY_AFTER_S,
            );
        }
    };
    let stall = st.inner.downloads.stall;

    let store = mirror.store.clone();
    let opened = tokio::task::spawn_blocking(move || store.open_blob(&hash)).await;
    let blob = match opened {
        Ok(Ok(b)) => b,
        Ok(Err(StoreError::NotFound { .. })) => {
            return refusal(StatusCode::NOT_FOUND, "no such artifact");
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "opening an artifact failed");
            return refusal(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
        Err(e) => {
            tracing::error!(error = %e, "opening an artifact failed");
            return refusal(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };

    let size = blob.size;
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    // If-Range with anything but our tag: the client's copy is something else, send all.
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == etag);
    let wanted = if if_range_ok {
        parse_range(range_header, size)
    } else {
        Wanted::Full
    };

    let mut out = HeaderMap::new();
    out.insert(header::ETAG, hv(&etag));
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    let (status, first, len) = match wanted {
        Wanted::Full => (StatusCode::OK, 0, size),
        Wanted::Range(a, b) => {
            out.insert(header::CONTENT_RANGE, hv(&format!("bytes {a}-{b}/{size}")));
            (StatusCode::PARTIAL_CONTENT, a, b - a + 1)
        }
        Wanted::Unsatisfiable => {
            out.insert(header::CONTENT_RANGE, hv(&format!("bytes */{size}")));
            return (StatusCode::RANGE_NOT_SATISFIABLE, out).into_response();
        }
    };
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    out.insert(header::CONTENT_LENGTH, hv(&len.to_string()));
    (status, out, stream_body(blob, first, len, permit, stall)).into_response()
}

fn not_modified(etag: &str) -> Response {
    let mut out = HeaderMap::new();
    out.insert(header::ETAG, hv(etag));
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    (StatusCode::NOT_MODIFIED, out).into_response()
}

/// Streams `len` bytes from `first` in [`CHUNK`]-sized reads into pooled buffers (see
/// [`read_chunk`]). The download slot is held until the body is finished or dropped, or
/// until the client has taken nothing for `stall`: hyper asks for the next chunk only
/// once the last one is written, so a client that stops reading stops the polls. A
/// watchdog then gives the slot back, and the next poll (if any) ends the body.
fn stream_body(blob: BlobFile, first: u64, len: u64, slot: Slot, stall: Duration) -> Body {
    struct Cursor {
        file: Arc<std::fs::File>,
        pos: u64,
        end: u64,
        watch: Arc<Watch>,
    }
    let watch = Arc::new(Watch {
        slot,
        polled_ms: AtomicU64::new(0),
        stalled: AtomicBool::new(false),
        started: tokio::time::Instant::now(),
    });
    spawn_watchdog(Arc::downgrade(&watch), stall);
    let start = Cursor {
        file: Arc::new(blob.file),
        pos: first,
        end: first + len,
        watch,
    };
    let stream = futures_util::stream::unfold(start, |mut cur| async move {
        if cur.pos >= cur.end {
            return None;
        }
        if cur.watch.stalled.load(Ordering::Acquire) {
            cur.pos = cur.end;
            let e = std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client took no data for too long",
            );
            return Some((Err(e), cur));
        }
        cur.watch.touch();
        let n = usize::try_from(cur.end - cur.pos).map_or(CHUNK, |r| r.min(CHUNK));
        match read_chunk(&cur.file, cur.pos, n).await {
            Ok(buf) => {
                cur.pos += n as u64;
                Some((Ok::<_, std::io::Error>(buf.into_bytes()), cur))
            }
            Err(e) => {
                // The blob shrank or the disk failed: end the body early (the client sees
                // a short read against Content-Length) and stop.
                tracing::error!(error = %e, "reading an artifact failed");
                cur.pos = cur.end;
                Some((Err(e), cur))
            }
        }
    });
    Body::from_stream(stream)
}

/// What a download's watchdog shares with its body.
struct Watch {
    slot: Slot,
    /// When the body was last polled, in ms since `started`.
    polled_ms: AtomicU64,
    stalled: AtomicBool,
    started: tokio::time::Instant,
}

impl Watch {
    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.polled_ms.store(self.elapsed_ms(), Ordering::Release);
    }
}

/// Checks a download every quarter of `stall` until its body is gone; when the body
/// was not polled for `stall`, frees its slot and marks it stalled.
fn spawn_watchdog(watch: std::sync::Weak<Watch>, stall: Duration) {
    let stall_ms = u64::try_from(stall.as_millis()).unwrap_or(u64::MAX).max(1);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval((stall / 4).max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(w) = watch.upgrade() else { return };
            let idle = w
                .elapsed_ms()
                .saturating_sub(w.polled_ms.load(Ordering::Acquire));
            if idle >= stall_ms {
                w.stalled.store(true, Ordering::Release);
                w.slot.release();
                tracing::info!(host = %w.slot.host, "a download took no data; its slot is freed");
                metrics::counter!("patchward_artifact_downloads_stalled_total").increment(1);
                return;
            }
        }
    });
}

/// Reads exactly `n` bytes at `pos`. First on the calling (async) thread with
/// `RWF_NOWAIT`, which copies only what the page cache holds and never waits for the
/// disk; whatever is left is read on the blocking pool.
async fn read_chunk(file: &Arc<std::fs::File>, pos: u64, n: usize) -> std::io::Result<ChunkBuf> {
    let mut buf = ChunkBuf::take(n);
    let done = read_cached(file, pos, &mut buf.buf[..n]);
    if done == n {
        return Ok(buf);
    }
    let file = file.clone();
    tokio::task::spawn_blocking(move || {
        read_into(&file, pos + done as u64, &mut buf.buf[done..n])?;
        Ok(buf)
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// Copies from the page cache into `buf` without blocking; returns how many bytes it
/// got (0 when nothing is cached, the kernel lacks `RWF_NOWAIT`, or at end of file).
fn read_cached(file: &std::fs::File, pos: u64, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        let mut io = [std::io::IoSliceMut::new(&mut buf[got..])];
        match rustix::io::preadv2(
            file,
            &mut io,
            pos + got as u64,
            rustix::io::ReadWriteFlags::NOWAIT,
        ) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => break, // EAGAIN (not cached) or unsupported: the blocking read decides.
        }
    }
    got
}

/// Fills `buf` from `pos`, blocking; a file shorter than that is an error.
fn read_into(file: &std::fs::File, pos: u64, buf: &mut [u8]) -> std::io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::pread(file, &mut buf[got..], pos + got as u64) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(k) => got += k,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Chunk buffers for all downloads, zeroed once when first allocated and reused after
/// hyper has written them (`Bytes::from_owner` hands the buffer back on drop). At most
/// [`POOL_KEEP`] idle buffers are kept; the rest are freed.
static POOL: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
const POOL_KEEP: usize = 2 * MAX_CONCURRENT_DOWNLOADS;

/// A chunk being read or sent: the first `len` bytes of a pooled buffer.
struct ChunkBuf {
    buf: Vec<u8>,
    len: usize,
}

impl ChunkBuf {
    fn take(len: usize) -> ChunkBuf {
        let reused = POOL.lock().unwrap_or_else(|p| p.into_inner()).pop();
        // Every pooled buffer is CHUNK long, and no read asks for more.
        let buf = reused.unwrap_or_else(|| vec![0; CHUNK.max(len)]);
        ChunkBuf { buf, len }
    }

    fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for ChunkBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for ChunkBuf {
    fn drop(&mut self) {
        if self.buf.len() != CHUNK {
            return;
        }
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOL_KEEP {
            pool.push(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use Wanted::*;
        assert_eq!(parse_range(None, 100), Full);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Range(0, 9));
        assert_eq!(parse_range(Some("bytes=90-200"), 100), Range(90, 99));
        assert_eq!(parse_range(Some("bytes=50-"), 100), Range(50, 99));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Range(90, 99));
        assert_eq!(parse_range(Some("bytes=-1000"), 100), Range(0, 99));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=100-200"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Full);
        assert_eq!(parse_range(Some("bytes=9-2"), 100), Full);
        assert_eq!(parse_range(Some("items=0-1"), 100), Full);
        assert_eq!(parse_range(Some("bytes=x-1"), 100), Full);
        assert_eq!(parse_range(Some("bytes=+1-2"), 100), Full);
        assert_eq!(parse_range(Some("bytes=-"), 100), Full);
    }

    #[test]
    fn chunks_read_exactly_and_stop_at_eof() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("b");
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let f = std::fs::File::open(&p).unwrap();
        let mut buf = vec![0; 1000];
        read_into(&f, 0, &mut buf).unwrap();
        assert_eq!(buf, data);
        read_into(&f, 10, &mut buf[..20]).unwrap();
        assert_eq!(&buf[..20], &data[10..30]);
        let e = read_into(&f, 990, &mut buf[..20]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        // Just written, so cached: the non-blocking read gets it all, and stops at EOF.
        let mut buf = vec![0; 20];
        assert_eq!(read_cached(&f, 0, &mut buf), 20);
        assert_eq!(buf, &data[..20]);
        assert_eq!(read_cached(&f, 990, &mut buf), 10);
        assert_eq!(&buf[..10], &data[990..]);
    }

    #[tokio::test]
    async fn chunks_come_back_exact_through_the_pool() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("b");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let f = Arc::new(std::fs::File::open(&p).unwrap());
        let a = read_chunk(&f, 7, 1000).await.unwrap().into_bytes();
        assert_eq!(&a[..], &data[7..1007]);
        drop(a); // back to the pool; the next read may reuse it and must not see stale bytes
        let b = read_chunk(&f, 299_000, 1000).await.unwrap().into_bytes();
        assert_eq!(&b[..], &data[299_000..]);
        // Past the end: the cached part is read, the rest fails on the blocking pool.
        let Err(e) = read_chunk(&f, 299_500, 1000).await else {
            panic!("a read past the end succeeded");
        };
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn if_none_match() {
        let tag = "\"abc\"";
        assert!(none_match("\"abc\"", tag));
        assert!(none_match("W/\"abc\"", tag));
        assert!(none_match("\"x\", \"abc\"", tag));
        assert!(none_match("*", tag));
        assert!(!none_match("\"abd\"", tag));
    }

    #[tokio::test]
    async fn slots_are_shared_per_host_and_a_stalled_body_gives_its_slot_back() {
        use http_body_util::BodyExt;
        let cfg = crate::config::AgentApiConfig {
            downloads_per_host: 2,
            download_stall: Duration::from_millis(200),
            ..Default::default()
        };
        let slots = Arc::new(DownloadSlots::new(3, &cfg));
        let wait = Duration::from_millis(50);
        let a1 = slots.acquire("a", wait).await.unwrap();
        let _a2 = slots.acquire("a", wait).await.unwrap();
        // a has its share: refused at once, without waiting for the others.
        assert!(matches!(
            slots.acquire("a", wait).await,
            Err(NoSlot::HostShare(2))
        ));
        let b1 = slots.acquire("b", wait).await.unwrap();
        // All three are taken: b waits, then is told the appliance is busy, and its
        // wait is not counted against it.
        assert!(matches!(
            slots.acquire("b", wait).await,
            Err(NoSlot::AllBusy)
        ));
        assert_eq!(slots.of_host("b"), 1);
        drop(b1);
        assert_eq!(slots.of_host("b"), 0);

        // A body nobody reads: after the stall time its slot is free again, and the
        // body, polled at last, ends with an error instead of sending on.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("blob");
        std::fs::write(&p, vec![7u8; 3 * CHUNK]).unwrap();
        let blob = BlobFile {
            hash: Sha256Hex::parse(&"0".repeat(64)).unwrap(),
            file: std::fs::File::open(&p).unwrap(),
            size: 3 * CHUNK as u64,
            modified: std::time::SystemTime::now(),
        };
        let mut body = stream_body(blob, 0, 3 * CHUNK as u64, a1, cfg.download_stall);
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap().len(), CHUNK);
        assert_eq!(slots.of_host("a"), 2);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while slots.of_host("a") == 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the stalled slot was kept"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(slots.of_host("a"), 1);
        let _a3 = slots.acquire("a", wait).await.unwrap();
        let next = body.frame().await.unwrap();
        assert!(next.is_err(), "a stalled body went on");
    }
}
