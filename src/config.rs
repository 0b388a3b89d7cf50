//! Configuration: a raw TOML mirror of the file, validated into [`Config`].
//!
//! Two steps, as in ripgrep: [`RawConfig`] mirrors the file exactly (unknown keys are
//! errors, values keep their source span), and [`Config`] holds resolved, checked
//! decisions. Layers, lowest first: the embedded defaults (`default-config.toml`, also the
//! reference documentation), the operator's file, then `PATCHWARD_*` environment
//! variables and flags (the binary folds those two together through clap).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

mod agent_api;
mod legacy;
pub use agent_api::AgentApiConfig;
pub use legacy::LegacyConfig;
pub use legacy::SegmentMode;

/// The embedded defaults, shipped inside the binary.
pub const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

/// A configuration problem, located as precisely as possible.
#[derive(Debug, thiserror::Error)]
#[error("{origin}{location}: {message}")]
pub struct ConfigError {
    /// The file (or "environment/flags") the value came from.
    pub origin: String,
    /// ":LINE" when known, or " key `k`".
    pub location: String,
    pub message: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub log: LogConfig,
    pub database: DatabaseConfig,
    pub store: StoreConfig,
    pub import: ImportConfig,
    pub mirror: MirrorConfig,
    /// Rings, windows, classes, auto-approval and SLA (`[policy]`; built-in defaults
    /// when the file has none).
    pub policy: crate::policy::Policy,
    /// The per-ring apt repositories (`[apt]`).
    pub apt: crate::apt::AptSettings,
    /// Sessions and sign-in throttling of the admin page (`[web]`).
    pub web: crate::auth::WebSettings,
    /// Per-host shares of the agent API (`[agent_api]`).
    pub agent_api: AgentApiConfig,
    /// How end-of-life hosts are judged (`[legacy]`).
    pub legacy: LegacyConfig,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub free_space_reserve: u64,
    pub verify_on_read: bool,
    pub gc_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct ImportConfig {
    /// The watched drop folder, if any.
    pub drop_dir: Option<PathBuf>,
    pub stable: Duration,
    /// Largest bundle the web page accepts as an upload.
    pub max_upload_bytes: u64,
}

#[derive(Debug, Clone, Default)]
pub struct MirrorConfig {
    pub sources: Vec<MirrorSource>,
}

/// One trusted feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorSource {
    pub name: String,
    /// `http://`, `https://` or `file://` base URL of the published feed; `None` for a
    /// bundle-only source (offline by design: content arrives only as bundles, by
    /// `patchward import`, the web page's upload or the drop folder, and is never synced).
    pub url: Option<String>,
    /// The pinned root metadata (DSSE envelope) that trust starts from.
    pub root: PathBuf,
    pub interval: Duration,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The HTTP listener (apt, health, metrics, agent API; redirects the rest).
    pub listen: SocketAddr,
    /// The HTTPS listener (the admin page, and everything the HTTP one serves).
    pub tls_listen: SocketAddr,
    /// The operator's certificate chain and key (PEM), both or neither; without them the
    /// appliance generates a self-signed certificate under `<data_dir>/tls/`.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub busy_timeout: Duration,
    pub readers: usize,
}

