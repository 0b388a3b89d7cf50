//! Window arithmetic: slot occurrences -> merged openings -> blackouts cut out -> "may a
//! job start now", "when next", "the next N openings".
//!
//! Everything is computed over a bounded scan: occurrences are generated for the local
//! dates around the asked range (slots last at most 7 days, so 8 days of margin finds
//! every occurrence that intersects it), and forward searches stop after
//! [`SEARCH_HORIZON_DAYS`].

use std::ops::ControlFlow;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use serde::Serialize;

use super::{Monthly, OneOff, Urgency, Weekly, Windows};

/// Forward searches ("next opening") give up after this many days: about three years,
/// enough for a yearly one-off or blackout.
pub const SEARCH_HORIZON_DAYS: i64 = 3 * 366;
/// Days scanned per step of a forward search.
const CHUNK_DAYS: i64 = 35;
/// Margin around a scanned range: a slot lasts at most 7 days, plus a DST shift.
const MARGIN_DAYS: i64 = 8;

/// A time during which installs may run: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Opening {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Opening {
    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }
}

/// The answer to "may a job of `est_minutes` start at `t`?".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum StartCheck {
    /// Yes. The ticket's `latest_start` is `window_end - est_minutes`.
    Allowed {
        window_end: Timestamp,
        latest_start: Timestamp,
    },
    /// `t` lies in a blackout that lasts until `until`.
    Blackout {
        until: Timestamp,
        next: Option<Timestamp>,
    },
    /// `t` lies in an opening, but the job would not finish before it ends.
    TooLate {
        window_end: Timestamp,
        latest_start: Timestamp,
        next: Option<Timestamp>,
    },
    /// `t` lies in no opening; `next` is the next allowed start, if any within the horizon.
    OutsideWindow { next: Option<Timestamp> },
}

impl StartCheck {
    pub fn is_allowed(&self) -> bool {
        matches!(self, StartCheck::Allowed { .. })
    }
}

fn add(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.saturating_add(d).unwrap_or(t)
}

fn est(est_minutes: u32) -> SignedDuration {
    SignedDuration::from_mins(i64::from(est_minutes))
}

/// Resolves a civil date-time: a time in a gap moves forward by the gap, an ambiguous
/// time takes its first occurrence (DESIGN §4).
fn resolve(tz: &TimeZone, dt: DateTime) -> Option<Timestamp> {
    tz.to_ambiguous_timestamp(dt).compatible().ok()
}

fn occurrence(tz: &TimeZone, date: Date, start: Time, dur: SignedDuration) -> Option<Opening> {
    let s = resolve(tz, date.to_datetime(start))?;
    Some(Opening {
        start: s,
        end: s.checked_add(dur).ok()?,
    })
}

/// Every occurrence of the given slots that starts on a local date in `[d0, d1]`.
fn occurrences(
    tz: &TimeZone,
    d0: Date,
    d1: Date,
    weekly: &[Weekly],
    monthly: &[Monthly],
    once: &[OneOff],
    out: &mut Vec<Opening>,
) {
    if !weekly.is_empty() {
        let mut d = d0;
        // Bounded: d1 - d0 is at most CHUNK_DAYS + 2 * MARGIN_DAYS + a few.
        while d <= d1 {
            for w in weekly {
                if w.days.iter().any(|day| day.weekday() == d.weekday()) {
                    out.extend(occurrence(tz, d, w.start, w.duration));
                }
            }
            match d.tomorrow() {
                Ok(n) => d = n,
                Err(_) => break,
            }
        }
    }
    if !monthly.is_empty() {
        // The base date (nth weekday) may lie up to 28 days from the occurrence.
        let first = d0.saturating_sub(1.month()).first_of_month();
        let last = d1.saturating_add(1.month()).first_of_month();
        let mut m = first;
        while m <= last {
            for s in monthly {
                let Ok(base) = m.nth_weekday_of_month(s.nth, s.weekday.weekday()) else {
                    continue;
                };
                let Ok(day) = base.checked_add(i64::from(s.offset_days).days()) else {
                    continue;
                };
                if d0 <= day && day <= d1 {
                    out.extend(occurrence(tz, day, s.start, s.duration));
                }
            }
            match m.checked_add(1.month()) {
                Ok(n) => m = n,
                Err(_) => break,
            }
        }
    }
    for o in once {
        let day = o.start.date();
        if d0 <= day && day <= d1 {
            out.extend(occurrence(tz, day, o.start.time(), o.duration));
        }
    }
}

/// Sorts and merges overlapping or touching intervals.
fn merge(mut v: Vec<Opening>) -> Vec<Opening> {
    v.sort();
    let mut out: Vec<Opening> = Vec::with_capacity(v.len());
    for o in v {
        if o.end <= o.start {
            continue;
        }
        match out.last_mut() {
            Some(last) if o.start <= last.end => last.end = last.end.max(o.end),
            _ => out.push(o),
        }
    }
    out
}

/// Blackouts as merged instants.
fn blackouts(w: &Windows, tz: &TimeZone) -> Vec<Opening> {
    merge(
        w.blackout
            .iter()
            .filter_map(|b| {
                Some(Opening {
                    start: resolve(tz, b.from)?,
                    end: resolve(tz, b.until)?,
                })
            })
            .collect(),
    )
}

/// `a` minus every interval of the sorted, merged `cut`.
fn subtract(a: Vec<Opening>, cut: &[Opening]) -> Vec<Opening> {
    let mut out = Vec::with_capacity(a.len());
    for mut o in a {
        for c in cut {
            if c.end <= o.start || c.start >= o.end {
                continue;
            }
            if c.start > o.start {
                out.push(Opening {
                    start: o.start,
                    end: c.start,
                });
            }
            o.start = c.end;
            if o.start >= o.end {
                break;
            }
        }
        if o.start < o.end {
            out.push(o);
        }
    }
    out
}

