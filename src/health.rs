//! The `healthcheck` client: asks a running appliance's `/healthz`, for container and
//! systemd health checks (exit 0 healthy, 1 not).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The URL to probe for a server listening on `listen`: a wildcard address is reached
/// through loopback of the same family.
pub fn default_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/healthz", SocketAddr::new(ip, listen.port()))
}

/// Outcome of a probe.
#[derive(Debug)]
pub enum Probe {
    Healthy,
    Unhealthy(String),
}

/// GETs `url` with `timeout`; healthy only on 200.
pub async fn probe(url: &str, timeout: Duration) -> Probe {
    crate::tls::install_crypto_provider();
    let client = match reqwest::Client::builder().timeout(timeout).build() {
        Ok(c) => c,
        Err(e) => return Probe::Unhealthy(format!("cannot build HTTP client: {e}")),
    };
    match client.get(url).send().await {
        Ok(r) if r.status() == reqwest::StatusCode::OK => Probe::Healthy,
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            Probe::Unhealthy(format!("{url} answered {status}: {}", body.trim()))
        }
        Err(e) => Probe::Unhealthy(format!("{url} did not answer: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_probed_on_loopback() {
        assert_eq!(
            default_url("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080/healthz"
        );
        assert_eq!(
            default_url("[::]:80".parse().unwrap()),
            "http://[::1]:80/healthz"
        );
        assert_eq!(
            default_url("10.0.0.5:9".parse().unwrap()),
            "http://10.0.0.5:9/healthz"
        );
    }
}
