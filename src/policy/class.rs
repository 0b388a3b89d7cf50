//! Patch classes (DESIGN §4 "Classes"): the rules that differ by `kind`.
//!
//! Defaults:
//!
//! | class       | auto-approve | expedite | emergency window | SLA | one at a time | min soak | health check |
//! |-------------|--------------|----------|------------------|-----|---------------|----------|--------------|
//! | security    | yes          | yes      | yes              | yes | no            | 0        | no           |
//! | maintenance | yes          | no       | no               | no  | no            | 0        | no           |
//! | firmware    | **never**    | no       | no               | yes | yes           | 72h      | no           |
//! | application | yes          | yes      | yes              | no  | no            | 0        | yes          |
//!
//! "yes" under auto-approve means auto-approval rules may match the class. Expedite is
//! further limited to critical or KEV patches ([`super::approval`]). Firmware's backup
//! requirement comes from the patch entry (`needs_backup`, default true for firmware).
//! Every field can be overridden per class in TOML, except that firmware can never be
//! auto-approved.

use jiff::SignedDuration;
use serde::{Deserialize, Serialize};

use super::PolicyError;
use super::gate::GateRules;
use super::why::WhyNot;
use super::windows::Urgency;
use crate::feed::catalog::{PatchEntry, PatchKind};

/// The resolved rules of one class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassRule {
    /// Auto-approval rules may approve this class.
    pub auto_approve: bool,
    /// Patches of this class may be expedited (if critical or KEV).
    pub expedite: bool,
    /// Expedited patches of this class may use the emergency window.
    pub emergency_window: bool,
    /// SLA deadlines apply.
    pub sla: bool,
    /// At most this many hosts per ring at once (firmware: 1).
    pub max_parallel: Option<u32>,
    /// The ring's soak is raised to at least this.
    pub min_soak: SignedDuration,
    /// An expedited patch's soak is cut to at most this.
    pub expedited_soak: SignedDuration,
    /// A success counts only when the application health check passed too.
    pub health_check: bool,
}

/// Per-class overrides as written in TOML (`[policy.classes.firmware]`); absent keys
/// keep the class's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClassRule {
    pub auto_approve: Option<bool>,
    pub expedite: Option<bool>,
    pub emergency_window: Option<bool>,
    pub sla: Option<bool>,
    pub max_parallel: Option<u32>,
    #[serde(default, deserialize_with = "crate::policy::duration::de_opt")]
    pub min_soak: Option<SignedDuration>,
    #[serde(default, deserialize_with = "crate::policy::duration::de_opt")]
    pub expedited_soak: Option<SignedDuration>,
    pub health_check: Option<bool>,
}

/// `[policy.classes]` as written in TOML.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClassRules {
    #[serde(default)]
    pub security: RawClassRule,
    #[serde(default)]
    pub maintenance: RawClassRule,
    #[serde(default)]
    pub firmware: RawClassRule,
    #[serde(default)]
    pub application: RawClassRule,
}

/// The rules of all four classes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassRules {
    pub security: ClassRule,
    pub maintenance: ClassRule,
    pub firmware: ClassRule,
    pub application: ClassRule,
}

impl ClassRule {
    fn defaults(kind: PatchKind) -> Self {
        let base = ClassRule {
            auto_approve: true,
            expedite: false,
            emergency_window: false,
            sla: false,
            max_parallel: None,
            min_soak: SignedDuration::ZERO,
            expedited_soak: SignedDuration::from_hours(2),
            health_check: false,
        };
        match kind {
            PatchKind::Security => ClassRule {
                expedite: true,
                emergency_window: true,
                sla: true,
                ..base
            },
            PatchKind::Maintenance => base,
            PatchKind::Firmware => ClassRule {
                auto_approve: false,
                sla: true,
                max_parallel: Some(1),
                min_soak: SignedDuration::from_hours(72),
                ..base
            },
            PatchKind::Application => ClassRule {
                expedite: true,
                emergency_window: true,
                health_check: true,
                ..base
            },
        }
    }

