//! Maintenance windows (DESIGN §4 "Windows"): when an install may start.
//!
//! A [`Windows`] set holds weekly slots, monthly-relative slots ("second Tuesday + 4
//! days"), one-off slots, blackout periods and an emergency set for expedited patches.
//! Every civil time is read in one IANA time zone, passed alongside.
//!
//! Rules (DESIGN is the source; the choices it leaves open are marked *decision*):
//! - A slot occurrence starts at its civil start time. A start inside a skipped hour
//!   (spring forward) moves forward by the length of the gap (02:30 becomes 03:30); an
//!   ambiguous start (fall back) takes the first occurrence. This is jiff's
//!   `compatible` disambiguation (RFC 5545).
//! - *Decision:* `duration` is elapsed time from that start, so a 4-hour window is 4
//!   hours long on DST days too (its civil end moves by the DST shift).
//! - Occurrences that overlap or touch merge into one opening (a slot ending at 06:00 and
//!   one starting at 06:00 form one window for latest-start purposes), however long the
//!   chain: an every-day 00:00 for 24 h set is one opening. *Decision:* openings are
//!   looked for within three years either side of the asked instant and cut there, so
//!   such a set's opening reaches from the look-back to the horizon.
//! - Blackouts override everything, the emergency set included: they are cut out of the
//!   openings, so no job may run into one.
//! - A job may start at `t` only if `t` and `t + est_minutes` lie in the same opening:
//!   `start <= window_end - est_minutes`.
//! - Openings are half-open: `[start, end)`.

mod calc;
#[cfg(test)]
mod tests;

use jiff::SignedDuration;
use jiff::civil::{DateTime, Time, Weekday};
use serde::{Deserialize, Serialize};

use super::PolicyError;

pub use calc::{
    Opening, SEARCH_HORIZON_DAYS, StartCheck, horizon, may_start, may_start_now,
    next_allowed_start, next_openings, openings_between,
};

/// Longest slot: a week. Longer would be "always open", which needs no window.
pub const MAX_SLOT: SignedDuration = SignedDuration::from_hours(7 * 24);
/// Shortest slot.
pub const MIN_SLOT: SignedDuration = SignedDuration::from_mins(1);
/// Longest blackout: a year and a day.
pub const MAX_BLACKOUT: SignedDuration = SignedDuration::from_hours(366 * 24);
/// At most this many entries in each list, which bounds the work per decision.
pub const MAX_ENTRIES: usize = 64;

/// Day of the week in configuration: `mon` ... `sun` (full English names also accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    #[serde(alias = "monday")]
    Mon,
    #[serde(alias = "tuesday")]
    Tue,
    #[serde(alias = "wednesday")]
    Wed,
    #[serde(alias = "thursday")]
    Thu,
    #[serde(alias = "friday")]
    Fri,
    #[serde(alias = "saturday")]
    Sat,
    #[serde(alias = "sunday")]
    Sun,
}

impl Day {
    pub fn weekday(self) -> Weekday {
        match self {
            Day::Mon => Weekday::Monday,
            Day::Tue => Weekday::Tuesday,
            Day::Wed => Weekday::Wednesday,
            Day::Thu => Weekday::Thursday,
            Day::Fri => Weekday::Friday,
            Day::Sat => Weekday::Saturday,
            Day::Sun => Weekday::Sunday,
        }
    }
}

/// Every week on `days`, from `start` (civil time) for `duration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weekly {
    pub days: Vec<Day>,
    /// "22:00"
    pub start: Time,
    /// "4h", "90m", "1d 2h"
    #[serde(deserialize_with = "crate::policy::duration::de")]
    pub duration: SignedDuration,
}

/// Every month on the `nth` `weekday` (1-4, or -1 for the last), shifted by
/// `offset_days` (e.g. Patch Tuesday + 4 = `nth = 2, weekday = "tue", offset_days = 4`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Monthly {
    pub nth: i8,
    pub weekday: Day,
    #[serde(default)]
    pub offset_days: i8,
    pub start: Time,
    #[serde(deserialize_with = "crate::policy::duration::de")]
    pub duration: SignedDuration,
}

/// A single slot: `start` is a civil date and time ("2026-12-27T08:00").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneOff {
    pub start: DateTime,
    #[serde(deserialize_with = "crate::policy::duration::de")]
    pub duration: SignedDuration,
}

/// No install may run during `[from, until)` (civil date-times), whatever else says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blackout {
    pub from: DateTime,
    pub until: DateTime,
    #[serde(default)]
    pub reason: String,
}

/// Slots that open for expedited patches only (in addition to the regular ones).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Emergency {
    #[serde(default)]
    pub weekly: Vec<Weekly>,
    #[serde(default)]
    pub monthly: Vec<Monthly>,
    #[serde(default)]
    pub once: Vec<OneOff>,
}

