//! "Why not yet?" (DESIGN §4 "Why-not"): every refusal as a machine-readable reason
//! (serialised with a stable `code`) and a sentence for people (`Display`), for
//! `patchward explain` and the web page.

use jiff::Timestamp;
use serde::Serialize;

use super::gate::{GateReason, GateStatus};
use super::windows::StartCheck;

/// Why a host is kept out of rollouts as a legacy host (computed by `legacy::offer`
/// from its os-release, the lifecycle catalog, its include and `[legacy]`; policy only
/// reads it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EndOfLife {
    /// The host's name, for the `legacy include` hint.
    pub host: String,
    pub product: String,
    pub cycle: String,
    /// `eol`, or `unknown` (kept out by `legacy.unknown_is_eol`).
    pub state: String,
    /// When it reached end of life (for `eol`, if the catalog has the date).
    pub eol_date: Option<jiff::civil::Date>,
}

impl std::fmt::Display for EndOfLife {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = format!("{} {}", self.product, self.cycle);
        let what = what.trim();
        let hint = format!("(patchward legacy include {} --reason ...)", self.host);
        match (self.state.as_str(), self.eol_date) {
            ("unknown", _) => write!(
                f,
                "the lifecycle catalog does not know {what}; legacy.unknown_is_eol keeps such \
                 hosts out of rollouts unless included {hint}"
            ),
            (_, Some(d)) => write!(
                f,
                "{what} reached end of life on {d}; legacy hosts are not offered patches \
                 unless included {hint}"
            ),
            (_, None) => write!(
                f,
                "{what} has reached end of life; legacy hosts are not offered patches unless \
                 included {hint}"
            ),
        }
    }
}

/// One reason a patch is not (yet) offered to a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum WhyNot {
    /// Nobody has approved it yet.
    NotApproved,
    /// Firmware (or a class configured so) is never approved by a rule.
    ManualApprovalRequired {
        kind: String,
    },
    Declined {
        reason: String,
    },
    Deferred {
        until: Timestamp,
    },
    /// Approved, but not for this host's ring.
    NotApprovedForRing {
        ring: String,
    },
    /// The host belongs to no ring.
    NoRing,
    NotApplicable {
        reason: String,
    },
    HostEndOfLife(EndOfLife),
    AlreadyInstalled,
    SupersededBy {
        patch: String,
    },
    Requires {
        patch: String,
    },
    Conflicts {
        patch: String,
    },
    /// A `requires` cycle (refused at import; reported if one slips through).
    RequiresCycle {
        path: Vec<String>,
    },
    BackupNotVerified,
    OutsideWindow {
        next: Option<Timestamp>,
    },
    Blackout {
        until: Timestamp,
        next: Option<Timestamp>,
    },
    /// Inside a window, but the job (`est_minutes`) would not finish before it closes.
    TooLateInWindow {
        latest_start: Timestamp,
        next: Option<Timestamp>,
    },
    /// The previous ring's gate has not passed.
    WaitingOnGate {
        ring: String,
        reasons: Vec<GateReason>,
    },
    /// The error brake is on.
    RolloutHalted {
        ring: String,
        reasons: Vec<GateReason>,
    },
    /// This ring runs a canary or one host at a time, and that slot is taken.
    RingBusy {
        ring: String,
    },
}

fn when(t: &Option<Timestamp>) -> String {
    match t {
        Some(t) => format!("next allowed start {t}"),
        None => "no allowed start within the next three years".into(),
    }
}

fn list(reasons: &[GateReason]) -> String {
    reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl std::fmt::Display for WhyNot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WhyNot::NotApproved => write!(f, "not approved yet"),
            WhyNot::ManualApprovalRequired { kind } => {
                write!(f, "{kind} patches need manual approval")
            }
            WhyNot::Declined { reason } if reason.is_empty() => write!(f, "declined"),
            WhyNot::Declined { reason } => write!(f, "declined: {reason}"),
            WhyNot::Deferred { until } => write!(f, "deferred until {until}"),
            WhyNot::NotApprovedForRing { ring } => {
                write!(f, "approved, but not for ring {ring}")
            }
            WhyNot::NoRing => write!(f, "the host is in no ring"),
            WhyNot::NotApplicable { reason } => write!(f, "does not apply: {reason}"),
            WhyNot::HostEndOfLife(e) => write!(f, "{e}"),
            WhyNot::AlreadyInstalled => write!(f, "already installed"),
            WhyNot::SupersededBy { patch } => write!(f, "superseded by {patch}"),
            WhyNot::Requires { patch } => write!(f, "requires {patch} first"),
            WhyNot::Conflicts { patch } => write!(f, "conflicts with {patch}"),
            WhyNot::RequiresCycle { path } => {
                write!(f, "requires cycle: {}", path.join(" -> "))
            }
            WhyNot::BackupNotVerified => write!(f, "backup not verified"),
            WhyNot::OutsideWindow { next } => write!(f, "outside window ({})", when(next)),
            WhyNot::Blackout { until, next } => {
                write!(f, "blackout until {until} ({})", when(next))
            }
            WhyNot::TooLateInWindow { latest_start, next } => write!(
                f,
                "too late in the window to finish (latest start was {latest_start}; {})",
                when(next)
            ),
            WhyNot::WaitingOnGate { ring, reasons } => {
                write!(f, "waiting on {ring} gate: {}", list(reasons))
            }
            WhyNot::RolloutHalted { ring, reasons } => write!(
                f,
                "rollout halted at ring {ring}: {}; resume, abort or roll back by hand",
                list(reasons)
            ),
            WhyNot::RingBusy { ring } => write!(
                f,
                "ring {ring} is waiting for its canary or one-at-a-time host to finish"
            ),
        }
    }
}

