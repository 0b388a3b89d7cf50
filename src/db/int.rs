//! Integers between Rust and SQLite: SQLite's integers are `i64`, the appliance's
//! versions, sizes and counters are `u64`. An `as` cast would silently turn 2^63 into a
//! negative number (a catalog version stored as -9223372036854775808 and shown so by
//! `mirror status`), so every crossing goes through these checked conversions: a value
//! that does not fit is refused before anything is written, and a negative value read
//! back (a damaged database) is an error, not a huge number.

use crate::error::DbError;

/// `v` as an SQLite integer, or [`DbError::OutOfRange`] naming `what`.
pub fn to_i64(what: &'static str, v: u64) -> Result<i64, DbError> {
    i64::try_from(v).map_err(|_| DbError::OutOfRange { what, value: v })
}

/// A stored integer that must not be negative, inside a row mapping closure.
pub fn to_u64(v: i64) -> rusqlite::Result<u64> {
    u64::try_from(v).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Integer, Box::new(e))
    })
}

/// Reads column `idx` of `row` as a non-negative integer.
pub fn get_u64(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    to_u64(row.get::<_, i64>(idx)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_that_do_not_fit_are_refused_both_ways() {
        assert_eq!(to_i64("catalog version", 7).unwrap(), 7);
        assert_eq!(to_i64("x", i64::MAX as u64).unwrap(), i64::MAX);
        let e = to_i64("catalog version", 1 << 63).unwrap_err();
        assert!(
            e.to_string()
                .contains("catalog version 9223372036854775808 does not fit"),
            "{e}"
        );
        assert_eq!(to_u64(0).unwrap(), 0);
        assert!(to_u64(-1).is_err());
    }
}
