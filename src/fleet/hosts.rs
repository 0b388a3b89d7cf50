//! Enrolled hosts: enrollment, check-in, listing, detail, revocation.
//!
//! Enrollment is one transaction: the token is checked and its use counted, the host row
//! and its first inventory are written, and the enrollment is audited. A refusal at any
//! step leaves nothing behind.
//!
//! Check-ins take one of two paths. A *quiet* check-in changes nothing durable: no job
//! events, and a digest-only inventory whose digest and fields equal the stored ones
//! (uptime only moved on, see [`Presence::is_quiet`]). It opens no write transaction:
//! the host's `last_seen` goes to [`Presence`] in memory, and [`flush_seen`] writes the
//! batch in one transaction every few seconds and at shutdown. A crash loses at most
//! that much `last_seen`, never an inventory change or a job event. Every other
//! check-in is one write transaction, as before ([`checkin_with_jobs`]).
//!
//! Because a quiet check-in does not rewrite the stored inventory,
//! `host_inventory.reported_at` is when the stored inventory was last written, and the
//! uptime shown by `list`/`show` is its stored uptime plus `last_seen - reported_at`
//! (a quiet check-in's uptime agrees with that within [`UPTIME_SLACK`]).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Mutex;

use ed25519_dalek::VerifyingKey;
use jiff::{SignedDuration, Timestamp};
use rand::RngCore;
use rusqlite::{Connection, Transaction};
use serde::{Deserialize, Serialize};

use super::inventory::{Inventory, changed_fields};
use super::{FleetError, Labels, POLL_SECONDS, STALE_AFTER_POLLS, invalid, tokens};
use crate::audit::{self, NewEntry};
use crate::db::fleet::{self as q, HostRow};
use crate::suggest::DidYouMean;

/// `POST /api/agent/v1/enroll` request body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub token: String,
    pub hostname: String,
    /// The agent's ed25519 public key, 64 hex digits.
    pub public_key: String,
    pub inventory: Inventory,
}

/// `POST /api/agent/v1/enroll` response body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub host_id: String,
    /// The appliance's ed25519 public key (hex); it signs job tickets.
    pub appliance_key: String,
    pub appliance_key_id: String,
    pub poll_seconds: u64,
}

/// `POST /api/agent/v1/checkin` request body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckinRequest {
    pub inventory: Inventory,
    /// State changes of this host's jobs since the last accepted check-in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub job_events: Vec<super::jobs::JobEvent>,
}

/// `POST /api/agent/v1/checkin` response body: the tickets (DSSE envelopes) of the
/// host's open jobs. Each is verified by the agent on its own.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckinResponse {
    pub jobs: Vec<serde_json::Value>,
    pub next_checkin_s: u64,
}

/// Parses a hex ed25519 public key (a valid curve point).
pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey, FleetError> {
    let bytes: [u8; 32] = hex::decode(hex_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| invalid("public_key", "must be 64 hex digits"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| invalid("public_key", "not an ed25519 key"))
}

fn new_host_id() -> String {
    let mut b = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("h-{}", hex::encode(b))
}

/// Enrolls a host; returns its id. The caller adds the appliance key to the response.
pub fn enroll(
    tx: &Transaction<'_>,
    now: Timestamp,
    req: &EnrollRequest,
) -> Result<String, FleetError> {
    super::validate_hostname(&req.hostname)?;
    let public = parse_public_key(&req.public_key)?;
    req.inventory.validate()?;
    let mut inventory = req.inventory.clone();
    if inventory.packages.is_none() {
        return Err(invalid(
            "packages",
            "the first report must list the packages",
        ));
    }
    let token = tokens::consume(tx, &req.token, now)?;
    let public_hex = hex::encode(public.as_bytes());
    if let Some(h) = q::host_by_public_key(tx, &public_hex)? {
        return Err(FleetError::KeyInUse(h.id));
    }
    let labels: Labels = serde_json::from_str(&token.labels)?;
    let id = new_host_id();
    let at = now.to_string();
    q::insert_host(
        tx,
        &HostRow {
            id: id.clone(),
            hostname: req.hostname.clone(),
            public_key: public_hex,
            ring: token.ring.clone(),
            labels: token.labels.clone(),
            enrolled_at: at.clone(),
            last_seen: Some(at.clone()),
            revoked_at: None,
        },
        Some(token.id),
    )?;
    let digest = inventory.resolve_packages(None)?;
    q::put_inventory(tx, &id, &at, &serde_json::to_string(&inventory)?, &digest)?;
    audit::append(
        tx,
        now,
        &NewEntry {
            actor: &format!("agent:{id}"),
            action: "host.enrolled",
            subject: &id,
            details: serde_json::json!({
                "hostname": req.hostname, "ring": token.ring, "labels": labels,
                "token": token.id, "key_id": crate::trust::keys::key_id(&public),
            }),
        },
    )?;
    Ok(id)
}

/// How often [`flush_seen`] writes the `last_seen` of quiet check-ins (the most a crash
/// can lose).
pub const SEEN_FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// How far a quiet check-in's uptime may be from the stored uptime plus the time since
/// it was stored. Further means a reboot or a clock jump: the report is written.
pub const UPTIME_SLACK: SignedDuration = SignedDuration::from_mins(1);

/// Records a check-in: last seen, the latest inventory, and a change row when something
/// changed. Returns the changed fields.
pub fn checkin(
    tx: &Transaction<'_>,
    now: Timestamp,
    host_id: &str,
    inventory: Inventory,
) -> Result<Vec<&'static str>, FleetError> {
    record_checkin(tx, now, host_id, inventory).map(|(changed, _, _)| changed)
}