/// Values from flags or environment variables, applied over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub tls_listen: Option<String>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<Spanned<String>>,
    server: Option<RawServer>,
    log: Option<RawLog>,
    database: Option<RawDatabase>,
    store: Option<RawStore>,
    import: Option<RawImport>,
    mirror: Option<RawMirror>,
    policy: Option<crate::policy::RawPolicy>,
    apt: Option<RawApt>,
    web: Option<RawWeb>,
    agent_api: Option<agent_api::RawAgentApi>,
    legacy: Option<legacy::RawLegacy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    session_idle_minutes: Option<Spanned<i64>>,
    session_max_hours: Option<Spanned<i64>>,
    login_max_failures: Option<Spanned<i64>>,
    login_window_minutes: Option<Spanned<i64>>,
    login_lockout_secs: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApt {
    origin: Option<Spanned<String>>,
    label: Option<Spanned<String>>,
    suite: Option<Spanned<String>>,
    architectures: Option<Spanned<Vec<String>>>,
    rings: Option<Spanned<Vec<String>>>,
    valid_until_days: Option<Spanned<i64>>,
    resign_hours: Option<Spanned<i64>>,
    by_hash_grace_hours: Option<Spanned<i64>>,
    xz_max_kib: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    free_space_reserve_mb: Option<Spanned<i64>>,
    verify_on_read: Option<Spanned<bool>>,
    gc_grace_hours: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImport {
    drop_dir: Option<Spanned<String>>,
    stable_secs: Option<Spanned<i64>>,
    max_upload_mb: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMirror {
    sources: Option<Vec<RawSource>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: Spanned<String>,
    url: Option<Spanned<String>>,
    root: Spanned<String>,
    interval: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<Spanned<String>>,
    tls_listen: Option<Spanned<String>>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
    max_body_bytes: Option<Spanned<i64>>,
    request_timeout_secs: Option<Spanned<i64>>,
    shutdown_grace_secs: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<Spanned<String>>,
    level: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    busy_timeout_ms: Option<Spanned<i64>>,
    readers: Option<Spanned<i64>>,
}

/// One source text with its name, so errors can point into it.
struct Source<'a> {
    name: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn err_at(&self, span: std::ops::Range<usize>, key: &str, message: String) -> ConfigError {
        let line = self.text[..span.start.min(self.text.len())]
            .bytes()
            .filter(|b| *b == b'\n')
            .count()
            + 1;
        ConfigError {
            origin: self.name.to_string(),
            location: format!(":{line}"),
            message: format!("key `{key}`: {message}"),
        }
    }

    fn parse(&self) -> Result<RawConfig, ConfigError> {
        toml::from_str(self.text).map_err(|e| {
            let line = e.span().map(|s| {
                self.text[..s.start.min(self.text.len())]
                    .bytes()
                    .filter(|b| *b == b'\n')
                    .count()
                    + 1
            });
            ConfigError {
                origin: self.name.to_string(),
                location: line.map(|l| format!(":{l}")).unwrap_or_default(),
                message: e.message().trim().to_string(),
            }
        })
    }
}

/// A value together with where it came from.
struct Located<'a, T> {
    value: T,
    src: &'a Source<'a>,
    span: std::ops::Range<usize>,
}

fn pick<'a, T: Clone>(
    file: Option<&Spanned<T>>,
    file_src: &'a Source<'a>,
    default: Option<&Spanned<T>>,
    default_src: &'a Source<'a>,
) -> Located<'a, T> {
    let (v, src) = match (file, default) {
        (Some(v), _) => (v, file_src),
        (None, Some(v)) => (v, default_src),
        (None, None) => unreachable!("every key has an embedded default"),
    };
    Located {
        value: v.get_ref().clone(),
        src,
        span: v.span(),
    }
}

fn positive<T>(l: &Located<'_, i64>, key: &str, min: i64, max: i64) -> Result<T, ConfigError>
where
    T: TryFrom<i64>,
{
    if l.value < min || l.value > max {
        return Err(l.src.err_at(
            l.span.clone(),
            key,
            format!("{} is out of range; allowed: {min} to {max}", l.value),
        ));
    }
    T::try_from(l.value).map_err(|_| {
        l.src
            .err_at(l.span.clone(), key, format!("{} does not fit", l.value))
    })
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        format!(
            "{s:?} is not a socket address; expected an IP address and port such as \
             \"127.0.0.1:8080\", \"0.0.0.0:8080\" or \"[::]:8080\""
        )
    })
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!(
            "{other:?} is not a log format; allowed: \"text\", \"json\""
        )),
    }
}

fn check_level(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_string())
        .map_err(|e| {
            format!("{s:?} is not a log filter ({e}); examples: \"info\", \"patchward=debug\"")
        })
}

fn parse_source(
    rs: &RawSource,
    src: &Source<'_>,
    base: &Path,
) -> Result<MirrorSource, ConfigError> {
    let name = rs.name.get_ref().trim().to_string();
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        return Err(src.err_at(
            rs.name.span(),
            "mirror.sources.name",
            format!("{name:?} is not a feed name; use 1-64 letters, digits, '-', '_' or '.'"),
        ));
    }
    let url = match &rs.url {
        None => None,
        Some(u) => {
            let url = u.get_ref().trim().to_string();
            let scheme_ok = url.starts_with("http://")
                || url.starts_with("https://")
                || url.starts_with("file://");
            if !scheme_ok {
                return Err(src.err_at(
                    u.span(),
                    "mirror.sources.url",
                    format!(
                        "{url:?} must start with http://, https:// or file://; leave `url` out \
                         for a bundle-only source"
                    ),
                ));
            }
            Some(url)
        }
    };
    if let (None, Some(i)) = (&url, &rs.interval) {
        return Err(src.err_at(
            i.span(),
            "mirror.sources.interval",
            format!(
                "source {name:?} has no url (bundle-only), so it is never synced and an \
                 interval means nothing; remove `interval` or add a `url`"
            ),
        ));
    }
    let root = PathBuf::from(rs.root.get_ref());
    let root = if root.is_relative() {
        base.join(root)
    } else {
        root
    };
    let interval = match &rs.interval {
        None => Duration::from_secs(6 * 3600),
        Some(i) => {
            let d = crate::policy::duration::parse(i.get_ref()).map_err(|_| {
                src.err_at(
                    i.span(),
                    "mirror.sources.interval",
                    format!(
                        "{:?} is not a duration; examples: \"30m\", \"6h\", \"1d\"",
                        i.get_ref()
                    ),
                )
            })?;
            let secs = d.as_secs();
            if !(60..=7 * 86400).contains(&secs) {
                return Err(src.err_at(
                    i.span(),
                    "mirror.sources.interval",
                    format!("{:?} is out of range; allowed: 1m to 7d", i.get_ref()),
                ));
            }
            Duration::from_secs(secs as u64)
        }
    };
    Ok(MirrorSource {
        name,
        url,
        root,
        interval,
    })
}

