//! The agent: enrollment, signed check-ins, and the check-in loop.
//!
//! Local state lives in a state directory (default `/var/lib/patchward-agent`): the host
//! key `host.ed25519` (mode 0600) and `state.json` {server, host_id, appliance_key, ...},
//! both written atomically. Every request after enrollment is signed as described in
//! `fleet::signing`.

pub mod apt;
pub mod archive;
pub mod inventory;
pub mod jobs;
mod retry;
pub mod script;
pub mod step_env;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use jiff::Timestamp;

use crate::clock::{Clock, SystemClock};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::fleet::hosts::{CheckinRequest, CheckinResponse, EnrollRequest, EnrollResponse};
use crate::fleet::inventory::packages_digest;
use crate::fleet::signing;
use crate::trust::keys::Ed25519Key;

pub const DEFAULT_STATE_DIR: &str = "/var/lib/patchward-agent";

/// The largest answer the agent reads from the appliance's API.
pub const MAX_ANSWER_BYTES: u64 = 16 << 20;

/// Errors an operator of the agent sees.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "this agent is already enrolled ({0} exists); remove the state directory to enroll again"
    )]
    AlreadyEnrolled(PathBuf),
    #[error("this agent is not enrolled ({0} missing); run `patchward-agent enroll` first")]
    NotEnrolled(PathBuf),
    #[error(
        "the appliance's key id is {got}, not the expected {expected}; refusing to enroll \
         (check --fingerprint against `patchward keys show` on the appliance)"
    )]
    Fingerprint { expected: String, got: String },
    #[error("the appliance refused the request ({status}): {reason}")]
    Refused {
        status: u16,
        reason: String,
        /// The machine-readable refusal (`FleetError::code`), when given.
        code: Option<String>,
        /// The job the refusal is about, when it is about one.
        job_id: Option<String>,
    },
    #[error("cannot reach the appliance at {url}: {cause}")]
    Http { url: String, cause: reqwest::Error },
    #[error("the appliance's answer is not understood: {0}")]
    Protocol(String),
    #[error("cannot use {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "another patchward-agent is working in {0} right now (it holds agent.lock); \
         try again when it has finished"
    )]
    Busy(PathBuf),
    #[error(transparent)]
    Key(#[from] crate::error::KeyError),
}

/// Holds `<state dir>/agent.lock` exclusively while one check-in and its jobs run, so a
/// `once` from cron and the `run` daemon never use the journal at the same time. The
/// lock goes with the file handle, so a killed agent never leaves it behind.
struct StateLock {
    _file: std::fs::File,
}

impl StateLock {
    fn acquire(dir: &Path) -> Result<Self, AgentError> {
        let path = dir.join("agent.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| AgentError::Io {
                path: path.clone(),
                cause: source,
            })?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Self { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(AgentError::Busy(dir.to_path_buf())),
            Err(e) => Err(AgentError::Io {
                path,
                cause: e.into(),
            }),
        }
    }
}

/// `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentState {
    pub server: String,
    pub host_id: String,
    pub appliance_key: String,
    pub appliance_key_id: String,
    pub poll_seconds: u64,
    /// Reported instead of the kernel's hostname, when set at enrollment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Digest of the last package list the appliance accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages_digest: Option<String>,
}

fn key_path(dir: &Path) -> PathBuf {
    dir.join("host.ed25519")
}
fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AgentError + '_ {
    move |source| AgentError::Io {
        path: path.to_path_buf(),
        cause: source,
    }
}

fn save_state(dir: &Path, st: &AgentState) -> Result<(), AgentError> {
    let p = state_path(dir);
    let json = serde_json::to_vec_pretty(st).map_err(|e| AgentError::Protocol(e.to_string()))?;
    crate::fsutil::write_atomic(&p, &json, 0o600).map_err(io_err(&p))
}

pub fn load_state(dir: &Path) -> Result<AgentState, AgentError> {
    let p = state_path(dir);
    if !p.exists() {
        return Err(AgentError::NotEnrolled(p));
    }
    let text = std::fs::read(&p).map_err(io_err(&p))?;
    serde_json::from_slice(&text).map_err(|e| AgentError::Protocol(format!("{}: {e}", p.display())))
}

fn client() -> reqwest::blocking::Client {
    crate::tls::install_crypto_provider();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("HTTP client with the installed crypto provider")
}

/// Signs a request body (a fresh date on every call).
type Signer<'a> = &'a dyn Fn(&[u8]) -> signing::SignedHeaders;