/// [`checkin`], also returning the stored inventory and its packages digest.
fn record_checkin(
    tx: &Transaction<'_>,
    now: Timestamp,
    host_id: &str,
    mut inventory: Inventory,
) -> Result<(Vec<&'static str>, Inventory, String), FleetError> {
    inventory.validate()?;
    let at = now.to_string();
    if !q::touch_host(tx, host_id, &at)? {
        return Err(FleetError::Revoked(host_id.to_string()));
    }
    let previous: Option<Inventory> = match q::inventory(tx, host_id)? {
        Some((_, json, _)) => Some(serde_json::from_str(&json)?),
        None => None,
    };
    let digest = inventory.resolve_packages(previous.as_ref())?;
    let changed = match &previous {
        Some(p) => changed_fields(p, &inventory),
        None => vec!["first report"],
    };
    q::put_inventory(
        tx,
        host_id,
        &at,
        &serde_json::to_string(&inventory)?,
        &digest,
    )?;
    if !changed.is_empty() {
        q::insert_change(tx, host_id, &at, &serde_json::to_string(&changed)?)?;
    }
    Ok((changed, inventory, digest))
}

/// A whole check-in in one transaction: inventory, then the job events (a refused event
/// rolls everything back), then the tickets of the host's open jobs.
pub fn checkin_with_jobs(
    tx: &Transaction<'_>,
    now: Timestamp,
    host_id: &str,
    req: CheckinRequest,
) -> Result<Vec<serde_json::Value>, FleetError> {
    checkin_and_note(tx, now, host_id, req, None)
}

/// [`checkin_with_jobs`], telling `presence` what is now stored, so the host's next
/// quiet check-in can skip the write. When this returns an error (or the commit fails)
/// the caller must [`Presence::forget`] the host.
pub fn checkin_and_note(
    tx: &Transaction<'_>,
    now: Timestamp,
    host_id: &str,
    req: CheckinRequest,
    presence: Option<&Presence>,
) -> Result<Vec<serde_json::Value>, FleetError> {
    let (_, mut stored, digest) = record_checkin(tx, now, host_id, req.inventory)?;
    super::jobs::apply_events(tx, now, host_id, &req.job_events)?;
    let tickets = super::jobs::open_tickets(tx, host_id)?
        .iter()
        .map(|e| serde_json::to_value(e).map_err(FleetError::from))
        .collect::<Result<_, _>>()?;
    if let Some(p) = presence {
        // Noted inside the transaction (under the writer lock), so notes follow commit
        // order; a failed commit is undone by the caller's `forget`.
        stored.packages = None;
        p.learn(
            host_id,
            Known {
                digest,
                base: stored,
                reported_at: now,
            },
        );
    }
    Ok(tickets)
}

