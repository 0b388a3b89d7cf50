//! The appliance's OpenPGP key for apt (`apt.pgp`, DESIGN.md §3 "Keys") and the two
//! signatures apt clients check: the clearsigned `InRelease` and the detached, armored
//! `Release.gpg` (DESIGN.md §7).
//!
//! The key is deliberately old-fashioned: an OpenPGP **v4** key whose primary key is
//! **Ed25519Legacy** (EdDSA, algorithm 22), with no subkeys. Debian 12's apt 2.6 and
//! gpgv 2.2 reject v6 keys and the RFC 9580 Ed25519 algorithm (27), and a primary key that
//! signs by itself keeps the keyring a client has to trust to one packet sequence.
//!
//! Time never comes from the clock here: callers pass the key's creation time and each
//! signature's creation time (`jiff::Timestamp`, from the crate's `Clock`), so tests and
//! re-signing are reproducible. Ed25519 signatures are deterministic, so the same text,
//! key and time give byte-identical output. The one exception is inside `pgp` 0.21 itself:
//! it stamps the key's self-signature with the wall clock, which is why
//! [`AptSigningKey::generate_at`] refuses creation times in the future.

use jiff::Timestamp;
use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, Deserializable, DetachedSignature, EncryptionCaps,
    KeyType, SecretKeyParamsBuilder, SignedPublicKey, SignedSecretKey,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::packet::{SignatureConfig, SignatureType, Subpacket, SubpacketData};
use pgp::ser::Serialize;
use pgp::types::{CompressionAlgorithm, KeyDetails, KeyVersion, Password};

/// Hash used for both `InRelease` and `Release.gpg`. SHA-256 is what apt's own
/// documentation shows (`Hash: SHA256`) and what every gpgv that can verify EdDSA accepts.
const HASH: HashAlgorithm = HashAlgorithm::Sha256;

/// Errors from creating, loading or using the apt signing key.
#[derive(Debug, thiserror::Error)]
pub enum OpenPgpError {
    /// The user id given for a new key is unusable.
    #[error(
        "invalid user id {user_id:?} for the apt signing key: {reason}; use a form like \
         \"Patchward appliance <apt@patchward.invalid>\""
    )]
    InvalidUserId {
        user_id: String,
        reason: &'static str,
    },

    /// A time outside what an OpenPGP v4 packet can hold (unsigned 32-bit Unix seconds).
    #[error(
        "time {time} cannot be written into an OpenPGP packet (it must lie between \
         1970-01-01 and 2106-02-07 UTC); check the system clock"
    )]
    TimeOutOfRange { time: Timestamp },

    /// A new key would be created in the future relative to its own self-signature.
    #[error(
        "cannot create the apt signing key with creation time {created}: that is after the \
         current wall-clock time {now}, and gpg rejects keys whose self-signature predates \
         them; check the system clock or pass the current time"
    )]
    CreatedInFuture { created: Timestamp, now: Timestamp },

    /// A signature would be dated before the key existed.
    #[error(
        "cannot sign at {signed_at}: the apt signing key was created later, at {created}, \
         and gpgv rejects such signatures; check the system clock (the key is fine)"
    )]
    SignedBeforeKeyCreation {
        signed_at: Timestamp,
        created: Timestamp,
    },

    /// The `pgp` crate failed to generate a key.
    #[error("generating the apt signing key failed: {0}")]
    Generate(pgp::errors::Error),

    /// The stored key could not be parsed as an armored OpenPGP secret key.
    #[error(
        "the apt signing key is not a readable ASCII-armored OpenPGP secret key ({0}); \
         restore apt.pgp from a backup, or generate a new key and give apt clients its \
         new public key"
    )]
    Parse(pgp::errors::Error),

    /// The stored key is OpenPGP, but not the shape apt 2.6 / gpgv 2.2 accept.
    #[error(
        "the apt signing key is {found}, but apt 2.6 / gpgv 2.2 need a v4 Ed25519Legacy \
         (EdDSA, algorithm 22) key; generate a new key with patchward rather than importing \
         one made by another tool"
    )]
    UnsupportedKey { found: String },

    /// The stored key's secret material is protected by a passphrase.
    #[error(
        "the apt signing key is passphrase-protected, but the appliance signs unattended; \
         export it without a passphrase (the file is kept at mode 0600)"
    )]
    Encrypted,

    /// The stored key's self-signatures do not check out, or do not allow signing.
    #[error(
        "the apt signing key's self-signatures are invalid or do not permit signing ({reason}); \
         the file is damaged or was not made by patchward; restore it from a backup or \
         generate a new key"
    )]
    BadSelfSignature { reason: String },

    /// Text given to [`AptSigningKey::clearsign`] is not valid UTF-8.
    #[error(
        "the text to clearsign is not UTF-8 (invalid byte at offset {valid_up_to}); a \
         Release file must be ASCII/UTF-8 text"
    )]
    NotUtf8 { valid_up_to: usize },

    /// Text given to [`AptSigningKey::clearsign`] has a line gpg and apt would read
    /// differently from how it is signed.
    #[error(
        "line {line} of the text to clearsign {problem}; the cleartext signature would not \
         match what apt and gpgv read, so fix the Release renderer"
    )]
    UnsignableLine { line: usize, problem: &'static str },

    /// The `pgp` crate failed while making or encoding a signature.
    #[error("OpenPGP signing failed: {0}")]
    Sign(pgp::errors::Error),

    /// A freshly made signature did not verify with the key's own public key.
    #[error(
        "the {what} just made does not verify with the key's own public key ({cause}); \
         nothing was published; this is a bug in patchward or the pgp crate, please report it"
    )]
    SelfCheck {
        what: &'static str,
        cause: pgp::errors::Error,
    },
}