impl Config {
    /// The embedded defaults alone.
    pub fn defaults() -> Config {
        Self::from_sources(None, &Overrides::default()).expect("embedded defaults are valid")
    }

    /// Loads `file` (if any) over the defaults, then applies `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        match file {
            None => Self::from_sources(None, overrides),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                    origin: path.display().to_string(),
                    location: String::new(),
                    message: format!("cannot read the config file: {e}"),
                })?;
                Self::from_sources(Some((&path.display().to_string(), &text)), overrides)
            }
        }
    }

    /// Validates config text (`name` is used in error messages).
    pub fn from_sources(
        file: Option<(&str, &str)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let dsrc = Source {
            name: "<embedded defaults>",
            text: DEFAULT_CONFIG,
        };
        let defaults = dsrc.parse()?;
        let (fname, ftext) = file.unwrap_or(("<none>", ""));
        let fsrc = Source {
            name: fname,
            text: ftext,
        };
        let raw = fsrc.parse()?;

        let ds = defaults.server.as_ref();
        let fs = raw.server.as_ref();
        let dl = defaults.log.as_ref();
        let fl = raw.log.as_ref();
        let dd = defaults.database.as_ref();
        let fd = raw.database.as_ref();

        let env_err = |what: &str, message: String| ConfigError {
            origin: "flags/environment".into(),
            location: String::new(),
            message: format!("{what}: {message}"),
        };

        let data_dir = match &overrides.data_dir {
            Some(d) => d.clone(),
            None => {
                let l = pick(
                    raw.data_dir.as_ref(),
                    &fsrc,
                    defaults.data_dir.as_ref(),
                    &dsrc,
                );
                if l.value.trim().is_empty() {
                    return Err(l.src.err_at(
                        l.span,
                        "data_dir",
                        "must not be empty; give a directory path".into(),
                    ));
                }
                PathBuf::from(l.value)
            }
        };

        let listen = match &overrides.listen {
            Some(s) => parse_listen(s).map_err(|m| env_err("--listen / PATCHWARD_LISTEN", m))?,
            None => {
                let l = pick(
                    fs.and_then(|s| s.listen.as_ref()),
                    &fsrc,
                    ds.and_then(|s| s.listen.as_ref()),
                    &dsrc,
                );
                parse_listen(&l.value).map_err(|m| l.src.err_at(l.span, "server.listen", m))?
            }
        };

        let tls_listen = match &overrides.tls_listen {
            Some(s) => {
                parse_listen(s).map_err(|m| env_err("--tls-listen / PATCHWARD_TLS_LISTEN", m))?
            }
            None => {
                let l = pick(
                    fs.and_then(|s| s.tls_listen.as_ref()),
                    &fsrc,
                    ds.and_then(|s| s.tls_listen.as_ref()),
                    &dsrc,
                );
                parse_listen(&l.value).map_err(|m| l.src.err_at(l.span, "server.tls_listen", m))?
            }
        };
        if tls_listen == listen && listen.port() != 0 {
            return Err(ConfigError {
                origin: "configuration".into(),
                location: String::new(),
                message: format!(
                    "server.listen and server.tls_listen are both {listen}; the HTTP and HTTPS \
                     listeners need different ports (defaults: 8080 and 8443)"
                ),
            });
        }
        let base_dir = file
            .and_then(|(name, _)| Path::new(name).parent())
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let tls_path = |v: Option<&Spanned<String>>| -> Option<(PathBuf, std::ops::Range<usize>)> {
            let v = v?;
            let t = v.get_ref().trim();
            if t.is_empty() {
                return None;
            }
            let p = PathBuf::from(t);
            Some((if p.is_relative() { base_dir.join(p) } else { p }, v.span()))
        };
        let tls_cert = tls_path(fs.and_then(|s| s.tls_cert.as_ref()));
        let tls_key = tls_path(fs.and_then(|s| s.tls_key.as_ref()));
        let (tls_cert, tls_key) = match (tls_cert, tls_key) {
            (Some((c, _)), Some((k, _))) => (Some(c), Some(k)),
            (None, None) => (None, None),
            (Some((_, span)), None) => {
                return Err(fsrc.err_at(
                    span,
                    "server.tls_cert",
                    "is set but server.tls_key is not; give both (the certificate chain and \
                     its private key, PEM) or neither (a self-signed certificate is generated)"
                        .into(),
                ));
            }
            (None, Some((_, span))) => {
                return Err(fsrc.err_at(
                    span,
                    "server.tls_key",
                    "is set but server.tls_cert is not; give both or neither".into(),
                ));
            }
        };

        let max_body_bytes = positive(
            &pick(
                fs.and_then(|s| s.max_body_bytes.as_ref()),
                &fsrc,
                ds.and_then(|s| s.max_body_bytes.as_ref()),
                &dsrc,
            ),
            "server.max_body_bytes",
            1024,
            1 << 30,
        )?;
        let request_timeout_secs: u64 = positive(
            &pick(
                fs.and_then(|s| s.request_timeout_secs.as_ref()),
                &fsrc,
                ds.and_then(|s| s.request_timeout_secs.as_ref()),
                &dsrc,
            ),
            "server.request_timeout_secs",
            1,
            3600,
        )?;
        let shutdown_grace_secs: u64 = positive(
            &pick(
                fs.and_then(|s| s.shutdown_grace_secs.as_ref()),
                &fsrc,
                ds.and_then(|s| s.shutdown_grace_secs.as_ref()),
                &dsrc,
            ),
            "server.shutdown_grace_secs",
            1,
            300,
        )?;

        let format = match &overrides.log_format {
            Some(s) => parse_log_format(s)
                .map_err(|m| env_err("--log-format / PATCHWARD_LOG_FORMAT", m))?,
            None => {
                let l = pick(
                    fl.and_then(|s| s.format.as_ref()),
                    &fsrc,
                    dl.and_then(|s| s.format.as_ref()),
                    &dsrc,
                );
                parse_log_format(&l.value).map_err(|m| l.src.err_at(l.span, "log.format", m))?
            }
        };
        let level = match &overrides.log_level {
            Some(s) => check_level(s).map_err(|m| env_err("--log-level / PATCHWARD_LOG", m))?,
            None => {
                let l = pick(
                    fl.and_then(|s| s.level.as_ref()),
                    &fsrc,
                    dl.and_then(|s| s.level.as_ref()),
                    &dsrc,
                );
                check_level(&l.value).map_err(|m| l.src.err_at(l.span, "log.level", m))?
            }
        };

        let busy_timeout_ms: u64 = positive(
            &pick(
                fd.and_then(|s| s.busy_timeout_ms.as_ref()),
                &fsrc,
                dd.and_then(|s| s.busy_timeout_ms.as_ref()),
                &dsrc,
            ),
            "database.busy_timeout_ms",
            100,
            600_000,
        )?;
        let readers = positive(
            &pick(
                fd.and_then(|s| s.readers.as_ref()),
                &fsrc,
                dd.and_then(|s| s.readers.as_ref()),
                &dsrc,
            ),
            "database.readers",
            1,
            64,
        )?;

        let dst = defaults.store.as_ref();
        let fst = raw.store.as_ref();
        let free_space_reserve_mb: u64 = positive(
            &pick(
                fst.and_then(|s| s.free_space_reserve_mb.as_ref()),
                &fsrc,
                dst.and_then(|s| s.free_space_reserve_mb.as_ref()),
                &dsrc,
            ),
            "store.free_space_reserve_mb",
            0,
            1 << 30,
        )?;
        let verify_on_read = pick(
            fst.and_then(|s| s.verify_on_read.as_ref()),
            &fsrc,
            dst.and_then(|s| s.verify_on_read.as_ref()),
            &dsrc,
        )
        .value;
        let gc_grace_hours: u64 = positive(
            &pick(
                fst.and_then(|s| s.gc_grace_hours.as_ref()),
                &fsrc,
                dst.and_then(|s| s.gc_grace_hours.as_ref()),
                &dsrc,
            ),
            "store.gc_grace_hours",
            0,
            24 * 365,
        )?;

        let di = defaults.import.as_ref();
        let fi = raw.import.as_ref();
        let drop_dir = pick(
            fi.and_then(|s| s.drop_dir.as_ref()),
            &fsrc,
            di.and_then(|s| s.drop_dir.as_ref()),
            &dsrc,
        )
        .value;
        let stable_secs: u64 = positive(
            &pick(
                fi.and_then(|s| s.stable_secs.as_ref()),
                &fsrc,
                di.and_then(|s| s.stable_secs.as_ref()),
                &dsrc,
            ),
            "import.stable_secs",
            1,
            3600,
        )?;
        let max_upload_mb: u64 = positive(
            &pick(
                fi.and_then(|s| s.max_upload_mb.as_ref()),
                &fsrc,
                di.and_then(|s| s.max_upload_mb.as_ref()),
                &dsrc,
            ),
            "import.max_upload_mb",
            1,
            1 << 20,
        )?;

        let mut sources: Vec<MirrorSource> = Vec::new();
        for rs in raw.mirror.iter().flat_map(|m| m.sources.iter().flatten()) {
            let src = parse_source(rs, &fsrc, &base_dir)?;
            if sources.iter().any(|s| s.name == src.name) {
                return Err(fsrc.err_at(
                    rs.name.span(),
                    "mirror.sources.name",
                    format!("{:?} is listed twice; each feed needs one entry", src.name),
                ));
            }
            sources.push(src);
        }

        let policy = crate::policy::Policy::from_raw(&raw.policy.clone().unwrap_or_default())
            .map_err(|e| ConfigError {
                origin: fsrc.name.to_string(),
                location: format!(" key `{}`", e.key),
                message: e.message,
            })?;
        let apt = parse_apt(raw.apt.as_ref(), &fsrc, defaults.apt.as_ref(), &dsrc)?;
        let web = parse_web(raw.web.as_ref(), &fsrc, defaults.web.as_ref(), &dsrc)?;
        let agent_api = agent_api::parse(
            raw.agent_api.as_ref(),
            &fsrc,
            defaults.agent_api.as_ref(),
            &dsrc,
        )?;
        let legacy = legacy::parse(raw.legacy.as_ref(), &fsrc, defaults.legacy.as_ref(), &dsrc)?;
        let policy = crate::policy::Policy {
            legacy: legacy.clone(),
            ..policy
        };

        Ok(Config {
            policy,
            data_dir,
            web,
            server: ServerConfig {
                listen,
                tls_listen,
                tls_cert,
                tls_key,
                max_body_bytes,
                request_timeout: Duration::from_secs(request_timeout_secs),
                shutdown_grace: Duration::from_secs(shutdown_grace_secs),
            },
            log: LogConfig { format, level },
            database: DatabaseConfig {
                busy_timeout: Duration::from_millis(busy_timeout_ms),
                readers,
            },
            store: StoreConfig {
                free_space_reserve: free_space_reserve_mb * 1024 * 1024,
                verify_on_read,
                gc_grace: Duration::from_secs(gc_grace_hours * 3600),
            },
            import: ImportConfig {
                drop_dir: (!drop_dir.trim().is_empty()).then(|| PathBuf::from(drop_dir)),
                stable: Duration::from_secs(stable_secs),
                max_upload_bytes: max_upload_mb << 20,
            },
            mirror: MirrorConfig { sources },
            apt,
            agent_api,
            legacy,
        })
    }

    /// The effective configuration as TOML (what `patchward config show` prints).
    pub fn to_toml(&self) -> String {
        format!(
            "data_dir = {:?}\n\n[server]\nlisten = \"{}\"\ntls_listen = \"{}\"\n{}max_body_bytes = {}\n\
             request_timeout_secs = {}\nshutdown_grace_secs = {}\n\n[log]\n\
             format = \"{}\"\nlevel = {:?}\n\n[database]\nbusy_timeout_ms = {}\nreaders = {}\n\n\
             [store]\nfree_space_reserve_mb = {}\nverify_on_read = {}\ngc_grace_hours = {}\n\n\
             [import]\ndrop_dir = {:?}\nstable_secs = {}\nmax_upload_mb = {}\n\n{}{}\n{}\n{}\n{}",
            self.data_dir.display().to_string(),
            self.server.listen,
            self.server.tls_listen,
            match (&self.server.tls_cert, &self.server.tls_key) {
                (Some(c), Some(k)) => format!(
                    "tls_cert = {:?}\ntls_key = {:?}\n",
                    c.display().to_string(),
                    k.display().to_string()
                ),
                _ => String::new(),
            },
            self.server.max_body_bytes,
            self.server.request_timeout.as_secs(),
            self.server.shutdown_grace.as_secs(),
            match self.log.format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            },
            self.log.level,
            self.database.busy_timeout.as_millis(),
            self.database.readers,
            self.store.free_space_reserve / (1024 * 1024),
            self.store.verify_on_read,
            self.store.gc_grace.as_secs() / 3600,
            self.import
                .drop_dir
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            self.import.stable.as_secs(),
            self.import.max_upload_bytes >> 20,
            self.mirror
                .sources
                .iter()
                .map(|s| match &s.url {
                    Some(url) => format!(
                        "\n[[mirror.sources]]\nname = {:?}\nurl = {:?}\nroot = {:?}\ninterval = \"{}s\"\n",
                        s.name,
                        url,
                        s.root.display().to_string(),
                        s.interval.as_secs()
                    ),
                    // Bundle-only: no url, and so no interval either.
                    None => format!(
                        "\n[[mirror.sources]]\nname = {:?}\nroot = {:?}\n",
                        s.name,
                        s.root.display().to_string()
                    ),
                })
                .collect::<String>(),
            apt_toml(&self.apt),
            web_toml(&self.web),
            agent_api::to_toml(&self.agent_api),
            legacy::to_toml(&self.legacy),
        )
    }
}