/// The windows of one ring or host group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Windows {
    /// IANA zone every civil time here is read in (default "UTC"). The functions take
    /// the resolved zone ([`time_zone`]) as a separate argument.
    #[serde(default = "utc")]
    pub tz: String,
    #[serde(default)]
    pub weekly: Vec<Weekly>,
    #[serde(default)]
    pub monthly: Vec<Monthly>,
    #[serde(default)]
    pub once: Vec<OneOff>,
    #[serde(default)]
    pub blackout: Vec<Blackout>,
    #[serde(default)]
    pub emergency: Emergency,
}

fn utc() -> String {
    "UTC".into()
}

impl Default for Windows {
    /// No slots at all (never open), in UTC.
    fn default() -> Self {
        Self {
            tz: utc(),
            weekly: vec![],
            monthly: vec![],
            once: vec![],
            blackout: vec![],
            emergency: Emergency::default(),
        }
    }
}

/// Which slots a job may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Urgency {
    /// Regular slots only.
    Normal,
    /// Regular and emergency slots (an expedited patch whose class allows it).
    Expedited,
}

/// Resolves an IANA time zone name (the system database first, the bundled one when the
/// system has none).
pub fn time_zone(key: &str, name: &str) -> Result<jiff::tz::TimeZone, PolicyError> {
    jiff::tz::db().get(name).map_err(|_| {
        PolicyError::new(
            key,
            format!("{name:?} is not a known IANA time zone (e.g. \"Europe/Berlin\", \"UTC\")"),
        )
    })
}

fn check_duration(key: &str, d: SignedDuration) -> Result<(), PolicyError> {
    if d < MIN_SLOT || d > MAX_SLOT {
        return Err(PolicyError::new(
            key,
            format!("duration {d:#} must be between 1m and 7d"),
        ));
    }
    Ok(())
}

fn check_len<T>(key: &str, list: &[T]) -> Result<(), PolicyError> {
    if list.len() > MAX_ENTRIES {
        return Err(PolicyError::new(
            key,
            format!("{} entries; at most {MAX_ENTRIES}", list.len()),
        ));
    }
    Ok(())
}

fn check_slots(
    key: &str,
    weekly: &[Weekly],
    monthly: &[Monthly],
    once: &[OneOff],
) -> Result<(), PolicyError> {
    check_len(&format!("{key}.weekly"), weekly)?;
    check_len(&format!("{key}.monthly"), monthly)?;
    check_len(&format!("{key}.once"), once)?;
    for (i, w) in weekly.iter().enumerate() {
        let k = format!("{key}.weekly[{i}]");
        if w.days.is_empty() {
            return Err(PolicyError::new(
                format!("{k}.days"),
                "name at least one day (mon, tue, wed, thu, fri, sat, sun)",
            ));
        }
        check_duration(&format!("{k}.duration"), w.duration)?;
    }
    for (i, m) in monthly.iter().enumerate() {
        let k = format!("{key}.monthly[{i}]");
        if !matches!(m.nth, 1..=4 | -1) {
            return Err(PolicyError::new(
                format!("{k}.nth"),
                format!("{} is not allowed: use 1-4, or -1 for the last", m.nth),
            ));
        }
        if !(-28..=28).contains(&m.offset_days) {
            return Err(PolicyError::new(
                format!("{k}.offset_days"),
                format!("{} is outside -28..28", m.offset_days),
            ));
        }
        check_duration(&format!("{k}.duration"), m.duration)?;
    }
    for (i, o) in once.iter().enumerate() {
        check_duration(&format!("{key}.once[{i}].duration"), o.duration)?;
    }
    Ok(())
}

impl Windows {
    /// Checks list sizes, durations, `nth` and offsets, and that blackouts end after
    /// they start. `key` is the table's path, used in errors.
    pub fn validate(&self, key: &str) -> Result<(), PolicyError> {
        time_zone(&format!("{key}.tz"), &self.tz)?;
        check_slots(key, &self.weekly, &self.monthly, &self.once)?;
        let e = &self.emergency;
        check_slots(&format!("{key}.emergency"), &e.weekly, &e.monthly, &e.once)?;
        check_len(&format!("{key}.blackout"), &self.blackout)?;
        for (i, b) in self.blackout.iter().enumerate() {
            let span = b.until.duration_since(b.from);
            if span <= SignedDuration::ZERO || span > MAX_BLACKOUT {
                return Err(PolicyError::new(
                    format!("{key}.blackout[{i}]"),
                    format!(
                        "from {} until {}: `until` must be after `from`, by at most 366 days",
                        b.from, b.until
                    ),
                ));
            }
        }
        Ok(())
    }
}