/// POSTs `body` to `url`; `sign` (when given) signs each attempt afresh. A 429 or 503
/// with `Retry-After` is waited out and resent (`retry`, bounded).
fn post(url: &str, body: Vec<u8>, sign: Option<Signer<'_>>) -> Result<Vec<u8>, AgentError> {
    let http = |source| AgentError::Http {
        url: url.to_string(),
        cause: source,
    };
    let c = client();
    let make = || {
        let mut req = c
            .post(url)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(sign) = sign {
            for (k, v) in sign(&body).pairs() {
                req = req.header(k, v);
            }
        }
        req
    };
    let resp = retry::send(make, &mut std::thread::sleep).map_err(http)?;
    let status = resp.status();
    // The answer is bounded like every other read from outside: a check-in answer is
    // a few KiB of signed tickets, far below the bound.
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(resp, MAX_ANSWER_BYTES + 1),
        &mut bytes,
    )
    .map_err(|e| AgentError::Protocol(format!("cannot read the answer from {url}: {e}")))?;
    if bytes.len() as u64 > MAX_ANSWER_BYTES {
        return Err(AgentError::Protocol(format!(
            "the answer from {url} is larger than {MAX_ANSWER_BYTES} bytes"
        )));
    }
    if !status.is_success() {
        let v = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default();
        let text = |k: &str| v[k].as_str().map(str::to_string);
        return Err(AgentError::Refused {
            status: status.as_u16(),
            reason: text("error").unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned()),
            code: text("code"),
            job_id: text("job_id"),
        });
    }
    Ok(bytes)
}

fn endpoint(server: &str, path: &str) -> String {
    format!("{}{path}", server.trim_end_matches('/'))
}

/// The key id of a hex appliance key, which must equal the id the appliance claims.
fn verified_key_id(key_hex: &str, claimed: &str) -> Result<String, AgentError> {
    let key_bytes: [u8; 32] = hex::decode(key_hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| AgentError::Protocol("appliance_key is not 64 hex digits".into()))?;
    let appliance = ed25519_dalek::VerifyingKey::from_bytes(&key_bytes)
        .map_err(|_| AgentError::Protocol("appliance_key is not an ed25519 key".into()))?;
    let got = crate::trust::keys::key_id(&appliance);
    if got != claimed {
        return Err(AgentError::Protocol(
            "appliance_key_id does not match appliance_key".into(),
        ));
    }
    Ok(got)
}

fn check_fingerprint(expected: &str, got: &str) -> Result<(), AgentError> {
    if expected.trim().eq_ignore_ascii_case(got) {
        Ok(())
    } else {
        Err(AgentError::Fingerprint {
            expected: expected.to_string(),
            got: got.to_string(),
        })
    }
}

/// Enrolls this host: generates the host key, sends the token and inventory, stores the
/// state. With `fingerprint`, refuses an appliance whose key id differs.
pub fn enroll(
    dir: &Path,
    server: &str,
    token: &str,
    fingerprint: Option<&str>,
    hostname: Option<&str>,
    now: Timestamp,
) -> Result<AgentState, AgentError> {
    if state_path(dir).exists() {
        return Err(AgentError::AlreadyEnrolled(state_path(dir)));
    }
    if let Some(expected) = fingerprint {
        // Checked before the token is spent, and again on the enrollment answer.
        let url = endpoint(server, "/api/agent/v1/appliance-key");
        let resp = client()
            .get(&url)
            .send()
            .and_then(|r| r.error_for_status())
            .map_err(|source| AgentError::Http {
                url: url.clone(),
                cause: source,
            })?;
        let v: serde_json::Value = resp
            .json()
            .map_err(|source| AgentError::Http { url, cause: source })?;
        let got = verified_key_id(
            v["appliance_key"].as_str().unwrap_or_default(),
            v["appliance_key_id"].as_str().unwrap_or_default(),
        )?;
        check_fingerprint(expected, &got)?;
    }
    crate::fsutil::ensure_dir(dir, 0o700).map_err(io_err(dir))?;
    let key = Ed25519Key::generate(&mut rand::rngs::OsRng);
    let inv = inventory::collect(now, hostname);
    let req = EnrollRequest {
        token: token.to_string(),
        hostname: inv.hostname.clone(),
        public_key: key.public_hex(),
        inventory: inv.clone(),
    };
    let body = serde_json::to_vec(&req).map_err(|e| AgentError::Protocol(e.to_string()))?;
    let resp: EnrollResponse = serde_json::from_slice(&post(
        &endpoint(server, "/api/agent/v1/enroll"),
        body,
        None,
    )?)
    .map_err(|e| AgentError::Protocol(e.to_string()))?;
    let got = verified_key_id(&resp.appliance_key, &resp.appliance_key_id)?;
    if let Some(expected) = fingerprint {
        check_fingerprint(expected, &got)?;
    }
    key.save(&key_path(dir))?;
    let st = AgentState {
        server: server.to_string(),
        host_id: resp.host_id,
        appliance_key: resp.appliance_key,
        appliance_key_id: got,
        poll_seconds: resp.poll_seconds,
        hostname: hostname.map(str::to_string),
        packages_digest: inv.packages.as_deref().map(packages_digest),
    };
    save_state(dir, &st)?;
    Ok(st)
}

