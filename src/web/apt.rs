//! `/apt/...`: the per-ring apt repositories, for unmodified apt clients.
//!
//! Unauthenticated (apt does not sign requests), so it serves only:
//! - `/apt/key.asc`: the appliance's public OpenPGP key;
//! - `/apt/<ring>/patchward.sources`: the deb822 source for the ring (key embedded),
//!   with the URL the client used;
//! - `/apt/<ring>/dists/<suite>/...`: files of the ring's current published generation
//!   (`InRelease`, `Release`, `Release.gpg`, `main/binary-<arch>/Packages*`) and its
//!   index files by hash (`.../by-hash/SHA256/<hex>`);
//! - `/apt/<ring>/pool/main/<aa>/<sha256>/<name>.deb`: a blob of the store, only while
//!   it is released to that ring ([`crate::apt::db::in_ring`]).
//!
//! Paths are never joined from raw input: the ring must be a valid ring name with a
//! published repository, the suite must be the ring's, every other component must be a
//! plain name (`[A-Za-z0-9._+~-]`, not starting with a dot), and files are opened without
//! following a final symlink. HEAD works (axum answers it from GET without a body), and
//! one `Range` (`bytes=a-b`, `a-`, `-n`) answers 206, which apt uses to resume.
//! Error bodies never name disk paths.
//!
//! Each fetch of a ring's index (`dists/...`) is noted as an apt client (address, user
//! agent) in [`crate::apt::clients`], which writes in bounded batches, so agentless
//! servers show on the Hosts page.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::AppState;
use crate::apt::AptSettings;
use crate::apt::publish::AptDir;
use crate::store::{Sha256Hex, Store};

/// What the apt handlers need.
pub struct AptServe {
    pub dir: AptDir,
    pub store: Arc<Store>,
    pub settings: AptSettings,
    pub public_key: String,
    pub fingerprint: String,
    /// Index fetches noted for the apt clients list (flushed by the server).
    pub clients: Arc<crate::apt::clients::AptClients>,
    /// The appliance's clock, which dates the notes.
    pub clock: crate::clock::SharedClock,
}

const CHUNK: usize = 256 * 1024;
/// Files up to this size are read whole and sent with the headers in one write
/// (`InRelease`, indexes, small packages); larger ones stream in [`CHUNK`]s.
const SMALL_FILE: u64 = 64 * 1024;
/// Content-addressed files (by-hash, pool) never change behind their name.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Named index files change with every publish: revalidate.
const REVALIDATE: &str = "no-cache";

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "apt request failed");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
}

fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+~-".contains(&b))
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub async fn key(State(st): State<AppState>) -> Response {
    let Some(apt) = st.inner.apt.as_ref() else {
        return not_found();
    };
    (
        [(header::CONTENT_TYPE, "application/pgp-keys")],
        apt.public_key.clone(),
    )
        .into_response()
}

pub async fn ring_file(
    State(st): State<AppState>,
    Path((ring, rest)): Path<(String, String)>,
    req: Request,
) -> Response {
    // Only the head is needed (GET): the body is dropped, and what is kept is `Sync`.
    let (req, _) = req.into_parts();
    let headers = &req.headers;
    let Some(apt) = st.inner.apt.as_ref() else {
        return not_found();
    };
    if crate::fleet::validate_ring(&ring).is_err() || apt.dir.current_generation(&ring).is_none() {
        return not_found();
    }
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.len() > 8 || !parts.iter().all(|p| plain_name(p)) {
        return not_found();
    }
    match parts.as_slice() {
        ["patchward.sources"] => sources(apt, &ring, headers),
        ["dists", suite, tail @ ..]
            if *suite == apt.settings.suite_of(&ring) && !tail.is_empty() =>
        {
            let path = match tail {
                [.., "by-hash", "SHA256", hex] if is_hex64(hex) => apt.dir.by_hash(&ring).join(hex),
                _ => {
                    let mut p = apt.dir.current(&ring);
                    p.extend(tail);
                    p
                }
            };
            let cache = if tail.contains(&"by-hash") {
                IMMUTABLE
            } else {
                REVALIDATE
            };
            note_client(apt, &ring, &req);
            let content_type = match tail.last() {
                Some(&"InRelease" | &"Release" | &"Release.gpg" | &"Packages") => "text/plain",
                _ => "application/octet-stream",
            };
            serve_path(path, headers, content_type, cache).await
        }
        ["pool", "main", aa, sha, _name]
            if is_hex64(sha) && sha.starts_with(*aa) && aa.len() == 2 =>
        {
            pool(&st, apt, &ring, sha, headers).await
        }
        _ => not_found(),
    }
}

/// Notes an index fetch of `ring` by the request's client (its IP address, without
/// the port, which changes per connection).
fn note_client(apt: &AptServe, ring: &str, req: &axum::http::request::Parts) {
    let Some(ConnectInfo(peer)) = req.extensions.get::<ConnectInfo<std::net::SocketAddr>>() else {
        return;
    };
    let ua = req
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ip = peer.ip().to_canonical().to_string();
    apt.clients.note(ring, &ip, ua, apt.clock.now());
}