    /// The gate rules for this class in a ring: soak raised to `min_soak` (or cut to
    /// `expedited_soak` when expedited), parallelism capped by the class.
    pub fn gate_rules(&self, ring: &GateRules, expedited: bool) -> GateRules {
        let mut g = ring.clone();
        g.soak = if expedited && self.expedite {
            g.soak.min(self.expedited_soak)
        } else {
            g.soak.max(self.min_soak)
        };
        g.max_parallel = match (g.max_parallel, self.max_parallel) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        g
    }

    /// Which slots a job of this class may use.
    pub fn urgency(&self, expedited: bool) -> Urgency {
        if expedited && self.expedite && self.emergency_window {
            Urgency::Expedited
        } else {
            Urgency::Normal
        }
    }

    /// Whether an install counts as a success: it must have worked, and where the class
    /// asks for one, the application health check must have passed (missing = failed).
    pub fn install_succeeded(&self, installed: bool, health_check: Option<bool>) -> bool {
        installed && (!self.health_check || health_check == Some(true))
    }
}

impl Default for ClassRules {
    fn default() -> Self {
        Self {
            security: ClassRule::defaults(PatchKind::Security),
            maintenance: ClassRule::defaults(PatchKind::Maintenance),
            firmware: ClassRule::defaults(PatchKind::Firmware),
            application: ClassRule::defaults(PatchKind::Application),
        }
    }
}

fn resolve(kind: PatchKind, raw: &RawClassRule, key: &str) -> Result<ClassRule, PolicyError> {
    let d = ClassRule::defaults(kind);
    let r = ClassRule {
        auto_approve: raw.auto_approve.unwrap_or(d.auto_approve),
        expedite: raw.expedite.unwrap_or(d.expedite),
        emergency_window: raw.emergency_window.unwrap_or(d.emergency_window),
        sla: raw.sla.unwrap_or(d.sla),
        max_parallel: raw.max_parallel.or(d.max_parallel),
        min_soak: raw.min_soak.unwrap_or(d.min_soak),
        expedited_soak: raw.expedited_soak.unwrap_or(d.expedited_soak),
        health_check: raw.health_check.unwrap_or(d.health_check),
    };
    if kind == PatchKind::Firmware && r.auto_approve {
        return Err(PolicyError::new(
            format!("{key}.auto_approve"),
            "firmware is never auto-approved; approve firmware patches by hand",
        ));
    }
    if r.max_parallel == Some(0) {
        return Err(PolicyError::new(
            format!("{key}.max_parallel"),
            "must be at least 1 (leave it out for no limit)",
        ));
    }
    let limit = SignedDuration::from_hours(90 * 24);
    for (name, v) in [
        ("min_soak", r.min_soak),
        ("expedited_soak", r.expedited_soak),
    ] {
        if v.is_negative() || v > limit {
            return Err(PolicyError::new(
                format!("{key}.{name}"),
                format!("{v:#} must be between 0s and 90d"),
            ));
        }
    }
    Ok(r)
}

impl ClassRules {
    /// Lays the overrides over the defaults and checks them; `key` is the table's path.
    pub fn from_raw(raw: &RawClassRules, key: &str) -> Result<Self, PolicyError> {
        Ok(Self {
            security: resolve(
                PatchKind::Security,
                &raw.security,
                &format!("{key}.security"),
            )?,
            maintenance: resolve(
                PatchKind::Maintenance,
                &raw.maintenance,
                &format!("{key}.maintenance"),
            )?,
            firmware: resolve(
                PatchKind::Firmware,
                &raw.firmware,
                &format!("{key}.firmware"),
            )?,
            application: resolve(
                PatchKind::Application,
                &raw.application,
                &format!("{key}.application"),
            )?,
        })
    }

