//! Is the system clock synchronised? Maintenance windows, SLA deadlines, ticket and
//! signature expiry all depend on the wall clock, so the appliance warns (in the log at
//! start and every hour, and on the dashboard through [`status`]) while nothing keeps
//! it in step.
//!
//! Two sources, best first:
//! 1. **The kernel's NTP state** (`ntp_adjtime` with `modes = 0`, a read-only call that
//!    needs no privilege): `STA_UNSYNC` is clear while an NTP client (systemd-timesyncd,
//!    chrony, ntpd) disciplines the clock, and the kernel sets it again once the
//!    estimated error passes 16 s. This works for every NTP client.
//! 2. **systemd-timesyncd's flag file** `/run/systemd/timesync/synchronized`, touched on
//!    each successful synchronisation. Needed because `patchward.service` cannot make
//!    the call: `SystemCallFilter=@system-service` does not list `adjtimex` /
//!    `clock_adjtime`, and `ProtectClock=yes` denies the whole `@clock` group, so the
//!    call fails with `EPERM` (seccomp cannot tell a read from a write). The file is
//!    readable under `ProtectSystem=strict`.
//!
//! [`decide`] is the pure decision from what was observed; [`probe`] does the IO.
//! This module reads the real system clock on purpose (for the flag file's age): the
//! question is about that clock itself, so a [`crate::clock::Clock`] would not help.

use std::path::Path;
use std::time::{Duration, SystemTime};

/// systemd-timesyncd touches this file on each successful synchronisation.
pub const TIMESYNCD_FLAG: &str = "/run/systemd/timesync/synchronized";
/// The directory systemd-timesyncd creates when it runs.
pub const TIMESYNCD_DIR: &str = "/run/systemd/timesync";

/// A healthy timesyncd polls at least every 2048 s (its `PollIntervalMaxSec`), touching
/// the flag each time; a flag older than several missed polls means synchronisation was
/// lost.
pub const FLAG_STALE_AFTER: Duration = Duration::from_secs(4 * 3600);

/// How often the server repeats the warning while the clock is not synchronised.
pub const WARN_EVERY: Duration = Duration::from_secs(3600);

/// `STA_UNSYNC` from `<sys/timex.h>`: the clock is not synchronised.
const STA_UNSYNC: i32 = 0x0040;

/// What the kernel said about its clock (`struct timex` after `ntp_adjtime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelNtp {
    /// `timex.status` (the `STA_*` bits).
    pub status: i32,
    /// `timex.maxerror`: the kernel's maximum error estimate in microseconds.
    pub maxerror_us: i64,
}

/// What systemd-timesyncd's run-time state shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timesyncd {
    /// The flag file exists; it was last touched `age` ago (`None`: in the future,
    /// i.e. the clock was stepped back since).
    Synced { age: Option<Duration> },
    /// timesyncd ran (its directory exists) but has not synchronised since boot.
    NotSynced,
    /// No trace of timesyncd: another NTP client, or none.
    Absent,
}

/// Everything [`decide`] needs; gathered by [`probe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The kernel's NTP state, or why it could not be read (`EPERM` in the sandbox).
    pub kernel: Result<KernelNtp, String>,
    pub timesyncd: Timesyncd,
}

/// Which source decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Kernel,
    Timesyncd,
}

/// The answer: synchronised, not, or cannot tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClockSync {
    Synchronized {
        source: Source,
    },
    /// `detail` says what was seen, in plain words.
    Unsynchronized {
        source: Source,
        detail: String,
    },
    /// Neither source could be read (e.g. sandboxed, with chrony or ntpd).
    Unknown {
        detail: String,
    },
}

impl ClockSync {
    pub fn is_synchronized(&self) -> bool {
        matches!(self, ClockSync::Synchronized { .. })
    }

    /// The warning for an operator (log line, dashboard banner) while not synchronised;
    /// `None` when synchronised or unknown.
    pub fn warning(&self) -> Option<String> {
        match self {
            ClockSync::Unsynchronized { detail, .. } => Some(format!(
                "the system clock is not synchronised ({detail}): maintenance windows, \
                 deadlines and signature expiry depend on it; configure an NTP server \
                 (e.g. NTP= in /etc/systemd/timesyncd.conf.d/) or check that it is reachable"
            )),
            _ => None,
        }
    }
}

