//! DNS-name peers (issue [10]): flows may name a peer by DNS name; the daemon resolves
//! it (A and AAAA) every `legacy.dns_refresh` and stores each address with the time its
//! record expires (`legacy_dns`). The renderer gives these elements an nft `timeout`,
//! so an address leaves the fence when its record's TTL runs out.
//!
//! Rules:
//! - a name is due when it has no live answers or its first answer expires within
//!   `every`; only due names are asked;
//! - `expires_at = now + TTL`, the TTL clamped to at least [`MIN_TTL`], whole seconds
//!   (`now` is the appliance clock's time, given by the caller);
//! - a family (A or AAAA) that answered replaces that family's stored answers; one whose
//!   lookup failed (timeout, SERVFAIL, ...) keeps its answers until they expire, and so
//!   does a name that came back with no address at all (NXDOMAIN, no records): a DNS
//!   outage neither widens the fence nor closes it early;
//! - a failed name gets one `dns_failed` event per failure streak (per host using it);
//! - expired rows are pruned.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use super::LegacyError;
use super::flows::{Flow, Peer};
use crate::config::LegacyConfig;
use crate::db::Db;
use crate::db::legacy_monitor::insert_event;
use crate::db::legacy_segment::{self as q, DnsRow};

/// The shortest TTL an answer is kept for (a TTL of 0 would flap the fence).
pub const MIN_TTL: Duration = Duration::from_secs(5);
/// One lookup's limit.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// At most this many names are asked at once.
const CONCURRENCY: usize = 16;

/// A resolver for DNS-name peers, and the names whose lookups are failing now (so a
/// failure streak is reported once).
pub struct Resolver {
    inner: TokioResolver,
    failing: Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

/// What one refresh did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsRefresh {
    /// The stored answers changed (addresses or expiry): the fence should be rendered
    /// again so the kernel's element timeouts follow.
    pub changed: bool,
    /// Names that resolved to at least one address.
    pub resolved: usize,
    /// Names whose lookup failed, with why.
    pub failed: Vec<(String, String)>,
}

fn opts(timeout: Duration) -> ResolverOpts {
    let mut o = ResolverOpts::default();
    o.timeout = timeout;
    o.attempts = 1;
    // Every refresh asks the servers: the TTL they give is what the fence follows.
    o.cache_size = 0;
    // A hosts-file entry has no TTL; DNS-name peers come from DNS only.
    o.use_hosts_file = ResolveHosts::Never;
    o
}

impl Resolver {
    /// `legacy.dns_servers` (each "IP:port"), or the system's /etc/resolv.conf when the
    /// list is empty.
    pub fn from_config(cfg: &LegacyConfig) -> Result<Self, LegacyError> {
        if cfg.dns_servers.is_empty() {
            Self::system(LOOKUP_TIMEOUT)
        } else {
            Self::with_servers(&cfg.dns_servers, LOOKUP_TIMEOUT)
        }
    }

    /// Asks `servers` (UDP, then TCP on truncation), each lookup within `timeout`.
    pub fn with_servers(servers: &[SocketAddr], timeout: Duration) -> Result<Self, LegacyError> {
        let ns = servers
            .iter()
            .map(|s| {
                let mut udp = ConnectionConfig::udp();
                udp.port = s.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = s.port();
                NameServerConfig::new(s.ip(), true, vec![udp, tcp])
            })
            .collect();
        let config = ResolverConfig::from_name_servers(ns);
        let builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts(timeout));
        Self::built(
            builder.build().map_err(|e| {
                LegacyError::Refused(format!("cannot set up the DNS resolver: {e}"))
            })?,
        )
    }

    /// The system's configuration (/etc/resolv.conf).
    pub fn system(timeout: Duration) -> Result<Self, LegacyError> {
        let refuse = |e: &dyn std::fmt::Display| {
            LegacyError::Refused(format!(
                "cannot read the system's DNS configuration (/etc/resolv.conf): {e}; \
                 set legacy.dns_servers (e.g. [\"192.0.2.53:53\"])"
            ))
        };
        let mut builder = TokioResolver::builder_tokio().map_err(|e| refuse(&e))?;
        let o = builder.options_mut();
        let want = opts(timeout);
        o.timeout = want.timeout;
        o.attempts = want.attempts;
        o.cache_size = want.cache_size;
        o.use_hosts_file = want.use_hosts_file;
        Self::built(builder.build().map_err(|e| refuse(&e))?)
    }

    fn built(inner: TokioResolver) -> Result<Self, LegacyError> {
        Ok(Self {
            inner,
            failing: Mutex::new(BTreeSet::new()),
        })
    }
}

