//! The monitor's daemon edge (issue [10]): which legacy hosts are watched, on which
//! ports, from which address; the ports added by hand (`legacy monitor add-port`); and
//! the view the CLI and the pages read (state, since, last cycle, ports).
//!
//! Decisions (ARCHITECTURE.md "[10] monitor in the daemon (hM)"):
//! - **One probe address per host**: the first usable IPv4 address in the host's list
//!   (registry order, or the agent's inventory order), else the first usable IPv6
//!   one; a loopback address only when there is nothing else (test and benchmark
//!   hosts). Unspecified, multicast and IPv6 link-local addresses (which need a scope
//!   the appliance cannot know) are skipped. The state machine tracks one
//!   address; probing two would double the load on a fragile device.
//! - **Ports**: the single TCP ports of the host's `in` flows, plus the added ones. A
//!   port range of a flow is not probed at all (not even its first port): nothing says
//!   any port of it listens, a refused probe counts as a failure, and the monitor never
//!   sweeps. Add one of its ports by hand to watch it. udp and icmp flows are not
//!   probed (the monitor is a TCP connect).
//! - **Banner**: [`WatchedPort::new`]'s choice (21, 22, 25, 587), unless the port was
//!   added with `--banner`/`--no-banner`. A port both in a flow and added shows source
//!   `added` (its flag is the operator's).
//! - A legacy host without an address or without a watched port is `unwatched`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use jiff::Timestamp;
use rusqlite::Connection;
use serde::Serialize;
use serde_json::json;

use super::flows::{Direction, Flow, Proto};
use super::monitor::{Target, WatchedPort};
use super::{HostRef, LegacyError, hosts};
use crate::audit::{self, NewEntry};
use crate::config::LegacyConfig;
use crate::db::Db;
use crate::db::legacy_monitor::{self as mq, PortRow};
use crate::db::legacy_segment as sq;

/// One host as the monitor shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonitorView {
    /// `up`, `pending`, `down` or `unwatched`.
    pub state: String,
    /// When the current state began (none while unwatched or not probed yet).
    pub since: Option<String>,
    /// When the last cycle that probed it ended.
    pub last_cycle: Option<String>,
    pub ports: Vec<WatchedPortView>,
}

/// One watched port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WatchedPortView {
    pub port: u16,
    /// `flow` (a single port of an `in` tcp flow) or `added` (`legacy monitor add-port`).
    pub source: &'static str,
    pub banner: bool,
}

/// One legacy host's watch plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostWatch {
    pub key: String,
    pub display: String,
    /// The probe address ([`probe_address`]); none when the host has no usable one.
    pub addr: Option<IpAddr>,
    pub ports: Vec<WatchedPortView>,
}

impl HostWatch {
    /// Watched: it has an address and at least one port.
    pub fn target(&self) -> Option<Target> {
        let addr = self.addr?;
        if self.ports.is_empty() {
            return None;
        }
        Some(Target {
            name: self.key.clone(),
            addr,
            ports: self
                .ports
                .iter()
                .map(|p| WatchedPort {
                    port: p.port,
                    banner: p.banner,
                })
                .collect(),
        })
    }
}

fn usable(a: &IpAddr) -> bool {
    if a.is_unspecified() || a.is_multicast() {
        return false;
    }
    match a {
        IpAddr::V4(v4) => !v4.is_broadcast(),
        // fe80::/10 needs a scope id.
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
    }
}

/// The address the monitor probes (see the module's decisions). An agent reports its
/// interface addresses with their prefix (`10.0.0.5/24`): the prefix is dropped. Texts
/// that are not addresses are skipped.
pub fn probe_address<S: AsRef<str>>(addresses: &[S]) -> Option<IpAddr> {
    let parsed: Vec<IpAddr> = addresses
        .iter()
        .filter_map(|a| {
            let t = a.as_ref().trim();
            t.split_once('/')
                .map_or(t, |(addr, _)| addr)
                .parse::<IpAddr>()
                .ok()
        })
        .filter(usable)
        .collect();
    // Loopback last: only a test host (or the benchmark's) is watched there.
    let rank = |a: &IpAddr| (a.is_loopback(), !a.is_ipv4());
    parsed.iter().min_by_key(|a| rank(a)).copied()
}

