//! Building a PDU: the fields of the room version's event format, the content hash, this
//! server's signature, and the event ID (see [`super::reference`]).

use std::sync::Arc;

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId,
    RoomId, ServerName, UInt, UserId, events::TimelineEventType,
    room_version_rules::RoomVersionRules, signatures::Ed25519KeyPair,
};
use serde_json::Value as JsonValue;

use super::{
    MAX_PDU_BYTES, Pdu,
    reference::{ReferenceHashes, reference_list, sign_and_identify},
};

/// What a client (or the server itself) asks to add to a room.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: TimelineEventType,
    pub state_key: Option<String>,
    pub content: JsonValue,
    pub redacts: Option<OwnedEventId>,
}

impl NewEvent {
    pub fn message(kind: TimelineEventType, content: JsonValue) -> Self {
        Self {
            kind,
            state_key: None,
            content,
            redacts: None,
        }
    }

    pub fn state(
        kind: TimelineEventType,
        state_key: impl Into<String>,
        content: JsonValue,
    ) -> Self {
        Self {
            kind,
            state_key: Some(state_key.into()),
            content,
            redacts: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("the event is {size} bytes, over the limit of {MAX_PDU_BYTES} bytes")]
    TooLarge { size: usize },
    /// `type`, `state_key`, `sender` and IDs are limited to 255 bytes (spec: "Size limits").
    #[error("the event's {field} is {len} bytes, over the limit of {MAX_FIELD_BYTES} bytes")]
    FieldTooLong { field: &'static str, len: usize },
    #[error("the event content is not valid: {0}")]
    InvalidContent(String),
    #[error("cannot sign the event: {0}")]
    Signing(String),
}

/// The spec's limit on `type`, `state_key`, `sender`, `room_id` and `event_id`.
pub const MAX_FIELD_BYTES: usize = 255;

/// Where the new event goes in the graph, and who signs it.
pub struct GraphPosition<'a> {
    pub rules: &'a RoomVersionRules,
    /// `None` only for a v12 `m.room.create`, whose ID names the room.
    pub room_id: Option<&'a RoomId>,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    /// The reference hashes of `prev_events` and `auth_events`, which room versions 1 and 2
    /// carry in their references (empty for later versions).
    pub reference_hashes: &'a ReferenceHashes,
    pub depth: UInt,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    pub server_name: &'a ServerName,
    pub key: &'a Ed25519KeyPair,
}

/// Builds, hashes and signs a PDU sent by `sender`, a user of this server.
pub fn build_pdu(new: NewEvent, sender: &UserId, at: GraphPosition<'_>) -> Result<Pdu, EventError> {
    let NewEvent {
        kind,
        state_key,
        mut content,
        redacts,
    } = new;
    let fields = [
        ("type", kind.to_string().len()),
        ("state_key", state_key.as_ref().map_or(0, String::len)),
        ("sender", sender.as_str().len()),
    ];
    if let Some((field, len)) = fields.into_iter().find(|(_, len)| *len > MAX_FIELD_BYTES) {
        return Err(EventError::FieldTooLong { field, len });
    }
    if let Some(redacts) = &redacts
        && at.rules.redaction.content_field_redacts
        && let Some(object) = content.as_object_mut()
    {
        object.insert("redacts".to_owned(), JsonValue::String(redacts.to_string()));
    }
    let content = CanonicalJsonValue::try_from(content)
        .map_err(|e| EventError::InvalidContent(e.to_string()))?;
    if !matches!(content, CanonicalJsonValue::Object(_)) {
        return Err(EventError::InvalidContent(
            "the content must be a JSON object".to_owned(),
        ));
    }
    let mut object = CanonicalJsonObject::new();
    let references = |ids| reference_list(ids, at.reference_hashes, at.rules);
    object.insert("auth_events".into(), references(&at.auth_events)?);
    object.insert("prev_events".into(), references(&at.prev_events)?);
    object.insert("content".into(), content);
    object.insert("depth".into(), CanonicalJsonValue::Integer(at.depth.into()));
    object.insert(
        "origin_server_ts".into(),
        CanonicalJsonValue::Integer(at.origin_server_ts.get().into()),
    );
    object.insert("sender".into(), CanonicalJsonValue::String(sender.into()));
    object.insert("type".into(), CanonicalJsonValue::String(kind.to_string()));
    if let Some(room_id) = at.room_id {
        object.insert("room_id".into(), CanonicalJsonValue::String(room_id.into()));
    }
    if let Some(state_key) = state_key {
        object.insert("state_key".into(), CanonicalJsonValue::String(state_key));
    }
    if let Some(redacts) = redacts
        && !at.rules.redaction.content_field_redacts
    {
        object.insert("redacts".into(), CanonicalJsonValue::String(redacts.into()));
    }
    let event_id = sign_and_identify(&mut object, at.rules, at.server_name, at.key)?;
    let json = serde_json::to_string(&object).map_err(|e| EventError::Signing(e.to_string()))?;
    if json.len() > MAX_PDU_BYTES {
        return Err(EventError::TooLarge { size: json.len() });
    }
    let room_id = match at.room_id {
        Some(room_id) => room_id.to_owned(),
        // v12: the room ID is the create event's ID with the room sigil.
        None => OwnedRoomId::try_from(format!("!{}", &event_id.as_str()[1..]))
            .map_err(|e| EventError::Signing(e.to_string()))?,
    };
    Pdu::from_json(event_id, &room_id, Arc::from(json))
        .map_err(|e| EventError::Signing(e.to_string()))
}
