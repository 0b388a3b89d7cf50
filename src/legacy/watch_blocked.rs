//! Blocked flows, from the helper's counters to events (pure: readings and times in,
//! events and packet deltas out).
//!
//! `patchward-netd` returns, for the applied table, each refused (source, destination,
//! protocol, port) with its packet count (the `blocked` sets, whose elements the kernel
//! forgets an hour after their last packet) and each host's `drop_in_*`/`drop_out_*`
//! counter. [`BlockedTracker::observe`] turns successive readings into:
//!
//! - **deltas**: a count smaller than the last reading, or a key not seen in the last
//!   reading, means the table was re-applied or the element expired and came back: the
//!   count is taken as counted from zero (a reset), never as a negative delta.
//! - **events**, at most one per (host, direction, peer, port) per hour: the packets
//!   counted since that key's last event (the first one as soon as it is seen). A
//!   flow is the host's when the host's address is its source ("host legacy-db tried
//!   to reach 192.0.2.10:445 (tcp) 37 times in the last hour"), else when it is its
//!   destination ("192.0.2.50 tried to reach host legacy-db on port 445 ..."). Hosts
//!   come from the applied input (`legacy_segment.input`): the kernel's table was
//!   rendered from it, so its names and addresses are the ones to read it with.
//! - **per-host drop packets** (the `patchward_legacy_blocked_packets_total{host}`
//!   counter's increments), by host key.
//!
//! After a restart the first reading counts all the kernel remembers (up to an hour
//! of packets per element), since the previous readings were not kept.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use super::netd::BlockedFlow;
use super::netd::client::Counters;
use super::segment_input::SegmentInput;

/// At most one event per key in this time.
pub const EVENT_EVERY: SignedDuration = SignedDuration::from_hours(1);

/// Who tried to reach what, from the host's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Way {
    /// The host was the source.
    Out,
    /// The host was the destination.
    In,
}

/// (host key, way, peer, port).
type EventKey = (String, Way, IpAddr, Option<u16>);
/// A blocked-set element.
type ElemKey = (IpAddr, IpAddr, String, Option<u16>);

#[derive(Debug, Default, Clone)]
struct Pending {
    packets: u64,
    protos: BTreeSet<String>,
}

/// A `blocked_flow` event, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedEvent {
    pub host: String,
    pub at: Timestamp,
    pub text: String,
    /// JSON.
    pub detail: String,
}

/// What one reading gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockedReading {
    pub events: Vec<BlockedEvent>,
    /// Dropped packets since the last reading, by host key (hosts with none omitted).
    pub dropped: BTreeMap<String, u64>,
}

/// The memory between readings.
#[derive(Debug, Default)]
pub struct BlockedTracker {
    elems: HashMap<ElemKey, u64>,
    drops: HashMap<String, u64>,
    pending: HashMap<EventKey, Pending>,
    last_event: HashMap<EventKey, Timestamp>,
}

fn delta(last: Option<u64>, now: u64) -> u64 {
    match last {
        Some(l) if now >= l => now - l,
        _ => now,
    }
}

