//! [`Sha256Hex`]: a blob's name, the lowercase hex sha256 of its bytes.
//!
//! Parsing is strict (exactly 64 lowercase hex digits) because the name becomes a path:
//! a value that passed [`Sha256Hex::parse`] can never walk out of the store's directory,
//! and two spellings of one hash (upper and lower case) can never name two files.

use std::fmt;
use std::str::FromStr;

use super::StoreError;

/// A sha256 digest as 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    /// Parses 64 lowercase hex digits; anything else (upper case, a `sha256:` prefix,
    /// whitespace) is refused.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        if is_sha256_hex(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(StoreError::InvalidHash {
                input: s.chars().take(80).collect(),
            })
        }
    }

    /// The name of a digest computed by `sha2`.
    pub fn from_digest(digest: &[u8; 32]) -> Self {
        Self(hex::encode(digest))
    }

    /// The 64 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The fan-out directory name: the first two hex digits.
    pub(crate) fn prefix(&self) -> &str {
        &self.0[..2]
    }
}

/// True when `s` is exactly 64 lowercase hex digits.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Sha256Hex {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        Self::parse(s)
    }
}

impl AsRef<str> for Sha256Hex {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_is_strict() {
        let ok = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(Sha256Hex::parse(ok).unwrap().as_str(), ok);
        for bad in [
            "",
            &ok[..63],
            &format!("{ok}0"),
            &ok.to_uppercase(),
            &format!("sha256:{}", &ok[7..]),
            "../../../../etc/passwd/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            let err = Sha256Hex::parse(bad).unwrap_err();
            assert!(err.to_string().contains("64 lowercase hex digits"), "{err}");
        }
    }
}