/// The pure decision. The kernel is authoritative when it could be asked; otherwise
/// timesyncd's flag file, which counts only while it is fresh.
pub fn decide(obs: &Observation) -> ClockSync {
    if let Ok(k) = &obs.kernel {
        return if k.status & STA_UNSYNC != 0 {
            ClockSync::Unsynchronized {
                source: Source::Kernel,
                detail: "the kernel reports no NTP synchronisation".into(),
            }
        } else {
            ClockSync::Synchronized {
                source: Source::Kernel,
            }
        };
    }
    match obs.timesyncd {
        Timesyncd::Synced { age: Some(age) } if age > FLAG_STALE_AFTER => {
            ClockSync::Unsynchronized {
                source: Source::Timesyncd,
                detail: format!(
                    "systemd-timesyncd last synchronised {} hours ago",
                    age.as_secs() / 3600
                ),
            }
        }
        // A flag from the "future": the clock went back after the last sync; the sync
        // itself is what set the clock, so treat it as fresh.
        Timesyncd::Synced { .. } => ClockSync::Synchronized {
            source: Source::Timesyncd,
        },
        Timesyncd::NotSynced => ClockSync::Unsynchronized {
            source: Source::Timesyncd,
            detail: "systemd-timesyncd has not reached a time server since boot".into(),
        },
        Timesyncd::Absent => ClockSync::Unknown {
            detail: format!(
                "cannot read the kernel's NTP state ({}) and systemd-timesyncd is not running",
                obs.kernel.as_ref().err().map(String::as_str).unwrap_or("?")
            ),
        },
    }
}

