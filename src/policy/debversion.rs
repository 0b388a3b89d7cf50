//! Debian version comparison, as dpkg does it (`lib/dpkg/version.c`, deb-version(7)).
//!
//! A version is `[epoch:]upstream[-revision]`. Epochs compare as numbers; upstream and
//! revision compare with `verrevcmp`: alternating runs of non-digits (compared character
//! by character, where `~` sorts before everything, even the end, and letters sort
//! before other characters) and digits (compared as numbers). A missing revision equals
//! `0`.

use std::cmp::Ordering;

/// A version string dpkg would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{version:?} is not a Debian version: {reason}")]
pub struct BadVersion {
    pub version: String,
    pub reason: &'static str,
}

/// A parsed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebVersion<'a> {
    pub epoch: u32,
    pub upstream: &'a str,
    pub revision: &'a str,
}

impl<'a> DebVersion<'a> {
    pub fn parse(s: &'a str) -> Result<Self, BadVersion> {
        let bad = |reason| BadVersion {
            version: s.to_string(),
            reason,
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(bad("it is empty"));
        }
        if t.chars().any(char::is_whitespace) {
            return Err(bad("it contains whitespace"));
        }
        let (epoch, rest) = match t.split_once(':') {
            Some((e, rest)) => {
                if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("the epoch is not a number"));
                }
                (
                    e.parse::<u32>()
                        .map_err(|_| bad("the epoch is too large"))?,
                    rest,
                )
            }
            None => (0, t),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => (u, r),
            None => (rest, ""),
        };
        if upstream.is_empty() {
            return Err(bad("the upstream version is empty"));
        }
        if !upstream.as_bytes()[0].is_ascii_digit() {
            return Err(bad("the upstream version must start with a digit"));
        }
        let ok = |c: u8, extra: &[u8]| c.is_ascii_alphanumeric() || extra.contains(&c);
        if !upstream.bytes().all(|c| ok(c, b".+~-:")) {
            return Err(bad(
                "the upstream version has a character outside A-Za-z0-9.+~-:",
            ));
        }
        if !revision.bytes().all(|c| ok(c, b".+~")) {
            return Err(bad("the revision has a character outside A-Za-z0-9.+~"));
        }
        Ok(Self {
            epoch,
            upstream,
            revision,
        })
    }
}

impl Ord for DebVersion<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(self.upstream, other.upstream))
            .then_with(|| verrevcmp(self.revision, other.revision))
    }
}

impl PartialOrd for DebVersion<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Compares two version strings.
pub fn compare(a: &str, b: &str) -> Result<Ordering, BadVersion> {
    Ok(DebVersion::parse(a)?.cmp(&DebVersion::parse(b)?))
}

/// dpkg's character weight: `~` lowest, then the end of string / a digit, then letters,
/// then everything else.
fn order(c: u8) -> i32 {
    if c.is_ascii_digit() {
        0
    } else if c.is_ascii_alphabetic() {
        i32::from(c)
    } else if c == b'~' {
        -1
    } else if c == 0 {
        0
    } else {
        i32::from(c) + 256
    }
}

fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let at = |i: usize| a.get(i).copied().unwrap_or(0);
    let bt = |i: usize| b.get(i).copied().unwrap_or(0);
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !at(i).is_ascii_digit()) || (j < b.len() && !bt(j).is_ascii_digit()) {
            let (ac, bc) = (order(at(i)), order(bt(j)));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while at(i) == b'0' {
            i += 1;
        }
        while bt(j) == b'0' {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while at(i).is_ascii_digit() && bt(j).is_ascii_digit() {
            if first_diff == Ordering::Equal {
                first_diff = at(i).cmp(&bt(j));
            }
            i += 1;
            j += 1;
        }
        if at(i).is_ascii_digit() {
            return Ordering::Greater;
        }
        if bt(j).is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[track_caller]
    fn check(a: &str, b: &str, want: Ordering) {
        assert_eq!(compare(a, b).unwrap(), want, "{a} vs {b}");
        assert_eq!(compare(b, a).unwrap(), want.reverse(), "{b} vs {a}");
    }

    #[test]
    fn dpkg_ordering() {
        // Cases from dpkg's own test suite (t-version.c) and deb-version(7).
        check("1.0", "1.0", Equal);
        check("1.0-0", "1.0", Equal);
        check("0:1.0", "1.0", Equal);
        check("1.0", "1.0-1", Less);
        check("1:0.1", "2.0", Greater);
        check("1.0~rc1", "1.0", Less);
        check("1.0~~", "1.0~", Less);
        check("1.0~~a", "1.0~~", Greater);
        check("1.0~", "1.0", Less);
        check("1.0a", "1.0", Greater);
        check("1.0+b1", "1.0", Greater);
        // Letters sort before other characters.
        check("1.0.1", "1.0a", Greater);
        check("1.10", "1.9", Greater);
        check("1.001", "1.1", Equal);
        check("3.0.15-1~deb12u1", "3.0.15-1", Less);
        check("3.0.16-1~deb12u1", "3.0.15-1", Greater);
        check("3.0.15-1+deb12u1", "3.0.15-1", Greater);
        check("2.36-9+deb12u9", "2.36-9+deb12u10", Less);
        check("1.2.3-1ubuntu0.1", "1.2.3-1", Greater);
        check("1.0-a", "1.0-+", Less);
        check("0.9-0.1", "0.9-0", Greater);
        check("7.88.1-10+deb12u8", "7.88.1-10+deb12u12", Less);
        check("1.2-3-4", "1.2-3", Greater);
    }

    #[test]
    fn bad_versions_are_refused() {
        for bad in [
            "",
            "a1.0",
            "x:1.0",
            ":1.0",
            "1.0 beta",
            "1.0-r!",
            "99999999999:1",
        ] {
            assert!(DebVersion::parse(bad).is_err(), "{bad:?} accepted");
        }
        let e = compare("1.0", "abc").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"abc\" is not a Debian version: the upstream version must start with a digit"
        );
    }
}
