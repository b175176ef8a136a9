//! Checks on a PDU received from another server (spec: Server-Server API, "Checks performed on
//! receipt of a PDU", steps 1-3): its format and size, its event ID, the signatures of the
//! servers that must have signed it, and its content hash; a PDU whose hash does not match is
//! kept in its redacted form.

use std::collections::{BTreeMap, BTreeSet};

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedEventId, OwnedServerName, RoomId, ServerName,
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
        origin: &ServerName,
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
        origin: &ServerName,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        json: &RawValue,
        signer: &ServerName,
    ) -> Result<CheckedPdu, FederationError> {
        self.check_pdu_with(origin, room_id, rules, json, Some(signer))
            .await
    }

    async fn check_pdu_with(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        json: &RawValue,
        signer: Option<&ServerName>,
    ) -> Result<CheckedPdu, FederationError> {
        let mut parsed = parse_pdu(origin, room_id, rules, json)?;
        if let Some(signer) = signer {
            parsed.servers.insert(signer.to_owned());
        }
        let keys = self.keys_for(&parsed).await?;
        if let Some(signer) = signer {
            verify_signer(&keys, &parsed.object, rules, signer).map_err(|e| {
                invalid(
                    origin,
                    format!("{signer}'s signature of {}: {e}", parsed.event_id),
                )
            })?;
        }
        verify_parsed(origin, rules, parsed, &keys)
    }

    /// [`ServerKeys::check_pdu`] of many PDUs of one room from `origin` (the state a join
    /// brings), one result each: parsing and verifying run on all cores, the keys are looked
    /// up in between.
    pub async fn check_pdus(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        pdus: Vec<Box<RawValue>>,
    ) -> Vec<Result<CheckedPdu, FederationError>> {
        let (origin, room_id) = (origin.to_owned(), room_id.to_owned());
        let parsed = on_all_cores(pdus, {
            let (origin, room_id, rules) = (origin.clone(), room_id.clone(), rules.clone());
            move |json| parse_pdu(&origin, &room_id, &rules, &json)
        })
        .await;
        let mut prepared = Vec::with_capacity(parsed.len());
        for parsed in parsed {
            prepared.push(match parsed {
                Ok(parsed) => self.keys_for(&parsed).await.map(|keys| (parsed, keys)),
                Err(e) => Err(e),
            });
        }
        let rules = rules.clone();
        on_all_cores(prepared, move |prepared| {
            let (parsed, keys) = prepared?;
            verify_parsed(&origin, &rules, parsed, &keys)
        })
        .await
    }

    /// The keys of the servers whose signatures the PDU needs, valid when it was sent.
    async fn keys_for(&self, parsed: &ParsedPdu) -> Result<SigningKeys, FederationError> {
        let ParsedPdu {
            event_id,
            object,
            servers,
            valid_at,
        } = parsed;
        let mut keys = BTreeMap::new();
        for server in servers {
            let Some(signatures) = object
                .get("signatures")
                .and_then(CanonicalJsonValue::as_object)
                .and_then(|s| s.get(server.as_str()))
                .and_then(CanonicalJsonValue::as_object)
            else {
                return Err(FederationError::Keys {
                    server: server.clone(),
                    reason: format!("{event_id} is not signed by {server}"),
                });
            };
            let mut server_keys = BTreeMap::new();
            for key_id in signatures.keys().filter(|id| id.starts_with("ed25519:")) {
                if let Ok(key) = self.verify_key(server, key_id, *valid_at).await
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
        Ok(keys)
    }
}

/// The public keys of the servers a PDU must be signed by, by server and key ID.
type SigningKeys = BTreeMap<String, BTreeMap<String, Base64>>;

/// A well-formed PDU, not yet verified: its ID, and whose signatures it needs.
struct ParsedPdu {
    event_id: OwnedEventId,
    object: CanonicalJsonObject,
    servers: BTreeSet<OwnedServerName>,
    /// Its `origin_server_ts`: the signing keys must have been valid then.
    valid_at: u64,
}

fn invalid(origin: &ServerName, reason: String) -> FederationError {
    FederationError::BadResponse {
        server: origin.to_owned(),
        reason,
    }
}

/// Spec step 1 (format): size, canonical JSON, the room, the event ID and the servers whose
/// signatures it needs.
fn parse_pdu(
    origin: &ServerName,
    room_id: &RoomId,
    rules: &RoomVersionRules,
    json: &RawValue,
) -> Result<ParsedPdu, FederationError> {
    let invalid = |reason: String| invalid(origin, reason);
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
    let servers = required_server_signatures_to_verify_event(&object, &rules.signatures)
        .map_err(|e| invalid(format!("{event_id}: {e}")))?;
    let valid_at = match object.get("origin_server_ts") {
        Some(CanonicalJsonValue::Integer(ts)) => u64::try_from(i64::from(*ts)).unwrap_or(0),
        _ => return Err(invalid(format!("{event_id} has no origin_server_ts"))),
    };
    Ok(ParsedPdu {
        event_id,
        object,
        servers,
        valid_at,
    })
}

/// Spec steps 2 and 3: the signatures, then the content hash (a PDU whose hash does not match
/// is kept redacted).
fn verify_parsed(
    origin: &ServerName,
    rules: &RoomVersionRules,
    parsed: ParsedPdu,
    keys: &SigningKeys,
) -> Result<CheckedPdu, FederationError> {
    let ParsedPdu {
        event_id, object, ..
    } = parsed;
    match verify_event(keys, &object, rules) {
        Ok(Verified::All) => Ok(CheckedPdu {
            event_id,
            object,
            redacted: false,
        }),
        Ok(Verified::Signatures) => {
            let redacted = ruma::canonical_json::redact(object, &rules.redaction, None)
                .map_err(|e| invalid(origin, format!("cannot redact {event_id}: {e}")))?;
            Ok(CheckedPdu {
                event_id,
                object: redacted,
                redacted: true,
            })
        }
        Err(e) => Err(invalid(
            origin,
            format!("the signatures of {event_id} do not verify: {e}"),
        )),
    }
}

/// `work` applied to each item, in order, on blocking threads: one share of the items per
/// core, so that thousands of signature checks use the whole machine.
async fn on_all_cores<T, R>(items: Vec<T>, work: impl Fn(T) -> R + Clone + Send + 'static) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
{
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let share = items.len().div_ceil(cores).max(1);
    let mut items = items.into_iter();
    let mut tasks = Vec::new();
    loop {
        let chunk: Vec<T> = items.by_ref().take(share).collect();
        if chunk.is_empty() {
            break;
        }
        let work = work.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            chunk.into_iter().map(work).collect::<Vec<R>>()
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        // A panic in a check is a bug; surface it rather than drop the results.
        results.extend(task.await.expect("a PDU check panicked"));
    }
    results
}

/// Checks `signer`'s signature of the event, which `verify_event` leaves alone when the rules
/// do not require it.
fn verify_signer(
    keys: &SigningKeys,
    object: &CanonicalJsonObject,
    rules: &RoomVersionRules,
    signer: &ServerName,
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
