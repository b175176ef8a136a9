//! Memberships of local users in rooms this server is not in (spec: Server-Server API,
//! "Inviting to a room", "Leaving Rooms (Rejecting Invites)"): an invite another server sent,
//! and the user's rejection of it. They are shown by sync like any membership, but the room
//! stays unknown here until the user joins it through another server.

use std::sync::Arc;

use ruma::{OwnedServerName, RoomId, RoomVersionId, UserId};
use serde_json::{Value as JsonValue, json};

use super::{Rooms, recent};
use crate::{
    Error, Result,
    events::Pdu,
    store::{EventRow, OutOfBandMembership, OutOfBandRoom, PendingMembership},
};

impl Rooms {
    /// Stores `pdu`, a member event of a local user in a room this server is not in, and wakes
    /// the user's sync. `room`: for invites and knocks, the room's version, the stripped state
    /// that came with it, and for knocks the server knocked through. Storing the same event
    /// again changes nothing.
    pub async fn store_out_of_band_membership(
        &self,
        pdu: &Pdu,
        room: Option<(RoomVersionId, Vec<JsonValue>, Option<OwnedServerName>)>,
    ) -> Result<()> {
        let user_id = pdu
            .state_key
            .as_deref()
            .and_then(|key| UserId::parse(key).ok())
            .filter(|user| user.server_name() == self.config.server_name)
            .ok_or_else(|| Error::BadJson("The event is not about a local user".to_owned()))?;
        let membership = pdu
            .membership()
            .ok_or_else(|| Error::BadJson("The event is not a member event".to_owned()))?;
        // The room's lock orders this against a join of the same room.
        let slot = self.slot(&pdu.room_id);
        let mut guard = slot.lock_owned().await;
        // A room known here whose local members all left: its cached state would miss this.
        *guard = None;
        if self.store.event(&pdu.event_id).await?.is_some() {
            return Ok(());
        }
        let allocation = self.timeline.allocate(1);
        let room = room
            .map(|(version, stripped, via)| {
                serde_json::to_string(&stripped).map(|stripped_state| OutOfBandRoom {
                    version,
                    stripped_state,
                    via,
                })
            })
            .transpose()
            .map_err(|e| Error::Internal(e.to_string()))?;
        self.store
            .persist_out_of_band_membership(OutOfBandMembership {
                stream_ordering: allocation.start,
                event_id: pdu.event_id.clone(),
                room_id: pdu.room_id.clone(),
                user_id: user_id.clone(),
                sender: pdu.sender.to_string(),
                membership,
                origin_server_ts: i64::from(pdu.origin_server_ts.get()),
                depth: i64::try_from(u64::from(pdu.depth)).unwrap_or(i64::MAX),
                json: pdu.json.clone(),
                room,
            })
            .await?;
        self.recent.committed(vec![recent::Change {
            position: allocation.start,
            room_id: pdu.room_id.clone(),
            member: Some(user_id.clone()),
            relates_to: None,
            redacts: None,
            row: Some(EventRow {
                stream_ordering: allocation.start,
                event_id: pdu.event_id.clone(),
                room_id: pdu.room_id.clone(),
                state_before: 0,
                state_after: 0,
                replaces_state: None,
                redacted_by: None,
                json: pdu.json.clone(),
            }),
        }]);
        drop(allocation);
        self.notifier.wake(std::iter::once(&*user_id));
        Ok(())
    }

    /// Whether this server takes part in the room: it knows it and a local user is joined.
    pub async fn is_participating(&self, room_id: &RoomId) -> Result<bool> {
        if self.store.room_version(room_id).await?.is_none() {
            return Ok(false);
        }
        self.has_joined_member(room_id, &self.config.server_name)
            .await
    }