/// The watched ports of a host with `flows` and the `added` rows (pure), by port.
pub fn watched_ports(flows: &[Flow], added: &[PortRow]) -> Vec<WatchedPortView> {
    let mut out: BTreeMap<u16, WatchedPortView> = BTreeMap::new();
    for f in flows {
        if f.direction != Direction::In || f.proto != Proto::Tcp {
            continue;
        }
        for r in f.ports.iter().filter(|r| r.first == r.last) {
            out.insert(
                r.first,
                WatchedPortView {
                    port: r.first,
                    source: "flow",
                    banner: WatchedPort::new(r.first).banner,
                },
            );
        }
    }
    for a in added {
        out.insert(
            a.port,
            WatchedPortView {
                port: a.port,
                source: "added",
                banner: a.banner,
            },
        );
    }
    out.into_values().collect()
}

/// Every stored flow, parsed, by host key.
fn flows_by_host(conn: &Connection) -> Result<BTreeMap<String, Vec<Flow>>, LegacyError> {
    let mut out: BTreeMap<String, Vec<Flow>> = BTreeMap::new();
    for row in sq::flows_all(conn)? {
        let f: Flow = row.flow.parse().map_err(|e| {
            LegacyError::Refused(format!(
                "the stored flow {:?} of host {:?} is damaged: {e}",
                row.flow, row.host
            ))
        })?;
        out.entry(row.host).or_default().push(f);
    }
    Ok(out)
}

