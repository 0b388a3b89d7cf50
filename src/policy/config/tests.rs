//! `[policy]` parsing and validation: good configurations resolve, bad ones name the key.

use super::*;

/// The module doc's example, under a `[policy]` table.
const EXAMPLE: &str = r#"
[policy.classes.firmware]
min_soak = "96h"

[[policy.rings]]
name = "pilot"
hosts = ["web1"]
gate = { min_successes = 2, soak = "12h", max_failures = "20%" }

[[policy.rings]]
name = "broad"
catch_all = true

[[policy.auto_approve]]
kinds = ["security"]
min_severity = "high"
rings = ["pilot", "broad"]

[policy.windows.default]
tz = "Europe/Berlin"
weekly = [{ days = ["tue", "thu"], start = "22:00", duration = "4h" }]
monthly = [{ nth = 2, weekday = "tue", offset_days = 4, start = "02:00", duration = "3h" }]
blackout = [{ from = "2026-12-20T00:00", until = "2027-01-04T00:00", reason = "year end" }]
emergency = { weekly = [{ days = ["mon", "tue", "wed", "thu", "fri"], start = "12:00", duration = "1h" }] }

[policy.windows.branch]
tz = "America/New_York"
weekly = [{ days = ["sat"], start = "23:00", duration = "5h" }]

[[policy.host_windows]]
labels = { site = "branch" }
windows = "branch"
"#;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    policy: RawPolicy,
}

fn parse(text: &str) -> Result<Policy, String> {
    let f: File = toml::from_str(text).map_err(|e| e.to_string())?;
    Policy::from_raw(&f.policy).map_err(|e| e.to_string())
}