/// One family's answer: addresses with TTLs (seconds), or why the lookup failed.
type FamilyAnswer = Result<Vec<(IpAddr, u32)>, String>;

/// What one name's lookups said.
#[derive(Debug, Clone)]
struct NameAnswer {
    v4: FamilyAnswer,
    v6: FamilyAnswer,
    nxdomain: bool,
}

async fn lookup_family(r: &TokioResolver, name: &str, rt: RecordType) -> (FamilyAnswer, bool) {
    match r.lookup(name, rt).await {
        Ok(l) => {
            let addrs = l
                .answers()
                .iter()
                .filter_map(|rec| match &rec.data {
                    RData::A(a) if rt == RecordType::A => Some((IpAddr::V4(a.0), rec.ttl)),
                    RData::AAAA(a) if rt == RecordType::AAAA => Some((IpAddr::V6(a.0), rec.ttl)),
                    _ => None,
                })
                .collect();
            (Ok(addrs), false)
        }
        Err(e) if e.is_no_records_found() => (Ok(Vec::new()), e.is_nx_domain()),
        Err(e) => (Err(e.to_string()), false),
    }
}

async fn lookup(r: TokioResolver, name: String) -> (String, NameAnswer) {
    // A fully qualified query: no search domains appended.
    let fq = if name.ends_with('.') {
        name.clone()
    } else {
        format!("{name}.")
    };
    let ((v4, nx4), (v6, nx6)) = tokio::join!(
        lookup_family(&r, &fq, RecordType::A),
        lookup_family(&r, &fq, RecordType::AAAA)
    );
    (
        name,
        NameAnswer {
            v4,
            v6,
            nxdomain: nx4 || nx6,
        },
    )
}

fn expiry(now: Timestamp, ttl: u32) -> Timestamp {
    let secs = i64::from(ttl).max(MIN_TTL.as_secs() as i64);
    let whole = Timestamp::from_second(now.as_second()).unwrap_or(now);
    whole
        .checked_add(SignedDuration::from_secs(secs))
        .unwrap_or(Timestamp::MAX)
}

/// The rows a name keeps after its answer (pure): answered families replaced, failed
/// ones kept; `None` when the name failed as a whole (nothing to write), with why.
fn merge(
    name: &str,
    old: &[DnsRow],
    a: &NameAnswer,
    now: Timestamp,
) -> (Option<Vec<DnsRow>>, Option<String>) {
    let fresh: Vec<&(IpAddr, u32)> = [&a.v4, &a.v6]
        .into_iter()
        .filter_map(|f| f.as_ref().ok())
        .flatten()
        .collect();
    let errors: Vec<&String> = [&a.v4, &a.v6]
        .into_iter()
        .filter_map(|f| f.as_ref().err())
        .collect();
    if fresh.is_empty() {
        let why = match (errors.first(), a.nxdomain) {
            (Some(e), _) => (*e).clone(),
            (None, true) => "no such name (NXDOMAIN)".to_string(),
            (None, false) => "no A or AAAA records".to_string(),
        };
        return (None, Some(why));
    }
    let mut rows: Vec<DnsRow> = fresh
        .iter()
        .map(|(addr, ttl)| DnsRow {
            name: name.to_string(),
            address: addr.to_string(),
            expires_at: expiry(now, *ttl).to_string(),
            resolved_at: now.to_string(),
        })
        .collect();
    let failed_v4 = a.v4.is_err();
    let failed_v6 = a.v6.is_err();
    for r in old {
        let v4 = r.address.parse::<IpAddr>().map(|x| x.is_ipv4()).ok();
        if (v4 == Some(true) && failed_v4) || (v4 == Some(false) && failed_v6) {
            rows.push(r.clone());
        }
    }
    let why = errors.first().map(|e| (*e).clone());
    (Some(rows), why)
}

