//! SLA deadlines (DESIGN §4 "SLA"), a patch's standing across the hosts it applies to,
//! and the priority order of security patches.
//!
//! The deadline: the SLA clock starts at the patch's vendor `released` time, or when
//! the appliance first saw it if that is earlier (a patch cannot have been released
//! after the appliance held it, so a future-dated `released` postpones nothing). It is
//! due `days(severity)` after that start (defaults: critical 15, high 30, medium 90,
//! low 180). A KEV due date moves it earlier, never later (DESIGN), but only a KEV due
//! date after the start counts: one that had passed before the patch existed cannot be
//! met, and the deadline is then the later of the two, the start plus the severity's
//! days (a patch released last month is not "1090 d late" for a CVE listed in 2023).
//! Decisions where DESIGN is silent: severity `none` has no deadline of its own, and a
//! KEV-listed one whose due date passed before its start gets the critical days; a KEV
//! due date (a calendar date) ends at the end of that day in UTC.
//!
//! Overdue is per host ([`standing`]): a host is late for a patch it applies to and
//! lacks once the deadline has passed; an install after the deadline is `late`. A patch
//! that applies to no enrolled host, or is installed on every host it applies to, is
//! overdue nowhere and waits for nobody's approval.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::PolicyError;
use super::approval::severity_rank;
use crate::feed::catalog::{PatchEntry, Severity};

/// Days to install, per severity (`[policy.sla]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlaRules {
    pub critical_days: u32,
    pub high_days: u32,
    pub medium_days: u32,
    pub low_days: u32,
}

impl Default for SlaRules {
    fn default() -> Self {
        Self {
            critical_days: 15,
            high_days: 30,
            medium_days: 90,
            low_days: 180,
        }
    }
}

