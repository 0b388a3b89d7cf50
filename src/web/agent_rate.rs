//! Per-host request rates on the agent API: a token bucket per authenticated host
//! (`agent_api.requests_per_minute`, `agent_api.burst`). A host over its rate gets 429
//! with `Retry-After` (the seconds until its next token); other hosts are not touched.
//!
//! Keyed by the *verified* host id, after the signature check: keyed by the claimed
//! `Patchward-Host` header, anyone could spend another host's tokens with unsigned
//! requests. Times are the appliance's `Clock`; a clock that goes back refills
//! nothing (and takes nothing away).

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::Timestamp;

/// One host's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Timestamp,
}

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    // A std Mutex: one short map operation per request, never held across an await.
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(requests_per_minute: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(requests_per_minute.max(1)) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn from_config(c: &crate::config::AgentApiConfig) -> Self {
        Self::new(c.requests_per_minute, c.burst)
    }

    /// Takes one token of `host`'s at `now`, or says how many whole seconds until one
    /// is there (at least 1).
    pub fn take(&self, host: &str, now: Timestamp) -> Result<(), u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 1024 && buckets.len().is_power_of_two() {
            // Hosts that have been quiet long enough to be full again are dropped: a
            // missing bucket is a full one.
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, b| refill(*b, now, rate, burst).tokens < burst);
        }
        let b = buckets.entry(host.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        *b = refill(*b, now, self.per_second, self.burst);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - b.tokens) / self.per_second;
        // In range: a token is at most 60 s away (the rate is at least one a minute).
        Err((wait.ceil() as u64).max(1))
    }
}

fn refill(b: Bucket, now: Timestamp, per_second: f64, burst: f64) -> Bucket {
    let elapsed = now.duration_since(b.at).as_secs_f64();
    if elapsed <= 0.0 {
        return b;
    }
    Bucket {
        tokens: (b.tokens + elapsed * per_second).min(burst),
        at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    #[test]
    fn a_host_over_its_rate_waits_and_the_others_do_not() {
        let r = RateLimiter::new(60, 3);
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        for _ in 0..3 {
            r.take("a", now).unwrap();
        }
        assert_eq!(r.take("a", now), Err(1));
        // Another host has its own bucket.
        r.take("b", now).unwrap();
        // One second later a has one token again (60 a minute), not more.
        let later = now + SignedDuration::from_secs(1);
        r.take("a", later).unwrap();
        assert_eq!(r.take("a", later), Err(1));
        // A clock that goes back gives nothing.
        assert_eq!(r.take("a", now), Err(1));
        // Slow rates name the real wait.
        let slow = RateLimiter::new(6, 1);
        slow.take("a", now).unwrap();
        assert_eq!(slow.take("a", now), Err(10));
        // Refill stops at the burst.
        let much_later = now + SignedDuration::from_hours(1);
        for _ in 0..3 {
            r.take("a", much_later).unwrap();
        }
        assert!(r.take("a", much_later).is_err());
    }
}
