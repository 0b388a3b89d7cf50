//! Jobs: one patch on one host (DESIGN §3 "Agent protocol").
//!
//! A job carries a ticket: a DSSE envelope of type [`TICKET_TYPE`] signed by the
//! appliance's ed25519 key, naming the host, the patch, its artifacts (sha256, size),
//! the install method and the window. The agent verifies it with the key it pinned at
//! enrollment. Agents report state changes in their check-ins; [`apply_events`] accepts
//! only a host's own jobs and legal transitions, and ignores an event it already has
//! (same job and state), so a retried report is applied once.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use jiff::Timestamp;
use rand::RngCore;
use rusqlite::{Connection, Transaction};
use serde::{Deserialize, Serialize};

use super::{FleetError, invalid};
use crate::audit::{self, NewEntry};
use crate::db::jobs::{self as q, JobRow};
use crate::feed::catalog::{Artifact, InstallMethod, PatchEntry, PatchKind};
use crate::trust::dsse::Envelope;
use crate::trust::keys::Ed25519Key;

/// The DSSE payload type of a job ticket.
pub const TICKET_TYPE: &str = "application/vnd.patchward.job+json";

/// At most this many bytes of a step's output are kept per event.
pub const MAX_OUTPUT: usize = 64 * 1024;

/// At most this many events in one check-in.
pub const MAX_EVENTS: usize = 256;

/// A job's state (DESIGN §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Offered,
    Downloading,
    Downloaded,
    Installing,
    Verifying,
    Succeeded,
    Failed,
    RollingBack,
    RolledBack,
    RollbackFailed,
    RebootPending,
    Expired,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 13] = [
        JobState::Offered,
        JobState::Downloading,
        JobState::Downloaded,
        JobState::Installing,
        JobState::Verifying,
        JobState::Succeeded,
        JobState::Failed,
        JobState::RollingBack,
        JobState::RolledBack,
        JobState::RollbackFailed,
        JobState::RebootPending,
        JobState::Expired,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Offered => "offered",
            JobState::Downloading => "downloading",
            JobState::Downloaded => "downloaded",
            JobState::Installing => "installing",
            JobState::Verifying => "verifying",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::RollingBack => "rolling_back",
            JobState::RolledBack => "rolled_back",
            JobState::RollbackFailed => "rollback_failed",
            JobState::RebootPending => "reboot_pending",
            JobState::Expired => "expired",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// No transition leaves a final state.
    pub fn is_final(self) -> bool {
        self.next().is_empty()
    }

    /// Still the agent's business: not final, and not `failed` (whose only way on,
    /// `rolling_back`, the agent reports together with it).
    pub fn is_open(self) -> bool {
        !self.is_final() && self != JobState::Failed
    }

    /// The states a job may move to from `self`.
    pub fn next(self) -> &'static [JobState] {
        use JobState::*;
        match self {
            Offered => &[Downloading, Failed, Expired, Cancelled],
            Downloading => &[Downloaded, Failed, Cancelled],
            // `rolling_back` straight after the download: a rollback job.
            Downloaded => &[Installing, RollingBack, Failed, Expired, Cancelled],
            Installing => &[Verifying, Failed],
            Verifying => &[Succeeded, RebootPending, Failed],
            RebootPending => &[Succeeded, Failed],
            Failed => &[RollingBack],
            RollingBack => &[RolledBack, RollbackFailed],
            Succeeded | RolledBack | RollbackFailed | Expired | Cancelled => &[],
        }
    }

    pub fn can_go_to(self, to: JobState) -> bool {
        self.next().contains(&to)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The signed ticket's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ticket {
    pub job_id: String,
    pub host_id: String,
    pub feed: String,
    pub patch_id: String,
    /// The patch's catalog title and kind, for the steps' environment
    /// (`agent::step_env`). Absent from tickets issued before they were added.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<PatchKind>,
    pub artifacts: Vec<Artifact>,
    pub method: InstallMethod,
    pub not_before: Option<Timestamp>,
    pub latest_start: Option<Timestamp>,
    pub reboot: bool,
    pub est_minutes: u32,
    pub needs_backup: bool,
    /// The agent runs the archive's `health` executable after `verify` (and after the
    /// reboot, for patches that reboot); the job succeeds only if it passes, else it is
    /// rolled back. Set for classes whose rules ask for it (application). Absent from
    /// tickets that do not need it, so older tickets read the same.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub health_check: bool,
    /// Set on a rollback job (`patchward rollout rollback`): the agent does not install,
    /// it runs the patch's rollback (the archive's `rollback` executable, or for apt the
    /// versions its journal recorded before job `rollback_of`), then reports
    /// `rolling_back` and `rolled_back` or `rollback_failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<String>,
    pub issued: Timestamp,
}

