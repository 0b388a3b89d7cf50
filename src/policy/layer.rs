//! Window entries added at run time (from the web page) laid over the configured
//! policy.
//!
//! The configuration file stays the base: its `[policy.windows.NAME]` sets are never
//! rewritten. An added entry names an existing set and is one weekly, monthly, one-off
//! or blackout entry (slots may go to the set's emergency part), written in the same
//! TOML syntax as the file and parsed by the same serde types, so "22:00", "4h" and
//! "2026-12-20T00:00" mean exactly what they mean in the file. [`layer`] appends the
//! entries to their sets and validates each set with [`Windows::validate`]; an entry
//! that no longer fits (its set was removed from the file, a list grew past its limit)
//! is left out and reported, so a stale entry never stops the scheduler.

use serde::de::DeserializeOwned;

use super::PolicyError;
use super::config::Policy;
use super::windows::{Blackout, Monthly, OneOff, Weekly};

/// The kinds of entry an operator can add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotKind {
    Weekly,
    Monthly,
    Once,
    Blackout,
}

impl SlotKind {
    pub const ALL: [SlotKind; 4] = [
        SlotKind::Weekly,
        SlotKind::Monthly,
        SlotKind::Once,
        SlotKind::Blackout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SlotKind::Weekly => "weekly",
            SlotKind::Monthly => "monthly",
            SlotKind::Once => "once",
            SlotKind::Blackout => "blackout",
        }
    }

    pub fn parse(s: &str) -> Option<SlotKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for SlotKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parsed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    Weekly(Weekly),
    Monthly(Monthly),
    Once(OneOff),
    Blackout(Blackout),
}

/// Parses an entry; the error names the line at fault (`start = "25:00": ...`).
fn toml_entry<T: DeserializeOwned>(spec: &str) -> Result<T, String> {
    toml::from_str(spec).map_err(|e| {
        let line = e.span().and_then(|sp| {
            let start = spec[..sp.start.min(spec.len())]
                .rfind('\n')
                .map_or(0, |i| i + 1);
            spec[start..].lines().next().map(str::trim)
        });
        match line {
            Some(l) if !l.is_empty() => format!("{l}: {}", e.message().trim()),
            _ => e.message().trim().to_string(),
        }
    })
}

impl Slot {
    /// Parses `spec` (the entry's keys as a TOML document, e.g. `days = ["tue"]`,
    /// `start = "22:00"`, `duration = "4h"`) as a `kind` entry.
    pub fn parse(kind: SlotKind, spec: &str) -> Result<Slot, String> {
        Ok(match kind {
            SlotKind::Weekly => Slot::Weekly(toml_entry(spec)?),
            SlotKind::Monthly => Slot::Monthly(toml_entry(spec)?),
            SlotKind::Once => Slot::Once(toml_entry(spec)?),
            SlotKind::Blackout => Slot::Blackout(toml_entry(spec)?),
        })
    }

    pub fn kind(&self) -> SlotKind {
        match self {
            Slot::Weekly(_) => SlotKind::Weekly,
            Slot::Monthly(_) => SlotKind::Monthly,
            Slot::Once(_) => SlotKind::Once,
            Slot::Blackout(_) => SlotKind::Blackout,
        }
    }
}

/// An entry added to the window set `set` (to its emergency part when `emergency`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedWindow {
    /// The stored entry's id (for reporting entries left out).
    pub id: i64,
    pub set: String,
    pub emergency: bool,
    pub slot: Slot,
}

/// Adds one entry to a copy of `policy`, checking the set it lands in.
fn add_one(policy: &mut Policy, a: &AddedWindow) -> Result<(), PolicyError> {
    let key = format!("policy.windows.{}", a.set);
    let Some(ws) = policy.windows.get_mut(&a.set) else {
        let names: Vec<&str> = policy.windows.keys().map(String::as_str).collect();
        return Err(PolicyError::new(
            key,
            format!(
                "window set {:?} is not defined (sets: {})",
                a.set,
                names.join(", ")
            ),
        ));
    };
    let mut w = ws.windows.clone();
    match (&a.slot, a.emergency) {
        (Slot::Blackout(_), true) => {
            return Err(PolicyError::new(
                key,
                "a blackout applies to every slot; it cannot be emergency-only",
            ));
        }
        (Slot::Blackout(b), false) => w.blackout.push(b.clone()),
        (Slot::Weekly(s), false) => w.weekly.push(s.clone()),
        (Slot::Weekly(s), true) => w.emergency.weekly.push(s.clone()),
        (Slot::Monthly(s), false) => w.monthly.push(s.clone()),
        (Slot::Monthly(s), true) => w.emergency.monthly.push(s.clone()),
        (Slot::Once(s), false) => w.once.push(s.clone()),
        (Slot::Once(s), true) => w.emergency.once.push(s.clone()),
    }
    w.validate(&key)?;
    ws.windows = w;
    Ok(())
}