impl WhyNot {
    /// The window refusal, if `check` is one.
    pub fn from_start_check(check: &StartCheck) -> Option<WhyNot> {
        match *check {
            StartCheck::Allowed { .. } => None,
            StartCheck::Blackout { until, next } => Some(WhyNot::Blackout { until, next }),
            StartCheck::TooLate {
                latest_start, next, ..
            } => Some(WhyNot::TooLateInWindow { latest_start, next }),
            StartCheck::OutsideWindow { next } => Some(WhyNot::OutsideWindow { next }),
        }
    }

    /// Why ring `ring`'s gate holds back the next ring, if it does.
    pub fn from_gate(ring: &str, status: &GateStatus) -> Option<WhyNot> {
        match status {
            GateStatus::Passed => None,
            GateStatus::Waiting { reasons } => Some(WhyNot::WaitingOnGate {
                ring: ring.into(),
                reasons: reasons.clone(),
            }),
            GateStatus::Halted { reasons } => Some(WhyNot::RolloutHalted {
                ring: ring.into(),
                reasons: reasons.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(w: WhyNot, sentence: &str, code: &str) {
        assert_eq!(w.to_string(), sentence);
        let json = serde_json::to_value(&w).unwrap();
        assert_eq!(json["code"], code, "{json}");
    }

    #[test]
    fn sentences_and_codes() {
        let t: Timestamp = "2026-12-01T22:00:00Z".parse().unwrap();
        check(
            WhyNot::WaitingOnGate {
                ring: "pilot".into(),
                reasons: vec![
                    GateReason::Successes { have: 2, need: 3 },
                    GateReason::Soaking { until: t },
                ],
            },
            "waiting on pilot gate: 2/3 succeeded, soak ends at 2026-12-01T22:00:00Z",
            "waiting_on_gate",
        );
        check(
            WhyNot::OutsideWindow { next: Some(t) },
            "outside window (next allowed start 2026-12-01T22:00:00Z)",
            "outside_window",
        );
        check(
            WhyNot::Requires { patch: "X".into() },
            "requires X first",
            "requires",
        );
        check(
            WhyNot::SupersededBy { patch: "Y".into() },
            "superseded by Y",
            "superseded_by",
        );
        let eol = EndOfLife {
            host: "web1".into(),
            product: "debian".into(),
            cycle: "10".into(),
            state: "eol".into(),
            eol_date: Some(jiff::civil::date(2024, 6, 30)),
        };
        check(
            WhyNot::HostEndOfLife(eol.clone()),
            "debian 10 reached end of life on 2024-06-30; legacy hosts are not offered \
             patches unless included (patchward legacy include web1 --reason ...)",
            "host_end_of_life",
        );
        let json = serde_json::to_value(WhyNot::HostEndOfLife(eol)).unwrap();
        assert_eq!(json["eol_date"], "2024-06-30");
        assert_eq!(json["product"], "debian");
        check(
            WhyNot::HostEndOfLife(EndOfLife {
                host: "box".into(),
                product: "linux".into(),
                cycle: String::new(),
                state: "unknown".into(),
                eol_date: None,
            }),
            "the lifecycle catalog does not know linux; legacy.unknown_is_eol keeps such \
             hosts out of rollouts unless included (patchward legacy include box --reason ...)",
            "host_end_of_life",
        );
        check(
            WhyNot::BackupNotVerified,
            "backup not verified",
            "backup_not_verified",
        );
        check(
            WhyNot::Declined {
                reason: "breaks the ERP".into(),
            },
            "declined: breaks the ERP",
            "declined",
        );
        check(
            WhyNot::RolloutHalted {
                ring: "broad".into(),
                reasons: vec![GateReason::TooManyFailures {
                    failures: 3,
                    limit: "20%".into(),
                }],
            },
            "rollout halted at ring broad: 3 failures exceed max_failures 20%; resume, abort or roll back by hand",
            "rollout_halted",
        );
    }

    #[test]
    fn conversions() {
        let t: Timestamp = "2026-12-01T22:00:00Z".parse().unwrap();
        let allowed = StartCheck::Allowed {
            window_end: t,
            latest_start: t,
        };
        assert_eq!(WhyNot::from_start_check(&allowed), None);
        let late = StartCheck::TooLate {
            window_end: t,
            latest_start: t,
            next: None,
        };
        assert_eq!(
            WhyNot::from_start_check(&late).unwrap().to_string(),
            "too late in the window to finish (latest start was 2026-12-01T22:00:00Z; \
             no allowed start within the next three years)"
        );
        assert_eq!(WhyNot::from_gate("pilot", &GateStatus::Passed), None);
        let waiting = GateStatus::Waiting {
            reasons: vec![GateReason::Successes { have: 2, need: 3 }],
        };
        assert_eq!(
            WhyNot::from_gate("pilot", &waiting).unwrap().to_string(),
            "waiting on pilot gate: 2/3 succeeded"
        );
    }
}