    pub fn get(&self, kind: PatchKind) -> &ClassRule {
        match kind {
            PatchKind::Security => &self.security,
            PatchKind::Maintenance => &self.maintenance,
            PatchKind::Firmware => &self.firmware,
            PatchKind::Application => &self.application,
        }
    }

    /// Whether the patch's backup requirement blocks it: `needs_backup` and no verified
    /// backup of the host yet.
    pub fn backup_gate(entry: &PatchEntry, backup_verified: bool) -> Result<(), WhyNot> {
        if entry.needs_backup() && !backup_verified {
            Err(WhyNot::BackupNotVerified)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<ClassRules, String> {
        let raw: RawClassRules = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        ClassRules::from_raw(&raw, "policy.classes").map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_differ_by_class() {
        let c = ClassRules::default();
        assert!(!c.firmware.auto_approve);
        assert_eq!(c.firmware.max_parallel, Some(1));
        assert_eq!(c.firmware.min_soak, SignedDuration::from_hours(72));
        assert!(c.security.sla && c.security.expedite && c.security.emergency_window);
        assert!(!c.maintenance.emergency_window && !c.maintenance.expedite);
        assert!(c.application.health_check);
        assert_eq!(parse("").unwrap(), c);
    }

    #[test]
    fn overrides_apply_per_class_and_bad_values_are_refused() {
        let c = parse("[firmware]\nmin_soak = \"96h\"\n[maintenance]\nsla = true\n").unwrap();
        assert_eq!(c.firmware.min_soak, SignedDuration::from_hours(96));
        assert_eq!(c.firmware.max_parallel, Some(1), "other keys keep defaults");
        assert!(c.maintenance.sla);
        assert!(!c.security.min_soak.is_positive());

        for (text, err) in [
            (
                "[firmware]\nauto_approve = true",
                "policy.classes.firmware.auto_approve: firmware is never auto-approved",
            ),
            (
                "[security]\nmax_parallel = 0",
                "policy.classes.security.max_parallel",
            ),
            (
                "[security]\nmin_soak = \"-1h\"",
                "policy.classes.security.min_soak",
            ),
            ("[security]\nspeed = 1", "unknown field `speed`"),
            ("[kernel]\nsla = true", "unknown field `kernel`"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(err), "{text:?}: {e}");
        }
    }

    #[test]
    fn gate_rules_follow_the_class() {
        let c = ClassRules::default();
        let ring = GateRules::default();
        let fw = c.firmware.gate_rules(&ring, false);
        assert_eq!(fw.soak, SignedDuration::from_hours(72));
        assert_eq!(fw.max_parallel, Some(1));
        // Firmware cannot be expedited, so expedite does not shorten its soak.
        assert_eq!(c.firmware.gate_rules(&ring, true).soak, fw.soak);
        assert_eq!(
            c.security.gate_rules(&ring, true).soak,
            SignedDuration::from_hours(2)
        );
        assert_eq!(c.security.gate_rules(&ring, false).soak, ring.soak);
        assert_eq!(c.security.urgency(true), Urgency::Expedited);
        assert_eq!(c.maintenance.urgency(true), Urgency::Normal);
        assert_eq!(c.firmware.urgency(true), Urgency::Normal);
    }

    #[test]
    fn health_check_and_backup() {
        let c = ClassRules::default();
        assert!(!c.application.install_succeeded(true, None));
        assert!(!c.application.install_succeeded(true, Some(false)));
        assert!(c.application.install_succeeded(true, Some(true)));
        assert!(c.security.install_succeeded(true, None));
        assert!(!c.security.install_succeeded(false, Some(true)));

        let mut e = crate::feed::catalog::tests::entry("fw", b"x");
        e.kind = PatchKind::Firmware;
        assert_eq!(
            ClassRules::backup_gate(&e, false),
            Err(WhyNot::BackupNotVerified)
        );
        assert_eq!(ClassRules::backup_gate(&e, true), Ok(()));
        e.kind = PatchKind::Security;
        assert_eq!(ClassRules::backup_gate(&e, false), Ok(()));
    }
}
