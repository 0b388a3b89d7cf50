//! Keys and signatures.
//!
//! - [`keys`]: the appliance's ed25519 key (job tickets, compliance summaries) and the
//!   shared key-id rule (lowercase hex sha256 of the 32-byte public key).
//! - [`openpgp`]: the appliance's OpenPGP v4 Ed25519Legacy key that signs apt indexes.

pub mod keys;
pub mod openpgp;
