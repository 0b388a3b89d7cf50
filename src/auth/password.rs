//! Password hashing (argon2id, the crate's defaults: 19 MiB, 2 passes, 1 lane, which is
//! OWASP's recommended minimum) and generated passwords.

use std::sync::LazyLock;

use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use rand::Rng;

/// Shortest password a person may choose.
pub const MIN_LEN: usize = 12;
/// Longest accepted (bounds the hashing work an attacker can ask for).
pub const MAX_LEN: usize = 1024;
/// Length of generated passwords (about 140 bits from a 57-symbol alphabet).
pub const GENERATED_LEN: usize = 24;

/// Letters and digits without look-alikes (0/O, 1/l/I), so a password read off a
/// console can be typed.
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// A new random password from the operating system's generator.
pub fn generate() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..GENERATED_LEN)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Why a chosen password is refused (a sentence for the form or the terminal).
pub fn check_new(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_LEN {
        return Err(format!(
            "The password is too short: use at least {MIN_LEN} characters (a few words \
             make a good one)."
        ));
    }
    if password.len() > MAX_LEN {
        return Err(format!(
            "The password is too long: at most {MAX_LEN} bytes."
        ));
    }
    if password.chars().any(char::is_control) {
        return Err("The password must not contain control characters.".into());
    }
    if password.trim() != password {
        return Err("The password must not start or end with a space.".into());
    }
    Ok(())
}

/// The argon2id PHC string of `password` with a fresh random salt. CPU-heavy (tens of
/// milliseconds): call it on a blocking thread from async code.
pub fn hash(password: &str) -> Result<String, String> {
    hash_with(&Argon2::default(), password)
}

/// The PHC string of `password` under `argon` with a fresh random salt.
fn hash_with(argon: &Argon2<'_>, password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// True when `password` matches the PHC string `hash`. A malformed hash never matches.
/// CPU-heavy, like [`hash`].
pub fn verify(hash: &str, password: &str) -> bool {
    if password.len() > MAX_LEN {
        return false;
    }
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// The argon2id PHC string of a password this appliance generated itself (the first
/// admin's, shown once on the console), with a light cost: 1 MiB and 1 pass.
///
/// Key stretching protects passwords a person chose, which can be guessed; it adds
/// nothing to a secret of about 140 random bits ([`generate`]), which no search can
/// reach with any per-guess cost. The light cost matters on the appliance's first boot:
/// with the full parameters the hash was 85% of `patchward init`'s CPU (callgrind),
/// about 2 s under emulation while everything else was starting. The password only
/// lives until the first sign-in, which must replace it; the chosen one is hashed by
/// [`hash`] with the full parameters. [`verify`] reads the parameters from the PHC
/// string, so both kinds verify alike.
pub fn hash_generated(password: &str) -> Result<String, String> {
    let params = argon2::Params::new(GENERATED_M_COST_KIB, 1, 1, None)
        .map_err(|e| format!("cannot hash the password: {e}"))?;
    let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    hash_with(&argon, password)
}

/// Memory cost (KiB) of [`hash_generated`].
const GENERATED_M_COST_KIB: u32 = 1024;

/// A hash to verify against when the account does not exist, so a wrong name costs as
/// much time as a wrong password and timing does not reveal which names exist.
pub fn dummy_hash() -> &'static str {
    static DUMMY: LazyLock<String> =
        LazyLock::new(|| hash(&generate()).expect("hashing a generated password"));
    &DUMMY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash("correct horse battery").unwrap();
        let b = hash("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "a fresh salt each time");
        assert!(verify(&a, "correct horse battery"));
        assert!(!verify(&a, "correct horse batterx"));
        assert!(!verify(&a, ""));
        assert!(!verify("not a phc string", "correct horse battery"));
        assert!(!verify(dummy_hash(), "correct horse battery"));
    }

    #[test]
    fn generated_passwords_get_a_light_hash_that_verifies_like_any_other() {
        let pw = generate();
        let light = hash_generated(&pw).unwrap();
        assert!(
            light.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"),
            "{light}"
        );
        assert_ne!(
            light,
            hash_generated(&pw).unwrap(),
            "a fresh salt each time"
        );
        assert!(verify(&light, &pw));
        assert!(!verify(&light, &generate()));
        // A password a person chooses still gets the full cost.
        assert!(
            hash(&pw)
                .unwrap()
                .starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
        );
    }

    #[test]
    fn generated_passwords_are_long_and_distinct() {
        let a = generate();
        assert_eq!(a.len(), GENERATED_LEN);
        assert!(a.bytes().all(|b| ALPHABET.contains(&b)));
        assert_ne!(a, generate());
        assert!(check_new(&a).is_ok());
    }

    #[test]
    fn chosen_passwords_are_checked() {
        assert!(check_new("short").unwrap_err().contains("at least 12"));
        assert!(check_new("eleven char").is_err());
        assert!(check_new("twelve chars").is_ok());
        assert!(check_new(" twelve chars").is_err());
        assert!(check_new("twelve\nchars!").is_err());
        assert!(check_new(&"x".repeat(MAX_LEN + 1)).is_err());
        // Length counts characters, not bytes.
        assert!(check_new("ääääääääääää").is_ok());
    }
}