/// Resolves the due names among `names` and stores their answers (see the module
/// doc). Call from async code; the database work runs on the blocking pool.
pub async fn refresh_due(
    db: &Db,
    resolver: &Resolver,
    names: &[String],
    now: Timestamp,
    every: Duration,
) -> Result<DnsRefresh, LegacyError> {
    let now_s = now.to_string();
    // Every stored row, expired ones too (until pruned below): an answer that expired
    // makes its name due, and its pruning is a change the fence must follow.
    let stored = db
        .read(move |c| q::dns_live(c, "").map_err(LegacyError::from))
        .await?;
    let live: Vec<DnsRow> = stored
        .iter()
        .filter(|r| r.expires_at > now_s)
        .cloned()
        .collect();
    let mut by_name: BTreeMap<String, Vec<DnsRow>> = BTreeMap::new();
    for r in &live {
        by_name.entry(r.name.clone()).or_default().push(r.clone());
    }
    let horizon = now
        .checked_add(SignedDuration::try_from(every).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
        .to_string();
    let wanted: BTreeSet<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    let due: Vec<String> = wanted
        .iter()
        .filter(|n| match by_name.get(*n) {
            None => true,
            Some(rows) => {
                rows.iter().any(|r| r.expires_at <= horizon)
                    || stored
                        .iter()
                        .any(|r| &r.name == *n && r.expires_at <= now_s)
            }
        })
        .cloned()
        .collect();

    let mut answers = Vec::with_capacity(due.len());
    for chunk in due.chunks(CONCURRENCY) {
        let mut set = tokio::task::JoinSet::new();
        for n in chunk {
            set.spawn(lookup(resolver.inner.clone(), n.clone()));
        }
        while let Some(done) = set.join_next().await {
            answers.push(
                done.map_err(|e| LegacyError::Refused(format!("a DNS lookup task failed: {e}")))?,
            );
        }
    }
    answers.sort_by(|a, b| a.0.cmp(&b.0));

    let mut out = DnsRefresh::default();
    let mut writes: Vec<(String, Vec<DnsRow>)> = Vec::new();
    let mut new_failures: Vec<(String, String, usize)> = Vec::new();
    {
        let mut failing = resolver.failing.lock().unwrap_or_else(|p| p.into_inner());
        for (name, a) in &answers {
            let old = by_name.get(name).map(Vec::as_slice).unwrap_or(&[]);
            let (rows, why) = merge(name, old, a, now);
            if let Some(rows) = rows {
                out.resolved += 1;
                writes.push((name.clone(), rows));
            }
            match why {
                Some(why) => {
                    if failing.insert(name.clone()) {
                        new_failures.push((name.clone(), why.clone(), old.len()));
                    }
                    out.failed.push((name.clone(), why));
                }
                None => {
                    failing.remove(name);
                }
            }
        }
    }

    let before: BTreeSet<(String, String, String)> = stored
        .iter()
        .map(|r| (r.name.clone(), r.address.clone(), r.expires_at.clone()))
        .collect();
    let after = db
        .write(move |tx| {
            for (name, rows) in &writes {
                q::replace_dns(tx, name, rows)?;
            }
            q::prune_dns(tx, &now_s)?;
            if !new_failures.is_empty() {
                let users = dns_users(tx)?;
                for (name, why, kept) in &new_failures {
                    let text = format!(
                        "DNS name {name} could not be resolved ({why}); its {kept} stored \
                         address(es) stay in the fence until their records expire"
                    );
                    let detail = json!({ "name": name, "error": why, "kept": kept }).to_string();
                    let hosts = users.get(name).cloned().unwrap_or_default();
                    if hosts.is_empty() {
                        insert_event(
                            tx,
                            &format!("dns:{name}"),
                            &now_s,
                            "dns_failed",
                            &text,
                            &detail,
                        )?;
                    }
                    for h in hosts {
                        insert_event(tx, &h, &now_s, "dns_failed", &text, &detail)?;
                    }
                }
            }
            Ok::<_, LegacyError>(q::dns_live(tx, &now_s)?)
        })
        .await?;
    let after: BTreeSet<(String, String, String)> = after
        .into_iter()
        .map(|r| (r.name, r.address, r.expires_at))
        .collect();
    out.changed = before != after;
    Ok(out)
}

/// Per DNS name, the keys of the hosts whose flows use it.
fn dns_users(
    conn: &rusqlite::Connection,
) -> Result<BTreeMap<String, BTreeSet<String>>, LegacyError> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in q::flows_all(conn)? {
        if let Ok(Flow {
            peer: Peer::Dns(n), ..
        }) = r.flow.parse::<Flow>()
        {
            out.entry(n).or_default().insert(r.host);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "dns_tests.rs"]
pub(crate) mod tests;