/// The watch plan of every legacy host (as `legacy::hosts::list` sees them at `now`),
/// by key.
pub fn plan(
    conn: &Connection,
    now: Timestamp,
    cfg: &LegacyConfig,
) -> Result<Vec<HostWatch>, LegacyError> {
    let mut flows = flows_by_host(conn)?;
    let mut added: BTreeMap<String, Vec<PortRow>> = BTreeMap::new();
    for row in mq::ports_all(conn)? {
        added.entry(row.host.clone()).or_default().push(row);
    }
    let mut out: Vec<HostWatch> = hosts::list(conn, now, cfg)?
        .into_iter()
        .map(|v| {
            let key = v.host.key().to_string();
            let ports = watched_ports(
                &flows.remove(&key).unwrap_or_default(),
                &added.remove(&key).unwrap_or_default(),
            );
            HostWatch {
                addr: probe_address(&v.addresses),
                display: v.name,
                key,
                ports,
            }
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// The monitor view of every legacy host, by key.
pub fn views(
    conn: &Connection,
    now: Timestamp,
    cfg: &LegacyConfig,
) -> Result<BTreeMap<String, MonitorView>, LegacyError> {
    let mut states: BTreeMap<String, mq::StateRow> = mq::states_all(conn)?
        .into_iter()
        .map(|s| (s.host.clone(), s))
        .collect();
    Ok(plan(conn, now, cfg)?
        .into_iter()
        .map(|h| {
            let state = states.remove(&h.key);
            let view = view_of(&h, state);
            (h.key, view)
        })
        .collect())
}

/// A host's view from its plan and its stored state (pure).
pub fn view_of(h: &HostWatch, state: Option<mq::StateRow>) -> MonitorView {
    let watched = h.addr.is_some() && !h.ports.is_empty();
    match (watched, state) {
        (false, _) => MonitorView {
            state: "unwatched".into(),
            since: None,
            last_cycle: None,
            ports: h.ports.clone(),
        },
        (true, Some(s)) => MonitorView {
            state: s.state,
            since: Some(s.since),
            last_cycle: Some(s.last_cycle),
            ports: h.ports.clone(),
        },
        (true, None) => MonitorView {
            state: "pending".into(),
            since: None,
            last_cycle: None,
            ports: h.ports.clone(),
        },
    }
}

/// Why a host is unwatched, and what to do about it; none when it is watched.
pub fn unwatched_hint(h: &HostWatch) -> Option<String> {
    if h.addr.is_none() {
        return Some(format!(
            "{} has no address the monitor can probe: give it one (legacy add ... --address)",
            h.display
        ));
    }
    if h.ports.is_empty() {
        return Some(format!(
            "{} has no watched port: add an `in tcp` flow with a single port \
             (legacy flow add {} \"in tcp PEER port 22\") or a port \
             (legacy monitor add-port {} PORT)",
            h.display, h.display, h.display
        ));
    }
    None
}

fn invalid_port(port: u16) -> Result<(), LegacyError> {
    if port == 0 {
        return Err(LegacyError::Invalid {
            field: "port".into(),
            reason: "0 is not a TCP port: give one from 1 to 65535".into(),
        });
    }
    Ok(())
}

/// Watches `port` of `host` besides its flows, with a banner read when `banner` says so
/// (none: [`WatchedPort::new`]'s choice). Changing the banner flag of an added port is
/// allowed; adding it again unchanged is refused (nothing to do). Audited.
pub fn add_port(
    db: &Db,
    now: Timestamp,
    host: &str,
    port: u16,
    banner: Option<bool>,
    actor: &str,
) -> Result<HostRef, LegacyError> {
    invalid_port(port)?;
    let banner = banner.unwrap_or_else(|| WatchedPort::new(port).banner);
    db.write_blocking(|tx| {
        let h = super::resolve(tx, host)?;
        let old = mq::ports_of(tx, h.key())?
            .into_iter()
            .find(|p| p.port == port);
        if old.as_ref().is_some_and(|o| o.banner == banner) {
            return Err(LegacyError::Refused(format!(
                "port {port} of {} is already watched (banner {}, added by {} at {}); \
                 nothing changed",
                h.display_name(),
                if banner { "on" } else { "off" },
                old.as_ref().map_or("", |o| o.added_by.as_str()),
                old.as_ref().map_or("", |o| o.added_at.as_str()),
            )));
        }
        mq::upsert_port(
            tx,
            &PortRow {
                host: h.key().to_string(),
                port,
                banner,
                added_at: now.to_string(),
                added_by: actor.to_string(),
            },
        )?;
        let mut details = json!({ "host": h.display_name(), "port": port, "banner": banner });
        if let Some(o) = &old {
            details["replaces"] = json!({ "banner": o.banner, "added_by": o.added_by });
        }
        audit::append(
            tx,
            now,
            &NewEntry {
                actor,
                action: "legacy.monitor_add_port",
                subject: h.key(),
                details,
            },
        )?;
        Ok(h)
    })
}

/// Stops watching an added port. Refused when the port was not added (a flow's port is
/// removed with its flow). Audited.
pub fn remove_port(
    db: &Db,
    now: Timestamp,
    host: &str,
    port: u16,
    actor: &str,
) -> Result<HostRef, LegacyError> {
    invalid_port(port)?;
    db.write_blocking(|tx| {
        let h = super::resolve(tx, host)?;
        let old = mq::ports_of(tx, h.key())?;
        let Some(row) = old.iter().find(|p| p.port == port) else {
            let flows = flows_by_host(tx)?.remove(h.key()).unwrap_or_default();
            let from_flow = flows.iter().find(|f| {
                f.direction == Direction::In
                    && f.proto == Proto::Tcp
                    && f.ports.iter().any(|r| r.first == port && r.last == port)
            });
            return Err(LegacyError::Refused(match from_flow {
                Some(f) => format!(
                    "port {port} of {} is watched because of its flow `{f}`, not added by \
                     hand: remove that flow to stop watching it",
                    h.display_name()
                ),
                None => {
                    let added: BTreeSet<u16> = old.iter().map(|p| p.port).collect();
                    format!(
                        "port {port} of {} was not added to the monitor; added ports: {}",
                        h.display_name(),
                        if added.is_empty() {
                            "none".to_string()
                        } else {
                            added
                                .iter()
                                .map(u16::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    )
                }
            }));
        };
        mq::delete_port(tx, h.key(), port)?;
        audit::append(
            tx,
            now,
            &NewEntry {
                actor,
                action: "legacy.monitor_remove_port",
                subject: h.key(),
                details: json!({
                    "host": h.display_name(),
                    "port": port,
                    "banner": row.banner,
                    "added_by": row.added_by,
                    "added_at": row.added_at,
                }),
            },
        )?;
        Ok(h)
    })
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
