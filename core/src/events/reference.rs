//! How an event is named and how it names the events it follows, per room version (spec: room
//! versions 1 and 2 "Event format", room version 3 "Event IDs"). Room versions 1 and 2 carry an
//! `event_id` chosen by the sending server and refer to other events as
//! `[event_id, {"sha256": reference hash}]`; versions 3+ derive the ID from the reference hash
//! and refer to events by ID alone.

use std::collections::HashMap;

use rand::{Rng, distributions::Alphanumeric};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedEventId, ServerName,
    room_version_rules::{EventIdFormatVersion, EventsReferenceFormatVersion, RoomVersionRules},
    signatures::{Ed25519KeyPair, JsonError, hash_and_sign_event, reference_hash},
};
use serde::Deserialize;

use super::{EventError, MAX_PDU_BYTES};

/// Reference hashes of events, by ID: what format-v1 references carry.
pub type ReferenceHashes = HashMap<OwnedEventId, String>;

/// One entry of `prev_events` or `auth_events` as received: an ID, or an ID with its hashes.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum EventReference {
    Id(OwnedEventId),
    WithHashes(OwnedEventId, serde::de::IgnoredAny),
}

impl EventReference {
    pub(super) fn into_id(self) -> OwnedEventId {
        match self {
            Self::Id(id) | Self::WithHashes(id, _) => id,
        }
    }
}

/// Whether events of these rules carry their own `event_id` and refer to others with hashes.
pub fn is_format_v1(rules: &RoomVersionRules) -> bool {
    matches!(
        rules.events_reference_format,
        EventsReferenceFormatVersion::V1
    )
}

fn signing_error(e: JsonError) -> EventError {
    match e {
        JsonError::PduTooLarge => EventError::TooLarge {
            size: MAX_PDU_BYTES + 1,
        },
        other => EventError::Signing(other.to_string()),
    }
}

/// `$` + the reference hash: the event ID in room versions 3+.
pub fn reference_event_id(
    object: &CanonicalJsonObject,
    rules: &RoomVersionRules,
) -> Result<OwnedEventId, EventError> {
    let hash = reference_hash(object, rules).map_err(signing_error)?;
    OwnedEventId::try_from(format!("${hash}")).map_err(|e| EventError::Signing(e.to_string()))
}

/// The reference hash of a stored PDU, by which format-v1 events refer to it.
pub fn reference_sha256(json: &str, rules: &RoomVersionRules) -> Result<String, EventError> {
    let object: CanonicalJsonObject =
        serde_json::from_str(json).map_err(|e| EventError::Signing(e.to_string()))?;
    reference_hash(&object, rules).map_err(signing_error)
}

/// `prev_events` or `auth_events` in the rules' format; format v1 needs each event's hash.
pub fn reference_list(
    ids: &[OwnedEventId],
    hashes: &ReferenceHashes,
    rules: &RoomVersionRules,
) -> Result<CanonicalJsonValue, EventError> {
    let entries = ids.iter().map(|id| {
        let id_value = CanonicalJsonValue::String(id.to_string());
        if !is_format_v1(rules) {
            return Ok(id_value);
        }
        let hash = hashes.get(id).ok_or_else(|| {
            EventError::Signing(format!("the reference hash of {id} is not known"))
        })?;
        let hashes = [(
            "sha256".to_owned(),
            CanonicalJsonValue::String(hash.clone()),
        )];
        Ok(CanonicalJsonValue::Array(vec![
            id_value,
            CanonicalJsonValue::Object(hashes.into()),
        ]))
    });
    Ok(CanonicalJsonValue::Array(
        entries.collect::<Result<_, _>>()?,
    ))
}

/// Hashes and signs a new event of this server and names it: format v1 gets a fresh
/// `$random:server` ID inside the signed event, later formats the reference hash.
pub fn sign_and_identify(
    object: &mut CanonicalJsonObject,
    rules: &RoomVersionRules,
    server_name: &ServerName,
    key: &Ed25519KeyPair,
) -> Result<OwnedEventId, EventError> {
    object.remove("event_id");
    let chosen = match rules.event_id_format {
        EventIdFormatVersion::V1 => {
            let local: String = rand::thread_rng()
                .sample_iter(&Alphanumeric)
                .take(18)
                .map(char::from)
                .collect();
            let id = OwnedEventId::try_from(format!("${local}:{server_name}"))
                .map_err(|e| EventError::Signing(e.to_string()))?;
            object.insert(
                "event_id".to_owned(),
                CanonicalJsonValue::String(id.to_string()),
            );
            Some(id)
        }
        _ => None,
    };
    hash_and_sign_event(server_name.as_str(), key, object, &rules.redaction)
        .map_err(signing_error)?;
    match chosen {
        Some(id) => Ok(id),
        None => reference_event_id(object, rules),
    }
}

