//! What the appliance trusts about a feed, and the pure checks that advance it.
//!
//! [`TrustState`] is the verified root plus the highest accepted catalog and timestamp
//! versions (with a hash of their content) and the newest signed time seen. Every
//! function here is pure: it takes the current state, untrusted bytes and `now`, and
//! returns either a precise [`TrustError`] or the *new* state. The caller persists the
//! new state only after its import commits, so a failed import never raises the
//! rollback floor (DESIGN §3).
//!
//! Attacks and the checks that stop them:
//! - forged metadata: threshold of distinct, trusted keys per role (`dsse`);
//! - rollback: versions never go down; the same version with different content is
//!   refused (equal content is an idempotent re-import);
//! - freeze: expiry is checked against max(now, newest signed time seen), where the
//!   signed time is the `issued` field of catalogs and timestamps, so an appliance
//!   whose clock was set back still refuses metadata it already knows is stale;
//! - key compromise: root rotation to version N+1 exactly, approved by a threshold of
//!   the old root keys and a threshold of the new ones. When a rotation changes the
//!   catalog or timestamp keys, that role's version floor is reset (as TUF does), so a
//!   feed can recover from an attacker who used a stolen key to sign a huge version.
//! - mix-and-match: a catalog must match the size, sha256 and version the timestamp names.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::feed::catalog::Catalog;
use crate::trust::dsse::Envelope;
use crate::trust::error::TrustError;
use crate::trust::roles::{Role, Root, TimestampDoc, TimestampMeta};

/// The trust the appliance has accumulated for one feed (persisted by the caller).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustState {
    /// The newest verified root.
    pub root: Root,
    /// Highest accepted catalog version, and sha256 of its payload.
    pub catalog_version: Option<u64>,
    pub catalog_sha256: Option<String>,
    /// Highest accepted timestamp version, and sha256 of its payload.
    pub timestamp_version: Option<u64>,
    pub timestamp_sha256: Option<String>,
    /// The latest `issued` time of any accepted catalog or timestamp.
    pub newest_signed_time: Timestamp,
}

