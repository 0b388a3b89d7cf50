//! Enrolled hosts: enrollment, check-in, listing, detail, revocation.
//!
//! Enrollment is one transaction: the token is checked and its use counted, the host row
//! and its first inventory are written, and the enrollment is audited. A refusal at any
//! step leaves nothing behind.

use ed25519_dalek::VerifyingKey;
use jiff::{SignedDuration, Timestamp};
use rand::RngCore;
use rusqlite::{Connection, Transaction};
use serde::{Deserialize, Serialize};

use super::inventory::{Inventory, changed_fields};
use super::{FleetError, Labels, POLL_SECONDS, STALE_AFTER_POLLS, invalid, tokens};
use crate::audit::{self, NewEntry};
use crate::db::fleet::{self as q, HostRow};

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

/// Records a check-in: last seen, the latest inventory, and a change row when something
/// changed. Returns the changed fields.
pub fn checkin(
    tx: &Transaction<'_>,
    now: Timestamp,
    host_id: &str,
    mut inventory: Inventory,
) -> Result<Vec<&'static str>, FleetError> {
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
    Ok(changed)
}

/// A whole check-in in one transaction: inventory, then the job events (a refused event
/// rolls everything back), then the tickets of the host's open jobs.
pub fn checkin_with_jobs(
    tx: &Transaction<'_>,
    now: Timestamp,
    host_id: &str,
    req: CheckinRequest,
) -> Result<Vec<serde_json::Value>, FleetError> {
    checkin(tx, now, host_id, req.inventory)?;
    super::jobs::apply_events(tx, host_id, &req.job_events)?;
    super::jobs::open_tickets(tx, host_id)?
        .iter()
        .map(|e| serde_json::to_value(e).map_err(FleetError::from))
        .collect()
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
        Some((_, json, _)) => Some(serde_json::from_str(&json)?),
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
        0 => Err(FleetError::NoSuchHost(needle.to_string())),
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

/// Revokes a host (audited). Its next signed request is refused.
pub fn revoke(
    tx: &Transaction<'_>,
    needle: &str,
    now: Timestamp,
    actor: &str,
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
            details: serde_json::json!({ "hostname": h.hostname }),
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
        db.write_blocking(|tx| revoke(tx, &id, later, "test"))
            .unwrap();
        let e = db
            .write_blocking(|tx| checkin(tx, later, &id, inv.clone()))
            .unwrap_err();
        assert!(matches!(e, FleetError::Revoked(_)), "{e}");
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
