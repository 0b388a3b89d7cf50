//! Approvals (DESIGN §4 "Approval"): states, auto-approval rules, and the checks a
//! decision by hand must pass.
//!
//! States: `new -> approved(rings) | declined | deferred(until)`. A deferral whose time
//! has passed reads as `new` again ([`Approval::effective`]). Auto-approval only moves
//! `new` patches and never approves a class whose rule says no (firmware, always).
//! Expedite needs a reason, a critical or KEV patch and a class that allows it.
//! Recording decisions (and auditing them) is the caller's job.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::PolicyError;
use super::class::ClassRules;
use super::why::WhyNot;
use crate::feed::catalog::{PatchEntry, PatchKind, Severity};

/// Why a patch was expedited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expedite {
    pub reason: String,
}

/// A patch's approval state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Approval {
    New,
    Approved {
        rings: Vec<String>,
        expedite: Option<Expedite>,
    },
    Declined {
        reason: String,
    },
    Deferred {
        until: Timestamp,
    },
}

impl Approval {
    /// The state as of `now`: an expired deferral is `New` again.
    pub fn effective(&self, now: Timestamp) -> Approval {
        match self {
            Approval::Deferred { until } if *until <= now => Approval::New,
            other => other.clone(),
        }
    }

    /// `Ok(expedited)` when the patch is approved for `ring`, else why not.
    pub fn allows(
        &self,
        ring: &str,
        kind: PatchKind,
        classes: &ClassRules,
        now: Timestamp,
    ) -> Result<bool, WhyNot> {
        match self.effective(now) {
            Approval::Approved { rings, expedite } => {
                if rings.iter().any(|r| r == ring) {
                    Ok(expedite.is_some())
                } else {
                    Err(WhyNot::NotApprovedForRing { ring: ring.into() })
                }
            }
            Approval::New if !classes.get(kind).auto_approve => {
                Err(WhyNot::ManualApprovalRequired {
                    kind: kind_name(kind).into(),
                })
            }
            Approval::New => Err(WhyNot::NotApproved),
            Approval::Declined { reason } => Err(WhyNot::Declined { reason }),
            Approval::Deferred { until } => Err(WhyNot::Deferred { until }),
        }
    }
}

pub(crate) fn kind_name(kind: PatchKind) -> &'static str {
    match kind {
        PatchKind::Security => "security",
        PatchKind::Maintenance => "maintenance",
        PatchKind::Firmware => "firmware",
        PatchKind::Application => "application",
    }
}

/// Higher is more severe.
pub fn severity_rank(s: Severity) -> u8 {
    match s {
        Severity::Critical => 4,
        Severity::High => 3,
        Severity::Medium => 2,
        Severity::Low => 1,
        Severity::None => 0,
    }
}

/// One auto-approval rule (`[[policy.auto_approve]]`). A patch matches when every
/// given condition holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoApproveRule {
    /// Kinds it applies to (empty: every kind whose class allows auto-approval).
    #[serde(default)]
    pub kinds: Vec<PatchKind>,
    /// At least this severity.
    #[serde(default)]
    pub min_severity: Option<Severity>,
    /// At least this CVSS base score (a patch without CVSS does not match).
    #[serde(default)]
    pub min_cvss: Option<f64>,
    /// Only patches on the KEV list.
    #[serde(default)]
    pub kev: bool,
    /// The rings it approves for.
    pub rings: Vec<String>,
}

impl AutoApproveRule {
    pub fn validate(&self, key: &str, ring_names: &[&str]) -> Result<(), PolicyError> {
        if self.kinds.contains(&PatchKind::Firmware) {
            return Err(PolicyError::new(
                format!("{key}.kinds"),
                "firmware is never auto-approved; remove it from this rule",
            ));
        }
        if let Some(c) = self.min_cvss
            && !(0.0..=10.0).contains(&c)
        {
            return Err(PolicyError::new(
                format!("{key}.min_cvss"),
                format!("{c} is outside 0..10"),
            ));
        }
        check_rings(&format!("{key}.rings"), &self.rings, ring_names)
    }