fn signed_checkin(
    st: &AgentState,
    key: &Ed25519Key,
    req: &CheckinRequest,
) -> Result<CheckinResponse, AgentError> {
    let path = "/api/agent/v1/checkin";
    let body = serde_json::to_vec(req).map_err(|e| AgentError::Protocol(e.to_string()))?;
    let sign = |b: &[u8]| signing::sign(key, &st.host_id, "POST", path, SystemClock.now(), b);
    serde_json::from_slice(&post(&endpoint(&st.server, path), body, Some(&sign))?)
        .map_err(|e| AgentError::Protocol(e.to_string()))
}

/// How the agent behaves; set by the command line.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub reboot: jobs::RebootPolicy,
}

/// Sends the journal's unreported events with `inv` (only the packages digest when the
/// appliance already has that list) and journals what the appliance accepted. Refusals
/// the agent can act on are handled here: an unknown packages digest gets the full
/// list; events the appliance refuses for good (an illegal transition, a job that is
/// not this host's) are journaled as refused and the rest is sent again. Bounded: one
/// retry per refused job, plus one for the digest.
fn report(
    dir: &Path,
    st: &mut AgentState,
    key: &Ed25519Key,
    journal: &mut jobs::Journal,
    inv: &crate::fleet::inventory::Inventory,
    log: &mut dyn FnMut(&str),
) -> Result<CheckinResponse, AgentError> {
    let digest = inv.packages.as_deref().map(packages_digest);
    let mut send_digest = digest.is_some() && digest == st.packages_digest;
    let mut attempts = 0;
    let resp = loop {
        attempts += 1;
        let events = journal.pending();
        let mut req_inv = inv.clone();
        if send_digest {
            req_inv.packages = None;
            req_inv.packages_digest = digest.clone();
        } else {
            req_inv.packages_digest = None;
        }
        let req = CheckinRequest {
            inventory: req_inv,
            job_events: events.clone(),
        };
        match signed_checkin(st, key, &req) {
            Ok(resp) => {
                journal.mark_reported(&events)?;
                break resp;
            }
            Err(AgentError::Refused {
                code: Some(code), ..
            }) if code == "packages_digest_unknown" && send_digest => {
                send_digest = false;
            }
            Err(AgentError::Refused {
                code: Some(code),
                job_id: Some(job),
                reason,
                ..
            }) if (code == "illegal_transition" || code == "not_your_job")
                && attempts <= events.len() + 2
                && events.iter().any(|e| e.job_id == job) =>
            {
                let n = journal.mark_refused(&job, &reason)?;
                log(&format!(
                    "the appliance refused {n} report(s) of job {job}: {reason}; not sent again"
                ));
            }
            Err(e) => return Err(e),
        }
    };
    if st.packages_digest != digest || st.poll_seconds != resp.next_checkin_s {
        st.packages_digest = digest;
        st.poll_seconds = resp.next_checkin_s;
        save_state(dir, st)?;
    }
    Ok(resp)
}

