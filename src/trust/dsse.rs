//! DSSE envelopes: signed bytes with a type, and threshold verification.
//!
//! An envelope is `{"payloadType", "payload" (base64), "signatures": [{"keyid", "sig"}]}`
//! and each signature covers `PAE(type, body)`, so a signature for one payload type can
//! never be replayed as another. Signatures are over the exact payload bytes: nothing
//! here (or in any caller) re-serialises JSON before verifying, because two encoders
//! never agree on bytes. Verification uses `verify_strict` (no small-order keys, no
//! malleable signatures) and counts distinct key ids, so one key signing twice is one
//! vote, and signatures by keys the caller does not trust for this role are ignored.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::trust::error::TrustError;
use crate::trust::keys::Ed25519Key;

/// More signatures than this is not a real envelope; refusing early bounds the work
/// a hostile envelope can cause (each signature costs a curve operation).
pub const MAX_SIGNATURES: usize = 64;

/// A DSSE envelope as it appears on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The signed bytes (base64 in JSON).
    #[serde(with = "b64")]
    pub payload: Vec<u8>,
    pub signatures: Vec<Signature>,
}

/// One signature in an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// Lowercase hex sha256 of the signer's public key. Only a hint: it picks which
    /// trusted key to try, it never makes a key trusted.
    pub keyid: String,
    /// The 64-byte ed25519 signature (base64 in JSON).
    #[serde(with = "b64")]
    pub sig: Vec<u8>,
}

/// DSSE pre-authentication encoding: `"DSSEv1" SP len(type) SP type SP len(body) SP body`.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + body.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(body);
    out
}

/// The short role name in a payload type, for messages
/// (`application/vnd.patchward.catalog+json` -> `catalog`).
pub fn role_label(payload_type: &str) -> &str {
    payload_type
        .strip_prefix("application/vnd.patchward.")
        .and_then(|s| s.strip_suffix("+json"))
        .unwrap_or(payload_type)
}

impl Envelope {
    /// Signs `body` with each key (in order) under `payload_type`.
    pub fn sign(payload_type: &str, body: &[u8], keys: &[&Ed25519Key]) -> Self {
        let msg = pae(payload_type, body);
        let signatures = keys
            .iter()
            .map(|k| Signature {
                keyid: k.key_id(),
                sig: k.sign(&msg).to_bytes().to_vec(),
            })
            .collect();
        Self {
            payload_type: payload_type.to_string(),
            payload: body.to_vec(),
            signatures,
        }
    }

    /// Parses an envelope from its JSON bytes (no signature checks yet).
    pub fn from_json(bytes: &[u8]) -> Result<Self, TrustError> {
        serde_json::from_slice(bytes).map_err(|e| TrustError::MalformedEnvelope {
            reason: e.to_string(),
        })
    }

    /// The envelope's JSON bytes (pretty, so operators can read published files).
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("envelope serialises");
        v.push(b'\n');
        v
    }

    /// Verifies that at least `threshold` distinct keys from `allowed_keyids` (looked up
    /// in `trusted`) signed this envelope as `expected_type`; returns the payload bytes.
    ///
    /// Signatures by keys outside `allowed_keyids` are ignored rather than fatal (a
    /// rotated-out key may still sign), but when the threshold is missed the error lists
    /// every signature that did not count and why, so "wrong signer" is visible.
    pub fn verify(
        &self,
        expected_type: &str,
        trusted: &BTreeMap<String, VerifyingKey>,
        allowed_keyids: &[String],
        threshold: u32,
    ) -> Result<Vec<u8>, TrustError> {
        let role = role_label(expected_type).to_string();
        if self.payload_type != expected_type {
            return Err(TrustError::PayloadType {
                expected: expected_type.to_string(),
                found: self.payload_type.clone(),
            });
        }
        if self.signatures.len() > MAX_SIGNATURES {
            return Err(TrustError::TooManySignatures {
                count: self.signatures.len(),
                max: MAX_SIGNATURES,
            });
        }
        if threshold == 0 {
            // A zero threshold would accept unsigned data; roles refuse it at parse
            // time, this guards direct callers.
            return Err(TrustError::ZeroThreshold { role });
        }
        let msg = pae(&self.payload_type, &self.payload);
        let mut valid: BTreeSet<&str> = BTreeSet::new();
        let mut notes = Vec::new();
        for s in &self.signatures {
            let short = short_id(&s.keyid);
            if !allowed_keyids.iter().any(|k| k == &s.keyid) {
                notes.push(format!("signed by key {short} which is not a {role} key"));
                continue;
            }
            let Some(key) = trusted.get(&s.keyid) else {
                notes.push(format!(
                    "key {short} is listed for {role} but not in the root"
                ));
                continue;
            };
            let Ok(sig) = ed25519_dalek::Signature::from_slice(&s.sig) else {
                notes.push(format!("signature by key {short} is not 64 bytes"));
                continue;
            };
            if key.verify_strict(&msg, &sig).is_err() {
                notes.push(format!(
                    "signature by key {short} does not verify (tampered payload or wrong key)"
                ));
                continue;
            }
            if !valid.insert(s.keyid.as_str()) {
                notes.push(format!("key {short} signed more than once (counted once)"));
            }
        }
        if (valid.len() as u64) < u64::from(threshold) {
            return Err(TrustError::Threshold {
                role,
                valid: valid.len(),
                threshold,
                notes,
            });
        }
        Ok(self.payload.clone())
    }
}