    /// Whether this rule matches the patch (ignoring the class rule).
    pub fn matches(&self, entry: &PatchEntry, kev: bool) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&entry.kind))
            && self
                .min_severity
                .is_none_or(|m| severity_rank(entry.severity) >= severity_rank(m))
            && self
                .min_cvss
                .is_none_or(|m| entry.cvss.as_ref().is_some_and(|c| c.base_score >= m))
            && (!self.kev || kev)
    }
}

fn check_rings(key: &str, rings: &[String], known: &[&str]) -> Result<(), PolicyError> {
    if rings.is_empty() {
        return Err(PolicyError::new(key, "name at least one ring"));
    }
    for r in rings {
        if !known.contains(&r.as_str()) {
            return Err(PolicyError::new(
                key,
                format!("ring {r:?} is not defined (rings: {})", known.join(", ")),
            ));
        }
    }
    Ok(())
}

/// What the auto-approval rules make of a patch in state `current`: `Some(approved)` from
/// the first matching rule, or `None` (left for a human). Never approves firmware.
pub fn auto_approve(
    current: &Approval,
    entry: &PatchEntry,
    kev: bool,
    rules: &[AutoApproveRule],
    classes: &ClassRules,
) -> Option<(usize, Approval)> {
    if *current != Approval::New
        || entry.kind == PatchKind::Firmware
        || !classes.get(entry.kind).auto_approve
    {
        return None;
    }
    rules
        .iter()
        .enumerate()
        .find(|(_, r)| r.matches(entry, kev))
        .map(|(i, r)| {
            (
                i,
                Approval::Approved {
                    rings: r.rings.clone(),
                    expedite: None,
                },
            )
        })
}

/// A decision by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Decision {
    Approve {
        rings: Vec<String>,
        /// Expedite, with its reason.
        expedite: Option<String>,
    },
    Decline {
        reason: String,
    },
    Defer {
        until: Timestamp,
    },
}

/// Why a decision by hand was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    #[error("{0}")]
    Rings(PolicyError),
    #[error("expedite needs a reason")]
    ExpediteWithoutReason,
    #[error(
        "only critical or KEV patches may be expedited ({id} is {severity}, not on the KEV list)"
    )]
    ExpediteNotUrgent { id: String, severity: String },
    #[error("{kind} patches cannot be expedited (class rule)")]
    ExpediteNotForClass { kind: String },
    #[error("defer until {until}: that is not in the future")]
    DeferInPast { until: Timestamp },
}

/// Checks a decision by hand and returns the new state. Any state may be changed by
/// hand (a declined patch can be approved later), but the decision itself must be sound.
pub fn decide(
    decision: &Decision,
    entry: &PatchEntry,
    kev: bool,
    classes: &ClassRules,
    ring_names: &[&str],
    now: Timestamp,
) -> Result<Approval, DecisionError> {
    match decision {
        Decision::Approve { rings, expedite } => {
            check_rings("rings", rings, ring_names).map_err(DecisionError::Rings)?;
            let expedite = match expedite {
                None => None,
                Some(reason) => {
                    check_expedite(entry, kev, classes, reason)?;
                    Some(Expedite {
                        reason: reason.trim().to_string(),
                    })
                }
            };
            // Keep the configured ring order, whatever order the caller gave.
            let mut ordered: Vec<String> = ring_names
                .iter()
                .filter(|n| rings.iter().any(|r| r == *n))
                .map(|n| n.to_string())
                .collect();
            ordered.dedup();
            Ok(Approval::Approved {
                rings: ordered,
                expedite,
            })
        }
        Decision::Decline { reason } => Ok(Approval::Declined {
            reason: reason.trim().to_string(),
        }),
        Decision::Defer { until } => {
            if *until <= now {
                return Err(DecisionError::DeferInPast { until: *until });
            }
            Ok(Approval::Deferred { until: *until })
        }
    }
}

