//! When is a file in the drop folder complete? Pure decisions over observations.
//!
//! Copying to USB media or a share gives no "done" signal that works everywhere, so the
//! rule is layered:
//!
//! - **Stability (works on every filesystem):** size and mtime unchanged for the
//!   configured `stable` period, as seen by periodic scans.
//! - **A writer still has it open (inotify, local writes only):** a data-modify event
//!   with no close-after-write since means a process is still writing. Such a file waits
//!   even when it looks stable (a copy that stalls), up to [`stale_writer`], in case the
//!   close event was lost (queue overflow, watch re-established).
//! - **Fast path:** after a close-after-write (or a rename into the folder, as rsync and
//!   careful copiers do), a file whose size was observed after that moment and has not
//!   changed for [`settle`] is complete without waiting the full `stable` period.
//!
//! The caller adds one more best-effort check before importing: no process it can see
//! has the file open for writing (`writers.rs`).

use std::time::{Duration, Instant, SystemTime};

/// What a scan saw of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stat {
    pub size: u64,
    pub mtime: SystemTime,
}

/// The short wait after a close-after-write before the fast path accepts a file: a
/// writer that closes and immediately reopens (append in steps) gets this long to do so.
pub fn settle(stable: Duration) -> Duration {
    stable.min(Duration::from_millis(500))
}

/// How long a file that events say is still open for writing may stay unchanged before
/// it is treated as complete anyway (the close event may have been lost).
pub fn stale_writer(stable: Duration) -> Duration {
    (stable * 12).max(Duration::from_secs(60))
}

/// What is known about one candidate file.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The last stat a scan saw (None: known only from an event so far).
    seen: Option<Stat>,
    /// When `seen` last changed.
    changed_at: Instant,
    /// When the last scan observed the file.
    observed_at: Option<Instant>,
    /// Events say a writer has it open: a data change with no close-after-write since.
    writing: bool,
    /// The last close-after-write (or rename into the folder), unless written since.
    closed_at: Option<Instant>,
}

impl Candidate {
    pub fn new(now: Instant) -> Self {
        Self {
            seen: None,
            changed_at: now,
            observed_at: None,
            writing: false,
            closed_at: None,
        }
    }

    /// A scan saw `stat` at `now`.
    pub fn observe(&mut self, stat: Stat, now: Instant) {
        if self.seen != Some(stat) {
            self.seen = Some(stat);
            self.changed_at = now;
        }
        self.observed_at = Some(now);
    }

    /// An event said the file's data changed.
    pub fn written(&mut self, now: Instant) {
        self.writing = true;
        self.closed_at = None;
        self.changed_at = self.changed_at.max(now);
    }

    /// An event said a writer closed the file (or it was renamed into the folder).
    pub fn closed(&mut self, now: Instant) {
        self.writing = false;
        self.closed_at = Some(now);
    }

    /// The stat last seen.
    pub fn stat(&self) -> Option<Stat> {
        self.seen
    }

    /// True when the file may be imported at `now` (before the caller's open-for-write
    /// check).
    pub fn complete(&self, now: Instant, stable: Duration) -> bool {
        let (Some(_), Some(observed)) = (self.seen, self.observed_at) else {
            return false;
        };
        let quiet = now.saturating_duration_since(self.changed_at);
        if self.writing {
            return quiet >= stale_writer(stable);
        }
        if let Some(closed) = self.closed_at
            && closed <= observed
            && quiet >= settle(stable)
        {
            return true;
        }
        quiet >= stable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step of a scenario: at `ms` after the start, this happened.
    enum Step {
        Scan(u64, i64),
        Write,
        Close,
        /// Expect `complete` to be this.
        Check(bool),
    }
    use Step::*;

    const STABLE: Duration = Duration::from_secs(5);

    fn check(name: &str, steps: &[(u64, Step)]) {
        let t0 = Instant::now();
        let epoch = SystemTime::UNIX_EPOCH;
        let mut c = Candidate::new(t0);
        for (ms, step) in steps {
            let now = t0 + Duration::from_millis(*ms);
            match step {
                Scan(size, mtime) => c.observe(
                    Stat {
                        size: *size,
                        mtime: epoch + Duration::from_secs(*mtime as u64),
                    },
                    now,
                ),
                Write => c.written(now),
                Close => c.closed(now),
                Check(want) => assert_eq!(c.complete(now, STABLE), *want, "{name} at {ms} ms"),
            }
        }
    }

    #[test]
    fn stability_alone_decides_without_events() {
        check(
            "growing then still",
            &[
                (0, Scan(100, 1)),
                (1000, Check(false)),
                (1000, Scan(200, 2)),
                (5900, Scan(200, 2)),
                (5900, Check(false)),
                (6000, Check(true)),
            ],
        );
        check(
            "same size but newer mtime restarts the clock",
            &[
                (0, Scan(100, 1)),
                (4000, Scan(100, 2)),
                (6000, Check(false)),
                (9000, Check(true)),
            ],
        );
        check(
            "never observed",
            &[(0, Write), (0, Close), (60_000, Check(false))],
        );
    }

    #[test]
    fn an_open_writer_holds_a_stable_looking_file_back() {
        check(
            "copy stalls with the file open",
            &[
                (0, Write),
                (0, Scan(100, 1)),
                (10_000, Check(false)),
                (59_000, Check(false)),
                (60_000, Check(true)),
            ],
        );
        check(
            "close releases it after the stability period or the fast path",
            &[
                (0, Write),
                (0, Scan(100, 1)),
                (10_000, Close),
                (10_000, Check(true)),
            ],
        );
    }

    #[test]
    fn close_after_write_is_a_fast_path() {
        check(
            "closed, observed after the close, settled",
            &[
                (0, Scan(50, 1)),
                (100, Write),
                (200, Close),
                (300, Scan(100, 2)),
                (700, Check(false)),
                (800, Check(true)),
            ],
        );
        check(
            "a close not yet followed by a scan is not enough",
            &[
                (0, Scan(50, 1)),
                (100, Write),
                (2000, Close),
                (2600, Check(false)),
                (5000, Check(false)),
                (5100, Check(true)),
            ],
        );
        check(
            "reopened and written again: back to waiting",
            &[
                (0, Scan(50, 1)),
                (100, Close),
                (200, Scan(50, 1)),
                (300, Write),
                (900, Check(false)),
                (1000, Scan(80, 2)),
                (4000, Check(false)),
            ],
        );
    }
}