/// What a quiet check-in is compared with: a host's stored inventory, without its
/// package list.
#[derive(Debug, Clone)]
struct Known {
    digest: String,
    /// Packages and digest are `None`.
    base: Inventory,
    /// When the stored inventory was written (`host_inventory.reported_at`).
    reported_at: Timestamp,
}

impl Known {
    /// From a `host_inventory` row; `None` if its time does not parse.
    fn from_row(
        (reported_at, json, digest): (String, String, String),
    ) -> Result<Option<Known>, FleetError> {
        let Ok(reported_at) = reported_at.parse::<Timestamp>() else {
            return Ok(None);
        };
        let mut base: Inventory = serde_json::from_str(&json)?;
        base.packages = None;
        base.packages_digest = None;
        Ok(Some(Known {
            digest,
            base,
            reported_at,
        }))
    }
}

/// In-memory state for quiet check-ins: what each host's stored inventory looks like
/// (filled from the database on first use, updated by every written check-in), and the
/// `last_seen` times not yet written. Both maps hold only authenticated hosts, so they
/// are bounded by the number of enrolled hosts.
#[derive(Debug, Default)]
pub struct Presence {
    // std Mutexes: short map operations, never held across an await.
    known: Mutex<HashMap<String, Known>>,
    seen: Mutex<HashMap<String, Timestamp>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Presence {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `req` can be quiet at all: no job events and a digest-only inventory.
    pub fn may_be_quiet(req: &CheckinRequest) -> bool {
        req.job_events.is_empty()
            && req.inventory.packages.is_none()
            && req.inventory.packages_digest.is_some()
    }

    fn is_known(&self, host_id: &str) -> bool {
        lock(&self.known).contains_key(host_id)
    }

    /// Notes what was read from the database, unless a written check-in noted something
    /// since (which is newer than any read).
    fn learn_if_vacant(&self, host_id: &str, k: Known) {
        if let Entry::Vacant(v) = lock(&self.known).entry(host_id.to_string()) {
            v.insert(k);
        }
    }

    fn learn(&self, host_id: &str, k: Known) {
        lock(&self.known).insert(host_id.to_string(), k);
    }

    /// Drops what is known of a host (its next check-in reads the database).
    pub fn forget(&self, host_id: &str) {
        lock(&self.known).remove(host_id);
    }

    /// Whether a validated, digest-only `inv` reported at `now` equals what is stored:
    /// same packages digest, no field that [`changed_fields`] would name, and an uptime
    /// within [`UPTIME_SLACK`] of the stored one plus the time since it was stored.
    pub fn is_quiet(&self, host_id: &str, now: Timestamp, inv: &Inventory) -> bool {
        let known = lock(&self.known);
        let Some(k) = known.get(host_id) else {
            return false;
        };
        if inv.packages.is_some() || inv.packages_digest.as_deref() != Some(k.digest.as_str()) {
            return false;
        }
        // Both package lists are None here: changed_fields compares everything else.
        if !changed_fields(&k.base, inv).is_empty() {
            return false;
        }
        let expected =
            i128::from(k.base.uptime_s) + i128::from(now.duration_since(k.reported_at).as_secs());
        (i128::from(inv.uptime_s) - expected).abs() <= i128::from(UPTIME_SLACK.as_secs())
    }

    /// Remembers that `host_id` was seen at `now` (the latest time wins).
    fn note_seen(&self, host_id: &str, now: Timestamp) {
        let mut seen = lock(&self.seen);
        match seen.entry(host_id.to_string()) {
            Entry::Occupied(mut o) => {
                if *o.get() < now {
                    o.insert(now);
                }
            }
            Entry::Vacant(v) => {
                v.insert(now);
            }
        }
    }

    /// How many hosts have a `last_seen` not yet written.
    pub fn pending(&self) -> usize {
        lock(&self.seen).len()
    }

    fn take_seen(&self) -> HashMap<String, Timestamp> {
        std::mem::take(&mut *lock(&self.seen))
    }

    /// Puts back a batch whose write failed (newer notes win).
    fn restore_seen(&self, batch: HashMap<String, Timestamp>) {
        for (h, t) in batch {
            self.note_seen(&h, t);
        }
    }
}

/// A quiet check-in on a reader connection: `Some(tickets)` when nothing durable changes
/// (the host's `last_seen` is noted in `presence`), `None` when the report must be
/// written ([`checkin_and_note`]). Invalid reports are refused as on the write path.
pub fn quiet_checkin(
    conn: &Connection,
    presence: &Presence,
    now: Timestamp,
    host_id: &str,
    req: &CheckinRequest,
) -> Result<Option<Vec<serde_json::Value>>, FleetError> {
    req.inventory.validate()?;
    if !Presence::may_be_quiet(req) {
        return Ok(None);
    }
    if !presence.is_known(host_id) {
        match q::inventory(conn, host_id)?
            .map(Known::from_row)
            .transpose()?
        {
            Some(Some(k)) => presence.learn_if_vacant(host_id, k),
            _ => return Ok(None),
        }
    }
    if !presence.is_quiet(host_id, now, &req.inventory) {
        return Ok(None);
    }
    // Revoked since the request was authenticated: the write path refuses it.
    if !q::host_is_active(conn, host_id)? {
        return Ok(None);
    }
    let tickets = super::jobs::open_tickets(conn, host_id)?
        .iter()
        .map(|e| serde_json::to_value(e).map_err(FleetError::from))
        .collect::<Result<_, _>>()?;
    presence.note_seen(host_id, now);
    Ok(Some(tickets))
}

/// Writes the noted `last_seen` times in one transaction; returns how many hosts. A
/// time never moves `last_seen` back, and revoked hosts are left alone. On failure the
/// batch is kept for the next flush.
pub fn flush_seen(db: &crate::db::Db, presence: &Presence) -> Result<usize, FleetError> {
    let batch = presence.take_seen();
    if batch.is_empty() {
        return Ok(0);
    }
    let r = db.write_blocking(|tx| {
        for (host, at) in &batch {
            q::set_last_seen(tx, host, &at.to_string())?;
        }
        Ok::<_, FleetError>(())
    });
    match r {
        Ok(()) => Ok(batch.len()),
        Err(e) => {
            presence.restore_seen(batch);
            Err(e)
        }
    }
}

/// One line of `patchward hosts list`.
#[derive(Debug, Clone, Serialize)]
pub struct HostSummary {
    pub id: String,
    pub hostname: String,
    pub ring: Option<String>,
    pub labels: Labels,
    pub os: Option<String>,
    pub kernel: Option<String>,
    pub packages: Option<usize>,
    pub reboot_required: Option<bool>,
    pub enrolled_at: String,
    pub last_seen: Option<String>,
    /// Not seen for more than `STALE_AFTER_POLLS` poll intervals.
    pub stale: bool,
    pub revoked_at: Option<String>,
}

fn is_stale(last_seen: Option<&str>, now: Timestamp) -> bool {
    let limit = SignedDuration::from_secs((POLL_SECONDS * STALE_AFTER_POLLS) as i64);
    match last_seen.and_then(|s| s.parse::<Timestamp>().ok()) {
        Some(t) => now.duration_since(t) > limit,
        None => true,
    }
}

fn summary(
    conn: &Connection,
    h: HostRow,
    now: Timestamp,
) -> Result<(HostSummary, Option<Inventory>), FleetError> {
    let inv: Option<Inventory> = match q::inventory(conn, &h.id)? {
        Some((reported_at, json, _)) => {
            let mut inv: Inventory = serde_json::from_str(&json)?;
            // Quiet check-ins since the inventory was written moved only last_seen (their
            // uptime agreed with this within UPTIME_SLACK).
            let seen = h
                .last_seen
                .as_deref()
                .and_then(|s| s.parse::<Timestamp>().ok());
            if let (Some(seen), Ok(at)) = (seen, reported_at.parse::<Timestamp>())
                && seen > at
            {
                let since = seen.duration_since(at).as_secs().unsigned_abs();
                inv.uptime_s = inv.uptime_s.saturating_add(since);
            }
            Some(inv)
        }
        None => None,
    };
    let s = HostSummary {
        stale: h.revoked_at.is_none() && is_stale(h.last_seen.as_deref(), now),
        labels: serde_json::from_str(&h.labels)?,
        os: inv.as_ref().map(|i| {
            format!("{} {}", i.os.id, i.os.version_id)
                .trim()
                .to_string()
        }),
        kernel: inv.as_ref().map(|i| i.kernel.clone()),
        packages: inv.as_ref().and_then(|i| i.packages.as_ref().map(Vec::len)),
        reboot_required: inv.as_ref().map(|i| i.reboot_required),
        id: h.id,
        hostname: h.hostname,
        ring: h.ring,
        enrolled_at: h.enrolled_at,
        last_seen: h.last_seen,
        revoked_at: h.revoked_at,
    };
    Ok((s, inv))
}

pub fn list(conn: &Connection, now: Timestamp) -> Result<Vec<HostSummary>, FleetError> {
    q::list_hosts(conn)?
        .into_iter()
        .map(|h| summary(conn, h, now).map(|(s, _)| s))
        .collect()
}

/// One change row.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub at: String,
    pub fields: Vec<String>,
}