#[test]
fn the_example_resolves() {
    let p = parse(EXAMPLE).unwrap();
    assert_eq!(p.ring_names(), ["pilot", "broad"]);
    let pilot = &p.rings[0];
    assert_eq!(pilot.gate.min_successes, 2);
    assert_eq!(pilot.gate.soak, SignedDuration::from_hours(12));
    assert_eq!(
        pilot.gate.max_failures,
        crate::policy::gate::FailureLimit::Percent(20)
    );
    // Unset gate keys keep their defaults.
    assert!(pilot.gate.canary);
    assert_eq!(p.classes.firmware.min_soak, SignedDuration::from_hours(96));
    assert_eq!(p.windows["default"].tz.iana_name(), Some("Europe/Berlin"));
    assert_eq!(p.windows["default"].windows.monthly[0].offset_days, 4);
    assert_eq!(p.windows["default"].windows.emergency.weekly.len(), 1);

    let host = |id: &str, labels: &[(&str, &str)]| HostFacts {
        id: id.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    let web1 = host("web1", &[("site", "branch")]);
    let ring = p.ring_of(&web1).unwrap();
    assert_eq!(ring.name, "pilot");
    assert_eq!(
        p.windows_for(&web1, ring).unwrap().tz.iana_name(),
        Some("America/New_York")
    );
    let db = host("db", &[]);
    let ring = p.ring_of(&db).unwrap();
    assert_eq!(ring.name, "broad");
    assert_eq!(
        p.windows_for(&db, ring).unwrap().tz.iana_name(),
        Some("Europe/Berlin")
    );
}

#[test]
fn defaults_resolve() {
    let p = Policy::from_raw(&RawPolicy::default()).unwrap();
    assert_eq!(p.ring_names(), ["pilot", "broad"]);
    assert_eq!(p.windows["default"].windows.weekly[0].days.len(), 7);
    assert_eq!(p, Policy::default());
    assert_eq!(p.sla, SlaRules::default());
}

#[track_caller]
fn refused(extra: &str, want: &str) {
    let e = parse(extra).unwrap_err();
    assert!(e.contains(want), "{extra}\n=> {e}\n(wanted {want:?})");
}

#[test]
fn bad_configurations_name_the_key() {
    refused("[policy]\ncolour = 1", "unknown field `colour`");
    refused(
        "[policy.windows.x]\ntz = \"Mars/Olympus\"",
        "policy.windows.x.tz: \"Mars/Olympus\" is not a known IANA time zone",
    );
    refused(
        "[policy.windows.default]\nweekly = [{ days = [], start = \"22:00\", duration = \"4h\" }]",
        "policy.windows.default.weekly[0].days: name at least one day",
    );
    refused(
        "[policy.windows.default]\nweekly = [{ days = [\"fri\"], start = \"22:00\", duration = \"8d\" }]",
        "policy.windows.default.weekly[0].duration: duration 192h must be between 1m and 7d",
    );
    refused(
        "[policy.windows.default]\nweekly = [{ days = [\"fri\"], start = \"25:00\", duration = \"1h\" }]",
        "start",
    );
    refused(
        "[policy.windows.default]\nweekly = [{ days = [\"funday\"], start = \"22:00\", duration = \"1h\" }]",
        "unknown variant `funday`",
    );
    refused(
        "[policy.windows.default]\nmonthly = [{ nth = 5, weekday = \"tue\", start = \"02:00\", duration = \"1h\" }]",
        "policy.windows.default.monthly[0].nth: 5 is not allowed",
    );
    refused(
        "[policy.windows.default]\nmonthly = [{ nth = 2, weekday = \"tue\", offset_days = 40, start = \"02:00\", duration = \"1h\" }]",
        "offset_days: 40 is outside -28..28",
    );
    refused(
        "[policy.windows.default]\nblackout = [{ from = \"2026-12-20T00:00\", until = \"2026-12-19T00:00\" }]",
        "policy.windows.default.blackout[0]: from 2026-12-20T00:00:00 until 2026-12-19T00:00:00: `until` must be after `from`",
    );
    refused(
        "[[policy.rings]]\nname = \"pilot\"\nwindows = \"nights\"",
        "policy.rings[0].windows: window set \"nights\" is not defined",
    );
    refused(
        "[[policy.rings]]\nname = \"a\"\n[[policy.rings]]\nname = \"a\"",
        "policy.rings[1].name: ring \"a\" is defined twice",
    );
    refused(
        "[[policy.rings]]\nname = \"a\"\ncatch_all = true\n[[policy.rings]]\nname = \"b\"\ncatch_all = true",
        "only one ring may be the catch-all",
    );
    refused(
        "[[policy.rings]]\nname = \"a\"\nhosts = [\"h\"]\n[[policy.rings]]\nname = \"b\"\nhosts = [\"h\"]",
        "host \"h\" is already listed in ring \"a\"",
    );
    refused(
        "[[policy.rings]]\nname = \"bad name\"",
        "policy.rings[0].name",
    );
    refused("[policy]\nrings = []", "define at least one ring");
    refused(
        "[[policy.rings]]\nname = \"a\"\ngate = { success_ratio = 1.5 }",
        "policy.rings[0].gate.success_ratio: 1.5 is outside 0.0..1.0",
    );
    refused(
        "[[policy.rings]]\nname = \"a\"\ngate = { max_failures = \"150%\" }",
        "max_failures \"150%\" is neither a count",
    );
    refused(
        "[[policy.rings]]\nname = \"a\"\ngate = { min_successes = 0 }",
        "policy.rings[0].gate.min_successes: must be at least 1",
    );
    refused(
        "[[policy.auto_approve]]\nkinds = [\"firmware\"]\nrings = [\"pilot\"]",
        "policy.auto_approve[0].kinds: firmware is never auto-approved",
    );
    refused(
        "[policy.classes.firmware]\nauto_approve = true",
        "firmware is never auto-approved",
    );
    refused(
        "[policy.sla]\nlow_days = 0",
        "policy.sla.low_days: 0 is outside 1..3650 days",
    );
    refused(
        "[[policy.host_windows]]\nlabels = { site = \"x\" }\nwindows = \"nope\"",
        "policy.host_windows[0].windows: window set \"nope\" is not defined",
    );
}
