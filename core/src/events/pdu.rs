//! A PDU as stored: its canonical JSON, and the fields the engine reads parsed out of it once.

use std::sync::Arc;

use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId,
    events::TimelineEventType,
};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::reference::EventReference;

/// One event of the room graph. `json` is the PDU exactly as signed (canonical JSON, with an
/// `event_id` only in room versions 1 and 2); every other field is read from it.
#[derive(Debug, Clone)]
pub struct Pdu {
    pub event_id: OwnedEventId,
    /// The room the event belongs to; for a v12 create event it is derived from the event itself.
    pub room_id: OwnedRoomId,
    /// Whether the PDU carries `room_id` (a v12 `m.room.create` does not).
    room_id_in_pdu: bool,
    pub sender: OwnedUserId,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    pub kind: TimelineEventType,
    pub content: Box<RawValue>,
    pub state_key: Option<String>,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub redacts: Option<OwnedEventId>,
    pub depth: UInt,
    pub json: Arc<str>,
}

#[derive(Debug, thiserror::Error)]
#[error("malformed PDU: {0}")]
pub struct PduParseError(pub String);

#[derive(Deserialize)]
struct PduFields {
    room_id: Option<OwnedRoomId>,
    sender: OwnedUserId,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    #[serde(rename = "type")]
    kind: TimelineEventType,
    content: Box<RawValue>,
    state_key: Option<String>,
    prev_events: Vec<EventReference>,
    auth_events: Vec<EventReference>,
    redacts: Option<OwnedEventId>,
    depth: UInt,
}

#[derive(Deserialize)]
struct ContentRedacts {
    redacts: Option<OwnedEventId>,
}

impl Pdu {
    /// Parses a stored or received PDU (every room version's event format). `room_id` is the room
    /// the event is known to belong to, used when the PDU has none (v12 create events).
    pub fn from_json(
        event_id: OwnedEventId,
        room_id: &RoomId,
        json: Arc<str>,
    ) -> Result<Self, PduParseError> {
        let fields: PduFields =
            serde_json::from_str(&json).map_err(|e| PduParseError(e.to_string()))?;
        let room_id_in_pdu = fields.room_id.is_some();
        if fields.room_id.as_deref().is_some_and(|id| id != room_id) {
            return Err(PduParseError(format!(
                "event {event_id} belongs to another room than {room_id}"
            )));
        }
        // v11 moved `redacts` into the content; older versions keep it at the top level.
        let redacts = match fields.redacts {
            Some(id) => Some(id),
            None if fields.kind == TimelineEventType::RoomRedaction => {
                serde_json::from_str::<ContentRedacts>(fields.content.get())
                    .ok()
                    .and_then(|c| c.redacts)
            }
            None => None,
        };
        Ok(Self {
            event_id,
            room_id: room_id.to_owned(),
            room_id_in_pdu,
            sender: fields.sender,
            origin_server_ts: fields.origin_server_ts,
            kind: fields.kind,
            content: fields.content,
            state_key: fields.state_key,
            prev_events: ids(fields.prev_events),
            auth_events: ids(fields.auth_events),
            redacts,
            depth: fields.depth,
            json,
        })
    }

    pub fn is_state(&self) -> bool {
        self.state_key.is_some()
    }

    /// The content's `membership`, for member events.
    pub fn membership(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct Membership {
            membership: String,
        }
        if self.kind != TimelineEventType::RoomMember {
            return None;
        }
        serde_json::from_str::<Membership>(self.content.get())
            .ok()
            .map(|m| m.membership)
    }

    /// The content as a JSON value, for the few places that read arbitrary fields.
    pub fn content_value(&self) -> serde_json::Value {
        serde_json::from_str(self.content.get()).unwrap_or_default()
    }
}

fn ids(references: Vec<EventReference>) -> Vec<OwnedEventId> {
    references
        .into_iter()
        .map(EventReference::into_id)
        .collect()
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }

    fn room_id(&self) -> Option<&RoomId> {
        self.room_id_in_pdu.then_some(&*self.room_id)
    }

    fn sender(&self) -> &UserId {
        &self.sender
    }

    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }

    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }

    fn content(&self) -> &RawValue {
        &self.content
    }

    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }

    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }

    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }

    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }

    fn rejected(&self) -> bool {
        false
    }
}