/// Reads the kernel's NTP state with a read-only `ntp_adjtime` (`modes = 0`).
pub fn kernel_ntp() -> Result<KernelNtp, String> {
    // SAFETY: `timex` is plain old data, all-zero is valid (modes = 0: read only), and
    // the pointer is valid for the duration of the call.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = 0;
    let rc = unsafe { libc::ntp_adjtime(&mut tx) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    Ok(KernelNtp {
        status: tx.status,
        maxerror_us: tx.maxerror,
    })
}

/// Reads timesyncd's run-time state under `dir` (normally [`TIMESYNCD_DIR`]).
pub fn timesyncd_state(dir: &Path, now: SystemTime) -> Timesyncd {
    match std::fs::metadata(dir.join("synchronized")).and_then(|m| m.modified()) {
        Ok(mtime) => Timesyncd::Synced {
            age: now.duration_since(mtime).ok(),
        },
        Err(_) if dir.is_dir() => Timesyncd::NotSynced,
        Err(_) => Timesyncd::Absent,
    }
}

/// Gathers an [`Observation`] from this machine.
pub fn probe() -> Observation {
    Observation {
        kernel: kernel_ntp(),
        timesyncd: timesyncd_state(Path::new(TIMESYNCD_DIR), SystemTime::now()),
    }
}

/// Is this machine's clock synchronised? Cheap (one system call and one `stat`): the
/// dashboard may call it on every page view.
pub fn status() -> ClockSync {
    decide(&probe())
}

/// Logs the clock state now and then every [`WARN_EVERY`] while it is not synchronised
/// (a warning each time), and keeps the `patchward_clock_synchronized` gauge (1, 0, or
/// -1 for unknown) current. Ends when `stop` turns true.
pub fn spawn_monitor(mut stop: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(WARN_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut first = true;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let st = status();
            metrics::gauge!("patchward_clock_synchronized").set(match &st {
                ClockSync::Synchronized { .. } => 1.0,
                ClockSync::Unsynchronized { .. } => 0.0,
                ClockSync::Unknown { .. } => -1.0,
            });
            match &st {
                ClockSync::Unsynchronized { .. } => {
                    tracing::warn!("{}", st.warning().unwrap_or_default())
                }
                ClockSync::Synchronized { source } if first => {
                    tracing::info!(?source, "the system clock is synchronised")
                }
                ClockSync::Unknown { detail } if first => {
                    tracing::info!("cannot tell whether the system clock is synchronised: {detail}")
                }
                _ => {}
            }
            first = false;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(kernel: Result<KernelNtp, String>, timesyncd: Timesyncd) -> Observation {
        Observation { kernel, timesyncd }
    }
    fn k(status: i32) -> Result<KernelNtp, String> {
        Ok(KernelNtp {
            status,
            maxerror_us: 0,
        })
    }
    const EPERM: fn() -> Result<KernelNtp, String> = || Err("Operation not permitted".into());

    #[test]
    fn kernel_decides_when_readable() {
        // STA_PLL | STA_UNSYNC as after boot, whatever timesyncd's file says.
        let st = decide(&obs(
            k(0x0001 | STA_UNSYNC),
            Timesyncd::Synced {
                age: Some(Duration::ZERO),
            },
        ));
        assert!(matches!(
            st,
            ClockSync::Unsynchronized {
                source: Source::Kernel,
                ..
            }
        ));
        assert!(st.warning().unwrap().contains("not synchronised"));
        let st = decide(&obs(k(0x0001), Timesyncd::Absent));
        assert_eq!(
            st,
            ClockSync::Synchronized {
                source: Source::Kernel
            }
        );
        assert!(st.warning().is_none());
    }

    #[test]
    fn sandboxed_falls_back_to_timesyncd() {
        let fresh = Timesyncd::Synced {
            age: Some(Duration::from_secs(600)),
        };
        assert_eq!(
            decide(&obs(EPERM(), fresh)),
            ClockSync::Synchronized {
                source: Source::Timesyncd
            }
        );
        let st = decide(&obs(EPERM(), Timesyncd::NotSynced));
        assert!(!st.is_synchronized());
        assert!(
            st.warning()
                .unwrap()
                .contains("has not reached a time server")
        );
    }

    #[test]
    fn stale_flag_is_unsynchronised_and_future_flag_is_fresh() {
        let stale = Timesyncd::Synced {
            age: Some(FLAG_STALE_AFTER + Duration::from_secs(3600)),
        };
        let st = decide(&obs(EPERM(), stale));
        assert!(
            st.warning()
                .unwrap()
                .contains("last synchronised 5 hours ago")
        );
        let edge = Timesyncd::Synced {
            age: Some(FLAG_STALE_AFTER),
        };
        assert!(decide(&obs(EPERM(), edge)).is_synchronized());
        let future = Timesyncd::Synced { age: None };
        assert!(decide(&obs(EPERM(), future)).is_synchronized());
    }

    #[test]
    fn nothing_readable_is_unknown_without_warning() {
        let st = decide(&obs(EPERM(), Timesyncd::Absent));
        assert!(
            matches!(&st, ClockSync::Unknown { detail } if detail.contains("Operation not permitted"))
        );
        assert!(st.warning().is_none());
        assert!(!st.is_synchronized());
    }

    #[test]
    fn timesyncd_state_reads_the_flag_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert_eq!(
            timesyncd_state(&missing, SystemTime::now()),
            Timesyncd::Absent
        );
        assert_eq!(
            timesyncd_state(dir.path(), SystemTime::now()),
            Timesyncd::NotSynced
        );
        std::fs::write(dir.path().join("synchronized"), b"").unwrap();
        let later = SystemTime::now() + Duration::from_secs(7200);
        match timesyncd_state(dir.path(), later) {
            Timesyncd::Synced { age: Some(age) } => assert!(age >= Duration::from_secs(7199)),
            other => panic!("unexpected {other:?}"),
        }
        let earlier = SystemTime::now() - Duration::from_secs(7200);
        assert_eq!(
            timesyncd_state(dir.path(), earlier),
            Timesyncd::Synced { age: None }
        );
    }

    #[test]
    fn kernel_call_is_read_only_and_answers_here() {
        // Outside a seccomp sandbox the read-only call needs no privilege; in one that
        // denies @clock it fails with EPERM and the fallback applies.
        match kernel_ntp() {
            Ok(k) => assert!(k.maxerror_us >= 0),
            Err(e) => assert!(e.contains("not permitted"), "{e}"),
        }
    }
}