/// `patchward hosts show`.
#[derive(Debug, Clone, Serialize)]
pub struct HostDetail {
    #[serde(flatten)]
    pub summary: HostSummary,
    pub public_key_id: String,
    pub inventory: Option<Inventory>,
    pub recent_changes: Vec<Change>,
}

/// Finds one host by id or hostname.
pub fn find(conn: &Connection, needle: &str) -> Result<HostRow, FleetError> {
    let mut rows = q::hosts_matching(conn, needle)?;
    if let Some(i) = rows.iter().position(|h| h.id == needle) {
        return Ok(rows.swap_remove(i));
    }
    match rows.len() {
        0 => {
            let names = q::host_names(conn)?;
            let hint = DidYouMean::among(
                needle,
                names
                    .iter()
                    .flat_map(|(id, name)| [id.as_str(), name.as_str()]),
            );
            Err(FleetError::NoSuchHost(needle.to_string(), hint))
        }
        1 => Ok(rows.remove(0)),
        _ => Err(FleetError::Ambiguous(
            needle.to_string(),
            rows.iter()
                .map(|h| h.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

pub fn show(conn: &Connection, needle: &str, now: Timestamp) -> Result<HostDetail, FleetError> {
    let h = find(conn, needle)?;
    let key_id = parse_public_key(&h.public_key)
        .map(|k| crate::trust::keys::key_id(&k))
        .unwrap_or_default();
    let changes = q::recent_changes(conn, &h.id, 20)?
        .into_iter()
        .map(|(at, f)| {
            Ok(Change {
                at,
                fields: serde_json::from_str(&f)?,
            })
        })
        .collect::<Result<_, FleetError>>()?;
    let (summary, inventory) = summary(conn, h, now)?;
    Ok(HostDetail {
        summary,
        public_key_id: key_id,
        inventory,
        recent_changes: changes,
    })
}

/// Revokes a host (audited with `reason`). Its next signed request is refused.
pub fn revoke(
    tx: &Transaction<'_>,
    needle: &str,
    now: Timestamp,
    actor: &str,
    reason: &str,
) -> Result<String, FleetError> {
    let h = find(tx, needle)?;
    if !q::revoke_host(tx, &h.id, &now.to_string())? {
        return Err(FleetError::Revoked(h.id));
    }
    audit::append(
        tx,
        now,
        &NewEntry {
            actor,
            action: "host.revoked",
            subject: &h.id,
            details: serde_json::json!({ "hostname": h.hostname, "reason": reason }),
        },
    )?;
    Ok(h.id)
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use crate::fleet::inventory::sample;
    use crate::fleet::tokens::NewToken;

    /// Enrolls a host with `key` through a fresh token; returns its id.
    pub(crate) fn enrolled(
        db: &crate::db::Db,
        now: Timestamp,
        key: &crate::trust::keys::Ed25519Key,
    ) -> String {
        let t = db
            .write_blocking(|tx| {
                tokens::create(
                    tx,
                    now,
                    "test",
                    &NewToken {
                        ring: Some("pilot".into()),
                        labels: super::super::parse_labels("site=hq").unwrap(),
                        expires_in: SignedDuration::from_hours(1),
                        max_uses: 5,
                    },
                )
            })
            .unwrap();
        let req = EnrollRequest {
            token: t.token,
            hostname: "web1".into(),
            public_key: key.public_hex(),
            inventory: sample("web1"),
        };
        db.write_blocking(|tx| enroll(tx, now, &req)).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::enrolled;
    use super::*;
    use crate::fleet::inventory::sample;
    use crate::fleet::tokens::NewToken;

    #[test]
    fn enroll_checkin_show_revoke() {
        let d = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&d.path().join("t.db"), Default::default()).unwrap();
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let key = crate::trust::keys::Ed25519Key::generate(&mut rand::rngs::OsRng);
        let id = enrolled(&db, now, &key);
        let mut inv = sample("web1");
        inv.reboot_required = true;
        let later = now + SignedDuration::from_mins(5);
        let ch = db
            .write_blocking(|tx| checkin(tx, later, &id, inv.clone()))
            .unwrap();
        assert_eq!(ch, ["reboot_required"]);
        let detail = db.read_blocking(|c| show(c, "web1", later)).unwrap();
        assert_eq!(detail.summary.ring.as_deref(), Some("pilot"));
        assert_eq!(detail.summary.labels["site"], "hq");
        assert_eq!(detail.recent_changes.len(), 1);
        assert!(!detail.summary.stale);
        let hosts = db
            .read_blocking(|c| list(c, later + SignedDuration::from_hours(1)))
            .unwrap();
        assert!(hosts[0].stale);
        db.write_blocking(|tx| revoke(tx, &id, later, "test", ""))
            .unwrap();
        let e = db
            .write_blocking(|tx| checkin(tx, later, &id, inv.clone()))
            .unwrap_err();
        assert!(matches!(e, FleetError::Revoked(_)), "{e}");
    }

    fn digest_only(inv: &Inventory) -> CheckinRequest {
        let mut inv = inv.clone();
        inv.packages_digest = inv
            .packages
            .take()
            .map(|p| super::super::inventory::packages_digest(&p));
        CheckinRequest {
            inventory: inv,
            job_events: Vec::new(),
        }
    }

    fn last_seen(db: &crate::db::Db, id: &str, now: Timestamp) -> Option<String> {
        db.read_blocking(|c| show(c, id, now))
            .unwrap()
            .summary
            .last_seen
    }

    #[test]
    fn quiet_checkins_write_nothing_until_flushed() {
        let d = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&d.path().join("t.db"), Default::default()).unwrap();
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let key = crate::trust::keys::Ed25519Key::generate(&mut rand::rngs::OsRng);
        let id = enrolled(&db, now, &key);
        let p = Presence::new();
        let quiet = |at: Timestamp, req: &CheckinRequest| {
            db.read_blocking(|c| quiet_checkin(c, &p, at, &id, req))
        };
        // Ten minutes later, nothing changed but the uptime: quiet, nothing written yet.
        let later = now + SignedDuration::from_mins(10);
        let mut inv = sample("web1");
        inv.uptime_s += 600;
        let req = digest_only(&inv);
        assert_eq!(quiet(later, &req).unwrap(), Some(vec![]));
        assert_eq!(p.pending(), 1);
        assert_eq!(last_seen(&db, &id, later), Some(now.to_string()));
        // The flush writes last_seen; the shown uptime follows; no change was recorded.
        assert_eq!(flush_seen(&db, &p).unwrap(), 1);
        assert_eq!(flush_seen(&db, &p).unwrap(), 0);
        let detail = db.read_blocking(|c| show(c, &id, later)).unwrap();
        assert_eq!(detail.summary.last_seen, Some(later.to_string()));
        assert_eq!(detail.inventory.unwrap().uptime_s, 3600 + 600);
        assert!(detail.recent_changes.is_empty());

        // Not quiet: a changed field, a reboot (uptime far from expected), job events,
        // a full package list, or another digest.
        let t = later + SignedDuration::from_mins(5);
        let mut changed = inv.clone();
        changed.uptime_s += 300;
        changed.kernel = "6.1.0-29-amd64".into();
        assert_eq!(quiet(t, &digest_only(&changed)).unwrap(), None);
        let mut rebooted = inv.clone();
        rebooted.uptime_s = 30;
        assert_eq!(quiet(t, &digest_only(&rebooted)).unwrap(), None);
        let mut same = inv.clone();
        same.uptime_s += 300;
        let mut with_events = digest_only(&same);
        with_events.job_events.push(crate::fleet::jobs::JobEvent {
            job_id: "j-1".into(),
            state: crate::fleet::jobs::JobState::Downloading,
            at: t,
            output: String::new(),
        });
        assert_eq!(quiet(t, &with_events).unwrap(), None);
        let full = CheckinRequest {
            inventory: same.clone(),
            job_events: Vec::new(),
        };
        assert_eq!(quiet(t, &full).unwrap(), None);
        let mut other = digest_only(&same);
        other.inventory.packages_digest = Some("0".repeat(64));
        assert_eq!(quiet(t, &other).unwrap(), None);
        assert_eq!(
            p.pending(),
            0,
            "nothing noted for reports that are not quiet"
        );
        // Bad input is refused on the quiet path too, and nothing is noted.
        let mut bad = digest_only(&same);
        bad.inventory.kernel = "6.1\n".into();
        assert!(matches!(quiet(t, &bad), Err(FleetError::Invalid { .. })));
        assert_eq!(p.pending(), 0);

        // The written path records the change and teaches `p` the new state, so the
        // next report of that state is quiet.
        db.write_blocking(|tx| checkin_and_note(tx, t, &id, digest_only(&changed), Some(&p)))
            .unwrap();
        let detail = db.read_blocking(|c| show(c, &id, t)).unwrap();
        assert_eq!(detail.recent_changes[0].fields, ["kernel"]);
        let t2 = t + SignedDuration::from_mins(5);
        changed.uptime_s += 300;
        assert_eq!(quiet(t2, &digest_only(&changed)).unwrap(), Some(vec![]));
        // A late flush never moves last_seen back: note t2, write t3 > t2, flush.
        let t3 = t2 + SignedDuration::from_secs(1);
        changed.uptime_s += 1;
        db.write_blocking(|tx| checkin_and_note(tx, t3, &id, digest_only(&changed), Some(&p)))
            .unwrap();
        assert_eq!(flush_seen(&db, &p).unwrap(), 1);
        assert_eq!(last_seen(&db, &id, t3), Some(t3.to_string()));
    }

    #[test]
    fn a_revoked_host_is_not_quiet_and_its_pending_last_seen_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&d.path().join("t.db"), Default::default()).unwrap();
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let key = crate::trust::keys::Ed25519Key::generate(&mut rand::rngs::OsRng);
        let id = enrolled(&db, now, &key);
        let p = Presence::new();
        let later = now + SignedDuration::from_mins(1);
        let mut inv = sample("web1");
        inv.uptime_s += 60;
        let req = digest_only(&inv);
        assert!(
            db.read_blocking(|c| quiet_checkin(c, &p, later, &id, &req))
                .unwrap()
                .is_some()
        );
        db.write_blocking(|tx| revoke(tx, &id, later, "test", ""))
            .unwrap();
        // Revoked after it was authenticated: not quiet, and the write path refuses it.
        assert_eq!(
            db.read_blocking(|c| quiet_checkin(c, &p, later, &id, &req))
                .unwrap(),
            None
        );
        let e = db
            .write_blocking(|tx| checkin_and_note(tx, later, &id, req.clone(), Some(&p)))
            .unwrap_err();
        assert!(matches!(e, FleetError::Revoked(_)), "{e}");
        // The noted last_seen is not written for a revoked host.
        flush_seen(&db, &p).unwrap();
        assert_eq!(last_seen(&db, &id, later), Some(now.to_string()));
    }

    #[test]
    fn a_hostile_hostname_stores_nothing() {
        let d = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&d.path().join("t.db"), Default::default()).unwrap();
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let t = db
            .write_blocking(|tx| {
                tokens::create(
                    tx,
                    now,
                    "test",
                    &NewToken {
                        ring: None,
                        labels: Labels::new(),
                        expires_in: SignedDuration::from_hours(1),
                        max_uses: 1,
                    },
                )
            })
            .unwrap();
        let key = crate::trust::keys::Ed25519Key::generate(&mut rand::rngs::OsRng);
        let req = EnrollRequest {
            token: t.token.clone(),
            hostname: "<img src=x onerror=alert(1)>".into(),
            public_key: key.public_hex(),
            inventory: sample("web1"),
        };
        let e = db.write_blocking(|tx| enroll(tx, now, &req)).unwrap_err();
        assert!(e.to_string().contains("invalid hostname"), "{e}");
        assert!(db.read_blocking(|c| list(c, now)).unwrap().is_empty());
        // The token's use was not counted.
        assert_eq!(db.read_blocking(tokens::list).unwrap()[0].uses, 0);
    }
}