/// The openings (blackouts cut out) that intersect `[from, to)`, in order. An opening is
/// reported whole, except that a chain of slots longer than 8 days beyond the range is
/// cut at the end of the scan (which only makes `latest_start` earlier, never later).
pub fn openings_between(
    w: &Windows,
    tz: &TimeZone,
    from: Timestamp,
    to: Timestamp,
    urgency: Urgency,
) -> Vec<Opening> {
    let d0 = tz
        .to_datetime(from)
        .date()
        .saturating_sub(MARGIN_DAYS.days());
    let d1 = tz.to_datetime(to).date().saturating_add(MARGIN_DAYS.days());
    let mut occ = Vec::new();
    occurrences(tz, d0, d1, &w.weekly, &w.monthly, &w.once, &mut occ);
    if urgency == Urgency::Expedited {
        let e = &w.emergency;
        occurrences(tz, d0, d1, &e.weekly, &e.monthly, &e.once, &mut occ);
    }
    let open = subtract(merge(occ), &blackouts(w, tz));
    open.into_iter()
        .filter(|o| o.end > from && o.start < to)
        .collect()
}

/// Calls `f` on each opening that ends after `after`, in order, until it breaks or the
/// horizon is reached. Each opening is reported once.
fn walk(
    w: &Windows,
    tz: &TimeZone,
    after: Timestamp,
    urgency: Urgency,
    mut f: impl FnMut(Opening) -> ControlFlow<()>,
) {
    let chunk = SignedDuration::from_hours(CHUNK_DAYS * 24);
    let mut from = after;
    let mut first = true;
    for _ in 0..(SEARCH_HORIZON_DAYS / CHUNK_DAYS + 1) {
        let to = add(from, chunk);
        for o in openings_between(w, tz, from, to, urgency) {
            // Openings that started before this chunk were reported by the previous one.
            if (first || o.start >= from) && f(o).is_break() {
                return;
            }
        }
        if to == from {
            return;
        }
        from = to;
        first = false;
    }
}

/// The next `count` openings that end after `after` (one already open is included), for
/// `patchward windows next`.
pub fn next_openings(
    w: &Windows,
    tz: &TimeZone,
    after: Timestamp,
    count: usize,
    urgency: Urgency,
) -> Vec<Opening> {
    let mut out = Vec::new();
    if count == 0 {
        return out;
    }
    walk(w, tz, after, urgency, |o| {
        out.push(o);
        if out.len() >= count {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    out
}

/// The first instant at or after `after` at which a job of `est_minutes` may start, with
/// the end of its opening; `None` if there is none within the horizon.
pub fn next_allowed_start(
    w: &Windows,
    tz: &TimeZone,
    after: Timestamp,
    est_minutes: u32,
    urgency: Urgency,
) -> Option<(Timestamp, Opening)> {
    let need = est(est_minutes);
    let mut found = None;
    walk(w, tz, after, urgency, |o| {
        let s = o.start.max(after);
        match s.checked_add(need) {
            Ok(done) if done <= o.end && s < o.end => {
                found = Some((s, o));
                ControlFlow::Break(())
            }
            _ => ControlFlow::Continue(()),
        }
    });
    found
}

/// [`may_start`] without the search for the next allowed start: `Some((window_end,
/// latest_start))` when a job of `est_minutes` may start at `t`, else `None`. The fleet
/// planner asks this for thousands of hosts outside their windows, where the search for
/// the next opening would dominate.
pub fn may_start_now(
    w: &Windows,
    tz: &TimeZone,
    t: Timestamp,
    est_minutes: u32,
    urgency: Urgency,
) -> Option<(Timestamp, Timestamp)> {
    let need = est(est_minutes);
    if blackouts(w, tz).into_iter().any(|b| b.contains(t)) {
        return None;
    }
    let to = add(t, need).max(add(t, SignedDuration::from_secs(1)));
    let o = openings_between(w, tz, t, to, urgency)
        .into_iter()
        .find(|o| o.contains(t))?;
    let latest_start = o.end.checked_sub(need).unwrap_or(o.start);
    match t.checked_add(need) {
        Ok(done) if done <= o.end => Some((o.end, latest_start)),
        _ => None,
    }
}

/// May a job of `est_minutes` start at `t`? Blackouts, the window's end and the job's
/// length are all taken into account; a refusal carries the next allowed start.
pub fn may_start(
    w: &Windows,
    tz: &TimeZone,
    t: Timestamp,
    est_minutes: u32,
    urgency: Urgency,
) -> StartCheck {
    let need = est(est_minutes);
    let next = || next_allowed_start(w, tz, t, est_minutes, urgency).map(|(s, _)| s);
    if let Some(b) = blackouts(w, tz).into_iter().find(|b| b.contains(t)) {
        return StartCheck::Blackout {
            until: b.end,
            next: next(),
        };
    }
    let to = add(t, need).max(add(t, SignedDuration::from_secs(1)));
    let Some(o) = openings_between(w, tz, t, to, urgency)
        .into_iter()
        .find(|o| o.contains(t))
    else {
        return StartCheck::OutsideWindow { next: next() };
    };
    let latest_start = o.end.checked_sub(need).unwrap_or(o.start);
    match t.checked_add(need) {
        Ok(done) if done <= o.end => StartCheck::Allowed {
            window_end: o.end,
            latest_start,
        },
        _ => StartCheck::TooLate {
            window_end: o.end,
            latest_start,
            next: next(),
        },
    }
}
