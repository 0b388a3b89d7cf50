//! Table-driven window tests: DST in Europe/Berlin and America/New_York, windows across
//! midnight and week ends, merging, blackouts, latest start, monthly and one-off slots,
//! the emergency set. Times in the tables are UTC.

use jiff::Timestamp;

use super::*;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// Windows from a TOML snippet (the `tz` key inside selects the zone).
fn win(toml_text: &str) -> Windows {
    let w: Windows = toml::from_str(toml_text).unwrap();
    w.validate("w").unwrap();
    w
}

fn tz(w: &Windows) -> jiff::tz::TimeZone {
    time_zone("w.tz", &w.tz).unwrap()
}

fn allowed(end: &str, latest: &str) -> StartCheck {
    StartCheck::Allowed {
        window_end: t(end),
        latest_start: t(latest),
    }
}

fn outside(next: Option<&str>) -> StartCheck {
    StartCheck::OutsideWindow { next: next.map(t) }
}

fn too_late(end: &str, latest: &str, next: Option<&str>) -> StartCheck {
    StartCheck::TooLate {
        window_end: t(end),
        latest_start: t(latest),
        next: next.map(t),
    }
}

fn blackout(until: &str, next: Option<&str>) -> StartCheck {
    StartCheck::Blackout {
        until: t(until),
        next: next.map(t),
    }
}

/// One row: at `at`, may a job of `est` minutes start (normal urgency)?
#[track_caller]
fn check(w: &Windows, at: &str, est: u32, want: StartCheck) {
    check_urgency(w, at, est, Urgency::Normal, want)
}

#[track_caller]
fn check_urgency(w: &Windows, at: &str, est: u32, urgency: Urgency, want: StartCheck) {
    let got = may_start(w, &tz(w), t(at), est, urgency);
    assert_eq!(got, want, "at {at}, est {est}m, {urgency:?}");
    // The two questions agree: when starting is allowed now, the next allowed start is now.
    if got.is_allowed() {
        let (s, _) = next_allowed_start(w, &tz(w), t(at), est, urgency).unwrap();
        assert_eq!(s, t(at));
    }
}

#[track_caller]
fn check_next(w: &Windows, after: &str, count: usize, want: &[(&str, &str)]) {
    let got: Vec<(String, String)> = next_openings(w, &tz(w), t(after), count, Urgency::Normal)
        .into_iter()
        .map(|o| (o.start.to_string(), o.end.to_string()))
        .collect();
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (t(a).to_string(), t(b).to_string()))
        .collect();
    assert_eq!(got, want, "after {after}");
}

#[test]
fn berlin_spring_forward_moves_a_skipped_start_forward() {
    // 2026-03-29: 02:00 CET jumps to 03:00 CEST. 02:30 does not exist -> 03:30 CEST.
    let w = win(
        "tz = \"Europe/Berlin\"\nweekly = [{ days = [\"sun\"], start = \"02:30\", duration = \"2h\" }]",
    );
    // The week before (CET, +01:00) and after (CEST, +02:00) for comparison.
    check_next(
        &w,
        "2026-03-21T00:00:00Z",
        3,
        &[
            ("2026-03-22T01:30:00Z", "2026-03-22T03:30:00Z"),
            ("2026-03-29T01:30:00Z", "2026-03-29T03:30:00Z"), // 03:30-05:30 CEST
            ("2026-04-05T00:30:00Z", "2026-04-05T02:30:00Z"),
        ],
    );
    check(
        &w,
        "2026-03-29T01:29:59Z",
        60,
        outside(Some("2026-03-29T01:30:00Z")),
    );
    check(
        &w,
        "2026-03-29T01:30:00Z",
        60,
        allowed("2026-03-29T03:30:00Z", "2026-03-29T02:30:00Z"),
    );
    check(
        &w,
        "2026-03-29T02:30:00Z",
        60,
        allowed("2026-03-29T03:30:00Z", "2026-03-29T02:30:00Z"),
    );
    check(
        &w,
        "2026-03-29T02:31:00Z",
        60,
        too_late(
            "2026-03-29T03:30:00Z",
            "2026-03-29T02:30:00Z",
            Some("2026-04-05T00:30:00Z"),
        ),
    );
}

