//! The legacy host monitor: is each end-of-life host still there, and has it changed?
//!
//! Legacy hosts cannot run an agent, and many break under port scans, so the appliance
//! watches them from the network, gently: a full TCP connect and a clean close to each
//! expected port only (the host's `in` flows plus ports added by hand), one probe at a
//! time per host, at most `legacy.monitor_concurrency` probes at once.
//!
//! - [`state`] is the pure core: UP / PENDING / DOWN with N-of-M failures and a separate
//!   recovery threshold, and port drift (a watched port that opens or closes, a changed
//!   banner). Results and times in, [`events::Event`]s out.
//! - [`probe`] is the network edge for one (address, port).
//! - [`cycle`] runs one cycle over all targets within the limits and feeds the core.
//!
//! The monitor takes plain values (targets with addresses and ports) and returns plain
//! values (events, per-host results, state counts): storing events, the pages and the
//! `patchward_legacy_hosts{state}` gauge belong to the caller. The prober records the
//! `patchward_legacy_probe_seconds` histogram (connect latency of open ports).

pub mod cycle;
pub mod events;
pub mod probe;
pub mod state;

pub use cycle::{
    CycleError, CycleOptions, CycleReport, HostProbes, Monitor, StateCounts, Target, WatchedPort,
};
pub use events::{Event, EventKind};
pub use probe::{BannerHash, ProbeOptions, ProbeOutcome};
pub use state::{HostState, HostTracker, PortBaseline, PortProbe, ThresholdError, Thresholds};
