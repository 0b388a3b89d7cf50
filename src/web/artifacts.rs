//! `GET /api/agent/v1/artifacts/sha256/{hex}`: blobs for agents, streamed from the store.
//!
//! Authenticated like every agent call ([`AgentRequest`], signed over the GET with an
//! empty body). **Authorization, for now:** any enrolled, non-revoked host may fetch any
//! blob that the store holds *and* a current catalog references (`patch_blobs`); blobs
//! kept only for gc's grace period are not served. Per-job authorization (a host fetches
//! only what its job tickets name) comes with job tickets.
//!
//! HTTP semantics, for resumable downloads behind caches:
//! - `ETag: "<sha256>"`, strong: the name is the content hash, so the bytes behind a name
//!   never change. `If-None-Match` with that tag (or `*`) answers 304.
//! - `Accept-Ranges: bytes`; one range (`bytes=a-b`, `a-`, `-n`) answers 206 with
//!   `Content-Range`; an unsatisfiable one 416 with `Content-Range: bytes */<size>`. A
//!   multi-range request, a malformed `Range` header, or an `If-Range` that is not our tag
//!   gets the whole blob (200), as RFC 9110 allows.
//! - `Cache-Control: private, max-age=31536000, immutable`.
//! - At most [`MAX_CONCURRENT_DOWNLOADS`] bodies stream at once; a request that cannot get
//!   a slot within [`QUEUE_WAIT`] gets 503 with `Retry-After`.
//!
//! Errors never name store paths: 400 (malformed hash), 404 (unknown), 503, 500.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::OwnedSemaphorePermit;

use super::AppState;
use super::agent_auth::{AgentRequest, refusal};
use crate::store::{BlobFile, Sha256Hex, StoreError};

/// Bodies streamed at once (each holds an open file and one chunk buffer).
pub const MAX_CONCURRENT_DOWNLOADS: usize = 64;
/// How long a request waits for a download slot before it gets 503.
pub const QUEUE_WAIT: Duration = Duration::from_secs(2);
/// Seconds sent in `Retry-After` with that 503.
const RETRY_AFTER_S: &str = "2";
/// Bytes read from the file per body chunk.
const CHUNK: usize = 256 * 1024;
const CACHE_CONTROL: &str = "private, max-age=31536000, immutable";

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

    let sha = hash.as_str().to_owned();
    match st
        .db
        .read(move |c| crate::db::feeds::is_referenced(c, &sha))
        .await
    {
        Ok(true) => {}
        Ok(false) => return refusal(StatusCode::NOT_FOUND, "no such artifact"),
        Err(e) => {
            tracing::error!(error = %e, "artifact lookup failed");
            return refusal(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    }
    if cached {
        return not_modified(&etag);
    }

    let permit =
        match tokio::time::timeout(QUEUE_WAIT, st.inner.downloads.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => {
                let mut r = refusal(StatusCode::SERVICE_UNAVAILABLE, "too many downloads");
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_S));
                return r;
            }
        };

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
    (status, out, stream_body(blob, first, len, permit)).into_response()
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

/// Streams `len` bytes from `first`, one positioned read per chunk on the blocking pool.
/// The download slot is held until the body is finished or dropped.
fn stream_body(blob: BlobFile, first: u64, len: u64, permit: OwnedSemaphorePermit) -> Body {
    struct Cursor {
        file: Arc<std::fs::File>,
        pos: u64,
        end: u64,
        _permit: OwnedSemaphorePermit,
    }
    let start = Cursor {
        file: Arc::new(blob.file),
        pos: first,
        end: first + len,
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(start, |mut cur| async move {
        if cur.pos >= cur.end {
            return None;
        }
        let n = usize::try_from(cur.end - cur.pos).map_or(CHUNK, |r| r.min(CHUNK));
        let file = cur.file.clone();
        let pos = cur.pos;
        let read = tokio::task::spawn_blocking(move || read_chunk(&file, pos, n))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match read {
            Ok(buf) => {
                cur.pos += n as u64;
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), cur))
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

/// Reads exactly `n` bytes at `pos` into a fresh buffer. The buffer is not zeroed first:
/// `pread` writes into the spare capacity, which saves a pass over every byte served
/// (`benches/artifacts.rs`: 0.70x -> 0.77x of nginx's throughput).
fn read_chunk(file: &std::fs::File, pos: u64, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    while buf.len() < n {
        let at = pos + buf.len() as u64;
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(n);
    Ok(buf)
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
        assert_eq!(read_chunk(&f, 0, 1000).unwrap(), data);
        assert_eq!(read_chunk(&f, 10, 20).unwrap(), &data[10..30]);
        let e = read_chunk(&f, 990, 20).unwrap_err();
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
}