#[test]
fn berlin_fall_back_takes_the_first_occurrence() {
    // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    let w = win(
        "tz = \"Europe/Berlin\"\nweekly = [{ days = [\"sun\"], start = \"02:30\", duration = \"2h\" }]",
    );
    check_next(
        &w,
        "2026-10-24T00:00:00Z",
        2,
        &[
            ("2026-10-25T00:30:00Z", "2026-10-25T02:30:00Z"), // first 02:30 (+02:00), 2 elapsed hours
            ("2026-11-01T01:30:00Z", "2026-11-01T03:30:00Z"),
        ],
    );
    // The second 02:30 (01:30Z) is inside the same window, not a new one.
    check(
        &w,
        "2026-10-25T01:30:00Z",
        60,
        allowed("2026-10-25T02:30:00Z", "2026-10-25T01:30:00Z"),
    );
    check(
        &w,
        "2026-10-25T00:29:00Z",
        5,
        outside(Some("2026-10-25T00:30:00Z")),
    );
}

#[test]
fn berlin_window_across_the_dst_night_lasts_its_elapsed_duration() {
    // Sat 22:00 CET for 8 elapsed hours ends at 07:00 CEST, not 06:00.
    let w = win(
        "tz = \"Europe/Berlin\"\nweekly = [{ days = [\"sat\"], start = \"22:00\", duration = \"8h\" }]",
    );
    check_next(
        &w,
        "2026-03-28T00:00:00Z",
        1,
        &[("2026-03-28T21:00:00Z", "2026-03-29T05:00:00Z")],
    );
    check(
        &w,
        "2026-03-29T04:00:00Z",
        60,
        allowed("2026-03-29T05:00:00Z", "2026-03-29T04:00:00Z"),
    );
    check(
        &w,
        "2026-03-29T04:00:01Z",
        60,
        too_late(
            "2026-03-29T05:00:00Z",
            "2026-03-29T04:00:00Z",
            Some("2026-04-04T20:00:00Z"),
        ),
    );
}

#[test]
fn new_york_gap_and_fold() {
    // 2026-03-08: 02:00 EST -> 03:00 EDT; 2026-11-01: 02:00 EDT -> 01:00 EST.
    let w = win(
        "tz = \"America/New_York\"\nweekly = [{ days = [\"sun\"], start = \"02:30\", duration = \"1h\" }, { days = [\"sun\"], start = \"01:30\", duration = \"30m\" }]",
    );
    check_next(
        &w,
        "2026-03-07T00:00:00Z",
        2,
        &[
            // 01:30 EST = 06:30Z for 30m, then 02:30 (skipped) -> 03:30 EDT = 07:30Z.
            ("2026-03-08T06:30:00Z", "2026-03-08T07:00:00Z"),
            ("2026-03-08T07:30:00Z", "2026-03-08T08:30:00Z"),
        ],
    );
    check_next(
        &w,
        "2026-10-31T00:00:00Z",
        2,
        &[
            // 01:30 is ambiguous: first occurrence (EDT) = 05:30Z; 02:30 EST = 07:30Z.
            ("2026-11-01T05:30:00Z", "2026-11-01T06:00:00Z"),
            ("2026-11-01T07:30:00Z", "2026-11-01T08:30:00Z"),
        ],
    );
    check(
        &w,
        "2026-11-01T06:30:00Z",
        10,
        outside(Some("2026-11-01T07:30:00Z")),
    );
    check(
        &w,
        "2026-03-08T07:45:00Z",
        45,
        allowed("2026-03-08T08:30:00Z", "2026-03-08T07:45:00Z"),
    );
}

#[test]
fn windows_across_midnight_and_the_week_end() {
    // Friday 22:00 for 6h (Berlin, summer: +02:00), Sunday 23:00 for 3h into Monday.
    let w = win(
        "tz = \"Europe/Berlin\"\nweekly = [{ days = [\"fri\"], start = \"22:00\", duration = \"6h\" }, { days = [\"sunday\"], start = \"23:00\", duration = \"3h\" }]",
    );
    // Fri 2026-07-03 22:00 CEST = 20:00Z .. Sat 02:00Z.
    check(
        &w,
        "2026-07-04T01:00:00Z",
        60,
        allowed("2026-07-04T02:00:00Z", "2026-07-04T01:00:00Z"),
    );
    check(
        &w,
        "2026-07-04T01:00:00Z",
        61,
        too_late(
            "2026-07-04T02:00:00Z",
            "2026-07-04T00:59:00Z",
            Some("2026-07-05T21:00:00Z"),
        ),
    );
    // Sun 2026-07-05 23:00 CEST = 21:00Z .. Mon 00:00Z (Mon 02:00 local).
    check(
        &w,
        "2026-07-05T23:30:00Z",
        30,
        allowed("2026-07-06T00:00:00Z", "2026-07-05T23:30:00Z"),
    );
    check(
        &w,
        "2026-07-06T00:00:00Z",
        1,
        outside(Some("2026-07-10T20:00:00Z")),
    );
    check_next(
        &w,
        "2026-07-04T01:00:00Z",
        3,
        &[
            ("2026-07-03T20:00:00Z", "2026-07-04T02:00:00Z"), // open now: included
            ("2026-07-05T21:00:00Z", "2026-07-06T00:00:00Z"),
            ("2026-07-10T20:00:00Z", "2026-07-11T02:00:00Z"),
        ],
    );
}