impl SlaRules {
    pub fn validate(&self, key: &str) -> Result<(), PolicyError> {
        let all = [
            ("critical_days", self.critical_days),
            ("high_days", self.high_days),
            ("medium_days", self.medium_days),
            ("low_days", self.low_days),
        ];
        for (name, d) in all {
            if !(1..=3650).contains(&d) {
                return Err(PolicyError::new(
                    format!("{key}.{name}"),
                    format!("{d} is outside 1..3650 days"),
                ));
            }
        }
        for pair in all.windows(2) {
            if pair[0].1 > pair[1].1 {
                return Err(PolicyError::new(
                    format!("{key}.{}", pair[0].0),
                    format!(
                        "{} days is longer than {} = {}: a more severe patch cannot get more time",
                        pair[0].1, pair[1].0, pair[1].1
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn days(&self, s: Severity) -> Option<u32> {
        match s {
            Severity::Critical => Some(self.critical_days),
            Severity::High => Some(self.high_days),
            Severity::Medium => Some(self.medium_days),
            Severity::Low => Some(self.low_days),
            Severity::None => None,
        }
    }
}

/// The end (exclusive) of a KEV due date: midnight UTC after it.
fn end_of_day_utc(d: Date) -> Option<Timestamp> {
    d.tomorrow()
        .ok()?
        .to_datetime(jiff::civil::Time::midnight())
        .to_zoned_datetime(TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// When the SLA clock starts: `released`, or `first_seen` (the appliance's clock) when
/// that is earlier.
pub fn sla_start(entry: &PatchEntry, first_seen: Option<Timestamp>) -> Timestamp {
    first_seen.map_or(entry.released, |f| f.min(entry.released))
}

/// When the patch is due (see the module doc): by severity from its start, or the KEV
/// due date when that is earlier but after the start.
pub fn deadline(
    entry: &PatchEntry,
    first_seen: Option<Timestamp>,
    kev_due: Option<Date>,
    rules: &SlaRules,
) -> Option<Timestamp> {
    let start = sla_start(entry, first_seen);
    let after = |days: u32| {
        start
            .checked_add(SignedDuration::from_hours(i64::from(days) * 24))
            .ok()
    };
    let by_severity = rules.days(entry.severity).and_then(after);
    // A KEV due date at or before the start cannot be met: it does not count.
    let by_kev = kev_due.and_then(end_of_day_utc).filter(|k| *k > start);
    match (by_severity, by_kev) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (Some(a), None) => Some(a),
        (None, Some(b)) => Some(b),
        (None, None) if kev_due.is_some() => after(rules.critical_days),
        (None, None) => None,
    }
}

/// A patch's SLA standing on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SlaStatus {
    pub due: Timestamp,
    /// Not installed and past due.
    pub overdue: bool,
    /// Installed, but after the deadline.
    pub late: bool,
}

/// The SLA standing on one host the patch applies to, or `None` when no deadline
/// applies.
pub fn status(
    due: Option<Timestamp>,
    installed_at: Option<Timestamp>,
    now: Timestamp,
) -> Option<SlaStatus> {
    let due = due?;
    Some(SlaStatus {
        due,
        overdue: installed_at.is_none() && now >= due,
        late: installed_at.is_some_and(|i| i > due),
    })
}

/// A patch's standing across the enrolled hosts: which it applies to, which have it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Standing {
    pub due: Option<Timestamp>,
    /// Hosts in scope: it applies to them now, or they installed it.
    pub hosts: usize,
    pub installed: usize,
    /// Hosts it applies to that lack it.
    pub missing: usize,
    /// Hosts that lack it past the deadline (overdue there): how many. (A count, not
    /// the names: every page shows the number, and the dashboard computes this for
    /// every patch over the whole fleet.)
    pub late_hosts: usize,
    /// Installs made after the deadline.
    pub late_installs: usize,
}

impl Standing {
    /// Some host it applies to still lacks it: the patch needs a decision or work.
    pub fn needed(&self) -> bool {
        self.missing > 0
    }

    /// Overdue on at least one host.
    pub fn overdue(&self) -> bool {
        self.late_hosts > 0
    }
}

/// The standing of a patch due at `due`, that applies now to the hosts `applies` (host
/// ids, sorted ascending) and is installed (at the given times) on `installed`. A host
/// that installed it is in scope even if its selectors no longer match it (a
/// `below_version` selector stops matching once the fix is in). Costs one binary search
/// per install, not one lookup per host it applies to.
pub fn standing<S: AsRef<str>>(
    due: Option<Timestamp>,
    applies: &[S],
    installed: &std::collections::BTreeMap<String, Timestamp>,
    now: Timestamp,
) -> Standing {
    let mut st = Standing {
        due,
        installed: installed.len(),
        late_installs: installed
            .values()
            .filter(|at| due.is_some_and(|d| **at > d))
            .count(),
        ..Standing::default()
    };
    debug_assert!(applies.is_sorted_by(|a, b| a.as_ref() < b.as_ref()));
    let have = installed
        .keys()
        .filter(|h| {
            applies
                .binary_search_by(|a| a.as_ref().cmp(h.as_str()))
                .is_ok()
        })
        .count();
    st.missing = applies.len() - have;
    // A host that lacks it is late exactly when the patch is past its deadline.
    if status(due, None, now).is_some_and(|s| s.overdue) {
        st.late_hosts = st.missing;
    }
    st.hosts = st.installed + st.missing;
    st
}

/// Sort key for security work, most urgent first when sorted descending: KEV, then
/// severity, then CVSS (tenths), then the oldest release.
pub fn priority(entry: &PatchEntry, kev: bool) -> (bool, u8, u32, std::cmp::Reverse<Timestamp>) {
    let cvss = entry
        .cvss
        .as_ref()
        .map_or(0, |c| (c.base_score.clamp(0.0, 10.0) * 10.0).round() as u32);
    (
        kev,
        severity_rank(entry.severity),
        cvss,
        std::cmp::Reverse(entry.released),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::catalog::tests::entry;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[track_caller]
    fn check(sev: Severity, kev_due: Option<&str>, want: Option<&str>) {
        let mut e = entry("p", b"x");
        e.severity = sev;
        e.released = t("2026-11-01T12:00:00Z");
        let kev_due = kev_due.map(|d| d.parse::<Date>().unwrap());
        assert_eq!(
            deadline(&e, None, kev_due, &SlaRules::default()),
            want.map(t),
            "{sev:?} {kev_due:?}"
        );
    }

    #[test]
    fn deadlines() {
        use Severity::{Critical, High, Low, Medium};
        check(Critical, None, Some("2026-11-16T12:00:00Z"));
        check(High, None, Some("2026-12-01T12:00:00Z"));
        check(Medium, None, Some("2027-01-30T12:00:00Z"));
        check(Low, None, Some("2027-04-30T12:00:00Z"));
        check(Severity::None, None, None);
        // KEV earlier wins; later does not.
        check(High, Some("2026-11-10"), Some("2026-11-11T00:00:00Z"));
        check(Critical, Some("2026-12-31"), Some("2026-11-16T12:00:00Z"));
        check(
            Severity::None,
            Some("2026-11-20"),
            Some("2026-11-21T00:00:00Z"),
        );
    }

    #[test]
    fn a_kev_due_date_before_the_release_does_not_make_a_new_patch_late() {
        // Issue [8] item 11: a CVE listed (and due) in 2023, fixed by a patch released
        // last month, was "1090 d late". The later of the two counts: release + SLA.
        use Severity::{High, Medium};
        check(High, Some("2023-11-06"), Some("2026-12-01T12:00:00Z"));
        check(Medium, Some("2026-10-31"), Some("2027-01-30T12:00:00Z"));
        // Due the day of the release (ends at midnight after it): still after the start.
        check(High, Some("2026-11-01"), Some("2026-11-02T00:00:00Z"));
        // Severity none with a passed KEV date: the critical days.
        check(
            Severity::None,
            Some("2023-01-01"),
            Some("2026-11-16T12:00:00Z"),
        );
    }

    #[test]
    fn the_clock_starts_at_the_release_or_first_seen_whichever_is_earlier() {
        let mut e = entry("p", b"x");
        e.severity = Severity::Critical;
        e.released = t("2026-11-01T00:00:00Z");
        let r = SlaRules::default();
        // Seen later than released (an air-gapped site): counted from the release.
        assert_eq!(
            deadline(&e, Some(t("2026-11-20T00:00:00Z")), None, &r),
            Some(t("2026-11-16T00:00:00Z"))
        );
        // A release dated after the appliance first held it postpones nothing.
        e.released = t("2030-01-01T00:00:00Z");
        assert_eq!(
            deadline(&e, Some(t("2026-11-01T00:00:00Z")), None, &r),
            Some(t("2026-11-16T00:00:00Z"))
        );
    }

    #[test]
    fn overdue_and_late() {
        let due = t("2026-11-16T00:00:00Z");
        let s = |inst: Option<&str>, now: &str| status(Some(due), inst.map(t), t(now)).unwrap();
        assert_eq!(
            s(Option::None, "2026-11-15T23:59:59Z"),
            SlaStatus {
                due,
                overdue: false,
                late: false
            }
        );
        assert_eq!(
            s(Option::None, "2026-11-16T00:00:00Z"),
            SlaStatus {
                due,
                overdue: true,
                late: false
            }
        );
        assert_eq!(
            s(Some("2026-11-10T00:00:00Z"), "2026-12-01T00:00:00Z"),
            SlaStatus {
                due,
                overdue: false,
                late: false
            }
        );
        assert_eq!(
            s(Some("2026-11-20T00:00:00Z"), "2026-12-01T00:00:00Z"),
            SlaStatus {
                due,
                overdue: false,
                late: true
            }
        );
        assert_eq!(
            status(Option::None, Option::None, t("2030-01-01T00:00:00Z")),
            Option::None
        );
    }

    #[test]
    fn overdue_is_per_host() {
        let due = Some(t("2026-11-16T00:00:00Z"));
        let now = t("2026-12-01T00:00:00Z");
        let installed: std::collections::BTreeMap<String, Timestamp> = [
            ("a".to_string(), t("2026-11-10T00:00:00Z")),
            ("b".to_string(), t("2026-11-20T00:00:00Z")),
        ]
        .into_iter()
        .collect();
        // Installed on every host it applies to (b's selector no longer matches it).
        let st = standing(due, &["a"], &installed, now);
        assert!(!st.needed() && !st.overdue(), "{st:?}");
        assert_eq!((st.hosts, st.installed, st.late_installs), (2, 2, 1));
        // Applies to no host at all.
        let st = standing::<&str>(due, &[], &Default::default(), now);
        assert!(!st.needed() && !st.overdue());
        assert_eq!(st.hosts, 0);
        // Late on the one host that lacks it; not before the deadline.
        let st = standing(due, &["a", "c"], &installed, now);
        assert_eq!(st.late_hosts, 1);
        assert_eq!((st.hosts, st.missing), (3, 1));
        let st = standing(due, &["a", "c"], &installed, t("2026-11-15T00:00:00Z"));
        assert!(st.needed() && !st.overdue());
        // No deadline: needed, never overdue.
        let st = standing(Option::None, &["c"], &installed, now);
        assert!(st.needed() && !st.overdue());
    }

    #[test]
    fn rules_validate() {
        SlaRules::default().validate("policy.sla").unwrap();
        let bad = SlaRules {
            critical_days: 0,
            ..Default::default()
        };
        assert_eq!(
            bad.validate("policy.sla").unwrap_err().key,
            "policy.sla.critical_days"
        );
        let bad = SlaRules {
            high_days: 100,
            ..Default::default()
        };
        assert!(
            bad.validate("policy.sla")
                .unwrap_err()
                .message
                .contains("cannot get more time")
        );
        let parsed: SlaRules = toml::from_str("high_days = 20").unwrap();
        assert_eq!(parsed.high_days, 20);
        assert_eq!(parsed.critical_days, 15);
        assert!(toml::from_str::<SlaRules>("urgent_days = 1").is_err());
    }

    #[test]
    fn priority_orders_kev_then_severity_then_cvss() {
        let mut a = entry("a", b"1");
        a.severity = Severity::Medium;
        let mut b = entry("b", b"2");
        b.severity = Severity::Critical;
        let mut c = entry("c", b"3");
        c.severity = Severity::Critical;
        c.cvss.as_mut().unwrap().base_score = 9.8;
        let mut list = [(&a, true), (&b, false), (&c, false)];
        list.sort_by_key(|(e, kev)| std::cmp::Reverse(priority(e, *kev)));
        let ids: Vec<&str> = list.iter().map(|(e, _)| e.id.as_str()).collect();
        assert_eq!(ids, ["a", "c", "b"]);
    }
}
