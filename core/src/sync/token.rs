//! Sync tokens: one position per stream, `s<timeline>_<receipts>_<typing>_<account data>_
//! <presence>_<to-device>_<device lists>`. The first component is a timeline pagination token too (`/messages` reads
//! only it), so a `prev_batch` or `next_batch` pages history directly.

use std::fmt;

use crate::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncToken {
    pub timeline: i64,
    pub receipts: i64,
    pub typing: i64,
    pub account_data: i64,
    pub presence: i64,
    pub to_device: i64,
    pub device_lists: i64,
}

impl fmt::Display for SyncToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "s{}_{}_{}_{}_{}_{}_{}",
            self.timeline,
            self.receipts,
            self.typing,
            self.account_data,
            self.presence,
            self.to_device,
            self.device_lists
        )
    }
}

impl std::str::FromStr for SyncToken {
    type Err = Error;

    fn from_str(token: &str) -> Result<Self, Error> {
        let invalid = || {
            Error::InvalidParam(format!(
                "Invalid sync token {token:?}: use a next_batch this server returned, or sync \
                 without since"
            ))
        };
        let body = token.strip_prefix('s').ok_or_else(invalid)?;
        let positions = body
            .split('_')
            .map(|part| part.parse::<i64>().ok().filter(|p| *p >= 0))
            .collect::<Option<Vec<i64>>>()
            .ok_or_else(invalid)?;
        let [
            timeline,
            receipts,
            typing,
            account_data,
            presence,
            to_device,
            device_lists,
        ] = positions[..]
        else {
            return Err(invalid());
        };
        Ok(Self {
            timeline,
            receipts,
            typing,
            account_data,
            presence,
            to_device,
            device_lists,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::SyncToken;
    use crate::rooms::token::StreamToken;

    #[test]
    fn round_trips_and_pages_messages() {
        let token = SyncToken {
            timeline: 12,
            receipts: 3,
            typing: 4,
            account_data: 5,
            presence: 6,
            to_device: 7,
            device_lists: 8,
        };
        assert_eq!(token.to_string(), "s12_3_4_5_6_7_8");
        assert_eq!("s12_3_4_5_6_7_8".parse::<SyncToken>().unwrap(), token);
        assert_eq!(
            token.to_string().parse::<StreamToken>().unwrap(),
            StreamToken(12)
        );
    }

    #[test]
    fn rejects_tokens_it_never_issues() {
        for bad in [
            "",
            "s",
            "s1",
            "s1_2_3_4",
            "s1_2_3_4_5",
            "s1_2_3_4_5_6_7_8",
            "t1_2_3_4_5_6_7",
            "s1_2_x_4_5_6_7",
            "s-1_0_0_0_0_0_0",
        ] {
            assert!(bad.parse::<SyncToken>().is_err(), "{bad}");
        }
    }
}
