//! The cycle runner: probe every watched (host, port) once, gently, then feed the results
//! to each host's state machine.
//!
//! Two limits protect fragile devices and the appliance alike: **one probe at a time per
//! host** (a host's ports are probed one after the other, by one task), and **a global
//! limit** on probes in flight (a `tokio::sync::Semaphore`, default 50, the
//! `legacy.monitor_concurrency` setting). Each probe holds a permit only while it runs,
//! so a slow host delays only itself. Every probe is bounded by its timeout plus its
//! close grace, so a cycle is bounded too. Only the ports a target lists are probed.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::events::Event;
use super::probe::{self, ProbeOptions};
use super::state::{HostState, HostTracker, PortProbe, Thresholds};
use crate::clock::Clock;

/// One watched port of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchedPort {
    pub port: u16,
    /// Read and hash the first line the server sends.
    pub banner: bool,
}

impl WatchedPort {
    /// A port, with a banner read where the protocol speaks first (see
    /// [`is_banner_port`]).
    pub fn new(port: u16) -> Self {
        Self {
            port,
            banner: is_banner_port(port),
        }
    }
}

/// Ports whose server sends a first line unasked: FTP 21, SSH 22, SMTP 25 and 587.
pub fn is_banner_port(port: u16) -> bool {
    matches!(port, 21 | 22 | 25 | 587)
}

/// A host to watch: its name (unique among targets), the address probed, its ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub addr: IpAddr,
    pub ports: Vec<WatchedPort>,
}

/// Limits of a cycle, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CycleOptions {
    concurrency: usize,
    probe: ProbeOptions,
}

/// Why cycle options or targets were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CycleError {
    #[error("legacy.monitor_concurrency is 0: it must be at least 1 (probes in flight at once)")]
    Concurrency,
    #[error("the monitor's probe timeout is 0: give it at least 1 ms (3 s is the default)")]
    Timeout,
    #[error(
        "two monitor targets are both named {0:?}: each host may appear once (merge their \
         ports into one target)"
    )]
    DuplicateTarget(String),
}

impl CycleOptions {
    pub fn new(concurrency: usize, probe: ProbeOptions) -> Result<Self, CycleError> {
        if concurrency == 0 {
            return Err(CycleError::Concurrency);
        }
        if probe.timeout.is_zero() {
            return Err(CycleError::Timeout);
        }
        Ok(Self { concurrency, probe })
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency
    }
    pub fn probe(&self) -> &ProbeOptions {
        &self.probe
    }
}

impl Default for CycleOptions {
    /// 50 probes at once, 3 s timeout, 1 s close grace.
    fn default() -> Self {
        Self {
            concurrency: 50,
            probe: ProbeOptions::default(),
        }
    }
}

/// One host's results in one cycle, in the order of its target's ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostProbes {
    pub name: String,
    pub addr: IpAddr,
    pub probes: Vec<PortProbe>,
}

/// Probes every target's ports once, within the options' limits. Results are in the
/// order of `targets`. Refuses duplicate names before probing anything.
pub async fn probe_targets(
    targets: &[Target],
    opts: &CycleOptions,
) -> Result<Vec<HostProbes>, CycleError> {
    check_unique(targets)?;
    let permits = Arc::new(Semaphore::new(opts.concurrency));
    let mut tasks = JoinSet::new();
    for (index, target) in targets.iter().enumerate() {
        let target = target.clone();
        let permits = Arc::clone(&permits);
        let probe_opts = opts.probe;
        tasks.spawn(async move {
            let mut probes = Vec::with_capacity(target.ports.len());
            for watched in &target.ports {
                let permit = permits
                    .acquire()
                    .await
                    .expect("the semaphore is never closed");
                let addr = SocketAddr::new(target.addr, watched.port);
                let outcome = probe::probe(addr, watched.banner, &probe_opts).await;
                drop(permit);
                probes.push(PortProbe {
                    port: watched.port,
                    outcome,
                });
            }
            (
                index,
                HostProbes {
                    name: target.name,
                    addr: target.addr,
                    probes,
                },
            )
        });
    }
    let mut results: Vec<Option<HostProbes>> = vec![None; targets.len()];
    while let Some(joined) = tasks.join_next().await {
        let (index, host) = joined.expect("a probe task panicked");
        results[index] = Some(host);
    }
    Ok(results.into_iter().flatten().collect())
}