/// The appliance's apt signing key: an OpenPGP v4 Ed25519Legacy primary key with one
/// user id, which certifies and signs by itself (no subkeys).
///
/// The public forms are computed once on construction, so the accessors cannot fail and
/// serving `/apt/key.asc` costs nothing.
#[derive(Clone)]
pub struct AptSigningKey {
    secret: SignedSecretKey,
    public_armored: String,
    public_binary: Vec<u8>,
}

// Hand-written so that debug output can never contain secret key material.
impl std::fmt::Debug for AptSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AptSigningKey")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl AptSigningKey {
    /// Generates a new key created now (wall clock). Prefer [`Self::generate_at`] with the
    /// crate's `Clock` where the time must be controlled.
    pub fn generate<R>(user_id: &str, rng: R) -> Result<Self, OpenPgpError>
    where
        R: rand::Rng + rand::CryptoRng,
    {
        Self::generate_at(user_id, Timestamp::now(), rng)
    }

    /// Generates a new key whose creation time is `created`.
    ///
    /// `created` must not be in the future: `pgp` 0.21 dates the self-signature with the
    /// wall clock, and gpg ignores a self-signature older than its key.
    pub fn generate_at<R>(user_id: &str, created: Timestamp, rng: R) -> Result<Self, OpenPgpError>
    where
        R: rand::Rng + rand::CryptoRng,
    {
        check_user_id(user_id)?;
        let now = Timestamp::now();
        if created > now {
            return Err(OpenPgpError::CreatedInFuture { created, now });
        }

        let params = SecretKeyParamsBuilder::default()
            .version(KeyVersion::V4)
            .key_type(KeyType::Ed25519Legacy)
            .created_at(to_pgp_time(created)?)
            .can_certify(true)
            .can_sign(true)
            .can_encrypt(EncryptionCaps::None)
            .primary_user_id(user_id.to_owned())
            // Preferences only matter to someone encrypting to or certifying this key;
            // state modern ones so gpg does not fall back to its legacy defaults.
            .preferred_hash_algorithms(vec![HashAlgorithm::Sha512, HashAlgorithm::Sha256].into())
            .preferred_symmetric_algorithms(
                vec![SymmetricKeyAlgorithm::AES256, SymmetricKeyAlgorithm::AES128].into(),
            )
            .preferred_compression_algorithms(vec![CompressionAlgorithm::Uncompressed].into())
            .build()
            // The builder only fails on inconsistent parameters, which are fixed above.
            .map_err(|e| OpenPgpError::Generate(pgp::errors::Error::from(e.to_string())))?;
        let secret = params.generate(rng).map_err(OpenPgpError::Generate)?;
        Self::from_secret(secret)
    }

    /// Loads a key written by [`Self::to_armored_secret`], checking that it is still the
    /// shape apt clients accept.
    pub fn from_armored_secret(armored: &str) -> Result<Self, OpenPgpError> {
        let (secret, _headers) =
            SignedSecretKey::from_string(armored).map_err(OpenPgpError::Parse)?;
        Self::from_secret(secret)
    }

    /// The unencrypted secret key, ASCII-armored. Store it with mode 0600.
    pub fn to_armored_secret(&self) -> String {
        self.secret
            .to_armored_string(ArmorOptions::default())
            // Armoring writes into a `Vec` (cannot fail) and base64 is ASCII; a key that
            // loaded or was generated always serialises.
            .expect("armoring a valid secret key into memory cannot fail")
    }

    /// The ASCII-armored public key: what `/apt/key.asc` serves and what goes, indented,
    /// into a deb822 `Signed-By:` field.
    pub fn public_key_armored(&self) -> &str {
        &self.public_armored
    }

    /// The binary (unarmored) public key, as gpgv expects in a `--keyring` file.
    pub fn public_key_binary(&self) -> &[u8] {
        &self.public_binary
    }

    /// The v4 fingerprint as gpg shows it: 40 uppercase hex digits, no spaces.
    pub fn fingerprint(&self) -> String {
        format!("{:X}", self.secret.fingerprint())
    }

    /// When the key was created.
    pub fn created_at(&self) -> Timestamp {
        Timestamp::from_second(i64::from(self.secret.created_at().as_secs()))
            .expect("a u32 count of seconds is always a valid jiff timestamp")
    }

    /// Clearsigns `text` into an apt `InRelease` file, dated `signed_at`.
    ///
    /// The layout is what `gpg --clearsign` writes and apt's parser expects:
    /// `-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n`, the dash-escaped text, then
    /// the armored signature. As with gpg, one trailing newline of `text` is part of the
    /// framing rather than the signed text, so `"...\n"` and `"..."` give identical output
    /// and the last text line sits directly above `-----BEGIN PGP SIGNATURE-----`.
    ///
    /// Rejects text that would be signed differently from how gpgv reads it: lines with
    /// trailing spaces or tabs (the framework ignores them; `pgp` 0.21 would sign them)
    /// and carriage returns.
    pub fn clearsign(&self, text: &[u8], signed_at: Timestamp) -> Result<Vec<u8>, OpenPgpError> {
        let text = std::str::from_utf8(text).map_err(|e| OpenPgpError::NotUtf8 {
            valid_up_to: e.valid_up_to(),
        })?;
        check_clearsignable(text)?;
        // The framework's final line break belongs to the armor, not the text; `pgp`
        // always writes one after the text, so drop the text's own to avoid a blank line.
        let text = text.strip_suffix('\n').unwrap_or(text);

        let config = self.signature_config(SignatureType::Text, signed_at)?;
        let message =
            CleartextSignedMessage::new(text, config, &self.secret.primary_key, &Password::empty())
                .map_err(OpenPgpError::Sign)?;
        let armored = message
            .to_armored_string(ArmorOptions::default())
            .map_err(OpenPgpError::Sign)?;

        // Verify the bytes we are about to hand out, parsed back the way a client would,
        // so a library quirk can never publish an InRelease that every client rejects.
        let self_check = CleartextSignedMessage::from_string(&armored).and_then(|(parsed, _)| {
            parsed
                .verify(self.secret.primary_key.public_key())
                .map(|_| ())
        });
        self_check.map_err(|source| OpenPgpError::SelfCheck {
            what: "InRelease signature",
            cause: source,
        })?;
        Ok(armored.into_bytes())
    }

    /// Signs `data` (a `Release` file) into an ASCII-armored detached binary-document
    /// signature (`Release.gpg`), dated `signed_at`.
    pub fn detached_armored(
        &self,
        data: &[u8],
        signed_at: Timestamp,
    ) -> Result<Vec<u8>, OpenPgpError> {
        let config = self.signature_config(SignatureType::Binary, signed_at)?;
        let signature = config
            .sign(&self.secret.primary_key, &Password::empty(), data)
            .map_err(OpenPgpError::Sign)?;
        let armored = DetachedSignature::new(signature)
            .to_armored_bytes(ArmorOptions::default())
            .map_err(OpenPgpError::Sign)?;

        let self_check = DetachedSignature::from_armor_single(&armored[..])
            .and_then(|(parsed, _)| parsed.verify(self.secret.primary_key.public_key(), data));
        self_check.map_err(|source| OpenPgpError::SelfCheck {
            what: "Release.gpg signature",
            cause: source,
        })?;
        Ok(armored)
    }

    /// Validates a parsed or generated key and caches its public forms.
    fn from_secret(secret: SignedSecretKey) -> Result<Self, OpenPgpError> {
        let primary = &secret.primary_key;
        if primary.version() != KeyVersion::V4
            || primary.algorithm() != PublicKeyAlgorithm::EdDSALegacy
        {
            return Err(OpenPgpError::UnsupportedKey {
                found: format!("a {:?} {:?} key", primary.version(), primary.algorithm()),
            });
        }
        if !secret.secret_subkeys.is_empty() || !secret.public_subkeys.is_empty() {
            // gpgv would accept a signing subkey, but signatures here always come from
            // the primary key; a key with subkeys was not made by `generate`.
            return Err(OpenPgpError::UnsupportedKey {
                found: "a key with subkeys".to_owned(),
            });
        }
        if primary.secret_params().is_encrypted() {
            return Err(OpenPgpError::Encrypted);
        }
        secret
            .verify_bindings()
            .map_err(|e| OpenPgpError::BadSelfSignature {
                reason: e.to_string(),
            })?;
        let can_sign = secret
            .details
            .users
            .iter()
            .flat_map(|user| &user.signatures)
            .any(|sig| sig.key_flags().sign());
        if !can_sign {
            return Err(OpenPgpError::BadSelfSignature {
                reason: "no user id self-signature carries the signing key flag".to_owned(),
            });
        }

        let public: SignedPublicKey = secret.to_public_key();
        let public_armored = public
            .to_armored_string(ArmorOptions::default())
            .map_err(OpenPgpError::Sign)?;
        let public_binary = public.to_bytes().map_err(OpenPgpError::Sign)?;
        Ok(Self {
            secret,
            public_armored,
            public_binary,
        })
    }

    /// A v4 signature config carrying what gpgv needs to find and date the key: creation
    /// time and issuer fingerprint hashed, the legacy issuer key id unhashed (gpgv 2.2
    /// reports `NO_PUBKEY <keyid>` from it when the key is missing).
    fn signature_config(
        &self,
        typ: SignatureType,
        signed_at: Timestamp,
    ) -> Result<SignatureConfig, OpenPgpError> {
        let created = self.created_at();
        if signed_at < created {
            return Err(OpenPgpError::SignedBeforeKeyCreation { signed_at, created });
        }
        let key = &self.secret.primary_key;
        let mut config = SignatureConfig::v4(typ, key.algorithm(), HASH);
        let subpacket = |data| Subpacket::regular(data).map_err(OpenPgpError::Sign);
        config.hashed_subpackets = vec![
            subpacket(SubpacketData::IssuerFingerprint(key.fingerprint()))?,
            subpacket(SubpacketData::SignatureCreationTime(to_pgp_time(
                signed_at,
            )?))?,
        ];
        config.unhashed_subpackets =
            vec![subpacket(SubpacketData::IssuerKeyId(key.legacy_key_id()))?];
        Ok(config)
    }
}

