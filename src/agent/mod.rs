//! The agent: enrollment, signed check-ins, and the check-in loop.
//!
//! Local state lives in a state directory (default `/var/lib/patchward-agent`): the host
//! key `host.ed25519` (mode 0600) and `state.json` {server, host_id, appliance_key, ...},
//! both written atomically. Every request after enrollment is signed as described in
//! `fleet::signing`.

pub mod inventory;
pub mod jobs;
pub mod script;

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
    Refused { status: u16, reason: String },
    #[error("cannot reach the appliance at {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("the appliance's answer is not understood: {0}")]
    Protocol(String),
    #[error("cannot use {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
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
                source,
            })?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Self { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(AgentError::Busy(dir.to_path_buf())),
            Err(e) => Err(AgentError::Io {
                path,
                source: e.into(),
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
        source,
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

fn post(
    url: &str,
    body: Vec<u8>,
    headers: Option<&signing::SignedHeaders>,
) -> Result<Vec<u8>, AgentError> {
    let mut req = client()
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(h) = headers {
        for (k, v) in h.pairs() {
            req = req.header(k, v);
        }
    }
    let http = |source| AgentError::Http {
        url: url.to_string(),
        source,
    };
    let resp = req.send().map_err(http)?;
    let status = resp.status();
    let bytes = resp.bytes().map_err(http)?.to_vec();
    if !status.is_success() {
        let reason = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        return Err(AgentError::Refused {
            status: status.as_u16(),
            reason,
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
                source,
            })?;
        let v: serde_json::Value = resp
            .json()
            .map_err(|source| AgentError::Http { url, source })?;
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
    let h = signing::sign(key, &st.host_id, "POST", path, SystemClock.now(), &body);
    serde_json::from_slice(&post(&endpoint(&st.server, path), body, Some(&h))?)
        .map_err(|e| AgentError::Protocol(e.to_string()))
}

/// One signed check-in with a fresh inventory and the journal's unreported job events,
/// then the offered jobs: each ticket is verified against the appliance key pinned at
/// enrollment and must name this host; a job the journal already knows is not run
/// again. Sends only the packages digest when the list is unchanged; if the appliance
/// does not know that digest, sends the full list. `log` gets one line per job.
pub fn once(dir: &Path, log: &mut dyn FnMut(&str)) -> Result<CheckinResponse, AgentError> {
    let mut st = load_state(dir)?;
    let _lock = StateLock::acquire(dir)?;
    let key = Ed25519Key::load(&key_path(dir))?;
    let mut journal = jobs::Journal::open(dir)?;
    let interrupted = journal.close_interrupted(SystemClock.now())?;
    if interrupted > 0 {
        log(&format!("{interrupted} interrupted job(s) marked failed"));
    }
    let events = journal.pending();
    let mut inv = inventory::collect(SystemClock.now(), st.hostname.as_deref());
    let digest = inv.packages.as_deref().map(packages_digest);
    let mut req_inv = inv.clone();
    if digest.is_some() && digest == st.packages_digest {
        req_inv.packages = None;
        req_inv.packages_digest = digest.clone();
    }
    let first = signed_checkin(
        &st,
        &key,
        &CheckinRequest {
            inventory: req_inv,
            job_events: events.clone(),
        },
    );
    let resp = match first {
        Err(AgentError::Refused { status: 409, .. }) => {
            inv.packages_digest = None;
            signed_checkin(
                &st,
                &key,
                &CheckinRequest {
                    inventory: inv,
                    job_events: events.clone(),
                },
            )?
        }
        r => r?,
    };
    journal.mark_reported(&events)?;
    if st.packages_digest != digest || st.poll_seconds != resp.next_checkin_s {
        st.packages_digest = digest;
        st.poll_seconds = resp.next_checkin_s;
        save_state(dir, &st)?;
    }
    let appliance = appliance_key(&st)?;
    let known = journal.last_states();
    for raw in &resp.jobs {
        let ticket = serde_json::to_vec(raw)
            .map_err(|e| e.to_string())
            .and_then(|b| crate::trust::dsse::Envelope::from_json(&b).map_err(|e| e.to_string()))
            .and_then(|env| {
                crate::fleet::jobs::verify_ticket(&env, &appliance, &st.host_id)
                    .map_err(|e| e.to_string())
            });
        let t = match ticket {
            Ok(t) => t,
            Err(why) => {
                log(&format!("refused a job ticket: {why}"));
                continue;
            }
        };
        if known.contains_key(&t.job_id) {
            continue;
        }
        match jobs::run_job(dir, &st, &key, &mut journal, &t, || SystemClock.now())? {
            Some(state) => log(&format!("job {} ({}): {state}", t.job_id, t.patch_id)),
            None => log(&format!(
                "job {} ({}): waiting for its window",
                t.job_id, t.patch_id
            )),
        }
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
    stop: &mpsc::Receiver<()>,
    mut log: impl FnMut(&str),
) -> Result<(), AgentError> {
    let mut log = move |m: &str| log(m);
    let mut failures = 0u32;
    loop {
        let st = load_state(dir)?;
        let poll = Duration::from_secs(st.poll_seconds.max(10));
        let wait = match once(dir, &mut log) {
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
