//! The monitor in the daemon: every `legacy.monitor_interval`, one cycle over every
//! watched legacy host ([`super::watch::plan`]), its state and events stored in one
//! transaction, blocked flows read from `patchward-netd` (enforce mode), metrics.
//!
//! - At start, each host's port baselines come back from `legacy_monitor_state` (when
//!   its probe address is unchanged), so drift that happened while the appliance was
//!   off is still reported. Its state starts PENDING (the state machine confirms it
//!   again): a host still down is reported DOWN again after N of M cycles.
//! - `since` is when the stored state last changed; `last_cycle` the cycle's time.
//! - Events: kind = `EventKind::name()` (or `blocked_flow`), text = the event's sentence
//!   with the host's display name, detail = its plain values as JSON.
//! - Events older than [`RETENTION`] are pruned, once a day, in a cycle's transaction.
//! - Metrics: `patchward_legacy_hosts{state}` (up, pending, down, unwatched),
//!   `patchward_legacy_blocked_packets_total{host}` (host key; the increments of its
//!   drop counters), and the prober's `patchward_legacy_probe_seconds`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use rusqlite::Connection;
use serde_json::{Value, json};
use tokio::sync::watch as tokio_watch;

use super::LegacyError;
use super::monitor::{
    BannerHash, CycleOptions, Event, EventKind, HostTracker, Monitor, PortBaseline, ProbeOptions,
    StateCounts,
};
use super::netd::client::{self, Counters, NetdError};
use super::segment_input::SegmentInput;
use super::watch::{self, HostWatch};
use super::watch_blocked::{BlockedEvent, BlockedTracker, Way};
use crate::clock::{Clock, SharedClock};
use crate::config::{LegacyConfig, SegmentMode};
use crate::db::Db;
use crate::db::legacy_monitor::{self as mq, StateRow};
use crate::db::legacy_segment as sq;

/// Events are kept this long (compliance keeps a year; a margin on top).
pub const RETENTION: SignedDuration = SignedDuration::from_hours(400 * 24);
/// How often old events are pruned.
pub const PRUNE_EVERY: SignedDuration = SignedDuration::from_hours(24);

/// The baselines JSON: `{"22": {"open": true, "banner": "<sha256 hex>"|null}, ...}`.
pub fn baselines_json(b: impl Iterator<Item = (u16, PortBaseline)>) -> String {
    let map: BTreeMap<String, Value> = b
        .map(|(port, base)| {
            (
                port.to_string(),
                json!({ "open": base.open, "banner": base.banner.map(|h| h.to_hex()) }),
            )
        })
        .collect();
    serde_json::to_string(&map).expect("a map of strings to JSON values serializes")
}

/// Reads [`baselines_json`] back, by port; a damaged entry is skipped (the port starts
/// afresh).
pub fn parse_baselines(text: &str) -> Vec<(u16, PortBaseline)> {
    let Ok(map) = serde_json::from_str::<BTreeMap<String, Value>>(text) else {
        return Vec::new();
    };
    let mut out: Vec<(u16, PortBaseline)> = map
        .into_iter()
        .filter_map(|(port, v)| {
            let port: u16 = port.parse().ok()?;
            let open = v.get("open")?.as_bool()?;
            let banner = match v.get("banner") {
                Some(Value::String(h)) => {
                    let bytes: [u8; 32] = hex::decode(h).ok()?.try_into().ok()?;
                    Some(BannerHash(bytes))
                }
                _ => None,
            };
            Some((port, PortBaseline { open, banner }))
        })
        .collect();
    out.sort_by_key(|(p, _)| *p);
    out
}

/// An event's plain values.
pub fn event_detail(e: &Event) -> Value {
    let mut d = match &e.kind {
        EventKind::HostDown {
            failed,
            window,
            last,
        } => json!({
            "failed": failed, "window": window,
            "last": last.iter().map(|(p, o)| json!({"port": p, "outcome": o.to_string()})).collect::<Vec<_>>(),
        }),
        EventKind::HostUp { streak, down_since } => {
            json!({ "streak": streak, "down_since": down_since.to_string() })
        }
        EventKind::PortOpened { port } => json!({ "port": port }),
        EventKind::PortClosed {
            port,
            closed,
            window,
        } => json!({ "port": port, "closed": closed, "window": window }),
        EventKind::BannerChanged { port, old, new } => {
            json!({ "port": port, "old": old.to_hex(), "new": new.to_hex() })
        }
    };
    d["address"] = json!(e.addr.to_string());
    d
}

/// What one cycle did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CycleSummary {
    pub watched: usize,
    pub unwatched: usize,
    pub counts: StateCounts,
    /// Monitor events stored.
    pub events: usize,
    /// `blocked_flow` events stored.
    pub blocked_events: usize,
    pub pruned: usize,
    pub elapsed: Duration,
}

