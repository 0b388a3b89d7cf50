//! Durations in policy TOML: jiff's friendly format ("90m", "4h", "1d 12h") or ISO 8601
//! ("PT4H"), where a day is 24 hours. `SignedDuration`'s own parser refuses days, and
//! operators write "7d" for a week-long soak.

use jiff::{SignedDuration, Span, SpanRelativeTo};
use serde::{Deserialize, Deserializer};

/// Parses one duration; days (and weeks) count as 24 hours (and 7 days).
pub fn parse(s: &str) -> Result<SignedDuration, String> {
    s.trim()
        .parse::<Span>()
        .ok()
        .and_then(|span| span.to_duration(SpanRelativeTo::days_are_24_hours()).ok())
        .ok_or_else(|| format!("{s:?} is not a duration; examples: \"90m\", \"4h\", \"1d 12h\""))
}

/// `deserialize_with` for a `SignedDuration` field.
pub fn de<'de, D: Deserializer<'de>>(d: D) -> Result<SignedDuration, D::Error> {
    let s = String::deserialize(d)?;
    parse(&s).map_err(serde::de::Error::custom)
}

/// `deserialize_with` for an `Option<SignedDuration>` field (use with `default`).
pub fn de_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SignedDuration>, D::Error> {
    de(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn friendly_iso_and_days() {
        for (text, mins) in [
            ("90m", 90),
            ("4h", 240),
            ("1d", 1440),
            ("1d 12h", 2160),
            ("7d", 7 * 1440),
            ("1w", 7 * 1440),
            ("PT4H", 240),
            ("0s", 0),
            ("-1h", -60),
        ] {
            assert_eq!(parse(text), Ok(SignedDuration::from_mins(mins)), "{text}");
        }
        for bad in ["", "soon", "1 month", "4", "1y"] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("is not a duration"), "{bad}: {e}");
        }
    }
}
