//! Sign-in throttling: a pure decision from the recent failures of an account name and
//! of a client address (both persisted in `login_attempts`) and `now`.
//!
//! After `max_failures` failures within `window`, the key is locked for `lockout`; every
//! further failure (possible once a lock has passed) doubles the lock, capped at
//! `window`. Failures older than `window` no longer count. An address may fail
//! [`ADDRESS_FACTOR`] times as often as one account (several people may share it), which
//! still stops one address from trying many names.

use std::time::Duration;

/// How many more failures an address may have than one account name.
pub const ADDRESS_FACTOR: u32 = 4;

/// The throttling settings (`[web]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleRules {
    pub max_failures: u32,
    pub window: Duration,
    pub lockout: Duration,
}

impl Default for ThrottleRules {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window: Duration::from_secs(15 * 60),
            lockout: Duration::from_secs(60),
        }
    }
}

impl ThrottleRules {
    /// Failures at or after this time (ms) count.
    pub fn since(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(self.window.as_millis() as i64)
    }
}

/// Until when (ms) one key is locked, given its failures within the window (oldest
/// first), or `None`.
fn locked_until(failures: &[i64], max: u32, rules: &ThrottleRules) -> Option<i64> {
    let n = failures.len() as u64;
    let max = u64::from(max.max(1));
    if n < max {
        return None;
    }
    let doublings = (n - max).min(30) as u32;
    let delay = (rules.lockout.as_millis() as i64)
        .saturating_mul(1i64 << doublings)
        .min(rules.window.as_millis() as i64);
    failures.last().map(|last| last.saturating_add(delay))
}

/// `Some(until_ms)` when a sign-in for this name from this address must be refused now
/// (without checking the password), `None` when it may be tried.
pub fn check(
    now_ms: i64,
    account_failures: &[i64],
    address_failures: &[i64],
    rules: &ThrottleRules,
) -> Option<i64> {
    let since = rules.since(now_ms);
    let recent = |v: &[i64]| -> Vec<i64> { v.iter().copied().filter(|t| *t >= since).collect() };
    let a = locked_until(&recent(account_failures), rules.max_failures, rules);
    let b = locked_until(
        &recent(address_failures),
        rules.max_failures.saturating_mul(ADDRESS_FACTOR),
        rules,
    );
    a.max(b).filter(|until| *until > now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;
    const M: i64 = 60 * S;

    fn rules() -> ThrottleRules {
        ThrottleRules::default()
    }

    /// Failures at the given seconds; check at `now_s`.
    fn check_at(now_s: i64, account: &[i64], address: &[i64]) -> Option<i64> {
        let ms = |v: &[i64]| v.iter().map(|s| s * S).collect::<Vec<_>>();
        check(now_s * S, &ms(account), &ms(address), &rules()).map(|u| u / S)
    }

    #[test]
    fn four_failures_are_fine_the_fifth_locks_for_a_minute() {
        assert_eq!(check_at(10, &[1, 2, 3, 4], &[1, 2, 3, 4]), None);
        let five = [1, 2, 3, 4, 5];
        assert_eq!(check_at(10, &five, &five), Some(65));
        assert_eq!(check_at(64, &five, &five), Some(65));
        assert_eq!(check_at(65, &five, &five), None, "the lock has passed");
    }

    #[test]
    fn each_further_failure_doubles_the_lock_up_to_the_window() {
        let mut f = vec![1, 2, 3, 4, 5];
        f.push(70); // tried again after the first lock: 2 minutes
        assert_eq!(check_at(71, &f, &[]), Some(70 + 120));
        f.push(200); // 4 minutes
        assert_eq!(check_at(201, &f, &[]), Some(200 + 240));
        f.extend([450, 460, 470, 480]); // would be 64 minutes: capped at the window
        assert_eq!(check_at(481, &f, &[]), Some(480 + 15 * 60));
    }

    #[test]
    fn failures_older_than_the_window_stop_counting() {
        let old = [1, 2, 3, 4, 5];
        let now = 5 + 15 * 60 + 1;
        assert_eq!(check_at(now, &old, &old), None);
        // Four old ones and one new one are not five within the window.
        assert_eq!(check_at(now, &[1, 2, 3, 4, now - 1], &[]), None);
    }

    #[test]
    fn an_address_trying_many_names_is_locked_after_four_times_as_many() {
        let addr: Vec<i64> = (1..20).collect();
        assert_eq!(check_at(30, &[], &addr), None);
        let addr: Vec<i64> = (1..=20).collect();
        assert_eq!(check_at(30, &[], &addr), Some(80));
    }

    #[test]
    fn the_lock_is_the_later_of_account_and_address() {
        let account = [1, 2, 3, 4, 5]; // until 65
        let addr: Vec<i64> = (40..60).collect(); // 20 failures, until 119
        assert_eq!(check_at(61, &account, &addr), Some(119));
        assert_eq!(M, 60_000);
    }
}