/// The monitor's memory between cycles.
#[derive(Debug)]
pub struct WatchTask {
    cfg: LegacyConfig,
    opts: CycleOptions,
    monitor: Monitor,
    blocked: BlockedTracker,
    /// Stored (state, since) per host key.
    states: HashMap<String, (String, String)>,
    helper_warned: bool,
    last_prune: Option<Timestamp>,
}

fn refused(e: impl std::fmt::Display) -> LegacyError {
    LegacyError::Refused(e.to_string())
}

impl WatchTask {
    /// Restores the trackers and the blocked-flow memory stored before `now`.
    pub fn restore(
        conn: &Connection,
        cfg: &LegacyConfig,
        now: Timestamp,
    ) -> Result<Self, LegacyError> {
        let opts = CycleOptions::new(
            cfg.monitor_concurrency,
            ProbeOptions {
                timeout: cfg.monitor_timeout,
                ..ProbeOptions::default()
            },
        )
        .map_err(refused)?;
        let thresholds = cfg.thresholds();
        let mut monitor = Monitor::new(thresholds);
        let plan: HashMap<String, IpAddr> = watch::plan(conn, now, cfg)?
            .iter()
            .filter_map(|h| h.target())
            .map(|t| (t.name, t.addr))
            .collect();
        let mut states = HashMap::new();
        for row in mq::states_all(conn)? {
            let same_addr = row.address.parse::<IpAddr>().ok() == plan.get(&row.host).copied();
            if same_addr {
                monitor.insert(HostTracker::with_baselines(
                    row.host.clone(),
                    plan[&row.host],
                    thresholds,
                    parse_baselines(&row.baselines),
                ));
            }
            states.insert(row.host, (row.state, row.since));
        }
        let mut blocked = BlockedTracker::new();
        let hour_ago = now - super::watch_blocked::EVENT_EVERY;
        for e in mq::events_since(conn, &hour_ago.to_string())? {
            if e.kind != "blocked_flow" {
                continue;
            }
            let (Ok(d), Ok(at)) = (
                serde_json::from_str::<Value>(&e.detail),
                e.at.parse::<Timestamp>(),
            ) else {
                continue;
            };
            let way = match d["direction"].as_str() {
                Some("out") => Way::Out,
                Some("in") => Way::In,
                _ => continue,
            };
            let Some(peer) = d["peer"].as_str().and_then(|p| p.parse().ok()) else {
                continue;
            };
            let port = d["port"].as_u64().and_then(|p| u16::try_from(p).ok());
            blocked.remember(&e.host, way, peer, port, at);
        }
        Ok(Self {
            cfg: cfg.clone(),
            opts,
            monitor,
            blocked,
            states,
            helper_warned: false,
            last_prune: None,
        })
    }

    /// The blocked flows of one helper reading, mapped with the applied input.
    pub fn blocked_events(
        &mut self,
        input: &SegmentInput,
        reading: &Counters,
        now: Timestamp,
    ) -> Vec<BlockedEvent> {
        let r = self.blocked.observe(input, reading, now);
        for (host, packets) in &r.dropped {
            metrics::counter!("patchward_legacy_blocked_packets_total", "host" => host.clone())
                .increment(*packets);
        }
        r.events
    }

