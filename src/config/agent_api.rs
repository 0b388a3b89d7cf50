//! `[agent_api]`: the per-host shares of the agent API (issue [8] item 2), so that one
//! enrolled host, however busy or hostile, cannot deny the others: a signed-request
//! rate per host, artifact download slots per host, and how long a download may make
//! no progress before its slot is taken back.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Source, pick, positive};

/// The validated `[agent_api]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentApiConfig {
    /// Signed requests (check-ins and downloads) one host may make per minute, on
    /// average; more get 429 with `Retry-After`.
    pub requests_per_minute: u32,
    /// How many requests a host may make at once above that rate (a token bucket's
    /// size), for an agent's burst of check-in, retries and downloads.
    pub burst: u32,
    /// Artifact downloads one host may have streaming at once.
    pub downloads_per_host: usize,
    /// A download whose client takes no data for this long is ended, and its slot freed.
    pub download_stall: Duration,
}

impl Default for AgentApiConfig {
    /// The embedded defaults (`default-config.toml` says the same).
    fn default() -> Self {
        Self {
            requests_per_minute: 60,
            burst: 20,
            downloads_per_host: 4,
            download_stall: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgentApi {
    requests_per_minute: Option<Spanned<i64>>,
    burst: Option<Spanned<i64>>,
    downloads_per_host: Option<Spanned<i64>>,
    download_stall_secs: Option<Spanned<i64>>,
}

pub(super) fn parse(
    f: Option<&RawAgentApi>,
    fsrc: &Source<'_>,
    d: Option<&RawAgentApi>,
    dsrc: &Source<'_>,
) -> Result<AgentApiConfig, ConfigError> {
    macro_rules! get {
        ($field:ident) => {
            pick(
                f.and_then(|a| a.$field.as_ref()),
                fsrc,
                d.and_then(|a| a.$field.as_ref()),
                dsrc,
            )
        };
    }
    let per_host_slots = crate::web::artifacts::MAX_CONCURRENT_DOWNLOADS as i64;
    let stall: u64 = positive(
        &get!(download_stall_secs),
        "agent_api.download_stall_secs",
        1,
        3600,
    )?;
    Ok(AgentApiConfig {
        requests_per_minute: positive(
            &get!(requests_per_minute),
            "agent_api.requests_per_minute",
            1,
            60_000,
        )?,
        burst: positive(&get!(burst), "agent_api.burst", 1, 10_000)?,
        downloads_per_host: positive(
            &get!(downloads_per_host),
            "agent_api.downloads_per_host",
            1,
            per_host_slots,
        )?,
        download_stall: Duration::from_secs(stall),
    })
}

pub(super) fn to_toml(a: &AgentApiConfig) -> String {
    format!(
        "[agent_api]\nrequests_per_minute = {}\nburst = {}\ndownloads_per_host = {}\n\
         download_stall_secs = {}\n",
        a.requests_per_minute,
        a.burst,
        a.downloads_per_host,
        a.download_stall.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Overrides};

    #[test]
    fn defaults_overrides_and_range_errors() {
        let c = Config::from_sources(None, &Overrides::default()).unwrap();
        assert_eq!(c.agent_api, super::AgentApiConfig::default());
        let c = Config::from_sources(
            Some((
                "site.toml",
                "[agent_api]\nrequests_per_minute = 6\nburst = 2\ndownloads_per_host = 1\n\
                 download_stall_secs = 5\n",
            )),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            (
                c.agent_api.requests_per_minute,
                c.agent_api.burst,
                c.agent_api.downloads_per_host,
                c.agent_api.download_stall.as_secs()
            ),
            (6, 2, 1, 5)
        );
        // The effective configuration prints it, and reads back the same.
        let again = Config::from_sources(Some(("shown.toml", &c.to_toml())), &Overrides::default())
            .unwrap();
        assert_eq!(again.agent_api, c.agent_api);
        for (text, want) in [
            (
                "[agent_api]\nburst = 0\n",
                "site.toml:2: key `agent_api.burst`: 0 is out of range; allowed: 1 to 10000",
            ),
            (
                "[agent_api]\ndownloads_per_host = 65\n",
                "site.toml:2: key `agent_api.downloads_per_host`: 65 is out of range; \
                 allowed: 1 to 64",
            ),
        ] {
            let e =
                Config::from_sources(Some(("site.toml", text)), &Overrides::default()).unwrap_err();
            assert_eq!(e.to_string(), want);
        }
    }
}