/// One signed check-in with a fresh inventory and the journal's unreported job events,
/// then the jobs:
/// - jobs the journal has open (cut off by a crash, or waiting for a reboot) are resumed
///   first (see `jobs`);
/// - each newly offered ticket is verified against the appliance key pinned at
///   enrollment, must name this host, and is run; a job the journal already knows is
///   never started again;
/// - what the jobs did is reported in a second check-in right away (kept in the journal
///   for the next one if the appliance is gone);
/// - a job that needs a reboot then asks for one ([`Options::reboot`]).
///
/// `log` gets one line per job.
pub fn once(
    dir: &Path,
    opts: &Options,
    log: &mut dyn FnMut(&str),
) -> Result<CheckinResponse, AgentError> {
    let mut st = load_state(dir)?;
    let _lock = StateLock::acquire(dir)?;
    let key = Ed25519Key::load(&key_path(dir))?;
    let mut journal = jobs::Journal::open(dir)?;
    let inv = inventory::collect(SystemClock.now(), st.hostname.as_deref());
    let resp = report(dir, &mut st, &key, &mut journal, &inv, log)?;
    let appliance = appliance_key(&st)?;
    let mut offered = Vec::new();
    for raw in &resp.jobs {
        let checked = serde_json::to_vec(raw)
            .map_err(|e| e.to_string())
            .and_then(|b| crate::trust::dsse::Envelope::from_json(&b).map_err(|e| e.to_string()))
            .and_then(|env| {
                crate::fleet::jobs::verify_ticket(&env, &appliance, &st.host_id)
                    .map(|t| (env, t))
                    .map_err(|e| e.to_string())
            });
        match checked {
            Ok(pair) => offered.push(pair),
            Err(why) => log(&format!("refused a job ticket: {why}")),
        }
    }
    let now = || SystemClock.now();
    let mut runner = jobs::Runner {
        dir,
        st: &st,
        key: &key,
        boot_id: jobs::current_boot_id(),
        reboot_wanted: None,
    };
    for (job, state) in journal.open_jobs() {
        let current = offered
            .iter()
            .find(|(_, t)| t.job_id == job)
            .map(|(_, t)| t);
        match runner.resume(&mut journal, &job, state, current, &appliance, &now)? {
            Some(to) => log(&format!("job {job}: resumed from {state}: {to}")),
            None if state == crate::fleet::jobs::JobState::RebootPending => {
                log(&format!(
                    "job {job}: reboot_pending; waiting for the host to boot again"
                ));
            }
            None => {}
        }
    }
    let known = journal.last_states();
    for (env, t) in &offered {
        if known.contains_key(&t.job_id) {
            continue;
        }
        match runner.run(&mut journal, env, t, &now)? {
            Some(state) => log(&format!("job {} ({}): {state}", t.job_id, t.patch_id)),
            None => log(&format!(
                "job {} ({}): waiting for its window",
                t.job_id, t.patch_id
            )),
        }
    }
    let reboot = runner.reboot_wanted.take();
    if !journal.pending().is_empty() {
        let inv = inventory::collect(SystemClock.now(), st.hostname.as_deref());
        if let Err(e) = report(dir, &mut st, &key, &mut journal, &inv, log) {
            log(&format!(
                "could not report the job results yet ({e}); they are kept and sent with the \
                 next check-in"
            ));
            return Ok(resp);
        }
    }
    if let Some(job) = reboot {
        log(&jobs::Runner::request_reboot(
            &mut journal,
            &job,
            &opts.reboot,
        )?);
    }
    Ok(resp)
}

/// The appliance key pinned at enrollment.
fn appliance_key(st: &AgentState) -> Result<ed25519_dalek::VerifyingKey, AgentError> {
    verified_key_id(&st.appliance_key, &st.appliance_key_id)?;
    let bytes: [u8; 32] = hex::decode(&st.appliance_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| AgentError::Protocol("appliance_key is not 64 hex digits".into()))?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map_err(|_| AgentError::Protocol("appliance_key is not an ed25519 key".into()))
}

/// `d` ± 20 %.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::thread_rng().gen_range(0.8..=1.2))
}

/// Checks in every poll interval (jittered) until `stop` receives or disconnects.
/// Failures back off exponentially (with jitter) up to the poll interval.
pub fn run(
    dir: &Path,
    opts: &Options,
    stop: &mpsc::Receiver<()>,
    mut log: impl FnMut(&str),
) -> Result<(), AgentError> {
    let mut log = move |m: &str| log(m);
    let mut failures = 0u32;
    loop {
        let st = load_state(dir)?;
        let poll = Duration::from_secs(st.poll_seconds.max(10));
        let wait = match once(dir, opts, &mut log) {
            Ok(r) => {
                failures = 0;
                log(&format!(
                    "checked in: {} job(s); next in about {} s",
                    r.jobs.len(),
                    r.next_checkin_s
                ));
                jittered(Duration::from_secs(r.next_checkin_s.max(10)))
            }
            Err(e @ AgentError::Refused { status: 403, .. }) => return Err(e),
            Err(e) => {
                failures += 1;
                let backoff = Duration::from_secs(5)
                    .saturating_mul(1 << failures.min(8))
                    .min(poll);
                log(&format!(
                    "check-in failed ({e}); retrying in about {} s",
                    backoff.as_secs()
                ));
                jittered(backoff)
            }
        };
        match stop.recv_timeout(wait) {
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    #[test]
    fn a_second_agent_on_the_same_state_dir_is_refused_until_the_first_is_done() {
        let d = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(d.path()).unwrap();
        let e = StateLock::acquire(d.path()).err().unwrap();
        assert!(matches!(e, AgentError::Busy(_)));
        assert!(e.to_string().contains("holds agent.lock"), "{e}");
        drop(first);
        StateLock::acquire(d.path()).unwrap();
    }
}
