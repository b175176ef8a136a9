//! The client format of an event (spec: "Room Event Format"), written straight from the stored
//! PDU's fields without a round trip through a typed event, and the federation format a filter
//! may ask for instead.

use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, RoomId, UserId, api::client::filter::EventFormat,
    events::TimelineEventType,
};
use serde::Serialize;
use serde_json::{Map, Value as JsonValue, value::RawValue};

use super::Pdu;

/// `unsigned` data the server adds to an event it serves.
pub type Unsigned = Map<String, JsonValue>;

#[derive(Serialize)]
struct ClientEvent<'a> {
    content: &'a RawValue,
    event_id: &'a EventId,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    room_id: &'a RoomId,
    sender: &'a UserId,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_key: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'a TimelineEventType,
    /// Kept at the top level for clients of all room versions (as Synapse does).
    #[serde(skip_serializing_if = "Option::is_none")]
    redacts: Option<&'a EventId>,
    unsigned: &'a Unsigned,
}

/// The event as clients see it, with `unsigned` as given plus its `age`.
pub fn client_event_json(
    pdu: &Pdu,
    unsigned: &Unsigned,
    now: MilliSecondsSinceUnixEpoch,
) -> Box<RawValue> {
    let mut unsigned = unsigned.clone();
    let age = i64::from(now.get()) - i64::from(pdu.origin_server_ts.get());
    unsigned.insert("age".to_owned(), JsonValue::from(age));
    let event = ClientEvent {
        content: &pdu.content,
        event_id: &pdu.event_id,
        origin_server_ts: pdu.origin_server_ts,
        room_id: &pdu.room_id,
        sender: &pdu.sender,
        state_key: pdu.state_key.as_deref(),
        kind: &pdu.kind,
        redacts: pdu.redacts.as_deref(),
        unsigned: &unsigned,
    };
    // Serialising borrowed, already-valid JSON pieces cannot fail.
    serde_json::value::to_raw_value(&event).expect("a client event always serialises")
}

/// The event as it travels between servers (a filter's `event_format: federation`): the whole
/// PDU with its `event_id`, and `unsigned` as given plus its `age`, as Synapse serves it.
fn federation_event_json(
    pdu: &Pdu,
    unsigned: &Unsigned,
    now: MilliSecondsSinceUnixEpoch,
) -> Box<RawValue> {
    let mut event: Map<String, JsonValue> =
        serde_json::from_str(&pdu.json).expect("a stored PDU is a JSON object");
    let mut unsigned = unsigned.clone();
    let age = i64::from(now.get()) - i64::from(pdu.origin_server_ts.get());
    unsigned.insert("age".to_owned(), JsonValue::from(age));
    event.insert(
        "event_id".to_owned(),
        JsonValue::String(pdu.event_id.to_string()),
    );
    event.insert("unsigned".to_owned(), JsonValue::Object(unsigned));
    serde_json::value::to_raw_value(&event).expect("a JSON object always serialises")
}

/// The event in the format a filter asks for.
pub fn event_json_in(
    format: &EventFormat,
    pdu: &Pdu,
    unsigned: &Unsigned,
    now: MilliSecondsSinceUnixEpoch,
) -> Box<RawValue> {
    match format {
        EventFormat::Federation => federation_event_json(pdu, unsigned, now),
        _ => client_event_json(pdu, unsigned, now),
    }
}