fn web_toml(w: &crate::auth::WebSettings) -> String {
    format!(
        "[web]\nsession_idle_minutes = {}\nsession_max_hours = {}\nlogin_max_failures = {}\n\
         login_window_minutes = {}\nlogin_lockout_secs = {}\n",
        w.sessions.idle.as_secs() / 60,
        w.sessions.absolute.as_secs() / 3600,
        w.throttle.max_failures,
        w.throttle.window.as_secs() / 60,
        w.throttle.lockout.as_secs(),
    )
}

/// Validates `[web]`: session lifetimes and sign-in throttling.
fn parse_web(
    f: Option<&RawWeb>,
    fsrc: &Source<'_>,
    d: Option<&RawWeb>,
    dsrc: &Source<'_>,
) -> Result<crate::auth::WebSettings, ConfigError> {
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
    let idle: u64 = positive(
        &get!(session_idle_minutes),
        "web.session_idle_minutes",
        1,
        24 * 60,
    )?;
    let max_l = get!(session_max_hours);
    let max: u64 = positive(&max_l, "web.session_max_hours", 1, 24 * 30)?;
    if idle > max * 60 {
        return Err(max_l.src.err_at(
            max_l.span,
            "web.session_max_hours",
            format!("{max} h is shorter than session_idle_minutes ({idle} min)"),
        ));
    }
    let failures: u32 = positive(&get!(login_max_failures), "web.login_max_failures", 1, 100)?;
    let window: u64 = positive(
        &get!(login_window_minutes),
        "web.login_window_minutes",
        1,
        24 * 60,
    )?;
    let lockout: u64 = positive(
        &get!(login_lockout_secs),
        "web.login_lockout_secs",
        1,
        24 * 3600,
    )?;
    Ok(crate::auth::WebSettings {
        sessions: crate::auth::SessionRules {
            idle: Duration::from_secs(idle * 60),
            absolute: Duration::from_secs(max * 3600),
        },
        throttle: crate::auth::ThrottleRules {
            max_failures: failures,
            window: Duration::from_secs(window * 60),
            lockout: Duration::from_secs(lockout),
        },
    })
}

