//! Recall: a member takes back their own message by redacting it, within the server's recall
//! window (`im.recall_window_secs`); room admins (power level >= the room's `redact` level) may
//! recall any message at any time.
//!
//! The policy is the server's, for every redaction its own users send: `PUT /redact`,
//! `m.room.redaction` through `/send` and over the WebSocket alike, so a plain client cannot
//! step around it. Redactions arriving over federation follow their origin server's policy.
//! State events (membership, names, ...) are not messages: redacting one's own state event is
//! not limited by the window. Nor are moments (profile rooms): deleting one's own post, like or
//! comment is not a recall, WeChat allows it at any time.

use ruma::MilliSecondsSinceUnixEpoch;

use crate::{Error, Result};

/// Whether the recall window applies in a room of this type (`m.room.create` `type`).
pub fn applies_in(room_type: Option<&str>) -> bool {
    room_type != Some(super::moments::PROFILE_TYPE)
}

/// Whether a member who is not a room admin may still recall their own message sent at
/// `sent`, at `now`. `window_secs` 0 means no limit.
pub fn check_window(
    window_secs: u64,
    sent: MilliSecondsSinceUnixEpoch,
    now: MilliSecondsSinceUnixEpoch,
) -> Result<()> {
    if window_secs == 0 {
        return Ok(());
    }
    let sent_ms = u64::from(sent.get());
    let now_ms = u64::from(now.get());
    let age_ms = now_ms.saturating_sub(sent_ms);
    if age_ms > window_secs.saturating_mul(1000) {
        return Err(Error::Forbidden(format!(
            "This message was sent {} seconds ago: messages can only be recalled within {window_secs} seconds of sending",
            age_ms / 1000
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ruma::{MilliSecondsSinceUnixEpoch, UInt};

    use super::check_window;

    fn ts(ms: u32) -> MilliSecondsSinceUnixEpoch {
        MilliSecondsSinceUnixEpoch(UInt::from(ms))
    }

    #[test]
    fn inside_the_window_is_allowed() {
        assert!(check_window(120, ts(1_000), ts(121_000)).is_ok());
    }

    #[test]
    fn past_the_window_is_refused_with_the_reason() {
        let error = check_window(120, ts(1_000), ts(121_001)).unwrap_err();
        assert!(error.to_string().contains("within 120 seconds"), "{error}");
    }

    #[test]
    fn zero_means_unlimited() {
        assert!(check_window(0, ts(0), ts(4_000_000_000)).is_ok());
    }

    #[test]
    fn a_clock_behind_the_event_is_not_an_error() {
        assert!(check_window(1, ts(5_000), ts(1_000)).is_ok());
    }
}
