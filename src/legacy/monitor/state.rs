//! The pure core: per host, UP / PENDING / DOWN and port drift from one cycle's probes.
//!
//! No IO and no clock: a cycle's probe results and its time go in, events come out.
//!
//! - A cycle **fails** for a host when none of its watched ports is open (every probe
//!   was refused, timed out or unreachable). "Host down" means nothing answers; one
//!   closed port on a host that still answers elsewhere is port drift, not an outage.
//!   A host whose kernel still sends RSTs but whose services are all gone is of no use
//!   to anyone, so refused counts as a failure like silence does.
//! - **DOWN** when at least `fail_n` of the last `window_m` cycles failed (raises
//!   `HostDown`). **PENDING** when the last cycle failed but the threshold is not
//!   reached, and for a new host until it is confirmed either way. From PENDING the host
//!   is UP again after `recover_n` answered cycles in a row, silently (no alert was
//!   raised); failures stay in the window, so a flapping host still reaches `fail_n`.
//!   From DOWN it is UP only after `recover_n` answered cycles in a row (raises
//!   `HostUp`), and its failure window starts afresh.
//! - **Port drift** is judged only in cycles in which the host answered (when it answers
//!   nowhere, the host state says so, and a dozen "port closed" alerts would be noise).
//!   The first such cycle sets each port's baseline silently. A port closed in the
//!   baseline that accepts a connection raises `PortOpened` at once (a completed
//!   handshake is not a lost packet). An open port is `PortClosed` when it was not open
//!   in `fail_n` of the last `window_m` answered cycles, the same rule as for hosts, so
//!   one lost SYN on one port raises nothing either. A banner port whose first line
//!   hashes differently from the baseline raises `BannerChanged`; a banner that did not
//!   arrive in time is not evidence of a change and leaves the baseline as it is.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use jiff::Timestamp;

use super::events::{Event, EventKind};
use super::probe::{BannerHash, ProbeOutcome};

/// The longest failure window (the window is a bit set in a `u64`).
pub const MAX_WINDOW: u32 = 64;

/// N-of-M and recovery thresholds, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    fail_n: u32,
    window_m: u32,
    recover_n: u32,
}

/// Why a set of thresholds was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    #[error(
        "monitor fail_n is {0}: it must be at least 1 (the number of failed cycles, out of \
         window_m, that marks a host DOWN)"
    )]
    FailN(u32),
    #[error(
        "monitor window_m is {window_m}: it must be between fail_n ({fail_n}) and {max} \
         (the number of recent cycles fail_n is counted in)"
    )]
    Window {
        window_m: u32,
        fail_n: u32,
        max: u32,
    },
    #[error(
        "monitor recover_n is {0}: it must be at least 1 (the answered cycles in a row that \
         bring a DOWN host UP again)"
    )]
    RecoverN(u32),
}

impl Thresholds {
    /// DOWN after `fail_n` failed of the last `window_m` cycles; UP again after
    /// `recover_n` answered cycles in a row.
    pub fn new(fail_n: u32, window_m: u32, recover_n: u32) -> Result<Self, ThresholdError> {
        if fail_n == 0 {
            return Err(ThresholdError::FailN(fail_n));
        }
        if window_m < fail_n || window_m > MAX_WINDOW {
            return Err(ThresholdError::Window {
                window_m,
                fail_n,
                max: MAX_WINDOW,
            });
        }
        if recover_n == 0 {
            return Err(ThresholdError::RecoverN(recover_n));
        }
        Ok(Self {
            fail_n,
            window_m,
            recover_n,
        })
    }

    pub fn fail_n(&self) -> u32 {
        self.fail_n
    }
    pub fn window_m(&self) -> u32 {
        self.window_m
    }
    pub fn recover_n(&self) -> u32 {
        self.recover_n
    }

    fn mask(&self) -> u64 {
        if self.window_m == MAX_WINDOW {
            u64::MAX
        } else {
            (1u64 << self.window_m) - 1
        }
    }
}

impl Default for Thresholds {
    /// 3 of 5 down, 2 in a row up.
    fn default() -> Self {
        Self {
            fail_n: 3,
            window_m: 5,
            recover_n: 2,
        }
    }
}

/// A host's monitor state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostState {
    Up,
    Pending,
    Down,
}

impl HostState {
    /// Lower-case name, as in the `patchward_legacy_hosts{state}` label.
    pub fn as_str(&self) -> &'static str {
        match self {
            HostState::Up => "up",
            HostState::Pending => "pending",
            HostState::Down => "down",
        }
    }
}

impl fmt::Display for HostState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostState::Up => "UP",
            HostState::Pending => "PENDING",
            HostState::Down => "DOWN",
        })
    }
}

/// One port's result in one cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortProbe {
    pub port: u16,
    pub outcome: ProbeOutcome,
}

/// What a port looked like when it was last confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortBaseline {
    pub open: bool,
    /// The last banner read on this port (banner ports only).
    pub banner: Option<BannerHash>,
}

#[derive(Debug, Clone, Default)]
struct PortTrack {
    baseline: Option<PortBaseline>,
    /// Bit i set: not open in the i-th most recent answered cycle (since the baseline).
    closed_hist: u64,
}

/// The monitor's memory of one host.
#[derive(Debug, Clone)]
pub struct HostTracker {
    name: String,
    addr: IpAddr,
    thresholds: Thresholds,
    state: HostState,
    /// Bit i set: the i-th most recent cycle failed.
    fail_hist: u64,
    ok_streak: u32,
    down_since: Option<Timestamp>,
    ports: BTreeMap<u16, PortTrack>,
}

