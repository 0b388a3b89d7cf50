//! `[legacy]`: how end-of-life hosts are judged (issue [9]): the warning horizon before
//! security support ends, whether a host the lifecycle catalog does not know counts as
//! end-of-life, and the longest risk acceptance an admin may record; and (issue [10])
//! how they are fenced in (segment mode, the helper's socket, DNS refresh) and watched
//! (monitor interval, concurrency, probe timeout, N-of-M thresholds).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Located, Source, pick, positive};

/// How the segment's fence is put in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentMode {
    /// The appliance routes the legacy segment and `patchward-netd` applies the table.
    Enforce,
    /// The site's own firewall fences: the appliance only exports the ruleset and CSV.
    Export,
}

impl SegmentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SegmentMode::Enforce => "enforce",
            SegmentMode::Export => "export",
        }
    }
}

/// The validated `[legacy]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyConfig {
    /// A host whose security support ends within this many days is `eol_soon`.
    pub eol_soon_days: u32,
    /// Whether a host whose product or cycle the catalog does not know is treated as
    /// end-of-life (excluded from rollouts, counted as a finding).
    pub unknown_is_eol: bool,
    /// The longest a risk acceptance may run, in days from when it is recorded.
    pub max_acceptance_days: u32,
    /// `enforce` or `export` (the default: nothing reaches the kernel until an operator
    /// has a second interface and says so).
    pub segment_mode: SegmentMode,
    /// The unix socket of `patchward-netd`.
    pub netd_socket: PathBuf,
    /// How often DNS-name peers are resolved again (their elements expire with the
    /// record's TTL whatever this is).
    pub dns_refresh: Duration,
    /// The DNS servers that resolve DNS-name peers ("IP:port"); empty: the system's
    /// /etc/resolv.conf.
    pub dns_servers: Vec<SocketAddr>,
    /// How often the monitor probes every legacy host.
    pub monitor_interval: Duration,
    /// The most probes in flight at once, across all hosts.
    pub monitor_concurrency: usize,
    /// One probe's limit (connect, banner, clean close).
    pub monitor_timeout: Duration,
    /// DOWN after `monitor_fail` failed cycles among the last `monitor_window`.
    pub monitor_fail: u32,
    pub monitor_window: u32,
    /// UP again after this many answered cycles in a row.
    pub monitor_recover: u32,
}