impl BlockedTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one reading taken at `now`, mapped with the applied `input`.
    pub fn observe(
        &mut self,
        input: &SegmentInput,
        reading: &Counters,
        now: Timestamp,
    ) -> BlockedReading {
        let mut owner: HashMap<IpAddr, (&str, &str)> = HashMap::new();
        for h in &input.hosts {
            for a in &h.addresses {
                owner.entry(*a).or_insert((&h.key, &h.display));
            }
        }
        let mut out = BlockedReading::default();
        let mut displays: HashMap<String, String> = HashMap::new();

        let mut elems = HashMap::with_capacity(reading.blocked.len());
        for b in &reading.blocked {
            let key: ElemKey = (b.source, b.destination, b.proto.clone(), b.port);
            let d = delta(self.elems.get(&key).copied(), b.packets);
            elems.insert(key, b.packets);
            if d == 0 {
                continue;
            }
            let Some((ekey, display)) = event_key(&owner, b) else {
                continue;
            };
            displays.insert(ekey.0.clone(), display.to_string());
            let p = self.pending.entry(ekey).or_default();
            p.packets += d;
            p.protos.insert(b.proto.clone());
        }
        self.elems = elems;

        let mut due: Vec<EventKey> = self
            .pending
            .iter()
            .filter(|(k, p)| {
                p.packets > 0
                    && self
                        .last_event
                        .get(*k)
                        .is_none_or(|t| now.duration_since(*t) >= EVENT_EVERY)
            })
            .map(|(k, _)| k.clone())
            .collect();
        due.sort();
        for k in due {
            let p = self.pending.remove(&k).expect("due keys are pending");
            let since = self.last_event.get(&k).copied();
            let display = displays.get(&k.0).cloned().unwrap_or_else(|| {
                input
                    .hosts
                    .iter()
                    .find(|h| h.key == k.0)
                    .map_or(k.0.clone(), |h| h.display.clone())
            });
            out.events.push(event(&k, &display, &p, since, now));
            self.last_event.insert(k, now);
        }
        // Keys whose last event is over an hour old and that have nothing pending
        // need no memory.
        self.last_event
            .retain(|k, t| now.duration_since(*t) < EVENT_EVERY || self.pending.contains_key(k));

        let mut drops = HashMap::with_capacity(reading.counters.len());
        for c in &reading.counters {
            let d = delta(self.drops.get(&c.name).copied(), c.packets);
            drops.insert(c.name.clone(), c.packets);
            let Some(name) = c
                .name
                .strip_prefix("drop_in_")
                .or_else(|| c.name.strip_prefix("drop_out_"))
            else {
                continue;
            };
            if let Some(h) = input.by_nft_name(name)
                && d > 0
            {
                *out.dropped.entry(h.key.clone()).or_default() += d;
            }
        }
        self.drops = drops;
        out
    }

    /// Remembers an event stored before (e.g. read back after a restart), so the next
    /// one for its key waits for the hour.
    pub fn remember(
        &mut self,
        host: &str,
        way: Way,
        peer: IpAddr,
        port: Option<u16>,
        at: Timestamp,
    ) {
        let k = (host.to_string(), way, peer, port);
        let t = self.last_event.entry(k).or_insert(at);
        if at > *t {
            *t = at;
        }
    }
}

fn event_key(owner: &HashMap<IpAddr, (&str, &str)>, b: &BlockedFlow) -> Option<(EventKey, String)> {
    if let Some((key, display)) = owner.get(&b.source) {
        return Some((
            (key.to_string(), Way::Out, b.destination, b.port),
            display.to_string(),
        ));
    }
    owner.get(&b.destination).map(|(key, display)| {
        (
            (key.to_string(), Way::In, b.source, b.port),
            display.to_string(),
        )
    })
}

fn event(
    k: &EventKey,
    display: &str,
    p: &Pending,
    since: Option<Timestamp>,
    now: Timestamp,
) -> BlockedEvent {
    let (host, way, peer, port) = k;
    let protos: Vec<&str> = p.protos.iter().map(String::as_str).collect();
    let proto = protos.join("/");
    let times = if p.packets == 1 {
        "once".to_string()
    } else {
        format!("{} times", p.packets)
    };
    let window = match since {
        Some(s) if now.duration_since(s) > EVENT_EVERY + SignedDuration::from_mins(5) => {
            format!("since {s}")
        }
        _ => "in the last hour".to_string(),
    };
    let text = match (way, port) {
        (Way::Out, Some(port)) => {
            format!("host {display} tried to reach {peer}:{port} ({proto}) {times} {window}")
        }
        (Way::Out, None) => {
            format!("host {display} tried to reach {peer} ({proto}) {times} {window}")
        }
        (Way::In, Some(port)) => format!(
            "{peer} tried to reach host {display} on port {port} ({proto}) {times} {window}"
        ),
        (Way::In, None) => {
            format!("{peer} tried to reach host {display} ({proto}) {times} {window}")
        }
    };
    let detail = json!({
        "direction": match way { Way::Out => "out", Way::In => "in" },
        "peer": peer.to_string(),
        "port": port,
        "protocols": protos,
        "packets": p.packets,
        "since": since.map(|s| s.to_string()),
    });
    BlockedEvent {
        host: host.clone(),
        at: now,
        text,
        detail: detail.to_string(),
    }
}

#[cfg(test)]
#[path = "watch_blocked_tests.rs"]
mod tests;
