//! Where a job leaves its host with the patch: the one reading of job states that the
//! host page, the rollout counts (`rollout list|show`, the rollout pages and their
//! JSON), the dashboard and the gate between rings share.
//!
//! Before this existed each of them matched on job states on its own, and they
//! disagreed: a `reboot_pending` job counted as "running" in rollouts while the host
//! page said "Reboot required: no". [`JobState::standing`] is the only such match; a
//! new job state fails to compile here until it is placed.

use serde::Serialize;

use super::jobs::JobState;

/// A job's state as a person reads it (see [`JobState::standing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Offered and not finished: downloading, installing, verifying, rolling back.
    Running,
    /// Installed and verified; the host must reboot to finish (`reboot_pending`).
    AwaitingReboot,
    Installed,
    /// Failed, or its rollback failed.
    Failed,
    RolledBack,
    /// No job that counts: it expired or was cancelled before it started.
    NotStarted,
}

impl JobState {
    /// Where a job in this state leaves its host (see the module comment).
    pub fn standing(self) -> Standing {
        use JobState::*;
        match self {
            Offered | Downloading | Downloaded | Installing | Verifying | RollingBack => {
                Standing::Running
            }
            RebootPending => Standing::AwaitingReboot,
            Succeeded => Standing::Installed,
            Failed | RollbackFailed => Standing::Failed,
            RolledBack => Standing::RolledBack,
            Expired | Cancelled => Standing::NotStarted,
        }
    }
}

impl Standing {
    /// In the order the pages list hosts by state.
    pub const ALL: [Standing; 6] = [
        Standing::Failed,
        Standing::RolledBack,
        Standing::AwaitingReboot,
        Standing::Running,
        Standing::Installed,
        Standing::NotStarted,
    ];

    /// The stored state string's standing; `None` for a state this build does not know.
    pub fn of(state: &str) -> Option<Standing> {
        JobState::parse(state).map(JobState::standing)
    }

    /// The words the pages and the CLI print.
    pub fn label(self) -> &'static str {
        match self {
            Standing::Running => "running",
            Standing::AwaitingReboot => "waiting for reboot",
            Standing::Installed => "installed",
            Standing::Failed => "failed",
            Standing::RolledBack => "rolled back",
            Standing::NotStarted => "not started",
        }
    }

    /// The name in JSON and in CSS classes (`awaiting_reboot`).
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Running => "running",
            Standing::AwaitingReboot => "awaiting_reboot",
            Standing::Installed => "installed",
            Standing::Failed => "failed",
            Standing::RolledBack => "rolled_back",
            Standing::NotStarted => "not_started",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reboot_pending_job_is_waiting_for_its_reboot_not_running() {
        assert_eq!(JobState::RebootPending.standing(), Standing::AwaitingReboot);
        assert_eq!(
            Standing::of("reboot_pending").unwrap().label(),
            "waiting for reboot"
        );
        // Every state has exactly one standing, and only `succeeded` is installed.
        for s in JobState::ALL {
            assert_eq!(
                s.standing() == Standing::Installed,
                s == JobState::Succeeded,
                "{s}"
            );
            // Running means the agent is still at it.
            assert_eq!(
                s.standing() == Standing::Running,
                s.is_open() && s != JobState::RebootPending,
                "{s}"
            );
        }
        assert_eq!(Standing::of("nonsense"), None);
    }
}