impl Ticket {
    pub fn sign(&self, key: &Ed25519Key) -> Envelope {
        let body = serde_json::to_vec(self).expect("a ticket serialises");
        Envelope::sign(TICKET_TYPE, &body, &[key])
    }
}

/// Why an agent refuses a ticket.
#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    #[error("the ticket is not a valid signed envelope from the appliance: {0}")]
    Signature(crate::trust::error::TrustError),
    #[error("the ticket's payload is malformed: {0}")]
    Malformed(String),
    #[error("the ticket is for host {got}, not this host ({expected})")]
    WrongHost { expected: String, got: String },
}

// The cause is part of the message above, so it is not also exposed as `source()`
// (a chain printer would name it twice); hence these by hand instead of `#[from]`.
impl From<crate::trust::error::TrustError> for TicketError {
    fn from(e: crate::trust::error::TrustError) -> Self {
        TicketError::Signature(e)
    }
}

/// Verifies a ticket envelope against the pinned appliance key and checks that it is
/// for `host_id`. Only then is the payload parsed.
pub fn verify_ticket(
    envelope: &Envelope,
    appliance: &VerifyingKey,
    host_id: &str,
) -> Result<Ticket, TicketError> {
    let id = crate::trust::keys::key_id(appliance);
    let trusted = BTreeMap::from([(id.clone(), *appliance)]);
    let body = envelope.verify(TICKET_TYPE, &trusted, &[id], 1)?;
    let t: Ticket =
        serde_json::from_slice(&body).map_err(|e| TicketError::Malformed(e.to_string()))?;
    // The agent names files after the job id.
    if t.job_id.is_empty()
        || t.job_id.len() > 64
        || !t
            .job_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(TicketError::Malformed(format!(
            "job id {:?} is not 1-64 of A-Z a-z 0-9 - _",
            t.job_id
        )));
    }
    if t.host_id != host_id {
        return Err(TicketError::WrongHost {
            expected: host_id.to_string(),
            got: t.host_id,
        });
    }
    Ok(t)
}

/// What `patchward deploy` asks for.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// `ID` or `FEED:ID`.
    pub patch: String,
    /// Host id or hostname.
    pub host: String,
    pub not_before: Option<Timestamp>,
    pub latest_start: Option<Timestamp>,
    /// The patch's class requires the application health check (policy classes).
    pub health_check: bool,
    /// A rollback job: undo what job `rollback_of` installed (`rollout rollback`).
    pub rollback_of: Option<String>,
}

fn new_job_id() -> String {
    let mut b = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("j-{}", hex::encode(b))
}