fn check_unique(targets: &[Target]) -> Result<(), CycleError> {
    let mut seen = HashSet::with_capacity(targets.len());
    for target in targets {
        if !seen.insert(target.name.as_str()) {
            return Err(CycleError::DuplicateTarget(target.name.clone()));
        }
    }
    Ok(())
}

/// What one cycle found.
#[derive(Debug, Clone)]
pub struct CycleReport {
    /// Per host, per port (latencies for the histogram, outcomes for the page).
    pub results: Vec<HostProbes>,
    /// What changed, in target order.
    pub events: Vec<Event>,
    /// The time the events carry (the clock, read when probing ended).
    pub at: Timestamp,
    /// Wall time of the probing.
    pub elapsed: Duration,
}

/// How many hosts are in each state (`patchward_legacy_hosts{state}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub up: usize,
    pub pending: usize,
    pub down: usize,
}

/// The monitor's memory of every watched host, keyed by target name.
#[derive(Debug)]
pub struct Monitor {
    thresholds: Thresholds,
    hosts: HashMap<String, HostTracker>,
}

impl Monitor {
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            thresholds,
            hosts: HashMap::new(),
        }
    }

    /// Starts watching with a tracker built elsewhere (e.g. restored baselines).
    pub fn insert(&mut self, tracker: HostTracker) {
        self.hosts.insert(tracker.name().to_owned(), tracker);
    }

    /// One cycle: probe, then [`Monitor::apply`] at the clock's time after probing.
    pub async fn run_cycle(
        &mut self,
        targets: &[Target],
        opts: &CycleOptions,
        clock: &dyn Clock,
    ) -> Result<CycleReport, CycleError> {
        let started = tokio::time::Instant::now();
        let results = probe_targets(targets, opts).await?;
        let elapsed = started.elapsed();
        let at = clock.now();
        let events = self.apply(&results, at);
        Ok(CycleReport {
            results,
            events,
            at,
            elapsed,
        })
    }

    /// The pure half of a cycle: feeds results dated `at` to each host's tracker (new
    /// hosts start PENDING; a host whose address changed starts afresh, its baseline
    /// belonged to another machine) and forgets hosts absent from `results`.
    pub fn apply(&mut self, results: &[HostProbes], at: Timestamp) -> Vec<Event> {
        let names: HashSet<&str> = results.iter().map(|r| r.name.as_str()).collect();
        self.hosts.retain(|name, _| names.contains(name.as_str()));
        let mut events = Vec::new();
        for host in results {
            let thresholds = self.thresholds;
            let tracker = self
                .hosts
                .entry(host.name.clone())
                .or_insert_with(|| HostTracker::new(host.name.clone(), host.addr, thresholds));
            if tracker.addr() != host.addr {
                *tracker = HostTracker::new(host.name.clone(), host.addr, thresholds);
            }
            events.extend(tracker.observe(&host.probes, at));
        }
        events
    }

    pub fn state(&self, name: &str) -> Option<HostState> {
        self.hosts.get(name).map(HostTracker::state)
    }

    pub fn tracker(&self, name: &str) -> Option<&HostTracker> {
        self.hosts.get(name)
    }

    pub fn state_counts(&self) -> StateCounts {
        let mut counts = StateCounts::default();
        for tracker in self.hosts.values() {
            match tracker.state() {
                HostState::Up => counts.up += 1,
                HostState::Pending => counts.pending += 1,
                HostState::Down => counts.down += 1,
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_with_actionable_errors() {
        assert_eq!(
            CycleOptions::new(0, ProbeOptions::default())
                .unwrap_err()
                .to_string(),
            "legacy.monitor_concurrency is 0: it must be at least 1 (probes in flight at once)"
        );
        let zero = ProbeOptions {
            timeout: Duration::ZERO,
            close_grace: Duration::from_secs(1),
        };
        assert_eq!(
            CycleOptions::new(50, zero).unwrap_err().to_string(),
            "the monitor's probe timeout is 0: give it at least 1 ms (3 s is the default)"
        );
        assert_eq!(
            CycleOptions::new(50, ProbeOptions::default()).unwrap(),
            CycleOptions::default()
        );
    }

    #[test]
    fn banner_ports_are_the_protocols_that_speak_first() {
        let banner: Vec<u16> = [21, 22, 23, 25, 80, 445, 587, 3389]
            .into_iter()
            .filter(|p| WatchedPort::new(*p).banner)
            .collect();
        assert_eq!(banner, vec![21, 22, 25, 587]);
    }
}
