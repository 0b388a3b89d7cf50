//! The HTTP listener's answer to everything it does not serve itself: a permanent
//! redirect to the same path on the HTTPS listener (GET and HEAD), or a refusal.

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::AppState;

/// The host name of a `Host` header without its port (`[::1]` keeps its brackets), or
/// `None` when it is missing or holds anything but a host name or address.
pub fn host_name(host: &str) -> Option<&str> {
    let name = if host.starts_with('[') {
        &host[..=host.find(']')?]
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    ok.then_some(name)
}

/// The HTTPS URL for `path_and_query` on host `host` and port `port`.
pub fn https_url(host: &str, port: u16, path_and_query: &str) -> String {
    if port == 443 {
        format!("https://{host}{path_and_query}")
    } else {
        format!("https://{host}:{port}{path_and_query}")
    }
}

/// Fallback of the HTTP router.
pub async fn to_https(
    State(st): State<AppState>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let Some(admin) = st.inner.admin.as_ref() else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(host_name)
        .unwrap_or("localhost");
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    let url = https_url(host, admin.tls_port, pq);
    if method == Method::GET || method == Method::HEAD {
        return (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, url)]).into_response();
    }
    (
        StatusCode::FORBIDDEN,
        format!("The admin page is served over HTTPS only: {url}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_targets() {
        assert_eq!(host_name("pw.lan:8080"), Some("pw.lan"));
        assert_eq!(host_name("pw.lan"), Some("pw.lan"));
        assert_eq!(host_name("192.0.2.7:80"), Some("192.0.2.7"));
        assert_eq!(host_name("[2001:db8::1]:8080"), Some("[2001:db8::1]"));
        assert_eq!(host_name("[::1]"), Some("[::1]"));
        assert_eq!(host_name("evil.example/x"), None);
        assert_eq!(host_name("a b"), None);
        assert_eq!(host_name(""), None);
        assert_eq!(
            https_url("pw.lan", 8443, "/hosts?x=1"),
            "https://pw.lan:8443/hosts?x=1"
        );
        assert_eq!(https_url("pw.lan", 443, "/"), "https://pw.lan/");
    }
}
