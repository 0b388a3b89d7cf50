//! Wire types of the feed's signed roles: root, timestamp (and the catalog's envelope
//! rules; the catalog's content lives in `feed::catalog`).
//!
//! Every payload is versioned (`_type`, `spec_version`) and parsed with
//! `deny_unknown_fields`, so a field this binary does not understand is refused rather
//! than silently ignored. A [`Root`] is only usable after [`Root::validate`]: each key id
//! must be the sha256 of its public key (so an attacker cannot list a key under another
//! key's id), every role key must exist, and thresholds must be between 1 and the
//! number of keys.
//!
//! Catalog and timestamp payloads carry a signed `issued` time (RFC 3339). It is not in
//! TUF: Patchward uses it to track the newest signed time it has seen, so a clock set
//! back cannot revive expired metadata (freeze attack; see `state`).

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::VerifyingKey;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::trust::dsse::Envelope;
use crate::trust::error::TrustError;
use crate::trust::keys::key_id;

pub const ROOT_TYPE: &str = "application/vnd.patchward.root+json";
pub const CATALOG_TYPE: &str = "application/vnd.patchward.catalog+json";
pub const TIMESTAMP_TYPE: &str = "application/vnd.patchward.timestamp+json";

/// The only `spec_version` this binary reads and writes.
pub const SPEC_VERSION: u32 = 1;

/// Largest version (and metadata size) a signed document may carry: the appliance stores
/// them in SQLite integers (`i64`), so anything above is refused when the document is
/// parsed, before it can reach a cast or a column (DESIGN leaves the range open).
pub const MAX_VERSION: u64 = i64::MAX as u64;

/// Refuses an integer of a signed document that the appliance could not store.
pub fn check_range(role: Role, field: &'static str, value: u64) -> Result<(), TrustError> {
    if value > MAX_VERSION {
        return Err(TrustError::OutOfRange {
            role: role.name(),
            field,
            value,
            max: MAX_VERSION,
        });
    }
    Ok(())
}

/// The three feed roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Root,
    Catalog,
    Timestamp,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Catalog => "catalog",
            Role::Timestamp => "timestamp",
        }
    }

    pub fn payload_type(self) -> &'static str {
        match self {
            Role::Root => ROOT_TYPE,
            Role::Catalog => CATALOG_TYPE,
            Role::Timestamp => TIMESTAMP_TYPE,
        }
    }
}

/// `_type` tag of a root payload (an enum so serde refuses any other value).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RootTag {
    #[default]
    #[serde(rename = "root")]
    Root,
}

/// `_type` tag of a timestamp payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimestampTag {
    #[default]
    #[serde(rename = "timestamp")]
    Timestamp,
}

/// A public key as listed in a root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Always `"ed25519"`.
    pub keytype: String,
    /// The 32-byte public key, lowercase hex.
    pub public: String,
}

impl KeyEntry {
    pub fn ed25519(public: &VerifyingKey) -> Self {
        Self {
            keytype: "ed25519".into(),
            public: hex::encode(public.as_bytes()),
        }
    }
}

/// Which keys speak for a role, and how many must agree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleKeys {
    pub keyids: Vec<String>,
    pub threshold: u32,
}

/// The roles a root delegates to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    pub root: RoleKeys,
    pub catalog: RoleKeys,
    pub timestamp: RoleKeys,
}

/// The root payload: the keys of every role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    #[serde(rename = "_type")]
    pub tag: RootTag,
    pub spec_version: u32,
    pub version: u64,
    pub expires: Timestamp,
    pub keys: BTreeMap<String, KeyEntry>,
    pub roles: Roles,
}

/// What a timestamp says about the current catalog envelope file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampMeta {
    pub version: u64,
    /// Lowercase hex sha256 of the catalog envelope file's bytes.
    pub sha256: String,
    /// Size of the catalog envelope file in bytes.
    pub size: u64,
}

/// The timestamp payload: short-lived proof of which catalog is current.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampDoc {
    #[serde(rename = "_type")]
    pub tag: TimestampTag,
    pub spec_version: u32,
    pub version: u64,
    /// When it was signed (feeds the freeze check).
    pub issued: Timestamp,
    pub expires: Timestamp,
    pub catalog: TimestampMeta,
}

impl Root {
    /// The role's key set.
    pub fn role(&self, role: Role) -> &RoleKeys {
        match role {
            Role::Root => &self.roles.root,
            Role::Catalog => &self.roles.catalog,
            Role::Timestamp => &self.roles.timestamp,
        }
    }