/// The ID of a received PDU: the `event_id` it carries (format v1), or its reference hash, in
/// which case a transmitted `event_id` is dropped as not part of the event.
pub fn received_event_id(
    object: &mut CanonicalJsonObject,
    rules: &RoomVersionRules,
) -> Result<OwnedEventId, EventError> {
    if rules.event_format.require_event_id {
        let id = object
            .get("event_id")
            .and_then(CanonicalJsonValue::as_str)
            .ok_or_else(|| EventError::InvalidContent("the event has no event_id".to_owned()))?;
        return OwnedEventId::try_from(id)
            .map_err(|e| EventError::InvalidContent(format!("invalid event_id {id}: {e}")));
    }
    object.remove("event_id");
    reference_event_id(object, rules)
}

#[cfg(test)]
mod tests {
    use ruma::{
        CanonicalJsonObject, CanonicalJsonValue, OwnedEventId,
        room_version_rules::RoomVersionRules, server_name, signatures::Ed25519KeyPair,
    };
    use serde_json::json;

    use super::*;

    fn key() -> Ed25519KeyPair {
        let document = Ed25519KeyPair::generate();
        Ed25519KeyPair::from_der(&document, "1".to_owned()).unwrap()
    }

    fn template() -> CanonicalJsonObject {
        serde_json::from_value(json!({
            "type": "m.room.message", "room_id": "!r:a.test", "sender": "@u:a.test",
            "content": { "body": "hi" }, "depth": 3, "origin_server_ts": 1,
            "prev_events": [], "auth_events": [],
        }))
        .unwrap()
    }

    /// Room version 2 (spec: rooms/v1 "Event format"): the sender's server names the event and
    /// that name is signed; references carry the referenced event's sha256 reference hash.
    #[test]
    fn format_v1_events_carry_their_id_and_hashed_references() {
        let rules = RoomVersionRules::V2;
        let mut object = template();
        let id = sign_and_identify(&mut object, &rules, server_name!("a.test"), &key()).unwrap();
        assert!(id.as_str().ends_with(":a.test"), "{id}");
        assert_eq!(
            object["event_id"],
            CanonicalJsonValue::String(id.to_string())
        );
        assert!(object.contains_key("signatures") && object.contains_key("hashes"));
        assert_eq!(received_event_id(&mut object.clone(), &rules).unwrap(), id);

        let json = serde_json::to_string(&object).unwrap();
        let hash = reference_sha256(&json, &rules).unwrap();
        let hashes = [(id.clone(), hash.clone())].into();
        let list = reference_list(std::slice::from_ref(&id), &hashes, &rules).unwrap();
        assert_eq!(
            serde_json::to_value(&list).unwrap(),
            json!([[id.as_str(), { "sha256": hash }]])
        );
        let missing: OwnedEventId = "$other:a.test".try_into().unwrap();
        assert!(reference_list(&[missing], &hashes, &rules).is_err());
    }

    /// Room versions 3+: the ID is the reference hash; a transmitted `event_id` is ignored.
    #[test]
    fn later_formats_derive_the_id_and_refer_by_id() {
        let rules = RoomVersionRules::V11;
        let mut object = template();
        let id = sign_and_identify(&mut object, &rules, server_name!("a.test"), &key()).unwrap();
        assert!(!object.contains_key("event_id"));
        let mut received = object.clone();
        received.insert(
            "event_id".to_owned(),
            CanonicalJsonValue::String("$forged".into()),
        );
        assert_eq!(received_event_id(&mut received, &rules).unwrap(), id);
        assert!(!received.contains_key("event_id"));
        let list = reference_list(std::slice::from_ref(&id), &ReferenceHashes::new(), &rules);
        assert_eq!(
            serde_json::to_value(list.unwrap()).unwrap(),
            json!([id.as_str()])
        );
    }

    #[test]
    fn references_parse_in_both_formats() {
        let parsed: Vec<EventReference> =
            serde_json::from_value(json!(["$a", ["$b:x.test", { "sha256": "abc" }]])).unwrap();
        let ids: Vec<String> = parsed
            .into_iter()
            .map(|r| r.into_id().to_string())
            .collect();
        assert_eq!(ids, ["$a", "$b:x.test"]);
    }
}