    /// Reads the helper's counters (enforce mode, a fence applied); `None` when there is
    /// nothing to read or the helper cannot be reached (warned once per streak).
    async fn read_counters(&mut self, db: &Db) -> Option<(SegmentInput, Counters)> {
        if self.cfg.segment_mode != SegmentMode::Enforce {
            return None;
        }
        let applied = match db.read(sq::applied).await {
            Ok(Some(a)) => a,
            Ok(None) => return None,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the applied fence");
                return None;
            }
        };
        let input: SegmentInput = match serde_json::from_str(&applied.input) {
            Ok(i) => i,
            Err(e) => {
                tracing::error!(error = %e, "the stored applied fence is damaged");
                return None;
            }
        };
        let socket = self.cfg.netd_socket.clone();
        let got = tokio::task::spawn_blocking(move || client::counters(&socket))
            .await
            .unwrap_or_else(|e| Err(NetdError::Protocol(e.to_string())));
        match got {
            Ok(c) => {
                if self.helper_warned {
                    tracing::info!("patchward-netd answers again: blocked flows are read");
                }
                self.helper_warned = false;
                Some((input, c))
            }
            Err(e) => {
                if !self.helper_warned {
                    tracing::warn!(error = %e, "cannot read blocked flows from patchward-netd; no blocked_flow events until it answers");
                }
                self.helper_warned = true;
                None
            }
        }
    }

    /// One cycle: plan, probe, blocked flows, one write transaction, metrics.
    pub async fn cycle(&mut self, db: &Db, clock: &dyn Clock) -> Result<CycleSummary, LegacyError> {
        let now = clock.now();
        let cfg = self.cfg.clone();
        let plan: Vec<HostWatch> = db.read(move |c| watch::plan(c, now, &cfg)).await?;
        let targets: Vec<_> = plan.iter().filter_map(HostWatch::target).collect();
        let report = self
            .monitor
            .run_cycle(&targets, &self.opts, clock)
            .await
            .map_err(refused)?;
        let at = report.at;
        let display: HashMap<&str, &str> = plan
            .iter()
            .map(|h| (h.key.as_str(), h.display.as_str()))
            .collect();

        let mut rows = Vec::with_capacity(report.results.len());
        let mut new_states = HashMap::with_capacity(report.results.len());
        for r in &report.results {
            let Some(tr) = self.monitor.tracker(&r.name) else {
                continue;
            };
            let state = tr.state().as_str().to_string();
            let since = match self.states.get(&r.name) {
                Some((s, since)) if *s == state => since.clone(),
                _ => at.to_string(),
            };
            rows.push(StateRow {
                host: r.name.clone(),
                address: r.addr.to_string(),
                state: state.clone(),
                since: since.clone(),
                last_cycle: at.to_string(),
                baselines: baselines_json(tr.baselines()),
            });
            new_states.insert(r.name.clone(), (state, since));
        }
        let mut events: Vec<(String, String, String, String, String)> = report
            .events
            .iter()
            .map(|e| {
                let shown = Event {
                    host: display
                        .get(e.host.as_str())
                        .map_or(e.host.clone(), |d| d.to_string()),
                    ..e.clone()
                };
                (
                    e.host.clone(),
                    e.at.to_string(),
                    e.kind.name().to_string(),
                    shown.to_string(),
                    event_detail(e).to_string(),
                )
            })
            .collect();
        let monitor_events = events.len();
        let mut blocked_events = 0;
        if let Some((input, counters)) = self.read_counters(db).await {
            for b in self.blocked_events(&input, &counters, at) {
                events.push((
                    b.host,
                    b.at.to_string(),
                    "blocked_flow".into(),
                    b.text,
                    b.detail,
                ));
                blocked_events += 1;
            }
        }
        let prune_before = match self.last_prune {
            Some(t) if at.duration_since(t) < PRUNE_EVERY => None,
            _ => Some((at - RETENTION).to_string()),
        };
        let keep: HashSet<String> = rows.iter().map(|r| r.host.clone()).collect();
        let pruned = db
            .write(move |tx| -> Result<usize, LegacyError> {
                for r in &rows {
                    mq::put_state(tx, r)?;
                }
                for s in mq::states_all(tx)? {
                    if !keep.contains(&s.host) {
                        mq::delete_state(tx, &s.host)?;
                    }
                }
                for (host, at, kind, text, detail) in &events {
                    mq::insert_event(tx, host, at, kind, text, detail)?;
                }
                Ok(match &prune_before {
                    Some(before) => mq::prune_events(tx, before)?,
                    None => 0,
                })
            })
            .await?;
        if self
            .last_prune
            .is_none_or(|t| at.duration_since(t) >= PRUNE_EVERY)
        {
            self.last_prune = Some(at);
        }
        self.states = new_states;
        let counts = self.monitor.state_counts();
        let unwatched = plan.len() - targets.len();
        for (state, n) in [
            ("up", counts.up),
            ("pending", counts.pending),
            ("down", counts.down),
            ("unwatched", unwatched),
        ] {
            metrics::gauge!("patchward_legacy_hosts", "state" => state).set(n as f64);
        }
        Ok(CycleSummary {
            watched: targets.len(),
            unwatched,
            counts,
            events: monitor_events,
            blocked_events,
            pruned,
            elapsed: report.elapsed,
        })
    }
}

/// Runs the monitor until `stop`: restores, then a cycle at once and every
/// `legacy.monitor_interval` (a cycle running long delays the next; a cycle in flight
/// at `stop` is abandoned, its results unstored).
pub fn spawn(
    db: Db,
    cfg: LegacyConfig,
    clock: SharedClock,
    mut stop: tokio_watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let now = clock.now();
        let c = cfg.clone();
        let mut task = match db.read(move |conn| WatchTask::restore(conn, &c, now)).await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "the legacy monitor cannot start");
                return;
            }
        };
        let mut tick = tokio::time::interval(cfg.monitor_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            tokio::select! {
                r = task.cycle(&db, clock.as_ref()) => match r {
                    Ok(s) => tracing::debug!(
                        watched = s.watched, unwatched = s.unwatched, up = s.counts.up,
                        pending = s.counts.pending, down = s.counts.down, events = s.events,
                        blocked = s.blocked_events, pruned = s.pruned,
                        elapsed_ms = s.elapsed.as_millis() as u64, "legacy monitor cycle"),
                    Err(e) => tracing::error!(error = %e, "legacy monitor cycle failed"),
                },
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    })
}

#[cfg(test)]
#[path = "watch_task_tests.rs"]
mod tests;