pub fn find_patch(conn: &Connection, needle: &str) -> Result<(String, PatchEntry), FleetError> {
    let (feed, id) = match needle.split_once(':') {
        Some((f, i)) if !f.is_empty() && !f.contains('/') => (Some(f), i),
        _ => (None, needle),
    };
    let mut found = q::patch_entries(conn, id)?;
    if found.is_empty() && feed.is_some() {
        // The id itself may contain ':'.
        found = q::patch_entries(conn, needle)?;
    } else if let Some(f) = feed {
        found.retain(|(feed, _)| feed == f);
    }
    match found.len() {
        0 => {
            let keys = q::patch_keys(conn)?;
            let hint = crate::suggest::patch_hint(
                needle,
                keys.iter().map(|(f, i)| (f.as_str(), i.as_str())),
            );
            Err(FleetError::NoSuchPatch(needle.to_string(), hint))
        }
        1 => {
            let (feed, entry) = found.remove(0);
            Ok((feed, serde_json::from_str(&entry)?))
        }
        _ => Err(FleetError::AmbiguousPatch(
            needle.to_string(),
            found
                .iter()
                .map(|(f, _)| f.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// One line of `patchward jobs list`.
#[derive(Debug, Clone, Serialize)]
pub struct JobSummary {
    pub id: String,
    pub host_id: String,
    /// The host's name, which the text listing shows (the id stays in the JSON).
    pub hostname: String,
    pub feed: String,
    pub patch_id: String,
    pub state: String,
    pub created_at: String,
    pub updated_at: String,
    pub events: Vec<RecordedEvent>,
}

/// A job event as an agent reports it (the wire type). `at` is the host's own clock:
/// the appliance keeps it as [`RecordedEvent::host_at`] for people to read and dates
/// the event with its own clock ([`apply_events`]); a host's clock decides nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobEvent {
    pub job_id: String,
    pub state: JobState,
    pub at: Timestamp,
    #[serde(default)]
    pub output: String,
}

/// A job event as stored and listed: `at` is when the appliance recorded it (its
/// `Clock`), `host_at` what the reporting host's clock said (none for events the
/// appliance made itself: offered, cancelled, expired).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedEvent {
    pub job_id: String,
    pub state: JobState,
    pub at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_at: Option<Timestamp>,
    pub output: String,
}

/// Creates a job in state `offered` with its signed ticket (audited). The patch must be
/// in a current catalog and the host enrolled and not revoked.
pub fn create(
    tx: &Transaction<'_>,
    now: Timestamp,
    key: &Ed25519Key,
    req: &NewJob,
    actor: &str,
) -> Result<(JobRow, Ticket), FleetError> {
    let host = super::hosts::find(tx, &req.host)?;
    if host.revoked_at.is_some() {
        return Err(FleetError::Revoked(host.id));
    }
    if let (Some(a), Some(b)) = (req.not_before, req.latest_start)
        && b < a
    {
        return Err(invalid("latest_start", "is before not_before"));
    }
    let (feed, entry) = find_patch(tx, &req.patch)?;
    let ticket = Ticket {
        job_id: new_job_id(),
        host_id: host.id.clone(),
        feed: feed.clone(),
        patch_id: entry.id.clone(),
        title: entry.title.clone(),
        kind: Some(entry.kind),
        artifacts: entry.artifacts.clone(),
        method: entry.install,
        not_before: req.not_before,
        latest_start: req.latest_start,
        reboot: entry.reboot,
        est_minutes: entry.est_minutes,
        needs_backup: entry.needs_backup(),
        health_check: req.health_check,
        rollback_of: req.rollback_of.clone(),
        issued: now,
    };
    let at = now.to_string();
    let row = JobRow {
        id: ticket.job_id.clone(),
        host_id: host.id.clone(),
        feed,
        patch_id: entry.id.clone(),
        state: JobState::Offered.as_str().to_string(),
        ticket: ticket.sign(key).to_json(),
        created_at: at.clone(),
        updated_at: at.clone(),
    };
    q::insert_job(tx, &row)?;
    q::insert_job_artifacts(
        tx,
        &row.id,
        &row.host_id,
        ticket.artifacts.iter().map(|a| a.sha256.as_str()),
    )?;
    q::insert_event(tx, &row.id, JobState::Offered.as_str(), &at, None, "")?;
    audit::append(
        tx,
        now,
        &NewEntry {
            actor,
            action: "job.created",
            subject: &row.id,
            details: serde_json::json!({
                "host": host.id, "hostname": host.hostname, "feed": row.feed,
                "patch": row.patch_id, "not_before": req.not_before,
                "latest_start": req.latest_start, "rollback_of": req.rollback_of,
            }),
        },
    )?;
    Ok((row, ticket))
}

/// Jobs (only `host`'s, by id or hostname, when given), with their events.
pub fn list(conn: &Connection, host: Option<&str>) -> Result<Vec<JobSummary>, FleetError> {
    let host_id = match host {
        Some(h) => Some(super::hosts::find(conn, h)?.id),
        None => None,
    };
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    q::list_jobs(conn, host_id.as_deref())?
        .into_iter()
        .map(|j| {
            if !names.contains_key(&j.host_id) {
                let name = crate::db::fleet::host(conn, &j.host_id)?
                    .map_or_else(|| j.host_id.clone(), |h| h.hostname);
                names.insert(j.host_id.clone(), name);
            }
            let host_times = q::event_host_times(conn, &j.id)?;
            let events = q::events(conn, &j.id)?
                .into_iter()
                .filter_map(|(seq, state, at, output)| {
                    Some(RecordedEvent {
                        job_id: j.id.clone(),
                        state: JobState::parse(&state)?,
                        at: at.parse().ok()?,
                        host_at: host_times.get(&seq).and_then(|t| t.parse().ok()),
                        output,
                    })
                })
                .collect();
            Ok(JobSummary {
                id: j.id,
                hostname: names[&j.host_id].clone(),
                host_id: j.host_id,
                feed: j.feed,
                patch_id: j.patch_id,
                state: j.state,
                created_at: j.created_at,
                updated_at: j.updated_at,
                events,
            })
        })
        .collect()
}

/// The tickets of `host_id`'s open jobs, oldest first (raw envelope JSON).
pub fn open_tickets(conn: &Connection, host_id: &str) -> Result<Vec<Envelope>, FleetError> {
    let open: Vec<&str> = JobState::ALL
        .into_iter()
        .filter(|s| s.is_open())
        .map(JobState::as_str)
        .collect();
    q::jobs_in_states(conn, host_id, &open)?
        .into_iter()
        .map(|j| {
            Envelope::from_json(&j.ticket)
                .map_err(|e| invalid("stored ticket", format!("job {}: {e}", j.id)))
        })
        .collect()
}

/// Applies `host_id`'s reported events in order, received at `now` (the appliance's
/// clock). Every event is dated `now`: the job's `updated_at`, which the rollout gate's
/// soak and the SLA read, and the audit entry's time, so a host whose clock is wrong
/// (or lies) cannot shorten a soak or back-date a report. The host's own `at` is kept
/// beside it as `host_at`, informational only. Another host's job is refused
/// (`NotYourJob`), an illegal transition too (`IllegalTransition`); the caller's
/// transaction then rolls back, so nothing changes. An event whose (job, state) is
/// already recorded is skipped. Returns how many events were new.
pub fn apply_events(
    tx: &Transaction<'_>,
    now: Timestamp,
    host_id: &str,
    events: &[JobEvent],
) -> Result<usize, FleetError> {
    let at = now.to_string();
    if events.len() > MAX_EVENTS {
        return Err(FleetError::TooLarge(format!(
            "{} job events (at most {MAX_EVENTS})",
            events.len()
        )));
    }
    let mut applied = 0;
    for e in events {
        let Some(job) = q::job(tx, &e.job_id)? else {
            return Err(FleetError::NotYourJob(e.job_id.clone()));
        };
        if job.host_id != host_id {
            return Err(FleetError::NotYourJob(e.job_id.clone()));
        }
        if q::has_event(tx, &job.id, e.state.as_str())? {
            continue;
        }
        let from = JobState::parse(&job.state)
            .ok_or_else(|| invalid("stored job state", job.state.clone()))?;
        // The appliance cancelled or expired the job, but the host had already started
        // it (offline, or in flight): what the host did is the truth about the host.
        let overtaken = matches!(from, JobState::Cancelled | JobState::Expired)
            && !matches!(
                e.state,
                JobState::Offered | JobState::Cancelled | JobState::Expired
            );
        if overtaken {
            audit::append(
                tx,
                now,
                &NewEntry {
                    actor: &format!("host:{host_id}"),
                    action: "job.reported_after_close",
                    subject: &job.id,
                    details: serde_json::json!({
                        "was": from.as_str(), "reported": e.state.as_str(),
                        "host_at": e.at,
                    }),
                },
            )?;
        } else if !from.can_go_to(e.state) {
            return Err(FleetError::IllegalTransition {
                job: job.id,
                from: from.to_string(),
                to: e.state.to_string(),
            });
        }
        let output = tail(&e.output, MAX_OUTPUT);
        let host_at = e.at.to_string();
        q::insert_event(tx, &job.id, e.state.as_str(), &at, Some(&host_at), output)?;
        q::set_state(tx, &job.id, e.state.as_str(), &at)?;
        applied += 1;
    }
    Ok(applied)
}

/// Cancels a job the host has not started installing (`offered`, `downloading`,
/// `downloaded`); audited with the actor and reason. The ticket stops being offered;
/// an agent that had already started installing reports what it did, and that report
/// is accepted (see [`apply_events`]).
pub fn cancel(
    tx: &Transaction<'_>,
    now: Timestamp,
    job_id: &str,
    actor: &str,
    reason: &str,
) -> Result<JobRow, FleetError> {
    let job = q::job(tx, job_id)?.ok_or_else(|| FleetError::NoSuchJob(job_id.to_string()))?;
    let from = JobState::parse(&job.state)
        .ok_or_else(|| invalid("stored job state", job.state.clone()))?;
    if !from.can_go_to(JobState::Cancelled) {
        return Err(invalid(
            "job",
            format!(
                "{job_id} is {from}; only offered, downloading or downloaded jobs can be \
                 cancelled (an install may be under way)"
            ),
        ));
    }
    let at = now.to_string();
    let output = format!("cancelled by {actor}: {reason}");
    q::insert_event(tx, job_id, JobState::Cancelled.as_str(), &at, None, &output)?;
    q::set_state(tx, job_id, JobState::Cancelled.as_str(), &at)?;
    audit::append(
        tx,
        now,
        &NewEntry {
            actor,
            action: "job.cancelled",
            subject: job_id,
            details: serde_json::json!({
                "host": job.host_id, "patch": job.patch_id, "was": from.as_str(),
                "reason": reason,
            }),
        },
    )?;
    Ok(q::job(tx, job_id)?.expect("the job was just updated"))
}

/// The payload of a stored ticket (signed by this appliance; not verified again).
fn stored_ticket(job: &JobRow) -> Result<Ticket, FleetError> {
    let env = Envelope::from_json(&job.ticket)
        .map_err(|e| invalid("stored ticket", format!("job {}: {e}", job.id)))?;
    Ok(serde_json::from_slice(&env.payload)?)
}

/// Expires every job still `offered` whose `latest_start` passed more than `grace` ago
/// (the host never started it; `grace` covers a start just before the deadline whose
/// report is still on its way). Audited; returns the expired job ids.
pub fn expire_overdue(
    tx: &Transaction<'_>,
    now: Timestamp,
    grace: jiff::SignedDuration,
) -> Result<Vec<String>, FleetError> {
    let mut expired = Vec::new();
    for job in q::jobs_in_state(tx, JobState::Offered.as_str())? {
        let Some(latest) = stored_ticket(&job)?.latest_start else {
            continue;
        };
        if now.duration_since(latest) <= grace {
            continue;
        }
        let at = now.to_string();
        let output = format!("the host did not start the job before its latest start {latest}");
        q::insert_event(tx, &job.id, JobState::Expired.as_str(), &at, None, &output)?;
        q::set_state(tx, &job.id, JobState::Expired.as_str(), &at)?;
        audit::append(
            tx,
            now,
            &NewEntry {
                actor: "patchward",
                action: "job.expired",
                subject: &job.id,
                details: serde_json::json!({
                    "host": job.host_id, "patch": job.patch_id, "latest_start": latest,
                }),
            },
        )?;
        expired.push(job.id);
    }
    Ok(expired)
}

/// The last `max` bytes of `s` (on a character boundary).
pub fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = s.len() - max;
    while !s.is_char_boundary(cut) {
        cut += 1;
    }
    &s[cut..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::hosts::tests_support::enrolled;
    use JobState::*;

    fn ticket(host: &str) -> Ticket {
        Ticket {
            job_id: "j-1".into(),
            host_id: host.into(),
            feed: "f".into(),
            patch_id: "p".into(),
            title: String::new(),
            kind: None,
            artifacts: vec![],
            method: InstallMethod::Script,
            not_before: None,
            latest_start: None,
            reboot: false,
            est_minutes: 1,
            needs_backup: false,
            health_check: false,
            rollback_of: None,
            issued: "2026-11-27T10:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn ticket_sign_verify_tamper_wrong_host_wrong_key() {
        let key = Ed25519Key::generate(&mut rand::rngs::OsRng);
        let env = ticket("h-1").sign(&key);
        let t = verify_ticket(&env, &key.public(), "h-1").unwrap();
        assert_eq!(t, ticket("h-1"));
        // Wrong host.
        let e = verify_ticket(&env, &key.public(), "h-2").unwrap_err();
        assert!(matches!(e, TicketError::WrongHost { .. }), "{e}");
        // Tampered payload (host swapped after signing).
        let mut bad = env.clone();
        bad.payload = serde_json::to_vec(&ticket("h-2")).unwrap();
        let e = verify_ticket(&bad, &key.public(), "h-2").unwrap_err();
        assert!(matches!(e, TicketError::Signature(_)), "{e}");
        // Signed by another key.
        let other = Ed25519Key::generate(&mut rand::rngs::OsRng);
        let e = verify_ticket(&ticket("h-1").sign(&other), &key.public(), "h-1").unwrap_err();
        assert!(matches!(e, TicketError::Signature(_)), "{e}");
        // A job id that could name a path outside the agent's work directory.
        let mut t = ticket("h-1");
        t.job_id = "../../etc".into();
        let e = verify_ticket(&t.sign(&key), &key.public(), "h-1").unwrap_err();
        assert!(matches!(e, TicketError::Malformed(_)), "{e}");
        // Another payload type with the same key.
        let body = serde_json::to_vec(&ticket("h-1")).unwrap();
        let cat = Envelope::sign("application/vnd.patchward.catalog+json", &body, &[&key]);
        assert!(verify_ticket(&cat, &key.public(), "h-1").is_err());
    }

    #[test]
    fn transitions() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
        }
        assert!(Offered.can_go_to(Downloading));
        assert!(Installing.can_go_to(Verifying));
        assert!(Verifying.can_go_to(Succeeded));
        assert!(Failed.can_go_to(RollingBack));
        assert!(RollingBack.can_go_to(RollbackFailed));
        assert!(!Offered.can_go_to(Succeeded));
        assert!(!Installing.can_go_to(Expired));
        assert!(!Downloaded.can_go_to(Verifying));
        for f in [Succeeded, RolledBack, RollbackFailed, Expired, Cancelled] {
            assert!(f.is_final());
            assert!(JobState::ALL.iter().all(|t| !f.can_go_to(*t)));
        }
        assert!(!Failed.is_open() && !Failed.is_final());
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("aé", 1), "");
    }

    fn ev(job: &str, state: JobState) -> JobEvent {
        JobEvent {
            job_id: job.into(),
            state,
            at: "2026-11-27T10:05:00Z".parse().unwrap(),
            output: String::new(),
        }
    }

    #[test]
    fn events_own_jobs_legal_and_idempotent() {
        let d = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&d.path().join("t.db"), Default::default()).unwrap();
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let hk = Ed25519Key::generate(&mut rand::rngs::OsRng);
        let host = enrolled(&db, now, &hk);
        let other = enrolled(&db, now, &Ed25519Key::generate(&mut rand::rngs::OsRng));
        let key = Ed25519Key::generate(&mut rand::rngs::OsRng);
        // Jobs inserted directly (no feed in this test); `create` is covered end to end.
        for (id, h) in [("j-a", &host), ("j-b", &other)] {
            db.write_blocking(|tx| {
                let mut t = ticket(h);
                t.job_id = id.into();
                q::insert_job(
                    tx,
                    &JobRow {
                        id: id.into(),
                        host_id: h.to_string(),
                        feed: "f".into(),
                        patch_id: "p".into(),
                        state: "offered".into(),
                        ticket: t.sign(&key).to_json(),
                        created_at: now.to_string(),
                        updated_at: now.to_string(),
                    },
                )
            })
            .unwrap();
        }
        let apply = |evs: Vec<JobEvent>| db.write_blocking(|tx| apply_events(tx, now, &host, &evs));
        let state = |id: &str| db.read_blocking(|c| q::job(c, id)).unwrap().unwrap().state;
        assert_eq!(
            db.read_blocking(|c| open_tickets(c, &host)).unwrap().len(),
            1
        );
        // Another host's job: refused, and the legal event before it is not kept.
        let e = apply(vec![ev("j-a", Downloading), ev("j-b", Downloading)]).unwrap_err();
        assert!(matches!(e, FleetError::NotYourJob(_)), "{e}");
        assert_eq!(state("j-a"), "offered");
        assert_eq!(state("j-b"), "offered");
        let e = apply(vec![ev("j-nope", Downloading)]).unwrap_err();
        assert!(matches!(e, FleetError::NotYourJob(_)), "{e}");
        // Illegal transition: refused, nothing changes.
        let e = apply(vec![ev("j-a", Downloading), ev("j-a", Succeeded)]).unwrap_err();
        assert!(matches!(e, FleetError::IllegalTransition { .. }), "{e}");
        assert_eq!(state("j-a"), "offered");
        // Legal, then the same report again: applied once.
        let run = vec![
            ev("j-a", Downloading),
            ev("j-a", Downloaded),
            ev("j-a", Installing),
        ];
        assert_eq!(apply(run.clone()).unwrap(), 3);
        assert_eq!(apply(run).unwrap(), 0);
        assert_eq!(state("j-a"), "installing");
        assert_eq!(
            apply(vec![ev("j-a", Verifying), ev("j-a", Succeeded)]).unwrap(),
            2
        );
        // Final is final.
        let e = apply(vec![ev("j-a", Failed)]).unwrap_err();
        assert!(matches!(e, FleetError::IllegalTransition { .. }), "{e}");
        assert_eq!(state("j-a"), "succeeded");
        assert!(
            db.read_blocking(|c| open_tickets(c, &host))
                .unwrap()
                .is_empty()
        );
        let evs = db.read_blocking(|c| q::events(c, "j-a")).unwrap();
        assert_eq!(evs.len(), 5);
    }

    #[test]
    fn cancel_expire_and_a_late_report_wins() {
        let d = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&d.path().join("t.db"), Default::default()).unwrap();
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let host = enrolled(&db, now, &Ed25519Key::generate(&mut rand::rngs::OsRng));
        let key = Ed25519Key::generate(&mut rand::rngs::OsRng);
        let insert = |id: &str, state: &str, latest: Option<&str>| {
            db.write_blocking(|tx| {
                let mut t = ticket(&host);
                t.job_id = id.into();
                t.latest_start = latest.map(|l| l.parse().unwrap());
                q::insert_job(
                    tx,
                    &JobRow {
                        id: id.into(),
                        host_id: host.clone(),
                        feed: "f".into(),
                        patch_id: "p".into(),
                        state: state.into(),
                        ticket: t.sign(&key).to_json(),
                        created_at: now.to_string(),
                        updated_at: now.to_string(),
                    },
                )
            })
            .unwrap();
        };
        insert("j-open", "offered", None);
        insert("j-busy", "installing", None);
        insert("j-late", "offered", Some("2026-11-27T09:00:00Z"));
        insert("j-soon", "offered", Some("2026-11-27T09:55:00Z"));
        let state = |id: &str| db.read_blocking(|c| q::job(c, id)).unwrap().unwrap().state;
        let audits = || {
            db.read_blocking(|c| crate::audit::recent(c, 1000))
                .unwrap()
                .len()
        };

        // Cancelling: unknown job and an install under way are refused, nothing changes.
        let before = audits();
        let e = db
            .write_blocking(|tx| cancel(tx, now, "j-nope", "alice", "x"))
            .unwrap_err();
        assert!(matches!(e, FleetError::NoSuchJob(_)), "{e}");
        let e = db
            .write_blocking(|tx| cancel(tx, now, "j-busy", "alice", "x"))
            .unwrap_err();
        assert!(e.to_string().contains("is installing"), "{e}");
        assert_eq!((state("j-busy"), audits()), ("installing".into(), before));
        let row = db
            .write_blocking(|tx| cancel(tx, now, "j-open", "alice", "wrong patch"))
            .unwrap();
        assert_eq!(row.state, "cancelled");
        assert_eq!(audits(), before + 1);
        assert!(
            db.read_blocking(|c| q::events(c, "j-open"))
                .unwrap()
                .iter()
                .any(|(_, s, _, o)| s == "cancelled" && o == "cancelled by alice: wrong patch")
        );

        // Expiry: only offered jobs past latest_start + grace.
        let grace = jiff::SignedDuration::from_mins(10);
        let expired = db
            .write_blocking(|tx| expire_overdue(tx, now, grace))
            .unwrap();
        assert_eq!(expired, ["j-late"]);
        assert_eq!(state("j-soon"), "offered");
        assert_eq!(state("j-open"), "cancelled");
        let again = db
            .write_blocking(|tx| expire_overdue(tx, now, grace))
            .unwrap();
        assert!(again.is_empty());

        // The host had started the cancelled job before it heard: its report is taken.
        let apply = |evs: Vec<JobEvent>| db.write_blocking(|tx| apply_events(tx, now, &host, &evs));
        assert_eq!(
            apply(vec![
                ev("j-open", Downloading),
                ev("j-open", Downloaded),
                ev("j-open", Installing),
                ev("j-open", Verifying),
                ev("j-open", Succeeded)
            ])
            .unwrap(),
            5
        );
        assert_eq!(state("j-open"), "succeeded");
        // A host cannot re-open or re-cancel through a report.
        let e = apply(vec![ev("j-late", Cancelled)]).unwrap_err();
        assert!(matches!(e, FleetError::IllegalTransition { .. }), "{e}");
        assert_eq!(state("j-late"), "expired");
        assert_eq!(e.code(), "illegal_transition");
        assert_eq!(e.job(), Some("j-late"));
    }
    #[test]
    fn events_are_dated_by_the_appliance_and_keep_the_host_time_aside() {
        let d = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&d.path().join("t.db"), Default::default()).unwrap();
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let host = enrolled(&db, now, &Ed25519Key::generate(&mut rand::rngs::OsRng));
        let key = Ed25519Key::generate(&mut rand::rngs::OsRng);
        for id in ["j-past", "j-future"] {
            db.write_blocking(|tx| {
                let mut t = ticket(&host);
                t.job_id = id.into();
                q::insert_job(
                    tx,
                    &JobRow {
                        id: id.into(),
                        host_id: host.clone(),
                        feed: "f".into(),
                        patch_id: "p".into(),
                        state: "offered".into(),
                        ticket: t.sign(&key).to_json(),
                        created_at: now.to_string(),
                        updated_at: now.to_string(),
                    },
                )
            })
            .unwrap();
        }
        // The appliance's own events (cancelled here) carry no host time.
        db.write_blocking(|tx| {
            q::insert_job(
                tx,
                &JobRow {
                    id: "j-x".into(),
                    ..q::job(tx, "j-past")?.unwrap()
                },
            )
        })
        .unwrap();
        db.write_blocking(|tx| cancel(tx, now, "j-x", "alice", "not needed"))
            .unwrap();
        let received: Timestamp = "2026-11-27T11:00:00Z".parse().unwrap();
        for (job, host_at) in [
            ("j-past", "1970-01-01T00:00:00Z"),
            ("j-future", "2100-01-01T00:00:00Z"),
        ] {
            let evs: Vec<JobEvent> = [Downloading, Downloaded, Installing, Verifying, Succeeded]
                .into_iter()
                .map(|state| JobEvent {
                    at: host_at.parse().unwrap(),
                    ..ev(job, state)
                })
                .collect();
            let n = db
                .write_blocking(|tx| apply_events(tx, received, &host, &evs))
                .unwrap();
            assert_eq!(n, 5);
            let row = db.read_blocking(|c| q::job(c, job)).unwrap().unwrap();
            assert_eq!(row.updated_at, received.to_string(), "{job}");
        }
        let mut listed = db.read_blocking(|c| list(c, Some(&host))).unwrap();
        let own = listed.iter().position(|j| j.id == "j-x").unwrap();
        let own = listed.remove(own);
        assert_eq!(own.events.len(), 1);
        assert_eq!((own.events[0].at, own.events[0].host_at), (now, None));
        assert_eq!(listed.len(), 2);
        for j in &listed {
            let want_host_at: Timestamp = if j.id == "j-past" {
                "1970-01-01T00:00:00Z".parse().unwrap()
            } else {
                "2100-01-01T00:00:00Z".parse().unwrap()
            };
            assert_eq!(j.events.len(), 5);
            for e in &j.events {
                assert_eq!(e.at, received, "{e:?}");
                assert_eq!(e.host_at, Some(want_host_at), "{e:?}");
            }
        }
    }
}