#[test]
fn touching_slots_merge_for_latest_start() {
    // Saturday and Sunday all day (UTC): one window from Sat 00:00 to Mon 00:00.
    let w = win(
        "weekly = [{ days = [\"sat\"], start = \"00:00\", duration = \"24h\" }, { days = [\"sun\"], start = \"00:00\", duration = \"1d\" }]",
    );
    check(
        &w,
        "2026-07-04T23:00:00Z",
        120,
        allowed("2026-07-06T00:00:00Z", "2026-07-05T22:00:00Z"),
    );
    check_next(
        &w,
        "2026-07-01T00:00:00Z",
        1,
        &[("2026-07-04T00:00:00Z", "2026-07-06T00:00:00Z")],
    );
}

#[test]
fn latest_start_is_exact() {
    let w = win("weekly = [{ days = [\"mon\"], start = \"22:00\", duration = \"4h\" }]");
    check(
        &w,
        "2026-07-06T22:00:00Z",
        240,
        allowed("2026-07-07T02:00:00Z", "2026-07-06T22:00:00Z"),
    );
    check(
        &w,
        "2026-07-06T22:00:01Z",
        240,
        too_late(
            "2026-07-07T02:00:00Z",
            "2026-07-06T22:00:00Z",
            Some("2026-07-13T22:00:00Z"),
        ),
    );
    // A job longer than the window never fits.
    check(
        &w,
        "2026-07-06T22:00:00Z",
        241,
        too_late("2026-07-07T02:00:00Z", "2026-07-06T21:59:00Z", None),
    );
    // Half-open: the end instant is outside, even for a zero-minute job.
    check(
        &w,
        "2026-07-07T02:00:00Z",
        0,
        outside(Some("2026-07-13T22:00:00Z")),
    );
    check(
        &w,
        "2026-07-07T01:59:59Z",
        0,
        allowed("2026-07-07T02:00:00Z", "2026-07-07T02:00:00Z"),
    );
}

#[test]
fn blackouts_override_and_split_windows() {
    // Daily 22:00 for 4h, a blackout 23:00 to 00:30 on one night.
    let w = win(
        "weekly = [{ days = [\"mon\", \"tue\"], start = \"22:00\", duration = \"4h\" }]\nblackout = [{ from = \"2026-07-06T23:00\", until = \"2026-07-07T00:30\", reason = \"backup run\" }]",
    );
    check(
        &w,
        "2026-07-06T22:00:00Z",
        60,
        allowed("2026-07-06T23:00:00Z", "2026-07-06T22:00:00Z"),
    );
    check(
        &w,
        "2026-07-06T22:00:00Z",
        61,
        too_late(
            "2026-07-06T23:00:00Z",
            "2026-07-06T21:59:00Z",
            Some("2026-07-07T00:30:00Z"),
        ),
    );
    check(
        &w,
        "2026-07-06T23:30:00Z",
        10,
        blackout("2026-07-07T00:30:00Z", Some("2026-07-07T00:30:00Z")),
    );
    check(
        &w,
        "2026-07-07T00:30:00Z",
        90,
        allowed("2026-07-07T02:00:00Z", "2026-07-07T00:30:00Z"),
    );
    check(
        &w,
        "2026-07-07T00:30:00Z",
        91,
        too_late(
            "2026-07-07T02:00:00Z",
            "2026-07-07T00:29:00Z",
            Some("2026-07-07T22:00:00Z"),
        ),
    );
    check_next(
        &w,
        "2026-07-06T00:00:00Z",
        3,
        &[
            ("2026-07-06T22:00:00Z", "2026-07-06T23:00:00Z"),
            ("2026-07-07T00:30:00Z", "2026-07-07T02:00:00Z"),
            ("2026-07-07T22:00:00Z", "2026-07-08T02:00:00Z"),
        ],
    );
    // A blackout covering whole weeks.
    let w = win(
        "weekly = [{ days = [\"mon\"], start = \"22:00\", duration = \"4h\" }]\nblackout = [{ from = \"2026-12-20\", until = \"2027-01-04\" }]",
    );
    check(
        &w,
        "2026-12-21T22:30:00Z",
        30,
        blackout("2027-01-04T00:00:00Z", Some("2027-01-04T22:00:00Z")),
    );
    check_next(
        &w,
        "2026-12-15T00:00:00Z",
        2,
        &[
            // Open at `after`, so included.
            ("2026-12-14T22:00:00Z", "2026-12-15T02:00:00Z"),
            // Dec 21 and Dec 28 fall in the blackout.
            ("2027-01-04T22:00:00Z", "2027-01-05T02:00:00Z"),
        ],
    );
}

