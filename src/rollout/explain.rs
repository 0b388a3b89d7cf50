//! `patchward explain` and the host page's "why not yet": [`engine::evaluate`] for
//! each patch that applies to a host (or one asked for by name), as a verdict and a
//! sentence, with "the host is busy with job X" and the SLA deadline.
//!
//! [`engine::evaluate`]: super::engine::evaluate

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde::Serialize;

use super::engine::{Reason, Verdict, evaluate};
use super::{Patch, World};
use crate::fleet::jobs::JobState;
use crate::fleet::standing::Standing;
use crate::policy::{Policy, applicability};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The host's unfinished job, if any (one job at a time).
fn busy_with(world: &World, host: &str) -> Option<(String, String)> {
    world.jobs.iter().find_map(|((feed, id), jobs)| {
        jobs.iter()
            .find(|j| j.host_id == host && JobState::parse(&j.state).is_some_and(JobState::is_open))
            .map(|j| (j.id.clone(), format!("{feed}:{id}")))
    })
}

/// One line of `patchward explain`.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub feed: String,
    pub patch: String,
    pub title: String,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The SLA deadline, when one applies, and whether it has passed uninstalled.
    pub sla: Option<crate::policy::SlaStatus>,
    /// The verdict as a sentence.
    pub sentence: String,
}

fn sentence(v: &Verdict) -> String {
    match v {
        Verdict::Offer {
            ring, latest_start, ..
        } => format!(
            "will be offered at the host's next check-in (ring {ring}; it must start by {latest_start})"
        ),
        Verdict::Job { id, state } if Standing::of(state) == Some(Standing::AwaitingReboot) => {
            format!("job {id} installed it and is waiting for the host's reboot ({state})")
        }
        Verdict::Job { id, state } => format!("job {id} is {state}"),
        Verdict::Installed { job } => format!("installed (job {job})"),
        Verdict::Blocked { reason } => format!("not yet: {reason}"),
    }
}

/// Why each patch (or only `patch`) is or is not offered to `host_id`, as of `now`.
/// Patches that do not apply to the host are listed only when asked for by name.
pub fn explain(
    world: &World,
    policy: &Policy,
    host_id: &str,
    patch: Option<&Patch>,
    now: Timestamp,
) -> Vec<Explanation> {
    let Some(host) = world.hosts.get(host_id) else {
        return vec![];
    };
    let busy = busy_with(world, host_id);
    let picked: Vec<&Patch> = match patch {
        Some(p) => vec![p],
        None => world
            .patches
            .iter()
            .filter(|p| applicability(&p.entry, &host.facts).is_ok())
            .collect(),
    };
    let installed: BTreeSet<String> = world.installed_on(host_id);
    picked
        .into_iter()
        .map(|p| {
            let mut verdict = evaluate(world, policy, host, p, now);
            if let (Verdict::Offer { .. }, Some((job, patch))) = (&verdict, &busy) {
                verdict = Verdict::Blocked {
                    reason: Reason::HostBusy {
                        job: job.clone(),
                        patch: patch.clone(),
                    },
                };
            }
            let installed_at = world
                .jobs_of(p)
                .iter()
                .find(|j| j.host_id == host_id && j.state == "succeeded")
                .map(|j| ts(&j.updated_at));
            // Only where the patch is in scope: it applies to the host or the host
            // installed it, and no current patch replaces it.
            let in_scope = installed_at.is_some()
                || (applicability(&p.entry, &host.facts).is_ok()
                    && world.superseded_by(p).is_none());
            let sla = if in_scope && policy.classes.get(p.entry.kind).sla {
                crate::policy::sla::status(p.due(&policy.sla), installed_at, now)
            } else {
                None
            };
            let mut s = sentence(&verdict);
            if let Some(st) = &sla
                && st.overdue
                && !installed.contains(&p.entry.id)
            {
                s.push_str(&format!("; overdue since {}", st.due));
            }
            Explanation {
                feed: p.feed.clone(),
                patch: p.entry.id.clone(),
                title: p.entry.title.clone(),
                verdict,
                sla,
                sentence: s,
            }
        })
        .collect()
}
