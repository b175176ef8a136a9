//! Pagination tokens of the timeline: `s<N>` is the position just after stream ordering N.
//! The sync token of a later issue starts with the same component, so either pages `/messages`.

use std::fmt;

use crate::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamToken(pub i64);

impl fmt::Display for StreamToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

impl std::str::FromStr for StreamToken {
    type Err = Error;

    fn from_str(token: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidParam(format!("Invalid pagination token {token:?}"));
        let first = token.split('_').next().unwrap_or_default();
        let digits = first.strip_prefix('s').ok_or_else(invalid)?;
        // Negative positions are history taken in from other servers (backfill).
        let position = digits.parse::<i64>().map_err(|_| invalid())?;
        Ok(Self(position))
    }
}

#[cfg(test)]
mod tests {
    use super::StreamToken;

    #[test]
    fn round_trips_and_rejects_garbage() {
        assert_eq!("s42".parse::<StreamToken>().unwrap(), StreamToken(42));
        assert_eq!(StreamToken(7).to_string(), "s7");
        assert_eq!("s9_3_1".parse::<StreamToken>().unwrap(), StreamToken(9));
        assert_eq!("s-12".parse::<StreamToken>().unwrap(), StreamToken(-12));
        for bad in ["", "42", "s", "s-", "sx", "t3"] {
            assert!(bad.parse::<StreamToken>().is_err(), "{bad}");
        }
    }
}