#[test]
fn monthly_relative_slots() {
    // Patch Tuesday + 4 (a Saturday), 02:00 Berlin for 3h.
    let w = win(
        "tz = \"Europe/Berlin\"\nmonthly = [{ nth = 2, weekday = \"tue\", offset_days = 4, start = \"02:00\", duration = \"3h\" }]",
    );
    check_next(
        &w,
        "2026-11-01T00:00:00Z",
        3,
        &[
            ("2026-11-14T01:00:00Z", "2026-11-14T04:00:00Z"),
            ("2026-12-12T01:00:00Z", "2026-12-12T04:00:00Z"),
            ("2027-01-16T01:00:00Z", "2027-01-16T04:00:00Z"),
        ],
    );
    check(
        &w,
        "2026-11-14T02:00:00Z",
        120,
        allowed("2026-11-14T04:00:00Z", "2026-11-14T02:00:00Z"),
    );
    check(
        &w,
        "2026-11-13T02:00:00Z",
        60,
        outside(Some("2026-11-14T01:00:00Z")),
    );
    // The last Friday + 3 days crosses into the next month (Oct 30 -> Nov 2).
    let w = win(
        "monthly = [{ nth = -1, weekday = \"fri\", offset_days = 3, start = \"20:00\", duration = \"2h\" }]",
    );
    check_next(
        &w,
        "2026-10-01T00:00:00Z",
        3,
        &[
            // September's is Sep 25 + 3 = Sep 28, before `after`.
            ("2026-11-02T20:00:00Z", "2026-11-02T22:00:00Z"),
            ("2026-11-30T20:00:00Z", "2026-11-30T22:00:00Z"),
            ("2026-12-28T20:00:00Z", "2026-12-28T22:00:00Z"),
        ],
    );
    // A negative offset goes back into the previous month (first Monday - 2).
    let w = win(
        "monthly = [{ nth = 1, weekday = \"mon\", offset_days = -2, start = \"08:00\", duration = \"1h\" }]",
    );
    check_next(
        &w,
        "2026-11-01T00:00:00Z",
        2,
        &[
            // November's is Oct 31 (Nov 2 - 2), before `after`.
            ("2026-12-05T08:00:00Z", "2026-12-05T09:00:00Z"),
            ("2027-01-02T08:00:00Z", "2027-01-02T09:00:00Z"),
        ],
    );
}

#[test]
fn one_off_slots() {
    let w =
        win("tz = \"Europe/Berlin\"\nonce = [{ start = \"2026-12-27T08:00\", duration = \"6h\" }]");
    check_next(
        &w,
        "2026-01-01T00:00:00Z",
        5,
        &[("2026-12-27T07:00:00Z", "2026-12-27T13:00:00Z")],
    );
    check(
        &w,
        "2026-12-27T12:00:00Z",
        60,
        allowed("2026-12-27T13:00:00Z", "2026-12-27T12:00:00Z"),
    );
    check(
        &w,
        "2026-12-27T12:00:00Z",
        61,
        too_late("2026-12-27T13:00:00Z", "2026-12-27T11:59:00Z", None),
    );
    check(
        &w,
        "2026-01-01T00:00:00Z",
        30,
        outside(Some("2026-12-27T07:00:00Z")),
    );
    check(&w, "2027-01-01T00:00:00Z", 30, outside(None));
}

#[test]
fn the_emergency_set_is_for_expedited_jobs_and_blackouts_still_win() {
    let w = win(
        "weekly = [{ days = [\"sat\"], start = \"02:00\", duration = \"4h\" }]\nemergency = { weekly = [{ days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"], start = \"12:00\", duration = \"1h\" }] }",
    );
    check_urgency(
        &w,
        "2026-07-08T12:10:00Z",
        30,
        Urgency::Normal,
        outside(Some("2026-07-11T02:00:00Z")),
    );
    check_urgency(
        &w,
        "2026-07-08T12:10:00Z",
        30,
        Urgency::Expedited,
        allowed("2026-07-08T13:00:00Z", "2026-07-08T12:30:00Z"),
    );
    check_urgency(
        &w,
        "2026-07-11T03:00:00Z",
        30,
        Urgency::Expedited,
        allowed("2026-07-11T06:00:00Z", "2026-07-11T05:30:00Z"),
    );
    let mut b = w.clone();
    b.blackout =
        win("blackout = [{ from = \"2026-07-08T00:00\", until = \"2026-07-09T00:00\" }]").blackout;
    check_urgency(
        &b,
        "2026-07-08T12:10:00Z",
        30,
        Urgency::Expedited,
        blackout("2026-07-09T00:00:00Z", Some("2026-07-09T12:00:00Z")),
    );
}

