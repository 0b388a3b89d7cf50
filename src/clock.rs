//! Time, behind a trait so every time-dependent decision can be tested.
//!
//! Nothing in the library reads the system clock directly: it asks a [`Clock`]. Tests use
//! [`ManualClock`] to move time forward by weeks in microseconds.

use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to; cheap to clone, clones share the time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    // A std Mutex: the critical section is a copy, never held across an await.
    now: Arc<Mutex<Timestamp>>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Sets the time (it may go backwards: tests of wrong clocks need that).
    pub fn set(&self, t: Timestamp) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = t;
    }

    /// Moves the time forward (or back, for a negative duration).
    pub fn advance(&self, by: SignedDuration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now = now.saturating_add(by).expect("clock overflow");
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A shared clock handle, as stored in long-lived state.
pub type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let c = ManualClock::new(start);
        assert_eq!(c.now(), start);
        c.advance(SignedDuration::from_hours(24 * 7));
        assert_eq!(c.now().to_string(), "2026-12-04T10:00:00Z");
        let shared = c.clone();
        shared.set(start);
        assert_eq!(c.now(), start);
    }
}
