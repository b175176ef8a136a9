//! Which member events each device has been sent by lazy-loading syncs, so that later syncs
//! can leave out the redundant ones (spec: "Lazy-loading room members").
//!
//! An entry counts only once the device has shown it received the response that carried it:
//! the entry remembers that response's timeline position, and a sync trusts it only if its
//! since token is at or past that position. A response lost on the way is thus sent again.
//! Redundant member events are allowed by the spec, so dropping entries (the bounds below)
//! only costs bandwidth.

use std::{collections::HashMap, sync::Mutex};

use ruma::{EventId, OwnedDeviceId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId};

use super::RoomsSyncRequest;

/// Members remembered per device before its memory is dropped.
const MAX_MEMBERS_PER_DEVICE: usize = 50_000;
/// Devices remembered before all memory is dropped.
const MAX_DEVICES: usize = 10_000;

type DeviceKey = (OwnedUserId, OwnedDeviceId);
/// (room, member) → the member event sent and the timeline position of the response.
type SentMembers = HashMap<(OwnedRoomId, String), (OwnedEventId, i64)>;

#[derive(Default)]
pub(super) struct LazyLoaded {
    devices: Mutex<HashMap<DeviceKey, SentMembers>>,
}

impl LazyLoaded {
    fn devices(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceKey, SentMembers>> {
        // Each update is one map operation: a panic elsewhere cannot leave it half done.
        self.devices.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the requesting device provably holds `event_id` as `member`'s member event.
    pub(super) fn already_sent(
        &self,
        request: &RoomsSyncRequest<'_>,
        room_id: &RoomId,
        member: &str,
        event_id: &EventId,
    ) -> bool {
        let Some(since) = request.since else {
            return false;
        };
        let key = (request.user_id.to_owned(), request.device_id.to_owned());
        self.devices()
            .get(&key)
            .and_then(|sent| sent.get(&(room_id.to_owned(), member.to_owned())))
            .is_some_and(|(sent_id, position)| sent_id == event_id && *position <= since.timeline)
    }

    /// Notes the member events a response carries for the room.
    pub(super) fn record(
        &self,
        request: &RoomsSyncRequest<'_>,
        room_id: &RoomId,
        members: impl Iterator<Item = (String, OwnedEventId)>,
    ) {
        let position = request.upto.timeline;
        let mut devices = self.devices();
        if devices.len() >= MAX_DEVICES {
            devices.clear();
        }
        let sent = devices
            .entry((request.user_id.to_owned(), request.device_id.to_owned()))
            .or_default();
        if sent.len() >= MAX_MEMBERS_PER_DEVICE {
            sent.clear();
        }
        for (member, event_id) in members {
            let entry = sent
                .entry((room_id.to_owned(), member))
                .or_insert_with(|| (event_id.clone(), position));
            // The same event sent again keeps its earlier (already provable) position.
            if entry.0 != event_id {
                *entry = (event_id, position);
            }
        }
    }
}
