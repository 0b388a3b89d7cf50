//! Test fixtures: a feed's keys and helpers that sign roots, catalogs and timestamps.

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::feed::catalog::{Catalog, PatchEntry};
use crate::trust::dsse::Envelope;
use crate::trust::keys::Ed25519Key;
use crate::trust::roles::{
    CATALOG_TYPE, KeyEntry, ROOT_TYPE, RoleKeys, Roles, Root, RootTag, TIMESTAMP_TYPE,
    TimestampDoc, TimestampMeta, TimestampTag, to_payload,
};

pub fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

pub fn key() -> Ed25519Key {
    Ed25519Key::generate(&mut rand::rngs::OsRng)
}

/// The keys of one root version: `root` (threshold 2 of 3), one catalog and one
/// timestamp key.
pub struct Keys {
    pub root: Vec<Ed25519Key>,
    pub catalog: Ed25519Key,
    pub timestamp: Ed25519Key,
}

impl Keys {
    pub fn new() -> Self {
        Self {
            root: vec![key(), key(), key()],
            catalog: key(),
            timestamp: key(),
        }
    }

    pub fn root(&self, version: u64) -> Root {
        let mut keys = std::collections::BTreeMap::new();
        for k in self.root.iter().chain([&self.catalog, &self.timestamp]) {
            keys.insert(k.key_id(), KeyEntry::ed25519(&k.public()));
        }
        let ids = |ks: &[&Ed25519Key]| ks.iter().map(|k| k.key_id()).collect();
        Root {
            tag: RootTag::Root,
            spec_version: 1,
            version,
            expires: ts("2030-01-01T00:00:00Z"),
            keys,
            roles: Roles {
                root: RoleKeys {
                    keyids: ids(&self.root.iter().collect::<Vec<_>>()),
                    threshold: 2,
                },
                catalog: RoleKeys {
                    keyids: ids(&[&self.catalog]),
                    threshold: 1,
                },
                timestamp: RoleKeys {
                    keyids: ids(&[&self.timestamp]),
                    threshold: 1,
                },
            },
        }
    }
}

pub fn sign_root(root: &Root, signers: &[&Ed25519Key]) -> Vec<u8> {
    Envelope::sign(ROOT_TYPE, &to_payload(root), signers).to_json()
}

pub fn sign_catalog(c: &Catalog, k: &Ed25519Key) -> Vec<u8> {
    Envelope::sign(CATALOG_TYPE, &to_payload(c), &[k]).to_json()
}

pub fn catalog(version: u64, issued: &str, expires: &str, patches: Vec<PatchEntry>) -> Catalog {
    let mut c = crate::feed::catalog::tests::catalog(version, patches);
    c.issued = ts(issued);
    c.expires = ts(expires);
    c
}

pub fn timestamp_for(version: u64, catalog_bytes: &[u8], catalog_version: u64) -> TimestampDoc {
    TimestampDoc {
        tag: TimestampTag::Timestamp,
        spec_version: 1,
        version,
        issued: ts("2026-11-20T00:00:00Z"),
        expires: ts("2026-11-27T00:00:00Z"),
        catalog: TimestampMeta {
            version: catalog_version,
            sha256: hex::encode(Sha256::digest(catalog_bytes)),
            size: catalog_bytes.len() as u64,
        },
    }
}

pub fn sign_timestamp(t: &TimestampDoc, k: &Ed25519Key) -> Vec<u8> {
    Envelope::sign(TIMESTAMP_TYPE, &to_payload(t), &[k]).to_json()
}