    /// The user's pending invite from another server, or knock, in a room this server is not
    /// in.
    pub async fn pending_membership(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<PendingMembership>> {
        Ok(self.store.pending_membership(room_id, user_id).await?)
    }

    /// The room's descriptive state events, sent with invites and knock answers.
    pub async fn invite_state(&self, room_id: &RoomId) -> Result<Vec<Arc<str>>> {
        let guard = self.lock(room_id).await?;
        Ok(guard
            .as_ref()
            .map(|room| invite_state_pdus(room.state.values()))
            .unwrap_or_default())
    }

    /// The stripped state sent with an out-of-band invite or knock, if `event` is one.
    pub(super) async fn invite_stripped_state(
        &self,
        event: &EventRow,
    ) -> Result<Option<Vec<JsonValue>>> {
        self.store
            .invite_stripped_state(&event.event_id)
            .await?
            .map(|stored| {
                serde_json::from_str(&stored)
                    .map_err(|e| Error::Internal(format!("stored stripped state: {e}")))
            })
            .transpose()
    }
}

/// An event in the stripped form shown with invites and knocks (spec: "Stripped state").
pub(super) fn stripped(pdu: &Pdu) -> JsonValue {
    json!({
        "type": pdu.kind.to_string(),
        "state_key": pdu.state_key,
        "sender": pdu.sender,
        "content": pdu.content_value(),
    })
}

/// The state events sent with an invite to another server (spec: "Stripped state"; since
/// v1.16 sent over federation as full PDUs): the room's descriptive state.
pub(super) fn invite_state_pdus<'a>(state: impl Iterator<Item = &'a Arc<Pdu>>) -> Vec<Arc<str>> {
    state
        .filter(|pdu| super::sync::STRIPPED_STATE_TYPES.contains(&pdu.kind.to_string().as_str()))
        .map(|pdu| pdu.json.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ruma::{OwnedRoomId, events::TimelineEventType};
    use serde_json::json;

    use crate::{
        events::{NewEvent, Pdu},
        rooms::testing::{TestRooms, user},
    };

    fn invite(invitee: &str) -> NewEvent {
        NewEvent::state(
            TimelineEventType::RoomMember,
            user(invitee).to_string(),
            json!({ "membership": "invite" }),
        )
    }

    fn message(body: &str) -> NewEvent {
        NewEvent::message(
            TimelineEventType::RoomMessage,
            json!({ "msgtype": "m.text", "body": body }),
        )
    }

    /// Alice's room, and her invite of Bob built on its latest events but stored only out of
    /// band, as `PUT /invite` stores one for a room this server is not in.
    async fn out_of_band_invite() -> (TestRooms, OwnedRoomId, Arc<Pdu>) {
        let rooms = TestRooms::start().await;
        let room_id = rooms.room(&[]).await;
        let invite = rooms
            .unsent(&user("alice"), &room_id, invite("bob"), None)
            .await;
        rooms
            .rooms
            .store_out_of_band_membership(&invite, None)
            .await
            .unwrap();
        (rooms, room_id, invite)
    }

    /// An invite first heard of out of band (`PUT /invite`) and then received in a
    /// transaction becomes a room event with its state (spec: Server-Server API, "Checks
    /// performed on receipt of a PDU").
    #[tokio::test]
    async fn an_invite_stored_out_of_band_is_taken_into_the_room_when_received() {
        let (rooms, room_id, invite) = out_of_band_invite().await;
        rooms
            .rooms
            .receive_pdu(&room_id, &invite.event_id, invite.json.clone())
            .await
            .unwrap();
        let row = rooms.rooms.store.event(&invite.event_id).await.unwrap();
        assert!(row.is_some_and(|row| row.has_state()));
        assert_eq!(
            rooms.rooms.extremities(&room_id).await.unwrap(),
            std::slice::from_ref(&invite.event_id)
        );
        // The room goes on from it.
        rooms.text(&user("alice"), &room_id, "welcome").await;
    }

    /// The same invite received after the invitee joined is soft-failed (spec: "Soft failure");
    /// the sending server's next event, which follows both the invite and the join, is
    /// accepted, the soft-failed invite's state standing in for the out-of-band row's lack
    /// of it.
    #[tokio::test]
    async fn an_event_following_a_soft_failed_out_of_band_invite_is_accepted() {
        let (rooms, room_id, invite) = out_of_band_invite().await;
        let before = rooms.rooms.store.event(&invite.event_id).await.unwrap();
        let position = before.expect("stored out of band").stream_ordering;
        rooms
            .rooms
            .join(&user("bob"), &room_id, None)
            .await
            .unwrap();
        let join = rooms.rooms.extremities(&room_id).await.unwrap();

        rooms
            .rooms
            .receive_pdu(&room_id, &invite.event_id, invite.json.clone())
            .await
            .unwrap();
        let soft_failed = rooms.rooms.store.event(&invite.event_id).await.unwrap();
        let soft_failed = soft_failed.expect("still stored");
        assert!(soft_failed.has_state());
        assert_eq!(soft_failed.stream_ordering, position, "it keeps its place");
        let listed = rooms
            .rooms
            .store
            .events(std::slice::from_ref(&invite.event_id))
            .await
            .unwrap();
        assert!(listed.iter().all(|row| row.has_state()) && listed.len() == 1);
        assert_eq!(rooms.rooms.extremities(&room_id).await.unwrap(), join);

        let mut prev = join.clone();
        prev.push(invite.event_id.clone());
        let next = rooms
            .unsent(&user("alice"), &room_id, message("after both"), Some(prev))
            .await;
        rooms
            .rooms
            .receive_pdu(&room_id, &next.event_id, next.json.clone())
            .await
            .unwrap();
        assert_eq!(
            rooms.rooms.extremities(&room_id).await.unwrap(),
            std::slice::from_ref(&next.event_id)
        );
    }
}
