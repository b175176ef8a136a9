//! Checks on a PDU received from another server (spec: Server-Server API, "Checks performed on
//! receipt of a PDU", steps 1-3): its format and size, its event ID, the signatures of the
//! servers that must have signed it, and its content hash; a PDU whose hash does not match is
//! kept in its redacted form.

use std::collections::BTreeMap;

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedEventId, RoomId,
    room_version_rules::RoomVersionRules,
    serde::Base64,
    signatures::{Verified, required_server_signatures_to_verify_event, verify_event, verify_json},
};
use serde_json::value::RawValue;

use super::{FederationError, ServerKeys};
use crate::events::{MAX_PDU_BYTES, received_event_id};

/// A PDU whose signatures verified: its event ID and the JSON to store (redacted if its
/// content hash did not match).
pub struct CheckedPdu {
    pub event_id: OwnedEventId,
    pub object: CanonicalJsonObject,
    /// Whether the content hash failed, so that `object` is the redacted event.
    pub redacted: bool,
}

/// The event ID of a PDU as its room version derives it, if it is well-formed enough to have
/// one: a PDU that fails its checks is still answered under its ID.
pub(super) fn event_id_of(json: &RawValue, rules: &RoomVersionRules) -> Option<OwnedEventId> {
    let mut object: CanonicalJsonObject = serde_json::from_str(json.get()).ok()?;
    received_event_id(&mut object, rules).ok()
}

impl ServerKeys {
    /// Checks a PDU of `room_id` (a room of the given rules) sent by `origin`.
    pub async fn check_pdu(
        &self,
        origin: &ruma::ServerName,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        json: &RawValue,
    ) -> Result<CheckedPdu, FederationError> {
        self.check_pdu_with(origin, room_id, rules, json, None)
            .await
    }

    /// [`ServerKeys::check_pdu`], also requiring a signature of `signer` (an invitee's server
    /// countersigns an invite).
    pub async fn check_pdu_signed_by(
        &self,
        origin: &ruma::ServerName,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        json: &RawValue,
        signer: &ruma::ServerName,
    ) -> Result<CheckedPdu, FederationError> {
        self.check_pdu_with(origin, room_id, rules, json, Some(signer))
            .await
    }

    async fn check_pdu_with(
        &self,
        origin: &ruma::ServerName,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        json: &RawValue,
        signer: Option<&ruma::ServerName>,
    ) -> Result<CheckedPdu, FederationError> {
        let invalid = |reason: String| FederationError::BadResponse {
            server: origin.to_owned(),
            reason,
        };
        if json.get().len() > MAX_PDU_BYTES {
            return Err(invalid(format!(
                "a PDU of {} bytes exceeds the limit of {MAX_PDU_BYTES}",
                json.get().len()
            )));
        }
        let mut object: CanonicalJsonObject = serde_json::from_str(json.get())
            .map_err(|e| invalid(format!("a PDU is not canonical JSON: {e}")))?;
        let in_room = object.get("room_id").and_then(CanonicalJsonValue::as_str);
        if in_room.is_some_and(|id| id != room_id.as_str()) {
            return Err(invalid(format!("a PDU of another room than {room_id}")));
        }
        let event_id = received_event_id(&mut object, rules)
            .map_err(|e| invalid(format!("cannot tell the event ID: {e}")))?;
        let mut servers = required_server_signatures_to_verify_event(&object, &rules.signatures)
            .map_err(|e| invalid(format!("{event_id}: {e}")))?;
        if let Some(signer) = signer {
            servers.insert(signer.to_owned());
        }
        let valid_at = match object.get("origin_server_ts") {
            Some(CanonicalJsonValue::Integer(ts)) => u64::try_from(i64::from(*ts)).unwrap_or(0),
            _ => return Err(invalid(format!("{event_id} has no origin_server_ts"))),
        };
        let mut keys = BTreeMap::new();
        for server in &servers {
            let key_ids: Vec<String> = match object
                .get("signatures")
                .and_then(CanonicalJsonValue::as_object)
                .and_then(|s| s.get(server.as_str()))
                .and_then(CanonicalJsonValue::as_object)
            {
                Some(signatures) => signatures.keys().cloned().collect(),
                None => {
                    return Err(invalid(format!("{event_id} is not signed by {server}")));
                }
            };
            let mut server_keys = BTreeMap::new();
            for key_id in key_ids.iter().filter(|id| id.starts_with("ed25519:")) {
                if let Ok(key) = self.verify_key(server, key_id, valid_at).await
                    && let Ok(key) = Base64::parse(&key)
                {
                    server_keys.insert(key_id.clone(), key);
                }
            }
            if server_keys.is_empty() {
                return Err(FederationError::Keys {
                    server: server.clone(),
                    reason: format!("no key that signed {event_id} is known"),
                });
            }
            keys.insert(server.to_string(), server_keys);
        }
        if let Some(signer) = signer {
            verify_signer(&keys, &object, rules, signer)
                .map_err(|e| invalid(format!("{signer}'s signature of {event_id}: {e}")))?;
        }
        match verify_event(&keys, &object, rules) {
            Ok(Verified::All) => Ok(CheckedPdu {
                event_id,
                object,
                redacted: false,
            }),
            Ok(Verified::Signatures) => {
                let redacted = ruma::canonical_json::redact(object, &rules.redaction, None)
                    .map_err(|e| invalid(format!("cannot redact {event_id}: {e}")))?;
                Ok(CheckedPdu {
                    event_id,
                    object: redacted,
                    redacted: true,
                })
            }
            Err(e) => Err(invalid(format!(
                "the signatures of {event_id} do not verify: {e}"
            ))),
        }
    }
}

/// Checks `signer`'s signature of the event, which `verify_event` leaves alone when the rules
/// do not require it.
fn verify_signer(
    keys: &BTreeMap<String, BTreeMap<String, Base64>>,
    object: &CanonicalJsonObject,
    rules: &RoomVersionRules,
    signer: &ruma::ServerName,
) -> Result<(), String> {
    let signatures = object
        .get("signatures")
        .and_then(CanonicalJsonValue::as_object)
        .and_then(|s| s.get(signer.as_str()))
        .cloned()
        .ok_or_else(|| "missing".to_owned())?;
    let mut redacted = ruma::canonical_json::redact(object.clone(), &rules.redaction, None)
        .map_err(|e| e.to_string())?;
    redacted.insert(
        "signatures".to_owned(),
        CanonicalJsonValue::Object([(signer.to_string(), signatures)].into()),
    );
    let signer_keys = keys
        .get(signer.as_str())
        .cloned()
        .ok_or_else(|| "no key known".to_owned())?;
    verify_json(&[(signer.to_string(), signer_keys)].into(), &redacted).map_err(|e| e.to_string())
}