impl HostTracker {
    /// A host not seen yet: PENDING, no baseline.
    pub fn new(name: impl Into<String>, addr: IpAddr, thresholds: Thresholds) -> Self {
        Self {
            name: name.into(),
            addr,
            thresholds,
            state: HostState::Pending,
            fail_hist: 0,
            ok_streak: 0,
            down_since: None,
            ports: BTreeMap::new(),
        }
    }

    /// A host whose port baselines were kept from before (e.g. stored across a restart),
    /// so drift that happened meanwhile is still reported. The state starts PENDING.
    pub fn with_baselines(
        name: impl Into<String>,
        addr: IpAddr,
        thresholds: Thresholds,
        baselines: impl IntoIterator<Item = (u16, PortBaseline)>,
    ) -> Self {
        let mut tracker = Self::new(name, addr, thresholds);
        for (port, baseline) in baselines {
            tracker.ports.insert(
                port,
                PortTrack {
                    baseline: Some(baseline),
                    closed_hist: 0,
                },
            );
        }
        tracker
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn addr(&self) -> IpAddr {
        self.addr
    }
    pub fn state(&self) -> HostState {
        self.state
    }
    /// When the current DOWN began.
    pub fn down_since(&self) -> Option<Timestamp> {
        self.down_since
    }
    /// Failed cycles among the last `window_m`.
    pub fn failed_in_window(&self) -> u32 {
        (self.fail_hist & self.thresholds.mask()).count_ones()
    }

    /// Each watched port's baseline, for storage.
    pub fn baselines(&self) -> impl Iterator<Item = (u16, PortBaseline)> + '_ {
        self.ports
            .iter()
            .filter_map(|(port, track)| track.baseline.map(|b| (*port, b)))
    }

    /// Feeds one cycle's results (one entry per watched port) dated `at`. Ports no longer
    /// in `probes` are forgotten. An empty cycle (no watched ports) changes nothing.
    pub fn observe(&mut self, probes: &[PortProbe], at: Timestamp) -> Vec<Event> {
        if probes.is_empty() {
            return Vec::new();
        }
        self.ports
            .retain(|port, _| probes.iter().any(|p| p.port == *port));
        let answered = probes.iter().any(|p| p.outcome.is_open());
        let mut events = Vec::new();
        if let Some(kind) = self.step_host(answered, probes, at) {
            events.push(self.event(kind, at));
        }
        if answered {
            for probe in probes {
                if let Some(kind) = self.step_port(probe) {
                    events.push(self.event(kind, at));
                }
            }
        }
        events
    }

    fn event(&self, kind: EventKind, at: Timestamp) -> Event {
        Event {
            host: self.name.clone(),
            addr: self.addr,
            at,
            kind,
        }
    }

    fn step_host(
        &mut self,
        answered: bool,
        probes: &[PortProbe],
        at: Timestamp,
    ) -> Option<EventKind> {
        let t = self.thresholds;
        self.fail_hist = ((self.fail_hist << 1) | u64::from(!answered)) & t.mask();
        self.ok_streak = if answered { self.ok_streak + 1 } else { 0 };
        let failed = self.failed_in_window();
        match self.state {
            HostState::Down if self.ok_streak >= t.recover_n => {
                let down_since = self.down_since.take().unwrap_or(at);
                self.state = HostState::Up;
                self.fail_hist = 0;
                Some(EventKind::HostUp {
                    streak: self.ok_streak,
                    down_since,
                })
            }
            HostState::Down => None,
            HostState::Up | HostState::Pending if failed >= t.fail_n => {
                self.state = HostState::Down;
                self.down_since = Some(at);
                Some(EventKind::HostDown {
                    failed,
                    window: t.window_m,
                    last: probes.iter().map(|p| (p.port, p.outcome.clone())).collect(),
                })
            }
            HostState::Up | HostState::Pending if !answered => {
                self.state = HostState::Pending;
                None
            }
            HostState::Pending if self.ok_streak >= t.recover_n => {
                self.state = HostState::Up;
                None
            }
            HostState::Up | HostState::Pending => None,
        }
    }

    fn step_port(&mut self, probe: &PortProbe) -> Option<EventKind> {
        let t = self.thresholds;
        let port = probe.port;
        let track = self.ports.entry(port).or_default();
        let (open, banner) = match &probe.outcome {
            ProbeOutcome::Open { banner_hash, .. } => (true, *banner_hash),
            _ => (false, None),
        };
        let Some(base) = track.baseline.as_mut() else {
            track.baseline = Some(PortBaseline { open, banner });
            return None;
        };
        if !base.open {
            if open {
                *base = PortBaseline { open, banner };
                track.closed_hist = 0;
                return Some(EventKind::PortOpened { port });
            }
            return None;
        }
        track.closed_hist = ((track.closed_hist << 1) | u64::from(!open)) & t.mask();
        if !open {
            let closed = track.closed_hist.count_ones();
            if closed >= t.fail_n {
                *base = PortBaseline {
                    open: false,
                    banner: base.banner,
                };
                track.closed_hist = 0;
                return Some(EventKind::PortClosed {
                    port,
                    closed,
                    window: t.window_m,
                });
            }
            return None;
        }
        match (base.banner, banner) {
            (Some(old), Some(new)) if old != new => {
                base.banner = Some(new);
                Some(EventKind::BannerChanged { port, old, new })
            }
            (None, Some(new)) => {
                base.banner = Some(new);
                None
            }
            _ => None,
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