fn sources(apt: &AptServe, ring: &str, headers: &HeaderMap) -> Response {
    // The URL the client reached us by; a Host header is visible ASCII by construction.
    let Some(host) = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', ' ', '\\']))
    else {
        return (StatusCode::BAD_REQUEST, "no Host header\n").into_response();
    };
    let text = crate::apt::client::sources(
        &format!("http://{host}"),
        ring,
        &apt.settings.suite_of(ring),
        &apt.public_key,
        &apt.fingerprint,
    );
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

async fn pool(
    st: &AppState,
    apt: &AptServe,
    ring: &str,
    sha: &str,
    headers: &HeaderMap,
) -> Response {
    let (r, s) = (ring.to_owned(), sha.to_owned());
    match st
        .db
        .read(move |c| crate::apt::db::in_ring(c, &r, &s))
        .await
    {
        Ok(true) => {}
        Ok(false) => return not_found(),
        Err(e) => return internal(e),
    }
    let Ok(hash) = Sha256Hex::parse(sha) else {
        return not_found();
    };
    serve_path(
        apt.store.path(&hash),
        headers,
        "application/vnd.debian.binary-package",
        IMMUTABLE,
    )
    .await
}

/// Which bytes to send: `None` = all; `Some(Err(()))` = unsatisfiable.
fn range(headers: &HeaderMap, size: u64) -> Option<Result<(u64, u64), ()>> {
    let v = headers.get(header::RANGE)?.to_str().ok()?;
    let spec = v.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let num = |s: &str| {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (num(a.trim()), num(b.trim())) {
        (None, Some(n)) if a.trim().is_empty() => {
            if n == 0 || size == 0 {
                Some(Err(()))
            } else {
                Some(Ok((size - n.min(size), size - 1)))
            }
        }
        (Some(first), None) if b.trim().is_empty() => Some(if first < size {
            Ok((first, size - 1))
        } else {
            Err(())
        }),
        (Some(first), Some(last)) if first <= last => Some(if first < size {
            Ok((first, last.min(size - 1)))
        } else {
            Err(())
        }),
        _ => None,
    }
}

async fn serve_path(
    path: PathBuf,
    headers: &HeaderMap,
    content_type: &'static str,
    cache: &'static str,
) -> Response {
    let opened = tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::File::options()
            .read(true)
            .custom_flags(libc_nofollow())
            .open(&path)?;
        let m = f.metadata()?;
        if !m.is_file() {
            return Err(std::io::ErrorKind::NotFound.into());
        }
        // A small file is read here, in the same trip to the blocking pool, so its
        // bytes go out with the headers in one write (no second segment to wait for).
        let small = if m.len() <= SMALL_FILE {
            let mut buf = Vec::with_capacity(m.len() as usize);
            std::io::Read::read_to_end(&mut std::io::Read::take(&f, SMALL_FILE + 1), &mut buf)?;
            Some(Bytes::from(buf))
        } else {
            None
        };
        Ok::<_, std::io::Error>((f, m.len(), small))
    })
    .await;
    let (file, size, small) = match opened {
        Ok(Ok(x)) => x,
        Ok(Err(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) || e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) =>
        {
            return not_found();
        }
        Ok(Err(e)) => return internal(e),
        Err(e) => return internal(e),
    };
    let mut out = HeaderMap::new();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let (status, first, len) = match range(headers, size) {
        None => (StatusCode::OK, 0, size),
        Some(Ok((a, b))) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{size}")) {
                out.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, a, b - a + 1)
        }
        Some(Err(())) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                out.insert(header::CONTENT_RANGE, v);
            }
            return (StatusCode::RANGE_NOT_SATISFIABLE, out).into_response();
        }
    };
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    match small {
        // The file may have been replaced between the size and the read: only bytes
        // of the length announced are sent, else it is streamed as before.
        Some(bytes) if bytes.len() as u64 == size => {
            let end = usize::try_from(first + len).unwrap_or(bytes.len());
            let start = usize::try_from(first).unwrap_or(0);
            (status, out, Body::from(bytes.slice(start..end))).into_response()
        }
        _ => (status, out, stream(file, first, len)).into_response(),
    }
}

fn libc_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// Streams `len` bytes of `file` from `first`.
fn stream(file: std::fs::File, first: u64, len: u64) -> Body {
    let start = (tokio::fs::File::from_std(file), first, len, false);
    let s = futures_util::stream::unfold(start, |(mut f, pos, left, seeked)| async move {
        if left == 0 {
            return None;
        }
        if !seeked && let Err(e) = f.seek(std::io::SeekFrom::Start(pos)).await {
            return Some((Err(e), (f, pos, 0, true)));
        }
        let want = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
        let mut buf = vec![0u8; want];
        match f.read(&mut buf).await {
            Ok(0) => Some((
                Err(std::io::ErrorKind::UnexpectedEof.into()),
                (f, pos, 0, true),
            )),
            Ok(n) => {
                buf.truncate(n);
                Some((
                    Ok(Bytes::from(buf)),
                    (f, pos + n as u64, left - n as u64, true),
                ))
            }
            Err(e) => Some((Err(e), (f, pos, 0, true))),
        }
    });
    Body::from_stream(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ranges() {
        for ok in [
            "InRelease",
            "Packages.gz",
            "binary-amd64",
            "a_1.0+b~1-2_all.deb",
        ] {
            assert!(plain_name(ok), "{ok}");
        }
        for bad in ["", "..", ".hidden", "a b", "a%2f", "x\\y", "é"] {
            assert!(!plain_name(bad), "{bad}");
        }
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(range(&HeaderMap::new(), 10), None);
        assert_eq!(range(&h("bytes=2-"), 10), Some(Ok((2, 9))));
        assert_eq!(range(&h("bytes=2-4"), 10), Some(Ok((2, 4))));
        assert_eq!(range(&h("bytes=-3"), 10), Some(Ok((7, 9))));
        assert_eq!(range(&h("bytes=10-"), 10), Some(Err(())));
        assert_eq!(range(&h("bytes=4-2"), 10), None);
        assert_eq!(range(&h("bytes=0-1,3-4"), 10), None);
    }
}