/// Expedite: a reason, a critical or KEV patch, a class that allows it.
pub fn check_expedite(
    entry: &PatchEntry,
    kev: bool,
    classes: &ClassRules,
    reason: &str,
) -> Result<(), DecisionError> {
    if reason.trim().is_empty() {
        return Err(DecisionError::ExpediteWithoutReason);
    }
    if !classes.get(entry.kind).expedite {
        return Err(DecisionError::ExpediteNotForClass {
            kind: kind_name(entry.kind).into(),
        });
    }
    if entry.severity != Severity::Critical && !kev {
        return Err(DecisionError::ExpediteNotUrgent {
            id: entry.id.clone(),
            severity: format!("{:?}", entry.severity).to_lowercase(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::catalog::tests::entry;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn rule(toml_text: &str) -> AutoApproveRule {
        toml::from_str(toml_text).unwrap()
    }

    fn patch(kind: PatchKind, severity: Severity, cvss: Option<f64>) -> PatchEntry {
        let mut e = entry("p", b"x");
        e.kind = kind;
        e.severity = severity;
        match cvss {
            Some(s) => e.cvss.as_mut().unwrap().base_score = s,
            None => e.cvss = None,
        }
        e
    }

    #[track_caller]
    fn check(rules: &[AutoApproveRule], p: &PatchEntry, kev: bool, want: Option<usize>) {
        let got = auto_approve(&Approval::New, p, kev, rules, &ClassRules::default());
        assert_eq!(
            got.as_ref().map(|(i, _)| *i),
            want,
            "{:?} {:?}",
            p.kind,
            p.severity
        );
        if let Some((i, a)) = got {
            assert_eq!(
                a,
                Approval::Approved {
                    rings: rules[i].rings.clone(),
                    expedite: None
                }
            );
        }
    }

    #[test]
    fn auto_approval_rules() {
        use PatchKind::*;
        use Severity::{Critical, High, Low, Medium};
        let rules = vec![
            rule("kinds = [\"security\"]\nkev = true\nrings = [\"pilot\", \"broad\"]"),
            rule(
                "kinds = [\"security\"]\nmin_severity = \"high\"\nmin_cvss = 7.0\nrings = [\"pilot\"]",
            ),
            rule("kinds = [\"maintenance\"]\nrings = [\"pilot\"]"),
            rule("min_severity = \"critical\"\nrings = [\"pilot\"]"),
        ];
        check(&rules, &patch(Security, Low, None), true, Some(0));
        check(&rules, &patch(Security, High, Some(7.0)), false, Some(1));
        check(
            &rules,
            &patch(Security, Critical, Some(9.8)),
            false,
            Some(1),
        );
        check(&rules, &patch(Security, High, Some(6.9)), false, None);
        check(&rules, &patch(Security, High, None), false, None);
        check(&rules, &patch(Security, Medium, Some(9.0)), false, None);
        check(
            &rules,
            &patch(Maintenance, Severity::None, None),
            false,
            Some(2),
        );
        check(&rules, &patch(Application, Critical, None), false, Some(3));
        check(&rules, &patch(Application, High, None), false, None);
        // Firmware: never, even when a kind-less rule matches and it is KEV.
        check(&rules, &patch(Firmware, Critical, Some(10.0)), true, None);

        // Only new patches move.
        let p = patch(Maintenance, Severity::None, None);
        for state in [
            Approval::Declined {
                reason: "no".into(),
            },
            Approval::Deferred {
                until: t("2027-01-01T00:00:00Z"),
            },
        ] {
            assert_eq!(
                auto_approve(&state, &p, false, &rules, &ClassRules::default()),
                None
            );
        }
    }

    #[test]
    fn rule_validation() {
        let rings = ["pilot", "broad"];
        let r = rule("kinds = [\"firmware\"]\nrings = [\"pilot\"]");
        assert!(
            r.validate("r", &rings)
                .unwrap_err()
                .to_string()
                .contains("never auto-approved")
        );
        let r = rule("min_cvss = 11.0\nrings = [\"pilot\"]");
        assert_eq!(r.validate("r", &rings).unwrap_err().key, "r.min_cvss");
        let r = rule("rings = [\"canary\"]");
        assert!(
            r.validate("r", &rings)
                .unwrap_err()
                .to_string()
                .contains("\"canary\" is not defined")
        );
        let r = rule("rings = []");
        assert!(r.validate("r", &rings).is_err());
        assert!(
            toml::from_str::<AutoApproveRule>("rings = [\"pilot\"]\nkind = \"security\"").is_err()
        );
    }

    #[test]
    fn decisions_by_hand() {
        let classes = ClassRules::default();
        let rings = ["pilot", "broad"];
        let now = t("2026-12-01T00:00:00Z");
        let crit = patch(PatchKind::Security, Severity::Critical, Some(9.8));
        let high = patch(PatchKind::Security, Severity::High, Some(7.5));
        let fw = patch(PatchKind::Firmware, Severity::Critical, None);
        let maint = patch(PatchKind::Maintenance, Severity::Critical, None);
        let approve = |rings: &[&str], exp: Option<&str>| Decision::Approve {
            rings: rings.iter().map(|s| s.to_string()).collect(),
            expedite: exp.map(Into::into),
        };

        assert_eq!(
            decide(
                &approve(&["broad", "pilot"], Some("exploited in the wild")),
                &crit,
                false,
                &classes,
                &rings,
                now
            ),
            Ok(Approval::Approved {
                rings: vec!["pilot".into(), "broad".into()],
                expedite: Some(Expedite {
                    reason: "exploited in the wild".into()
                }),
            })
        );
        // KEV makes a high patch eligible.
        assert!(
            decide(
                &approve(&["pilot"], Some("kev")),
                &high,
                true,
                &classes,
                &rings,
                now
            )
            .is_ok()
        );
        for (p, kev, exp, want) in [
            (
                &high,
                false,
                Some("urgent"),
                "only critical or KEV patches may be expedited",
            ),
            (&crit, false, Some("  "), "expedite needs a reason"),
            (
                &fw,
                true,
                Some("bmc hole"),
                "firmware patches cannot be expedited",
            ),
            (
                &maint,
                false,
                Some("x"),
                "maintenance patches cannot be expedited",
            ),
        ] {
            let e = decide(&approve(&["pilot"], exp), p, kev, &classes, &rings, now).unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
        }
        assert!(decide(&approve(&[], None), &high, false, &classes, &rings, now).is_err());
        assert!(
            decide(
                &approve(&["lab"], None),
                &high,
                false,
                &classes,
                &rings,
                now
            )
            .is_err()
        );
        // Firmware may be approved by hand.
        assert!(
            decide(
                &approve(&["pilot"], None),
                &fw,
                false,
                &classes,
                &rings,
                now
            )
            .is_ok()
        );

        assert_eq!(
            decide(
                &Decision::Defer { until: now },
                &high,
                false,
                &classes,
                &rings,
                now
            ),
            Err(DecisionError::DeferInPast { until: now })
        );
        let later = t("2026-12-08T00:00:00Z");
        let d = decide(
            &Decision::Defer { until: later },
            &high,
            false,
            &classes,
            &rings,
            now,
        )
        .unwrap();
        assert_eq!(d.effective(now), d);
        assert_eq!(d.effective(later), Approval::New);
    }

    #[test]
    fn allows_explains_each_state() {
        let c = ClassRules::default();
        let now = t("2026-12-01T00:00:00Z");
        let approved = Approval::Approved {
            rings: vec!["pilot".into()],
            expedite: None,
        };
        assert_eq!(
            approved.allows("pilot", PatchKind::Security, &c, now),
            Ok(false)
        );
        assert_eq!(
            approved.allows("broad", PatchKind::Security, &c, now),
            Err(WhyNot::NotApprovedForRing {
                ring: "broad".into()
            })
        );
        assert_eq!(
            Approval::New.allows("pilot", PatchKind::Security, &c, now),
            Err(WhyNot::NotApproved)
        );
        assert_eq!(
            Approval::New.allows("pilot", PatchKind::Firmware, &c, now),
            Err(WhyNot::ManualApprovalRequired {
                kind: "firmware".into()
            })
        );
        let until = t("2026-12-02T00:00:00Z");
        assert_eq!(
            Approval::Deferred { until }.allows("pilot", PatchKind::Security, &c, now),
            Err(WhyNot::Deferred { until })
        );
        let exp = Approval::Approved {
            rings: vec!["pilot".into()],
            expedite: Some(Expedite {
                reason: "kev".into(),
            }),
        };
        assert_eq!(exp.allows("pilot", PatchKind::Security, &c, now), Ok(true));
    }
}