/// The first 16 hex digits of a key id, enough to tell keys apart in a message.
pub fn short_id(keyid: &str) -> String {
    let cut: String = keyid.chars().take(16).collect();
    if keyid.chars().count() > 16 {
        format!("{cut}...")
    } else {
        cut
    }
}

mod b64 {
    //! Standard base64 (with padding) for byte fields, as DSSE specifies.
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "application/vnd.patchward.catalog+json";

    fn key() -> Ed25519Key {
        Ed25519Key::generate(&mut rand::rngs::OsRng)
    }

    fn trust(keys: &[&Ed25519Key]) -> (BTreeMap<String, VerifyingKey>, Vec<String>) {
        let map = keys.iter().map(|k| (k.key_id(), k.public())).collect();
        let ids = keys.iter().map(|k| k.key_id()).collect();
        (map, ids)
    }

    #[test]
    fn pae_matches_the_dsse_spec_vector() {
        // The example from the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn round_trip_through_json_with_dsse_field_names() {
        let k = key();
        let env = Envelope::sign(T, b"{\"a\": 1}", &[&k]);
        let json = env.to_json();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["payloadType"], T);
        assert_eq!(v["payload"], STANDARD.encode(b"{\"a\": 1}"));
        assert_eq!(v["signatures"][0]["keyid"], k.key_id());
        assert!(v["signatures"][0]["sig"].is_string());
        let back = Envelope::from_json(&json).unwrap();
        let (map, ids) = trust(&[&k]);
        assert_eq!(back.verify(T, &map, &ids, 1).unwrap(), b"{\"a\": 1}");
    }

    #[test]
    fn duplicate_signatures_by_one_key_count_once() {
        let (a, b) = (key(), key());
        let env = Envelope::sign(T, b"x", &[&a, &a, &a]);
        let (map, ids) = trust(&[&a, &b]);
        let e = env.verify(T, &map, &ids, 2).unwrap_err().to_string();
        assert!(
            e.starts_with("1 of 2 required signatures from the catalog role"),
            "{e}"
        );
        assert!(e.contains("signed more than once (counted once)"), "{e}");
    }

    #[test]
    fn wrong_signer_is_named_and_unknown_keys_are_ignored() {
        let (a, b, stranger) = (key(), key(), key());
        let (map, ids) = trust(&[&a, &b]);
        let env = Envelope::sign(T, b"x", &[&stranger]);
        let e = env.verify(T, &map, &ids, 1).unwrap_err().to_string();
        let short = short_id(&stranger.key_id());
        assert!(
            e.contains(&format!("signed by key {short} which is not a catalog key")),
            "{e}"
        );
        // An extra signature by an unknown key does not stop a valid envelope.
        let env = Envelope::sign(T, b"x", &[&stranger, &a, &b]);
        assert_eq!(env.verify(T, &map, &ids, 2).unwrap(), b"x");
    }

    #[test]
    fn tampered_payload_and_type_mismatch_are_refused() {
        let a = key();
        let (map, ids) = trust(&[&a]);
        let mut env = Envelope::sign(T, b"x", &[&a]);
        env.payload = b"y".to_vec();
        let e = env.verify(T, &map, &ids, 1).unwrap_err().to_string();
        assert!(
            e.contains("does not verify (tampered payload or wrong key)"),
            "{e}"
        );

        let env = Envelope::sign("application/vnd.patchward.root+json", b"x", &[&a]);
        let e = env.verify(T, &map, &ids, 1).unwrap_err().to_string();
        assert_eq!(
            e,
            "payload type is \"application/vnd.patchward.root+json\" but \
             \"application/vnd.patchward.catalog+json\" was expected (metadata of another kind substituted)"
        );
        // Re-labelling the type without re-signing breaks the PAE binding.
        let mut env = Envelope::sign("application/vnd.patchward.root+json", b"x", &[&a]);
        env.payload_type = T.to_string();
        assert!(env.verify(T, &map, &ids, 1).is_err());
    }

    #[test]
    fn malformed_envelopes_are_refused() {
        assert!(Envelope::from_json(b"{}").is_err());
        let e = Envelope::from_json(br#"{"payloadType":"t","payload":"!!","signatures":[]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("envelope is not valid DSSE JSON"), "{e}");
        let e =
            Envelope::from_json(br#"{"payloadType":"t","payload":"","signatures":[],"extra":1}"#)
                .unwrap_err()
                .to_string();
        assert!(e.contains("unknown field"), "{e}");
    }
}
