//! The body-size limit (413) and request timeout (408) of every route, and what happens
//! to a request body that a handler refused without reading it.
//!
//! Every route has a bound. Most get `server.max_body_bytes`; the admin page's bundle
//! upload, which streams to disk, gets `import.max_upload_mb` plus room for the
//! multipart framing ([`UPLOAD_FRAMING`]) and a longer time bound. A `Content-Length`
//! over the bound is refused before anything runs (the upload's handler does that
//! itself, to answer on the page), and every body is wrapped so that reading past the
//! bound fails (axum's extractors answer 413). Nothing, the
//! admin guard included, can read more than its route's bound.
//!
//! A refused request usually leaves its body unread (the guard refuses an auditor or a
//! bad CSRF token before reading). Dropping it there, before the answer is sent, resets
//! the stream: HTTP/2 clients then report "Stream error in the HTTP/2 framing layer"
//! (`RST_STREAM(CANCEL)`) instead of the 403. So the unread rest is handed back here
//! ([`ReturnOnDrop`]) and kept until the answer has gone out. Then it is read and
//! discarded up to [`DRAIN_BYTES`] / [`DRAIN_TIME`] (what nginx calls a lingering
//! close), so that a client sending a moderate body is not reset before it has read the
//! answer, or, where a drain would hurt, dropped right after the answer, which HTTP/2
//! turns into `RST_STREAM(NO_ERROR)` (see [`drain_budget`]). A larger rest ends in a
//! reset stream or a closed connection. Nothing read while draining is kept.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Body as _, Frame, SizeHint};
use tokio::sync::oneshot;

use super::Limits;

/// Paths whose handlers stream their bodies to disk: bundle uploads.
pub const STREAMED: &[&str] = &["/mirror/upload"];

/// How long a streamed upload (and its import) may take.
pub const STREAMED_TIMEOUT: Duration = Duration::from_secs(2 * 3600);

/// What an upload may carry besides the file itself: multipart boundaries and part
/// headers, and the page's small fields.
pub const UPLOAD_FRAMING: u64 = 1 << 20;

/// The largest urlencoded form the admin guard reads to find its `csrf` field. The
/// admin page's forms are a few hundred bytes; the bound is far above that.
pub const MAX_FORM_BYTES: usize = 256 << 10;

/// How much of a refused request's unread body is read and discarded after the
/// answer, and for how long at most.
pub const DRAIN_BYTES: u64 = 4 << 20;
pub const DRAIN_TIME: Duration = Duration::from_secs(5);

/// The body bound of a path.
pub fn bound(l: &Limits, path: &str) -> u64 {
    if STREAMED.contains(&path) {
        l.max_upload_bytes.saturating_add(UPLOAD_FRAMING)
    } else {
        l.max_body_bytes as u64
    }
}

pub async fn enforce(State(l): State<Limits>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let streamed = STREAMED.contains(&path);
    let cap = bound(&l, path);
    let time = if streamed {
        STREAMED_TIMEOUT
    } else {
        l.request_timeout
    };
    let declared = declared_length(req.headers());
    let drain = drain_budget(&req);
    let (parts, body) = req.into_parts();
    // The upload's handler refuses an oversized declared length itself, on the page
    // (it runs for admins only; the guard reads nothing of anyone else's upload).
    if !streamed && declared.is_some_and(|n| n > cap) {
        let answer = too_large(cap);
        return keep_until_sent(answer, Some(body), drain);
    }
    if body.is_end_stream() {
        let req = Request::from_parts(parts, body);
        return timed(time, next.run(req)).await;
    }
    let (tx, mut rx) = oneshot::channel();
    let inner = ReturnOnDrop {
        body: Some(body),
        back: Some(tx),
    };
    let limited = http_body_util::Limited::new(inner, usize::try_from(cap).unwrap_or(usize::MAX));
    let req = Request::from_parts(parts, Body::new(limited));
    let resp = timed(time, next.run(req)).await;
    // The handler has returned; if it dropped the body unread, the rest is here.
    keep_until_sent(resp, rx.try_recv().ok(), drain)
}

/// How much of an unread body to drain after the answer (0: drop it right after the
/// answer). Found with curl 7.88 (nghttp2) against hyper: a client still sending when
/// its stream is reset reports a stream error (`RST_STREAM(CANCEL)` before the answer,
/// or even `NO_ERROR` after it), and one that stops sending on the error status ends
/// its stream early, which a server must reset with `PROTOCOL_ERROR` if a length was
/// declared, unless the answer is already complete. So the answer ends first and the
/// rest is drained after it, until the client ends its stream. Not after
/// `Expect: 100-continue`: that client was never told to continue and sends nothing.
fn drain_budget(req: &Request) -> u64 {
    let expects = req
        .headers()
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects { 0 } else { DRAIN_BYTES }
}

/// Whether reading a body failed because it went past a bound (anywhere in the
/// error's chain: the bounds nest).
pub fn is_length_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(x) = cur {
        if x.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = x.source();
    }
    false
}

async fn timed(time: Duration, f: impl std::future::Future<Output = Response>) -> Response {
    match tokio::time::timeout(time, f).await {
        Ok(r) => r,
        Err(_) => StatusCode::REQUEST_TIMEOUT.into_response(),
    }
}

fn declared_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

fn too_large(cap: u64) -> Response {
    let text = format!(
        "length limit exceeded: the request body is larger than {cap} bytes \
         (server.max_body_bytes); nothing was changed\n"
    );
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// Attaches the unread rest of a request body to its answer (see the module docs).
fn keep_until_sent(resp: Response, rest: Option<Body>, budget: u64) -> Response {
    match rest {
        Some(rest) if !rest.is_end_stream() => resp.map(|answer| {
            Body::new(DrainAfter {
                answer,
                rest: Some(rest),
                budget,
            })
        }),
        _ => resp,
    }
}

/// A request body that, when dropped before its end, hands itself back to
/// [`enforce`] instead of being dropped with the handler.
struct ReturnOnDrop {
    body: Option<Body>,
    back: Option<oneshot::Sender<Body>>,
}

impl http_body::Body for ReturnOnDrop {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        match self.body.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl Drop for ReturnOnDrop {
    fn drop(&mut self) {
        if let (Some(body), Some(back)) = (self.body.take(), self.back.take())
            && !body.is_end_stream()
        {
            // The receiver is gone only if `enforce` itself was dropped (the
            // connection closed): then the body goes too, which is right.
            let _ = back.send(body);
        }
    }
}

/// An answer that holds the unread rest of its request until it has been sent, then
/// drains the rest (bounded) on its own task.
struct DrainAfter {
    answer: Body,
    rest: Option<Body>,
    /// Bytes to drain at most; 0 drops the rest as soon as the answer is sent.
    budget: u64,
}

impl http_body::Body for DrainAfter {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.answer).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.answer.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.answer.size_hint()
    }
}

impl Drop for DrainAfter {
    /// The server drops an answer's body once its last frame is out (HTTP/2: with
    /// `END_STREAM`; HTTP/1.1: its length written), so the answer is complete here.
    fn drop(&mut self) {
        let Some(rest) = self.rest.take() else { return };
        if self.budget == 0 {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(drain(rest, self.budget));
    }
}

/// Reads and discards `rest` until it ends, `budget` bytes or [`DRAIN_TIME`].
async fn drain(mut rest: Body, budget: u64) {
    use http_body_util::BodyExt as _;
    let mut read = 0u64;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(frame)) = rest.frame().await {
            read = read.saturating_add(frame.data_ref().map_or(0, |d| d.len() as u64));
            if read > budget {
                break;
            }
        }
    })
    .await;
}