fn apt_toml(a: &crate::apt::AptSettings) -> String {
    let list = |v: &[String]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "[apt]\norigin = {:?}\nlabel = {:?}\nsuite = {:?}\narchitectures = [{}]\n\
         rings = [{}]\nvalid_until_days = {}\nresign_hours = {}\nby_hash_grace_hours = {}\n\
         xz_max_kib = {}\n",
        a.origin,
        a.label,
        a.suite,
        list(&a.architectures),
        list(&a.rings),
        a.valid_until.as_secs() / 86400,
        a.resign_every.as_secs() / 3600,
        a.by_hash_grace.as_secs() / 3600,
        a.xz_max_bytes / 1024,
    )
}

/// Validates `[apt]`: names apt and gpg read back safely, and a re-sign interval well
/// inside the validity, so a Release never expires between two re-signs.
fn parse_apt(
    f: Option<&RawApt>,
    fsrc: &Source<'_>,
    d: Option<&RawApt>,
    dsrc: &Source<'_>,
) -> Result<crate::apt::AptSettings, ConfigError> {
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
    let text = |l: Located<'_, String>, key: &str, extra: &str| -> Result<String, ConfigError> {
        let v = l.value.trim().to_string();
        if v.is_empty() || v.len() > 64 || v.chars().any(|c| c.is_control()) {
            return Err(l.src.err_at(
                l.span,
                key,
                format!("{:?} must be 1-64 printable characters{extra}", l.value),
            ));
        }
        Ok(v)
    };
    let word = |s: &str| {
        !s.is_empty()
            && s.len() <= 32
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    };
    let origin = text(get!(origin), "apt.origin", "")?;
    let label = text(get!(label), "apt.label", "")?;
    let suite_l = get!(suite);
    let suite = suite_l.value.clone();
    let rendered = suite.replace("{ring}", "pilot");
    if !suite.contains("{ring}")
        || !rendered
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(suite_l.src.err_at(
            suite_l.span,
            "apt.suite",
            format!(
                "{suite:?} must contain {{ring}} (each ring needs its own suite) and otherwise \
                 only letters, digits, '-', '_' and '.', e.g. \"{{ring}}\" or \"site-{{ring}}\""
            ),
        ));
    }
    let archs_l = get!(architectures);
    if archs_l.value.is_empty() || archs_l.value.iter().any(|a| !word(a) || a == "all") {
        return Err(archs_l.src.err_at(
            archs_l.span,
            "apt.architectures",
            "list one or more Debian architectures such as \"amd64\", \"arm64\", \"i386\" \
             (\"all\" packages go into each)"
                .into(),
        ));
    }
    let rings_l = get!(rings);
    if let Some(bad) = rings_l.value.iter().find(|r| !word(r)) {
        return Err(rings_l.src.err_at(
            rings_l.span,
            "apt.rings",
            format!("{bad:?} is not a ring name (1-32 of a-z A-Z 0-9 - _)"),
        ));
    }
    let valid_days: u64 = positive(&get!(valid_until_days), "apt.valid_until_days", 1, 365)?;
    let resign_l = get!(resign_hours);
    let resign_hours: u64 = positive(&resign_l, "apt.resign_hours", 1, 24 * 365)?;
    if resign_hours * 2 > valid_days * 24 {
        return Err(resign_l.src.err_at(
            resign_l.span,
            "apt.resign_hours",
            format!(
                "{resign_hours} h is more than half of valid_until_days ({valid_days} d); \
                 re-sign at least twice per validity period so clients never see an expired \
                 Release"
            ),
        ));
    }
    let grace_hours: u64 = positive(
        &get!(by_hash_grace_hours),
        "apt.by_hash_grace_hours",
        0,
        24 * 30,
    )?;
    let xz_kib: u64 = positive(&get!(xz_max_kib), "apt.xz_max_kib", 0, 1 << 20)?;
    Ok(crate::apt::AptSettings {
        origin,
        label,
        suite,
        architectures: archs_l.value,
        rings: rings_l.value,
        valid_until: Duration::from_secs(valid_days * 86400),
        resign_every: Duration::from_secs(resign_hours * 3600),
        by_hash_grace: Duration::from_secs(grace_hours * 3600),
        xz_max_bytes: xz_kib * 1024,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected_err: &str) {
        let r = Config::from_sources(Some(("site.toml", text)), &Overrides::default());
        match r {
            Ok(_) if expected_err.is_empty() => {}
            Ok(c) => panic!("expected error containing {expected_err:?}, got {c:?}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    !expected_err.is_empty() && msg.contains(expected_err),
                    "error {msg:?} does not contain {expected_err:?}"
                );
            }
        }
    }

    #[test]
    fn defaults_are_valid_and_local_only() {
        let c = Config::defaults();
        assert_eq!(c.data_dir, PathBuf::from("./patchward-data"));
        assert!(c.server.listen.ip().is_loopback());
        assert_eq!(c.server.shutdown_grace, Duration::from_secs(5));
        assert_eq!(c.log.format, LogFormat::Text);
    }

    #[test]
    fn file_values_and_errors() {
        check("", "");
        check("[server]\nlisten = \"[::]:8080\"\n", "");
        check("bogus = 1\n", "site.toml:1: unknown field `bogus`");
        check(
            "\n[server]\nlisten = \"nope\"\n",
            "site.toml:3: key `server.listen`: \"nope\" is not a socket address",
        );
        check(
            "[server]\nlistn = \"x\"\n",
            "unknown field `listn`, expected one of `listen`",
        );
        check(
            "[server]\nmax_body_bytes = 0\n",
            "site.toml:2: key `server.max_body_bytes`: 0 is out of range; allowed: 1024",
        );
        check("[log]\nformat = \"xml\"\n", "allowed: \"text\", \"json\"");
        check("[log]\nlevel = \"=[\"\n", "key `log.level`");
        check("data_dir = \"\"\n", "key `data_dir`: must not be empty");
        check("[server\n", "site.toml:1");
        check("[store]\nverify_on_read = \"yes\"\n", "site.toml:2");
        check(
            "[[mirror.sources]]\nname = \"a b\"\nurl = \"https://x/\"\nroot = \"r.json\"\n",
            "site.toml:2: key `mirror.sources.name`",
        );
        check(
            "[[mirror.sources]]\nname = \"a\"\nurl = \"ftp://x/\"\nroot = \"r.json\"\n",
            "site.toml:3: key `mirror.sources.url`: \"ftp://x/\" must start with",
        );
        check(
            "[[mirror.sources]]\nname = \"a\"\nurl = \"file:///x\"\nroot = \"r\"\ninterval = \"soon\"\n",
            "key `mirror.sources.interval`: \"soon\" is not a duration",
        );
        check(
            "[[mirror.sources]]\nname = \"a\"\nurl = \"file:///x\"\nroot = \"r\"\n\
             [[mirror.sources]]\nname = \"a\"\nurl = \"file:///y\"\nroot = \"r\"\n",
            "site.toml:6: key `mirror.sources.name`: \"a\" is listed twice",
        );
        // `url` is optional (bundle-only sources); `root` is what trust needs.
        check("[[mirror.sources]]\nname = \"a\"\n", "missing field `root`");
        check(
            "[apt]\nsuite = \"fixed\"\n",
            "site.toml:2: key `apt.suite`: \"fixed\" must contain {ring}",
        );
        check("[apt]\narchitectures = []\n", "key `apt.architectures`");
        check(
            "[apt]\nrings = [\"a b\"]\n",
            "key `apt.rings`: \"a b\" is not a ring name",
        );
        check(
            "[apt]\nvalid_until_days = 1\nresign_hours = 24\n",
            "site.toml:3: key `apt.resign_hours`: 24 h is more than half",
        );
        check(
            "[apt]\nvalid_until_days = 0\n",
            "key `apt.valid_until_days`: 0 is out of range",
        );
        check("[apt]\norigin = \"\"\n", "key `apt.origin`");
    }

    /// Issue [8] item 21: a source without a url is bundle-only; an interval on it is
    /// refused as meaningless, and `config show` round-trips it.
    #[test]
    fn a_source_without_a_url_is_bundle_only() {
        let text = "[[mirror.sources]]\nname = \"usb\"\nroot = \"/etc/patchward/usb.root.json\"\n";
        let c = Config::from_sources(Some(("site.toml", text)), &Overrides::default()).unwrap();
        assert_eq!(c.mirror.sources[0].url, None);
        let again =
            Config::from_sources(Some(("shown", &c.to_toml())), &Overrides::default()).unwrap();
        assert_eq!(again.mirror.sources, c.mirror.sources);
        let e = Config::from_sources(
            Some(("site.toml", &format!("{text}interval = \"1h\"\n"))),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("key `mirror.sources.interval`") && e.contains("has no url (bundle-only)"),
            "{e}"
        );
    }

    #[test]
    fn mirror_sources_resolve_relative_roots_against_the_config_file() {
        let text = "[[mirror.sources]]\nname = \"msp\"\nurl = \"https://f.example/\"\n\
                    root = \"roots/msp.root.json\"\ninterval = \"30m\"\n";
        let c = Config::from_sources(
            Some(("/etc/patchward/patchward.toml", text)),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.mirror.sources,
            vec![MirrorSource {
                name: "msp".into(),
                url: Some("https://f.example/".into()),
                root: "/etc/patchward/roots/msp.root.json".into(),
                interval: Duration::from_secs(1800),
            }]
        );
    }

    #[test]
    fn the_interval_examples_the_error_gives_all_parse() {
        for (text, secs) in [
            ("30m", 1800),
            ("6h", 21_600),
            ("1d", 86_400),
            ("7d", 604_800),
        ] {
            let toml = format!(
                "[[mirror.sources]]\nname = \"a\"\nurl = \"file:///x\"\nroot = \"/r\"\n\
                 interval = \"{text}\"\n"
            );
            let c = Config::from_sources(Some(("t.toml", &toml)), &Overrides::default())
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                c.mirror.sources[0].interval,
                Duration::from_secs(secs),
                "{text}"
            );
        }
    }

    #[test]
    fn overrides_win_over_file() {
        let o = Overrides {
            data_dir: Some("/srv/pw".into()),
            listen: Some("127.0.0.1:9".into()),
            tls_listen: Some("127.0.0.1:10".into()),
            log_format: Some("json".into()),
            log_level: None,
        };
        let c = Config::from_sources(Some(("f", "data_dir = \"/x\"\n")), &o).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/pw"));
        assert_eq!(c.server.listen.port(), 9);
        assert_eq!(c.log.format, LogFormat::Json);
        let bad = Overrides {
            listen: Some("localhost".into()),
            ..Default::default()
        };
        let e = Config::from_sources(None, &bad).unwrap_err().to_string();
        assert!(e.contains("--listen / PATCHWARD_LISTEN"), "{e}");
    }

    #[test]
    fn show_round_trips() {
        let c = Config::defaults();
        let again =
            Config::from_sources(Some(("shown", &c.to_toml())), &Overrides::default()).unwrap();
        assert_eq!(again.to_toml(), c.to_toml());
    }
}
