//! What sync tells a device about encryption: its to-device messages, whose device lists
//! changed, and how many one-time keys it has left.

use std::{collections::BTreeSet, sync::Arc};

use ruma::{
    DeviceId, OwnedUserId, UserId, api::client::sync::sync_events::DeviceLists,
    events::AnyToDeviceEvent, serde::Raw,
};

use super::{E2ee, KeyCounts};
use crate::{Error, Result, store::ToDeviceMessage, sync::SyncToken};

/// Most to-device messages one sync delivers; the rest follow in the next.
pub(super) const TO_DEVICE_LIMIT: i64 = 100;

/// Stored to-device messages as the events a device receives.
pub(super) fn to_device_events(messages: &[ToDeviceMessage]) -> Result<Vec<Raw<AnyToDeviceEvent>>> {
    messages
        .iter()
        .map(|message| {
            let json = format!(
                r#"{{"content":{},"sender":{},"type":{}}}"#,
                message.content,
                serde_json::Value::from(message.sender.as_str()),
                serde_json::Value::from(message.event_type.as_str()),
            );
            serde_json::value::RawValue::from_string(json)
                .map(Raw::from_json)
                .map_err(|e| Error::Internal(format!("stored to-device message: {e}")))
        })
        .collect()
}

/// A device's encryption news for one sync.
pub struct DeviceSync {
    pub to_device: Vec<Raw<AnyToDeviceEvent>>,
    /// The to-device position the next token carries: `upto`, or the last message delivered
    /// when there were more than one sync delivers.
    pub to_device_position: i64,
    pub device_lists: DeviceLists,
    pub key_counts: Arc<KeyCounts>,
}

impl E2ee {
    /// The device's news between `since` (an initial sync without) and `upto`.
    /// `memberships_moved`: whether any membership changed in the timeline range (when not,
    /// device lists change only through key changes).
    pub async fn device_sync(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        since: Option<SyncToken>,
        upto: SyncToken,
        memberships_moved: bool,
    ) -> Result<DeviceSync> {
        let messages = self
            .store
            .to_device_messages(
                user_id,
                device_id,
                since.map_or(0, |s| s.to_device),
                upto.to_device,
                TO_DEVICE_LIMIT,
            )
            .await?;
        let to_device_position = match messages.last() {
            Some(last) if messages.len() == TO_DEVICE_LIMIT as usize => last.position,
            _ => upto.to_device,
        };
        let to_device = to_device_events(&messages)?;
        // An initial sync has no device list changes: the client queries every device anyway.
        let device_lists = match since {
            Some(since) => {
                self.device_list_changes(user_id, since, upto, memberships_moved)
                    .await?
            }
            None => DeviceLists::new(),
        };
        Ok(DeviceSync {
            to_device,
            to_device_position,
            device_lists,
            key_counts: self.device_key_counts(user_id, device_id).await?,
        })
    }

    /// The users whose devices the observer should fetch again (`changed`: their keys changed,
    /// or they came to share a room with the observer) or stop tracking (`left`: they share no
    /// room any more) between two tokens (spec: "Tracking the device list for a user").
    pub async fn device_list_changes(
        &self,
        observer: &UserId,
        since: SyncToken,
        upto: SyncToken,
        memberships_moved: bool,
    ) -> Result<DeviceLists> {
        let mut changed: BTreeSet<OwnedUserId> = BTreeSet::new();
        if since.device_lists < upto.device_lists {
            changed.extend(
                self.store
                    .device_list_changes(observer, since.device_lists, upto.device_lists)
                    .await?,
            );
        }
        let mut left = BTreeSet::new();
        if memberships_moved && since.timeline < upto.timeline {
            let (joined, parted) = self
                .store
                .device_list_membership_changes(observer, since.timeline, upto.timeline)
                .await?;
            changed.extend(joined);
            if !parted.is_empty() {
                let sharing: BTreeSet<OwnedUserId> = self
                    .store
                    .users_sharing_a_room(observer)
                    .await?
                    .into_iter()
                    .collect();
                left.extend(parted.into_iter().filter(|user| !sharing.contains(user)));
            }
        }
        let mut lists = DeviceLists::new();
        lists.changed = changed.into_iter().filter(|u| !left.contains(u)).collect();
        lists.left = left.into_iter().collect();
        Ok(lists)
    }
}
