//! One job as a person reads it when something went wrong: its host by name, its
//! patch, and every state it reached in order, each with the step that produced the
//! event's output, that step's exit, the time and the output itself (the agent keeps
//! stdout and stderr interleaved in the order they were written, see
//! `agent::script::run_command`). The job page and nothing else reads this; it only
//! reads what `apply_events` stored.
//!
//! Which step produced an event's output follows from the agent's sequence (DESIGN §3):
//! the install step's output arrives with `verifying`, the verify step's with
//! `reboot_pending` or `succeeded`, the rollback's with `rolled_back` or
//! `rollback_failed`, and a failure names its step ("install failed"). The agent marks a
//! step that did not exit 0 with `[patchward-agent: STEP exited with STATUS]`, `timed
//! out` or `cannot start`; an event that moved on without such a mark ran its step to
//! exit 0.

use rusqlite::Connection;

use super::jobs::{JobState, tail};
use super::standing::Standing;
use crate::db::views::{self, JobLine};
use crate::error::DbError;

/// How much of one event's output the page shows (its end, where errors are).
pub const EXCERPT: usize = 16 * 1024;

/// One state the job reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepView {
    pub seq: i64,
    pub state: String,
    /// `None` for a state this build does not know.
    pub standing: Option<Standing>,
    pub at: String,
    /// The step whose output this event carries (`install`, `verify`, ...).
    pub step: Option<String>,
    /// How that step ended: `0`, `3`, `signal: 9 (SIGKILL)`, `timed out after 600 s`,
    /// `could not start`; `None` when the event carries no step.
    pub exit: Option<String>,
    /// The end of the output (at most [`EXCERPT`] bytes).
    pub output: String,
    /// The output's full length when the excerpt is shorter.
    pub cut_from: Option<usize>,
}

/// A job with its events.
#[derive(Debug, Clone)]
pub struct JobDetail {
    pub job: JobLine,
    pub standing: Option<Standing>,
    pub steps: Vec<StepView>,
}

/// Reads job `id`; `None` when there is no such job.
pub fn load(conn: &Connection, id: &str) -> Result<Option<JobDetail>, DbError> {
    let Some(job) = views::job(conn, id)? else {
        return Ok(None);
    };
    let steps = crate::db::jobs::events(conn, id)?
        .into_iter()
        .map(|(seq, state, at, output)| step_view(seq, state, at, &output))
        .collect();
    Ok(Some(JobDetail {
        standing: Standing::of(&job.state),
        job,
        steps,
    }))
}

fn step_view(seq: i64, state: String, at: String, output: &str) -> StepView {
    let parsed = JobState::parse(&state);
    let marked = mark(output);
    let step = marked
        .as_ref()
        .map(|(s, _)| s.clone())
        .or_else(|| step_of(parsed, output));
    let exit = match (&marked, &step) {
        (Some((_, how)), _) => Some(how.clone()),
        // The agent moved on from the step: it exited 0.
        (None, Some(_)) if parsed.is_some_and(moved_on) => Some("0".into()),
        _ => None,
    };
    let excerpt = tail(output, EXCERPT);
    StepView {
        seq,
        standing: parsed.map(JobState::standing),
        state,
        at,
        step,
        exit,
        cut_from: (excerpt.len() < output.len()).then_some(output.len()),
        output: excerpt.to_string(),
    }
}

/// States the agent reports only after the step before them succeeded.
fn moved_on(s: JobState) -> bool {
    matches!(
        s,
        JobState::Verifying | JobState::RebootPending | JobState::Succeeded | JobState::RolledBack
    )
}

/// The step an event's output comes from, by the agent's sequence.
fn step_of(state: Option<JobState>, output: &str) -> Option<String> {
    let named = |s: &str| Some(s.to_string());
    match state? {
        JobState::Verifying => named("install"),
        JobState::RebootPending | JobState::Succeeded => named("verify"),
        JobState::RolledBack | JobState::RollbackFailed => named("rollback"),
        // "install failed", "backup failed; not installed", "verify failed".
        JobState::Failed => output.lines().find_map(|l| {
            let head = l.split(';').next()?.trim();
            let step = head
                .strip_suffix(" failed")
                .or_else(|| head.strip_suffix(" check failed"))?;
            step.split_whitespace().last().map(str::to_string)
        }),
        _ => None,
    }
}

/// The last mark the agent appended for a step that did not exit 0: (step, how).
fn mark(output: &str) -> Option<(String, String)> {
    const PREFIX: &str = "[patchward-agent: ";
    let start = output.rfind(PREFIX)? + PREFIX.len();
    let body = output[start..].split(']').next()?;
    if let Some(rest) = body.strip_prefix("cannot start ") {
        let step = rest.split(':').next()?.trim();
        return Some((step.to_string(), "could not start".into()));
    }
    let (step, how) = body.split_once(' ')?;
    let how = how.strip_prefix("exited with ").unwrap_or(how);
    let how = how.strip_prefix("exit status: ").unwrap_or(how);
    let how = how.split(';').next().unwrap_or(how).trim();
    Some((step.to_string(), how.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_names_its_step_and_how_that_step_exited() {
        let v = |state: &str, out: &str| step_view(1, state.into(), "t".into(), out);
        let s = v("verifying", "installed\n");
        assert_eq!(
            (s.step.as_deref(), s.exit.as_deref()),
            (Some("install"), Some("0"))
        );
        let s = v(
            "failed",
            "install failed\nout\nerr\n[patchward-agent: install exited with exit status: 3]",
        );
        assert_eq!(
            (s.step.as_deref(), s.exit.as_deref()),
            (Some("install"), Some("3"))
        );
        let s = v(
            "failed",
            "verify failed\n[patchward-agent: verify timed out after 600 s; killed]",
        );
        assert_eq!(
            (s.step.as_deref(), s.exit.as_deref()),
            (Some("verify"), Some("timed out after 600 s"))
        );
        let s = v(
            "failed",
            "[patchward-agent: cannot start install: No such file]",
        );
        assert_eq!(s.exit.as_deref(), Some("could not start"));
        let s = v("failed", "backup failed; not installed\n");
        assert_eq!((s.step.as_deref(), s.exit), (Some("backup"), None));
        let s = v("reboot_pending", "ok");
        assert_eq!(
            (s.step.as_deref(), s.exit.as_deref(), s.standing),
            (Some("verify"), Some("0"), Some(Standing::AwaitingReboot))
        );
        // A state change without a step says nothing about one.
        let s = v("downloading", "");
        assert_eq!((s.step, s.exit), (None, None));
    }

    #[test]
    fn long_output_keeps_its_end_and_says_how_long_it_was() {
        let out = format!("{}THE ERROR", "x".repeat(EXCERPT * 2));
        let s = step_view(1, "failed".into(), "t".into(), &out);
        assert!(s.output.ends_with("THE ERROR"));
        assert_eq!(s.output.len(), EXCERPT);
        assert_eq!(s.cut_from, Some(out.len()));
    }
}
