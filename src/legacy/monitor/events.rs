//! What the monitor tells people: typed events, each with a sentence an operator can act on.
//!
//! Events are the only output of the state machine ([`super::state`]). They carry plain
//! values (host name, address, port, old and new, time) so the integrator can store them,
//! show them on the host's page and keep them for compliance without re-deriving
//! anything. The `Display` sentence is what the page and the log print.

use std::fmt;
use std::net::IpAddr;

use jiff::Timestamp;

use super::probe::{BannerHash, ProbeOutcome};

/// One thing that changed on a watched host, at the cycle that confirmed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The host's name, as the caller named the target.
    pub host: String,
    /// The address that was probed.
    pub addr: IpAddr,
    /// When the cycle that confirmed the change ended (the appliance's clock).
    pub at: Timestamp,
    pub kind: EventKind,
}

/// The kinds of change; see each variant for when it is raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// No watched port answered in `failed` of the last `window` cycles (at least the
    /// threshold). `last` is the last cycle's result per port.
    HostDown {
        failed: u32,
        window: u32,
        last: Vec<(u16, ProbeOutcome)>,
    },
    /// After a `HostDown`: the host answered in `streak` cycles in a row (the recovery
    /// threshold). `down_since` is the time of the `HostDown`.
    HostUp { streak: u32, down_since: Timestamp },
    /// A watched port that was closed in the baseline accepted a connection.
    PortOpened { port: u16 },
    /// A watched port that was open in the baseline was not open in `closed` of the last
    /// `window` cycles in which the host answered on another port.
    PortClosed { port: u16, closed: u32, window: u32 },
    /// The first line a banner port sends changed.
    BannerChanged {
        port: u16,
        old: BannerHash,
        new: BannerHash,
    },
}

impl EventKind {
    /// A short stable name for storage and metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::HostDown { .. } => "host_down",
            EventKind::HostUp { .. } => "host_up",
            EventKind::PortOpened { .. } => "port_opened",
            EventKind::PortClosed { .. } => "port_closed",
            EventKind::BannerChanged { .. } => "banner_changed",
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (host, addr) = (&self.host, self.addr);
        match &self.kind {
            EventKind::HostDown {
                failed,
                window,
                last,
            } => {
                write!(
                    f,
                    "host {host} ({addr}) is DOWN: no watched port answered in {failed} of the \
                     last {window} cycles (last cycle: "
                )?;
                for (i, (port, outcome)) in last.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{port} {outcome}")?;
                }
                f.write_str(")")
            }
            EventKind::HostUp { streak, down_since } => write!(
                f,
                "host {host} ({addr}) is UP again: it answered in {streak} cycles in a row \
                 (DOWN since {down_since})"
            ),
            EventKind::PortOpened { port } => write!(
                f,
                "port {port} on host {host} ({addr}) opened: it accepted a connection, and it \
                 was closed in the baseline"
            ),
            EventKind::PortClosed {
                port,
                closed,
                window,
            } => write!(
                f,
                "port {port} on host {host} ({addr}) closed: it was not open in {closed} of the \
                 last {window} cycles in which the host answered on another port"
            ),
            EventKind::BannerChanged { port, old, new } => write!(
                f,
                "banner on port {port} of host {host} ({addr}) changed: sha256 {} -> {}",
                old.short(),
                new.short()
            ),
        }
    }
}