    /// The public keys by id, after checking each id is the sha256 of its key.
    pub fn verifying_keys(&self) -> Result<BTreeMap<String, VerifyingKey>, TrustError> {
        let bad = |reason: String| TrustError::InvalidRoot {
            version: self.version,
            reason,
        };
        let mut out = BTreeMap::new();
        for (id, entry) in &self.keys {
            if entry.keytype != "ed25519" {
                return Err(bad(format!(
                    "key {id} has keytype {:?}; only \"ed25519\" is supported",
                    entry.keytype
                )));
            }
            let bytes: [u8; 32] = hex::decode(&entry.public)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| bad(format!("key {id} is not 32 bytes of hex")))?;
            let key = VerifyingKey::from_bytes(&bytes)
                .map_err(|_| bad(format!("key {id} is not a valid ed25519 point")))?;
            if key_id(&key) != *id {
                return Err(bad(format!(
                    "key id {id} is not the sha256 of its public key (key listed under a false id)"
                )));
            }
            out.insert(id.clone(), key);
        }
        Ok(out)
    }

    /// Checks the structure: spec version, key ids, role references and thresholds.
    pub fn validate(&self) -> Result<(), TrustError> {
        let bad = |reason: String| TrustError::InvalidRoot {
            version: self.version,
            reason,
        };
        if self.spec_version != SPEC_VERSION {
            return Err(bad(format!(
                "spec_version {} is not supported (this binary reads {SPEC_VERSION}); upgrade patchward",
                self.spec_version
            )));
        }
        if self.version == 0 {
            return Err(bad("versions start at 1".into()));
        }
        check_range(Role::Root, "version", self.version)?;
        self.verifying_keys()?;
        for role in [Role::Root, Role::Catalog, Role::Timestamp] {
            let r = self.role(role);
            let distinct: BTreeSet<&String> = r.keyids.iter().collect();
            if distinct.len() != r.keyids.len() {
                return Err(bad(format!("the {} role lists a key twice", role.name())));
            }
            if let Some(missing) = r.keyids.iter().find(|k| !self.keys.contains_key(*k)) {
                return Err(bad(format!(
                    "the {} role names key {missing}, which is not in keys",
                    role.name()
                )));
            }
            if r.threshold == 0 || r.threshold as usize > r.keyids.len() {
                return Err(bad(format!(
                    "the {} role has threshold {} with {} keys (must be 1..=keys)",
                    role.name(),
                    r.threshold,
                    r.keyids.len()
                )));
            }
        }
        Ok(())
    }

    /// Verifies `env` as metadata of `role` under this root; returns the payload bytes.
    pub fn verify_role(&self, role: Role, env: &Envelope) -> Result<Vec<u8>, TrustError> {
        let keys = self.verifying_keys()?;
        let r = self.role(role);
        env.verify(role.payload_type(), &keys, &r.keyids, r.threshold)
    }

    /// Parses a root payload and validates its structure (not its signatures).
    pub fn parse(payload: &[u8]) -> Result<Self, TrustError> {
        let root: Root = parse_payload(Role::Root, payload)?;
        root.validate()?;
        Ok(root)
    }
}

impl TimestampDoc {
    /// Parses a timestamp payload (signatures are checked by the caller).
    pub fn parse(payload: &[u8]) -> Result<Self, TrustError> {
        let t: TimestampDoc = parse_payload(Role::Timestamp, payload)?;
        if t.spec_version != SPEC_VERSION {
            return Err(TrustError::MalformedPayload {
                role: "timestamp".into(),
                reason: format!("spec_version {} is not supported", t.spec_version),
            });
        }
        check_range(Role::Timestamp, "version", t.version)?;
        check_range(Role::Timestamp, "catalog version", t.catalog.version)?;
        check_range(Role::Timestamp, "catalog size", t.catalog.size)?;
        Ok(t)
    }
}

/// Parses a payload of `role`, mapping serde's message into a [`TrustError`].
pub fn parse_payload<T: serde::de::DeserializeOwned>(
    role: Role,
    payload: &[u8],
) -> Result<T, TrustError> {
    serde_json::from_slice(payload).map_err(|e| TrustError::MalformedPayload {
        role: role.name().into(),
        reason: e.to_string(),
    })
}

/// Serialises a payload for signing (pretty, so published files are readable).
pub fn to_payload<T: Serialize>(value: &T) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(value).expect("payload serialises");
    v.push(b'\n');
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::keys::Ed25519Key;

    fn root_with(keys: &[&Ed25519Key]) -> Root {
        let ids: Vec<String> = keys.iter().map(|k| k.key_id()).collect();
        let rk = RoleKeys {
            keyids: ids.clone(),
            threshold: 1,
        };
        Root {
            tag: RootTag::Root,
            spec_version: 1,
            version: 1,
            expires: "2030-01-01T00:00:00Z".parse().unwrap(),
            keys: keys
                .iter()
                .map(|k| (k.key_id(), KeyEntry::ed25519(&k.public())))
                .collect(),
            roles: Roles {
                root: rk.clone(),
                catalog: rk.clone(),
                timestamp: rk,
            },
        }
    }

    #[test]
    fn root_round_trips_and_checks_key_ids() {
        let (a, b) = (
            Ed25519Key::generate(&mut rand::rngs::OsRng),
            Ed25519Key::generate(&mut rand::rngs::OsRng),
        );
        let root = root_with(&[&a]);
        let bytes = to_payload(&root);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["_type"], "root");
        assert_eq!(Root::parse(&bytes).unwrap(), root);

        // Key b's public key listed under a's id.
        let mut forged = root.clone();
        forged
            .keys
            .insert(a.key_id(), KeyEntry::ed25519(&b.public()));
        let e = Root::parse(&to_payload(&forged)).unwrap_err().to_string();
        assert!(e.contains("is not the sha256 of its public key"), "{e}");

        let mut zero = root.clone();
        zero.roles.catalog.threshold = 0;
        let e = Root::parse(&to_payload(&zero)).unwrap_err().to_string();
        assert!(
            e.contains("the catalog role has threshold 0 with 1 keys"),
            "{e}"
        );

        let text = String::from_utf8(bytes)
            .unwrap()
            .replace("\"root\"", "\"catalog\"");
        assert!(Root::parse(text.as_bytes()).is_err());
        let text = to_payload(&root);
        let mut v: serde_json::Value = serde_json::from_slice(&text).unwrap();
        v["extra"] = 1.into();
        let e = Root::parse(&serde_json::to_vec(&v).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `extra`"), "{e}");
    }
}