/// OpenPGP v4 stores times as unsigned 32-bit Unix seconds; sub-second parts are dropped.
fn to_pgp_time(time: Timestamp) -> Result<pgp::types::Timestamp, OpenPgpError> {
    u32::try_from(time.as_second())
        .map(pgp::types::Timestamp::from_secs)
        .map_err(|_| OpenPgpError::TimeOutOfRange { time })
}

fn check_user_id(user_id: &str) -> Result<(), OpenPgpError> {
    let reason = if user_id.trim().is_empty() {
        "it is empty"
    } else if user_id.chars().any(char::is_control) {
        // A newline would split the id when gpg and apt print it.
        "it contains control characters"
    } else {
        return Ok(());
    };
    Err(OpenPgpError::InvalidUserId {
        user_id: user_id.to_owned(),
        reason,
    })
}

/// Refuses text whose signed form (per the cleartext framework) would differ from what
/// `pgp` 0.21 hashes: it normalises line endings but, unlike gpg, does not strip trailing
/// whitespace before hashing, so such a line would produce a signature gpgv calls BAD.
/// Carriage returns are refused too: Release files use bare LF, and a stray CR is both
/// trailing whitespace to gpg and content to apt.
fn check_clearsignable(text: &str) -> Result<(), OpenPgpError> {
    for (index, line) in text.split('\n').enumerate() {
        let problem = if line.contains('\r') {
            "contains a carriage return"
        } else if line.ends_with([' ', '\t']) {
            "ends with a space or tab"
        } else {
            continue;
        };
        return Err(OpenPgpError::UnsignableLine {
            line: index + 1,
            problem,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
