//! ed25519 keys and key ids.
//!
//! A key id is the lowercase hex sha256 of the 32-byte public key (DESIGN §3). Secret
//! key files hold a versioned header line and the hex seed, are written atomically with
//! mode 0600, and are refused on load when other users could read them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use crate::error::KeyError;
use crate::fsutil;

const SECRET_HEADER: &str = "patchward-ed25519-secret-v1";

/// Key id of a public key: lowercase hex sha256 of its 32 bytes.
pub fn key_id(public: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(public.as_bytes()))
}

/// An ed25519 signing key with its id.
pub struct Ed25519Key {
    signing: SigningKey,
}

impl std::fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Ed25519Key")
            .field("key_id", &self.key_id())
            .finish()
    }
}

impl Ed25519Key {
    /// A fresh key from `rng`.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self {
            signing: SigningKey::generate(rng),
        }
    }

    pub fn public(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    pub fn key_id(&self) -> String {
        key_id(&self.public())
    }

    /// The public key as lowercase hex (how it appears in metadata and config).
    pub fn public_hex(&self) -> String {
        hex::encode(self.public().as_bytes())
    }

    /// Signs `msg` (callers sign exact bytes, e.g. a DSSE PAE, never re-serialised JSON).
    pub fn sign(&self, msg: &[u8]) -> Signature {
        self.signing.sign(msg)
    }

    /// The secret file's text.
    fn to_file_text(&self) -> String {
        format!(
            "{SECRET_HEADER}\n{}\n",
            hex::encode(self.signing.to_bytes())
        )
    }

    /// Writes the secret key (mode 0600, atomically).
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        fsutil::write_atomic(path, self.to_file_text().as_bytes(), 0o600).map_err(|source| {
            KeyError::Write {
                path: path.to_path_buf(),
                cause: source,
            }
        })
    }

    /// Loads a secret key written by [`Ed25519Key::save`].
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = read_secret_file(path)?;
        let malformed = |reason: &str| KeyError::Malformed {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let mut lines = text.lines();
        if lines.next() != Some(SECRET_HEADER) {
            return Err(malformed(&format!("first line is not {SECRET_HEADER:?}")));
        }
        let seed = lines
            .next()
            .and_then(|l| hex::decode(l.trim()).ok())
            .ok_or_else(|| malformed("second line is not a hex seed"))?;
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| malformed("seed is not 32 bytes"))?;
        Ok(Self {
            signing: SigningKey::from_bytes(&seed),
        })
    }
}

/// Reads a file holding secret material, refusing it when group or others can read it.
pub fn read_secret_file(path: &Path) -> Result<String, KeyError> {
    let read_err = |source| KeyError::Read {
        path: path.to_path_buf(),
        cause: source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    std::fs::read_to_string(path).map_err(read_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Verifier;

    #[test]
    fn save_load_sign_verify() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        let k = Ed25519Key::generate(&mut rand::rngs::OsRng);
        k.save(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let k2 = Ed25519Key::load(&p).unwrap();
        assert_eq!(k.key_id(), k2.key_id());
        assert_eq!(k.key_id().len(), 64);
        let sig = k2.sign(b"msg");
        k.public().verify(b"msg", &sig).unwrap();
    }

    #[test]
    fn loose_permissions_and_garbage_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        Ed25519Key::generate(&mut rand::rngs::OsRng)
            .save(&p)
            .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Ed25519Key::load(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::write(&p, "nonsense\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = Ed25519Key::load(&p).unwrap_err().to_string();
        assert!(e.contains("malformed"), "{e}");
    }
}
