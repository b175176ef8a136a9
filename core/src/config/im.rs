//! `[im]`: the WeChat/QQ-style layer on top of rooms (recall window, group limits).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImConfig {
    /// How long after sending a member may recall (redact) their own message; 0 = no limit.
    /// Room admins (power level >= the room's `redact` level) may recall at any time.
    #[serde(default = "default_recall_window_secs")]
    pub recall_window_secs: u64,
    /// The most members (joined or invited) a group room may have; joins and invites beyond it
    /// are refused.
    #[serde(default = "default_group_member_limit")]
    pub group_member_limit: u32,
}

impl Default for ImConfig {
    fn default() -> Self {
        Self {
            recall_window_secs: default_recall_window_secs(),
            group_member_limit: default_group_member_limit(),
        }
    }
}

fn default_recall_window_secs() -> u64 {
    120
}

fn default_group_member_limit() -> u32 {
    2000
}