#[derive(Deserialize)]
struct VersionOnly {
    version: u64,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl TrustState {
    /// Starts trust from a pinned root envelope (shipped in `mirror/` or configured).
    /// The pin is what makes it trusted; its self-signatures are checked so a corrupt
    /// or wrong file is caught at once.
    pub fn from_pinned_root(envelope: &[u8]) -> Result<Self, TrustError> {
        let env = Envelope::from_json(envelope)?;
        let root = Root::parse(&env.payload)?;
        root.verify_role(Role::Root, &env)?;
        Ok(Self {
            root,
            catalog_version: None,
            catalog_sha256: None,
            timestamp_version: None,
            timestamp_sha256: None,
            newest_signed_time: Timestamp::UNIX_EPOCH,
        })
    }

    /// The time expiry is judged against: a clock set back cannot go behind what signed
    /// metadata has already proven.
    pub fn effective_now(&self, now: Timestamp) -> Timestamp {
        now.max(self.newest_signed_time)
    }

    /// Applies root envelopes in order. Each must be exactly the next version and be
    /// signed by a threshold of the current root's root keys AND of its own root keys.
    /// Roots at or below the trusted version are skipped: a bundle made for an appliance
    /// further behind carries them, and they grant nothing.
    pub fn update_root_chain(&self, new_roots: &[Vec<u8>]) -> Result<TrustState, TrustError> {
        let mut state = self.clone();
        for bytes in new_roots {
            let env = Envelope::from_json(bytes)?;
            // The version is read before the signatures are checked only to decide what
            // to do with the envelope; nothing else of the unverified payload is used.
            let peek: VersionOnly =
                serde_json::from_slice(&env.payload).map_err(|e| TrustError::MalformedPayload {
                    role: "root".into(),
                    reason: e.to_string(),
                })?;
            let expected = state.root.version + 1;
            if peek.version < expected {
                continue;
            }
            if peek.version > expected {
                return Err(TrustError::RootSkipped {
                    given: peek.version,
                    expected,
                });
            }
            state.root.verify_role(Role::Root, &env).map_err(|e| {
                TrustError::RootNotSignedByOld {
                    version: peek.version,
                    cause: Box::new(e),
                }
            })?;
            let new = Root::parse(&env.payload)?;
            if new.version != expected {
                return Err(TrustError::RootSkipped {
                    given: new.version,
                    expected,
                });
            }
            new.verify_role(Role::Root, &env)
                .map_err(|e| TrustError::RootNotSignedByNew {
                    version: new.version,
                    cause: Box::new(e),
                })?;
            if !same_keys(&state.root, &new, Role::Catalog) {
                state.catalog_version = None;
                state.catalog_sha256 = None;
            }
            if !same_keys(&state.root, &new, Role::Timestamp) {
                state.timestamp_version = None;
                state.timestamp_sha256 = None;
            }
            state.root = new;
        }
        Ok(state)
    }

    /// Verifies a timestamp envelope; returns it and the state that accepting it gives.
    pub fn verify_timestamp(
        &self,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<(TimestampDoc, TrustState), TrustError> {
        self.check_root_fresh(now)?;
        let env = Envelope::from_json(bytes)?;
        let payload = self.root.verify_role(Role::Timestamp, &env)?;
        let ts = TimestampDoc::parse(&payload)?;
        let sha = sha256_hex(&payload);
        check_version(
            "timestamp",
            ts.version,
            &sha,
            self.timestamp_version,
            self.timestamp_sha256.as_deref(),
        )?;
        if let Some(accepted) = self.catalog_version
            && ts.catalog.version < accepted
        {
            return Err(TrustError::Rollback {
                role: "catalog",
                given: ts.catalog.version,
                accepted,
            });
        }
        self.check_fresh("timestamp", ts.version, ts.expires, now)?;
        let mut next = self.clone();
        next.timestamp_version = Some(ts.version);
        next.timestamp_sha256 = Some(sha);
        next.newest_signed_time = self.newest_signed_time.max(ts.issued);
        Ok((ts, next))
    }

    /// Verifies a catalog envelope (against the timestamp's record of it when given),
    /// then validates its content; returns it and the state that accepting it gives.
    pub fn verify_catalog(
        &self,
        bytes: &[u8],
        now: Timestamp,
        expected: Option<&TimestampMeta>,
    ) -> Result<(Catalog, TrustState), TrustError> {
        self.check_root_fresh(now)?;
        if let Some(meta) = expected {
            let found_sha256 = sha256_hex(bytes);
            if bytes.len() as u64 != meta.size || found_sha256 != meta.sha256 {
                return Err(TrustError::TimestampHash {
                    expected: meta.size,
                    expected_sha256: meta.sha256.clone(),
                    found: bytes.len() as u64,
                    found_sha256,
                });
            }
        }
        let env = Envelope::from_json(bytes)?;
        let payload = self.root.verify_role(Role::Catalog, &env)?;
        let catalog = Catalog::parse(&payload)?;
        if let Some(meta) = expected
            && meta.version != catalog.version
        {
            return Err(TrustError::TimestampVersion {
                given: catalog.version,
                expected: meta.version,
            });
        }
        let sha = sha256_hex(&payload);
        check_version(
            "catalog",
            catalog.version,
            &sha,
            self.catalog_version,
            self.catalog_sha256.as_deref(),
        )?;
        self.check_fresh("catalog", catalog.version, catalog.expires, now)?;
        catalog
            .validate()
            .map_err(|source| TrustError::InvalidCatalog {
                version: catalog.version,
                cause: source,
            })?;
        let mut next = self.clone();
        next.catalog_version = Some(catalog.version);
        next.catalog_sha256 = Some(sha);
        next.newest_signed_time = self.newest_signed_time.max(catalog.issued);
        Ok((catalog, next))
    }

    fn check_root_fresh(&self, now: Timestamp) -> Result<(), TrustError> {
        self.check_fresh("root", self.root.version, self.root.expires, now)
    }

    fn check_fresh(
        &self,
        role: &'static str,
        version: u64,
        expires: Timestamp,
        now: Timestamp,
    ) -> Result<(), TrustError> {
        if expires <= self.effective_now(now) {
            return Err(TrustError::Expired {
                role,
                version,
                expires,
                now,
                newest: self.newest_signed_time,
            });
        }
        Ok(())
    }
}

fn same_keys(old: &Root, new: &Root, role: Role) -> bool {
    let mut a = old.role(role).keyids.clone();
    let mut b = new.role(role).keyids.clone();
    a.sort();
    b.sort();
    a == b
}

/// Refuses a version below the accepted one, or the same version with other content.
fn check_version(
    role: &'static str,
    given: u64,
    sha: &str,
    accepted: Option<u64>,
    accepted_sha: Option<&str>,
) -> Result<(), TrustError> {
    match accepted {
        Some(accepted) if given < accepted => Err(TrustError::Rollback {
            role,
            given,
            accepted,
        }),
        Some(accepted) if given == accepted && accepted_sha != Some(sha) => {
            Err(TrustError::SameVersionDifferentContent {
                role,
                version: given,
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
