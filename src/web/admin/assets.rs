//! Static files of the admin page, embedded in the binary (`static/`).
//!
//! Links carry the file's content hash (`/static/app.css?v=<12 hex>`), so a response
//! may be cached for a year (`immutable`): a new binary with a changed file links a new
//! URL. Requests without the current hash get `no-cache` and revalidate with the ETag.

use std::sync::LazyLock;

use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// One embedded file.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    /// The first 12 hex digits of the sha256 of `bytes`.
    pub version: String,
    /// `/static/<name>?v=<version>`.
    pub url: String,
}

const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../static/app.css"),
    ),
    (
        "print.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../static/print.css"),
    ),
    (
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../static/htmx.min.js"),
    ),
];

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(name, content_type, bytes)| {
            let version = hex::encode(Sha256::digest(bytes))[..12].to_owned();
            Asset {
                name,
                content_type,
                bytes,
                url: format!("/static/{name}?v={version}"),
                version,
            }
        })
        .collect()
});

/// The embedded file called `name`.
pub fn get(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// The versioned URL of an embedded file, for templates. Panics on a name that is not
/// embedded: a template typo, which every page test renders and so catches.
pub fn url(name: &str) -> &'static str {
    match get(name) {
        Some(a) => &a.url,
        None => panic!("no embedded static file {name:?}"),
    }
}

/// `GET /static/{file}`.
pub async fn serve(
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(a) = get(&file) else {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    };
    let etag = format!("\"{}\"", a.version);
    let current = query.as_deref() == Some(&format!("v={}", a.version));
    let cache = if current {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut h = HeaderMap::new();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    (h, a.bytes).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_the_content_hash() {
        let css = get("app.css").unwrap();
        assert_eq!(css.url, format!("/static/app.css?v={}", css.version));
        assert_eq!(css.version.len(), 12);
        assert!(url("htmx.min.js").starts_with("/static/htmx.min.js?v="));
        assert!(get("../Cargo.toml").is_none());
    }
}
