//! Times as people type and read them.
//!
//! Input ([`parse_instant`], for `defer --until` and the admin page's forms): a plain
//! date means the start of that day in UTC, the appliance's one time zone for decisions
//! (maintenance windows have their own zones; a deferral does not); a date and time
//! without an offset is UTC too; anything else must be RFC 3339 with its offset. Output
//! ([`display`]): stored times are RFC 3339 with nanoseconds, which nobody reads; people
//! get whole seconds in UTC (`2026-12-07T12:02:49Z`), still a valid `--until` value.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{RoundMode, Timestamp, TimestampRound, Unit};

/// What [`parse_instant`] accepts, for error messages and `--help`.
pub const INSTANT_FORMATS: &str = "a date (2027-01-15, meaning 00:00 UTC that day), a date \
     and time in UTC (2027-01-15T08:00) or an RFC 3339 time with its offset \
     (2027-01-15T09:00:00+01:00)";

/// A time an operator typed that is none of [`INSTANT_FORMATS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a date and time; write {INSTANT_FORMATS}")]
pub struct TimeInputError {
    pub input: String,
}

/// Parses an instant an operator typed (see the module doc for the forms).
pub fn parse_instant(s: &str) -> Result<Timestamp, TimeInputError> {
    let t = s.trim();
    let bad = || TimeInputError { input: s.into() };
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Ok(ts);
    }
    // A civil date-time or date has no offset: read it in UTC, where every civil time
    // exists exactly once.
    let civil = match t.parse::<DateTime>() {
        Ok(dt) => dt,
        Err(_) if t.len() == 10 => t
            .parse::<Date>()
            .map_err(|_| bad())?
            .to_datetime(jiff::civil::Time::midnight()),
        Err(_) => return Err(bad()),
    };
    TimeZone::UTC
        .to_ambiguous_timestamp(civil)
        .compatible()
        .map_err(|_| bad())
}

/// A timestamp for people: whole seconds (cut, never rounded up), UTC.
pub fn display_ts(t: Timestamp) -> String {
    let round = TimestampRound::new()
        .smallest(Unit::Second)
        .mode(RoundMode::Trunc);
    t.round(round).unwrap_or(t).to_string()
}

/// A stored timestamp string for people (see [`display_ts`]); anything that is not a
/// timestamp is shown as it is.
pub fn display(s: &str) -> String {
    match s.parse::<Timestamp>() {
        Ok(t) => display_ts(t),
        Err(_) => s.to_string(),
    }
}

/// [`display`] for an optional time, with the word to show when there is none.
pub fn display_or(s: Option<&str>, none: &str) -> String {
    s.map_or_else(|| none.to_string(), display)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_in_the_forms_people_type() {
        let ok = |s: &str, want: &str| {
            assert_eq!(parse_instant(s).unwrap().to_string(), want, "{s}");
        };
        ok("2027-01-15", "2027-01-15T00:00:00Z");
        ok(" 2027-01-15 ", "2027-01-15T00:00:00Z");
        ok("2027-01-15T08:00", "2027-01-15T08:00:00Z");
        ok("2027-01-15 08:00:30", "2027-01-15T08:00:30Z");
        ok("2027-01-15T09:00:00+01:00", "2027-01-15T08:00:00Z");
        ok("2026-12-01T00:00:00Z", "2026-12-01T00:00:00Z");
        for bad in [
            "15.01.2027",
            "next tuesday",
            "2027-13-01",
            "2027-02-30",
            "",
            "2027",
        ] {
            let e = parse_instant(bad).unwrap_err().to_string();
            assert!(e.contains("is not a date and time"), "{e}");
            assert!(
                e.contains("2027-01-15 (") || e.contains("(2027-01-15,"),
                "{e}"
            );
            assert!(e.contains("RFC 3339"), "{e}");
        }
    }

    #[test]
    fn times_for_people_have_no_fraction() {
        assert_eq!(
            display("2026-12-07T12:02:49.987654321Z"),
            "2026-12-07T12:02:49Z"
        );
        assert_eq!(display("2026-12-07T12:02:49Z"), "2026-12-07T12:02:49Z");
        assert_eq!(display("not a time"), "not a time");
        assert_eq!(display_or(None, "never"), "never");
        assert_eq!(
            display_or(Some("2026-12-07T23:59:59.999999999Z"), "never"),
            "2026-12-07T23:59:59Z"
        );
    }
}