#[test]
fn no_windows_never_opens() {
    let w = Windows::default();
    check(&w, "2026-07-08T12:10:00Z", 30, outside(None));
    assert!(next_openings(&w, &tz(&w), t("2026-07-08T12:10:00Z"), 3, Urgency::Normal).is_empty());
}

#[test]
fn the_bundled_time_zone_database_is_available() {
    // Tests and the appliance must work on a machine without /usr/share/zoneinfo.
    let db = jiff::tz::TimeZoneDatabase::bundled();
    for name in ["Europe/Berlin", "America/New_York", "UTC"] {
        assert!(db.get(name).is_ok(), "{name} missing from the bundled tzdb");
    }
}

/// Midnight UTC `n` days from `at`'s date (the search horizon is whole local days:
/// 3 * 366 back, and to the end of the day 3 * 366 ahead).
fn days(at: &str, n: i64) -> String {
    let utc = jiff::tz::TimeZone::UTC;
    let d = utc.to_datetime(t(at)).date();
    let midnight = d
        .checked_add(jiff::Span::new().days(n))
        .unwrap()
        .to_datetime(jiff::civil::Time::midnight());
    utc.to_timestamp(midnight).unwrap().to_string()
}

#[test]
fn an_all_day_every_day_set_is_one_opening_bounded_by_the_horizon() {
    // Issue [8] item 13: this set listed one opening that "started days ago" and lasted
    // 1248 h, then nothing; the scheduler's window end was cut 8 days out.
    let w = win(
        "weekly = [{ days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"], start = \"00:00\", duration = \"24h\" }]",
    );
    let now = "2026-12-07T12:02:49Z";
    let (back, ahead) = (days(now, -3 * 366), days(now, 3 * 366 + 1));
    check_next(&w, now, 6, &[(&back, &ahead)]);
    let latest = t(&ahead)
        .checked_sub(jiff::SignedDuration::from_hours(1))
        .unwrap()
        .to_string();
    check(&w, now, 60, allowed(&ahead, &latest));
    assert_eq!(
        may_start_now(&w, &tz(&w), t(now), 60, Urgency::Normal),
        Some((t(&ahead), t(&latest)))
    );
}

#[test]
fn long_back_to_back_runs_split_by_blackouts_are_listed_whole() {
    // Every day all day, cut by three one-day blackouts 20 days apart: the openings
    // between them are 19 days long, longer than any scan step, and `count` is honoured.
    let w = win(
        "weekly = [{ days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"], start = \"00:00\", duration = \"24h\" }]\n\
         blackout = [{ from = \"2027-01-01T00:00\", until = \"2027-01-02T00:00\" }, \
         { from = \"2027-01-21T00:00\", until = \"2027-01-22T00:00\" }, \
         { from = \"2027-02-10T00:00\", until = \"2027-02-11T00:00\" }]",
    );
    let now = "2027-01-03T12:00:00Z";
    check_next(
        &w,
        now,
        2,
        &[
            ("2027-01-02T00:00:00Z", "2027-01-21T00:00:00Z"),
            ("2027-01-22T00:00:00Z", "2027-02-10T00:00:00Z"),
        ],
    );
    // Before the first blackout: the run already open reaches back to the look-back,
    // the last one on to the horizon.
    let before = "2026-12-31T12:00:00Z";
    let (back, ahead) = (days(before, -3 * 366), days(before, 3 * 366 + 1));
    check_next(
        &w,
        before,
        4,
        &[
            (&back, "2027-01-01T00:00:00Z"),
            ("2027-01-02T00:00:00Z", "2027-01-21T00:00:00Z"),
            ("2027-01-22T00:00:00Z", "2027-02-10T00:00:00Z"),
            ("2027-02-11T00:00:00Z", &ahead),
        ],
    );
    // The scheduler sees the same end, 17.5 days away.
    check(
        &w,
        now,
        60,
        allowed("2027-01-21T00:00:00Z", "2027-01-20T23:00:00Z"),
    );
}