/// `base` with every entry of `added` that fits, in order; the others with the reason
/// they were left out.
pub fn layer(base: &Policy, added: &[AddedWindow]) -> (Policy, Vec<(i64, PolicyError)>) {
    let mut policy = base.clone();
    let mut left_out = Vec::new();
    for a in added {
        if let Err(e) = add_one(&mut policy, a) {
            left_out.push((a.id, e));
        }
    }
    (policy, left_out)
}

/// Whether `new` fits on top of `policy` (which already holds the other entries).
pub fn check(policy: &Policy, new: &AddedWindow) -> Result<(), PolicyError> {
    add_one(&mut policy.clone(), new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::RawPolicy;

    fn policy() -> Policy {
        let raw: RawPolicy = toml::from_str(
            r#"
            [windows.default]
            tz = "Europe/Berlin"
            weekly = [{ days = ["sun"], start = "03:00", duration = "1h" }]
            "#,
        )
        .unwrap();
        Policy::from_raw(&raw).unwrap()
    }

    fn added(id: i64, set: &str, kind: SlotKind, emergency: bool, spec: &str) -> AddedWindow {
        AddedWindow {
            id,
            set: set.into(),
            emergency,
            slot: Slot::parse(kind, spec).unwrap(),
        }
    }

    #[test]
    fn entries_land_in_their_set_and_bad_ones_are_left_out() {
        let base = policy();
        let entries = [
            added(
                1,
                "default",
                SlotKind::Weekly,
                false,
                "days = [\"tue\"]\nstart = \"22:00\"\nduration = \"4h\"",
            ),
            added(
                2,
                "default",
                SlotKind::Once,
                true,
                "start = \"2026-12-27T08:00\"\nduration = \"2h\"",
            ),
            added(
                3,
                "default",
                SlotKind::Blackout,
                false,
                "from = \"2026-12-20T00:00\"\nuntil = \"2027-01-04T00:00\"\nreason = \"year end\"",
            ),
            added(
                4,
                "gone",
                SlotKind::Weekly,
                false,
                "days = [\"mon\"]\nstart = \"01:00\"\nduration = \"1h\"",
            ),
            added(
                5,
                "default",
                SlotKind::Blackout,
                false,
                "from = \"2026-12-20T00:00\"\nuntil = \"2026-12-19T00:00\"",
            ),
        ];
        let (p, left_out) = layer(&base, &entries);
        let w = &p.windows["default"].windows;
        assert_eq!(w.weekly.len(), 2);
        assert_eq!(w.emergency.once.len(), 1);
        assert_eq!(w.blackout.len(), 1);
        let ids: Vec<i64> = left_out.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [4, 5]);
        assert!(
            left_out[0].1.message.contains("not defined"),
            "{:?}",
            left_out[0]
        );
        assert!(
            left_out[1].1.message.contains("`until` must be after"),
            "{:?}",
            left_out[1]
        );
        // The base is untouched.
        assert_eq!(base.windows["default"].windows.weekly.len(), 1);
    }

    #[test]
    fn the_file_syntax_and_its_refusals() {
        for (kind, spec, want) in [
            (
                SlotKind::Weekly,
                "days = [\"tue\"]\nstart = \"25:00\"\nduration = \"1h\"",
                "start = \"25:00\": failed to parse",
            ),
            (
                SlotKind::Weekly,
                "days = [\"someday\"]\nstart = \"22:00\"\nduration = \"1h\"",
                "someday",
            ),
            (
                SlotKind::Weekly,
                "days = [\"tue\"]\nstart = \"22:00\"\nduration = \"soon\"",
                "not a duration",
            ),
            (
                SlotKind::Once,
                "start = \"tomorrow\"\nduration = \"1h\"",
                "tomorrow",
            ),
            (
                SlotKind::Monthly,
                "nth = 2\nweekday = \"tue\"\nstart = \"02:00\"\nduration = \"1h\"\nextra = 1",
                "extra",
            ),
        ] {
            let e = Slot::parse(kind, spec).unwrap_err();
            assert!(e.contains(want), "{spec}: {e}");
        }
        let base = policy();
        for (kind, emergency, spec, want) in [
            (
                SlotKind::Weekly,
                false,
                "days = []\nstart = \"22:00\"\nduration = \"1h\"",
                "at least one day",
            ),
            (
                SlotKind::Weekly,
                false,
                "days = [\"tue\"]\nstart = \"22:00\"\nduration = \"8d\"",
                "between 1m and 7d",
            ),
            (
                SlotKind::Monthly,
                false,
                "nth = 5\nweekday = \"tue\"\nstart = \"02:00\"\nduration = \"1h\"",
                "use 1-4",
            ),
            (
                SlotKind::Blackout,
                true,
                "from = \"2026-12-20T00:00\"\nuntil = \"2026-12-21T00:00\"",
                "emergency",
            ),
        ] {
            let a = added(9, "default", kind, emergency, spec);
            let e = check(&base, &a).unwrap_err();
            assert!(e.to_string().contains(want), "{spec}: {e}");
        }
    }
}