impl Default for LegacyConfig {
    /// The embedded defaults (`default-config.toml` says the same).
    fn default() -> Self {
        Self {
            eol_soon_days: 90,
            unknown_is_eol: false,
            max_acceptance_days: 365,
            segment_mode: SegmentMode::Export,
            netd_socket: PathBuf::from(crate::legacy::netd::DEFAULT_SOCKET),
            dns_refresh: Duration::from_secs(300),
            dns_servers: Vec::new(),
            monitor_interval: Duration::from_secs(60),
            monitor_concurrency: 50,
            monitor_timeout: Duration::from_secs(3),
            monitor_fail: 3,
            monitor_window: 5,
            monitor_recover: 2,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLegacy {
    eol_soon_days: Option<Spanned<i64>>,
    unknown_is_eol: Option<Spanned<bool>>,
    max_acceptance_days: Option<Spanned<i64>>,
    segment_mode: Option<Spanned<String>>,
    netd_socket: Option<Spanned<String>>,
    dns_refresh: Option<Spanned<String>>,
    dns_servers: Option<Spanned<Vec<String>>>,
    monitor_interval: Option<Spanned<String>>,
    monitor_concurrency: Option<Spanned<i64>>,
    monitor_timeout_ms: Option<Spanned<i64>>,
    monitor_fail: Option<Spanned<i64>>,
    monitor_window: Option<Spanned<i64>>,
    monitor_recover: Option<Spanned<i64>>,
}

/// A duration key, within `min..=max` seconds.
fn duration(
    l: &Located<'_, String>,
    key: &str,
    (min, max): (u64, u64),
    range: &str,
) -> Result<Duration, ConfigError> {
    let d = crate::policy::duration::parse(&l.value)
        .map_err(|e| l.src.err_at(l.span.clone(), key, e))?;
    let secs = d.as_secs();
    if secs < 0 || (secs as u64) < min || secs as u64 > max {
        return Err(l.src.err_at(
            l.span.clone(),
            key,
            format!("{:?} is out of range; allowed: {range}", l.value),
        ));
    }
    Ok(Duration::from_secs(secs as u64))
}

pub(super) fn parse(
    f: Option<&RawLegacy>,
    fsrc: &Source<'_>,
    d: Option<&RawLegacy>,
    dsrc: &Source<'_>,
) -> Result<LegacyConfig, ConfigError> {
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
    Ok(LegacyConfig {
        eol_soon_days: positive(&get!(eol_soon_days), "legacy.eol_soon_days", 0, 3650)?,
        unknown_is_eol: get!(unknown_is_eol).value,
        max_acceptance_days: positive(
            &get!(max_acceptance_days),
            "legacy.max_acceptance_days",
            1,
            3650,
        )?,
        segment_mode: {
            let l = get!(segment_mode);
            match l.value.as_str() {
                "enforce" => SegmentMode::Enforce,
                "export" => SegmentMode::Export,
                other => {
                    return Err(l.src.err_at(
                        l.span.clone(),
                        "legacy.segment_mode",
                        format!(
                            "{other:?} is not a mode; expected \"enforce\" (the appliance \
                             routes the legacy segment and applies the fence) or \"export\" \
                             (the site firewall does, from `legacy segment export`)"
                        ),
                    ));
                }
            }
        },
        netd_socket: {
            let l = get!(netd_socket);
            if !l.value.starts_with('/') {
                return Err(l.src.err_at(
                    l.span.clone(),
                    "legacy.netd_socket",
                    format!("{:?} is not an absolute path", l.value),
                ));
            }
            PathBuf::from(l.value)
        },
        dns_refresh: duration(
            &get!(dns_refresh),
            "legacy.dns_refresh",
            (10, 86_400),
            "10s to 1d",
        )?,
        dns_servers: dns_servers(&get!(dns_servers))?,
        monitor_interval: duration(
            &get!(monitor_interval),
            "legacy.monitor_interval",
            (5, 3_600),
            "5s to 1h",
        )?,
        monitor_concurrency: positive(
            &get!(monitor_concurrency),
            "legacy.monitor_concurrency",
            1,
            1_000,
        )?,
        monitor_timeout: Duration::from_millis(positive(
            &get!(monitor_timeout_ms),
            "legacy.monitor_timeout_ms",
            100,
            30_000,
        )?),
        monitor_fail: positive(&get!(monitor_fail), "legacy.monitor_fail", 1, 64)?,
        monitor_window: positive(&get!(monitor_window), "legacy.monitor_window", 1, 64)?,
        monitor_recover: positive(&get!(monitor_recover), "legacy.monitor_recover", 1, 64)?,
    })
    .and_then(|c| {
        match crate::legacy::monitor::Thresholds::new(
            c.monitor_fail,
            c.monitor_window,
            c.monitor_recover,
        ) {
            Ok(_) => Ok(c),
            Err(e) => {
                let l = get!(monitor_fail);
                Err(l
                    .src
                    .err_at(l.span.clone(), "legacy.monitor_fail", e.to_string()))
            }
        }
    })
}

/// `legacy.dns_servers`: each "IP:port" (IPv6 as "[ADDR]:port"), at most 8.
fn dns_servers(l: &Located<'_, Vec<String>>) -> Result<Vec<SocketAddr>, ConfigError> {
    if l.value.len() > 8 {
        return Err(l.src.err_at(
            l.span.clone(),
            "legacy.dns_servers",
            format!("{} servers; at most 8 are allowed", l.value.len()),
        ));
    }
    l.value
        .iter()
        .map(|s| {
            s.parse::<SocketAddr>().map_err(|_| {
                l.src.err_at(
                    l.span.clone(),
                    "legacy.dns_servers",
                    format!(
                        "{s:?} is not IP:port (e.g. \"192.0.2.53:53\" or \"[2001:db8::53]:53\")"
                    ),
                )
            })
        })
        .collect()
}

impl LegacyConfig {
    /// The monitor's thresholds (validated when the config was read).
    pub fn thresholds(&self) -> crate::legacy::monitor::Thresholds {
        crate::legacy::monitor::Thresholds::new(
            self.monitor_fail,
            self.monitor_window,
            self.monitor_recover,
        )
        .unwrap_or_default()
    }
}

pub(super) fn to_toml(l: &LegacyConfig) -> String {
    format!(
        "[legacy]\neol_soon_days = {}\nunknown_is_eol = {}\nmax_acceptance_days = {}\n\
         segment_mode = {:?}\nnetd_socket = {:?}\ndns_refresh = \"{}s\"\ndns_servers = {:?}\n\
         monitor_interval = \"{}s\"\nmonitor_concurrency = {}\nmonitor_timeout_ms = {}\n\
         monitor_fail = {}\nmonitor_window = {}\nmonitor_recover = {}\n",
        l.eol_soon_days,
        l.unknown_is_eol,
        l.max_acceptance_days,
        l.segment_mode.as_str(),
        l.netd_socket.display().to_string(),
        l.dns_refresh.as_secs(),
        l.dns_servers
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>(),
        l.monitor_interval.as_secs(),
        l.monitor_concurrency,
        l.monitor_timeout.as_millis(),
        l.monitor_fail,
        l.monitor_window,
        l.monitor_recover,
    )
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Overrides};

    #[test]
    fn defaults_overrides_and_range_errors() {
        let c = Config::from_sources(None, &Overrides::default()).unwrap();
        assert_eq!(c.legacy, super::LegacyConfig::default());
        let c = Config::from_sources(
            Some((
                "site.toml",
                "[legacy]\neol_soon_days = 30\nunknown_is_eol = true\nmax_acceptance_days = 90\n",
            )),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            (
                c.legacy.eol_soon_days,
                c.legacy.unknown_is_eol,
                c.legacy.max_acceptance_days
            ),
            (30, true, 90)
        );
        let again = Config::from_sources(Some(("shown.toml", &c.to_toml())), &Overrides::default())
            .unwrap();
        assert_eq!(again.legacy, c.legacy);
        for (text, want) in [
            (
                "[legacy]\nmax_acceptance_days = 0\n",
                "site.toml:2: key `legacy.max_acceptance_days`: 0 is out of range; allowed: 1 to 3650",
            ),
            (
                "[legacy]\neol_soon_days = -1\n",
                "site.toml:2: key `legacy.eol_soon_days`: -1 is out of range; allowed: 0 to 3650",
            ),
        ] {
            let e = Config::from_sources(Some(("site.toml", text)), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn segment_and_monitor_keys_round_trip_and_refuse_bad_values() {
        let c = Config::from_sources(
            Some((
                "site.toml",
                "[legacy]\nsegment_mode = \"enforce\"\ndns_refresh = \"90s\"\n\
                 monitor_interval = \"30s\"\nmonitor_concurrency = 8\n\
                 monitor_timeout_ms = 500\nmonitor_fail = 2\nmonitor_window = 4\n",
            )),
            &Overrides::default(),
        )
        .unwrap();
        let l = &c.legacy;
        assert_eq!(l.segment_mode, super::SegmentMode::Enforce);
        assert_eq!(l.dns_refresh.as_secs(), 90);
        assert_eq!(l.monitor_interval.as_secs(), 30);
        assert_eq!(
            (l.monitor_concurrency, l.monitor_timeout.as_millis()),
            (8, 500)
        );
        assert_eq!(l.thresholds().fail_n(), 2);
        let again = Config::from_sources(Some(("shown.toml", &c.to_toml())), &Overrides::default())
            .unwrap();
        assert_eq!(again.legacy, c.legacy);
        for (text, want) in [
            (
                "[legacy]\nsegment_mode = \"block\"\n",
                "\"block\" is not a mode",
            ),
            (
                "[legacy]\nnetd_socket = \"netd.sock\"\n",
                "is not an absolute path",
            ),
            ("[legacy]\ndns_refresh = \"2s\"\n", "allowed: 10s to 1d"),
            ("[legacy]\nmonitor_concurrency = 0\n", "allowed: 1 to 1000"),
            (
                "[legacy]\nmonitor_fail = 6\nmonitor_window = 5\n",
                "legacy.monitor_fail",
            ),
        ] {
            let e = Config::from_sources(Some(("site.toml", text)), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
