//! SLA deadlines (DESIGN §4 "SLA") and the priority order of security patches.
//!
//! A patch is due `days(severity)` after its vendor `released` time (defaults: critical
//! 15, high 30, medium 90, low 180); a KEV due date moves that earlier, never later.
//! Decisions where DESIGN is silent: severity `none` has no deadline; a KEV due date
//! (a calendar date) ends at the end of that day in UTC; `overdue` means not installed
//! and past due, and an install after the deadline is recorded as `late`.

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

/// When the patch is due: by severity from `released`, or the KEV due date if earlier.
pub fn deadline(entry: &PatchEntry, kev_due: Option<Date>, rules: &SlaRules) -> Option<Timestamp> {
    let by_severity = rules.days(entry.severity).and_then(|d| {
        entry
            .released
            .checked_add(SignedDuration::from_hours(i64::from(d) * 24))
            .ok()
    });
    let by_kev = kev_due.and_then(end_of_day_utc);
    match (by_severity, by_kev) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
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

/// The SLA standing, or `None` when no deadline applies.
pub fn status(
    entry: &PatchEntry,
    kev_due: Option<Date>,
    installed_at: Option<Timestamp>,
    rules: &SlaRules,
    now: Timestamp,
) -> Option<SlaStatus> {
    let due = deadline(entry, kev_due, rules)?;
    Some(SlaStatus {
        due,
        overdue: installed_at.is_none() && now >= due,
        late: installed_at.is_some_and(|i| i > due),
    })
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
            deadline(&e, kev_due, &SlaRules::default()),
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
    fn overdue_and_late() {
        let mut e = entry("p", b"x");
        e.severity = Severity::Critical;
        e.released = t("2026-11-01T00:00:00Z");
        let r = SlaRules::default();
        let due = t("2026-11-16T00:00:00Z");
        let s = |inst: Option<&str>, now: &str| {
            status(&e, Option::None, inst.map(t), &r, t(now)).unwrap()
        };
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
