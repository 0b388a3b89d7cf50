//! Keys and signatures.
//!
//! - [`keys`]: ed25519 keys and the shared key-id rule (lowercase hex sha256 of the
//!   32-byte public key).
//! - [`dsse`]: DSSE envelopes (PAE, threshold verification with `verify_strict`).
//! - [`roles`]: wire types of the feed's root and timestamp roles.
//! - [`state`]: [`state::TrustState`] and the pure checks against rollback, freeze,
//!   forged metadata and skipped root rotations.
//! - [`error`]: [`error::TrustError`], one variant per refused case.
//! - [`openpgp`]: the appliance's OpenPGP v4 Ed25519Legacy key that signs apt indexes.

pub mod dsse;
pub mod error;
pub mod keys;
pub mod openpgp;
pub mod roles;
pub mod state;
#[cfg(test)]
pub(crate) mod testkit;
