//! Transactions other servers send (spec: Server-Server API, `PUT /send/{txnId}`): processed
//! once per (origin, transaction ID), each PDU checked and persisted on its own, with a result
//! per PDU.

use std::collections::BTreeMap;

use ruma::{
    CanonicalJsonValue, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, RoomId, ServerName,
    UserId, api::federation::transactions::edu::Edu, events::receipt::ReceiptThread, serde::Raw,
};
use serde_json::value::RawValue;

use super::pdu;
use crate::{Error, Result, Services};

/// The spec's limits on one transaction.
pub const MAX_TRANSACTION_PDUS: usize = 50;
pub const MAX_TRANSACTION_EDUS: usize = 100;

/// The outcome of each PDU of a transaction.
pub type PduResults = BTreeMap<OwnedEventId, std::result::Result<(), String>>;

impl Services {
    /// Processes an inbound transaction; a repeated one gets the first one's answer.
    pub async fn receive_transaction(
        &self,
        origin: &ServerName,
        txn_id: &str,
        pdus: &[Box<RawValue>],
        edus: &[Raw<Edu>],
    ) -> Result<PduResults> {
        if pdus.len() > MAX_TRANSACTION_PDUS || edus.len() > MAX_TRANSACTION_EDUS {
            return Err(Error::TooLarge(format!(
                "A transaction holds at most {MAX_TRANSACTION_PDUS} PDUs and {MAX_TRANSACTION_EDUS} EDUs"
            )));
        }
        if let Some(stored) = self
            .store
            .inbound_transaction(origin.as_str(), txn_id)
            .await?
        {
            return serde_json::from_str::<BTreeMap<OwnedEventId, Option<String>>>(&stored)
                .map(|results| {
                    results
                        .into_iter()
                        .map(|(id, error)| (id, error.map_or(Ok(()), Err)))
                        .collect()
                })
                .map_err(|e| Error::Internal(format!("stored transaction response: {e}")));
        }
        let mut results = PduResults::new();
        for pdu in pdus {
            let (event_id, outcome) = self.receive_one(origin, pdu).await;
            if let Some(event_id) = event_id {
                if let Err(reason) = &outcome {
                    tracing::info!(%origin, %event_id, %reason, "refused a PDU");
                }
                results.insert(event_id, outcome);
            }
        }
        // EDUs after PDUs: a receipt may be for an event of this very transaction.
        for edu in edus {
            if let Err(e) = self.receive_edu(origin, edu).await {
                tracing::info!(%origin, error = %e, "an EDU could not be applied");
            }
        }
        let stored: BTreeMap<&OwnedEventId, Option<&String>> = results
            .iter()
            .map(|(id, outcome)| (id, outcome.as_ref().err()))
            .collect();
        let stored = serde_json::to_string(&stored).map_err(|e| Error::Internal(e.to_string()))?;
        let now: u64 = MilliSecondsSinceUnixEpoch::now().get().into();
        self.store
            .save_inbound_transaction(
                origin.as_str(),
                txn_id,
                stored,
                i64::try_from(now).unwrap_or(i64::MAX),
            )
            .await?;
        Ok(results)
    }

    /// One PDU: its room must be one this server is in. `None` as the ID when the PDU is too
    /// malformed to have one (it is then left out of the answer).
    async fn receive_one(
        &self,
        origin: &ServerName,
        json: &RawValue,
    ) -> (Option<OwnedEventId>, std::result::Result<(), String>) {
        let Some(room_id) = room_of(json) else {
            return (None, Err("the PDU has no valid room_id".to_owned()));
        };
        self.federation.joins.wait_for(&room_id).await;
        let version = match self.rooms.room_version(&room_id).await {
            Ok(Some(version)) => version,
            Ok(None) => return (None, Err(format!("this server is not in {room_id}"))),
            Err(e) => return (None, Err(e.to_string())),
        };
        let Some(rules) = version.rules() else {
            return (None, Err(format!("unknown room version {version}")));
        };
        match self.rooms.server_allowed(&room_id, origin).await {
            Ok(true) => {}
            Ok(false) => {
                return (
                    None,
                    Err(format!("{origin} is denied by the server ACL of {room_id}")),
                );
            }
            Err(e) => return (None, Err(e.to_string())),
        }
        let checked = match self
            .federation
            .keys
            .check_pdu(origin, &room_id, &rules, json)
            .await
        {
            Ok(checked) => checked,
            Err(e) => return (pdu::event_id_of(json, &rules), Err(e.to_string())),
        };
        let prev_events: Vec<OwnedEventId> = checked
            .object
            .get("prev_events")
            .and_then(|prev| match prev {
                CanonicalJsonValue::Array(ids) => Some(ids),
                _ => None,
            })
            .into_iter()
            .flatten()
            .filter_map(|reference| match reference {
                // Room versions 1 and 2 refer to events as `[event_id, hashes]`.
                CanonicalJsonValue::Array(pair) => pair.first()?.as_str(),
                id => id.as_str(),
            })
            .filter_map(|id| OwnedEventId::try_from(id).ok())
            .collect();
        self.fill_gap(origin, &room_id, &rules, &checked.event_id, &prev_events)
            .await;
        let json = match serde_json::to_string(&checked.object) {
            Ok(json) => json,
            Err(e) => return (Some(checked.event_id), Err(e.to_string())),
        };
        let outcome = self
            .rooms
            .receive_pdu(&room_id, &checked.event_id, json.into())
            .await
            .map_err(|e| e.to_string());
        if outcome.is_ok() {
            let kind = checked
                .object
                .get("type")
                .and_then(CanonicalJsonValue::as_str)
                .unwrap_or_default();
            self.im.received(&room_id, &checked.event_id, kind);
        }
        (Some(checked.event_id), outcome)
    }
}

impl Services {
    /// One EDU. Those naming users of another server than `origin`, rooms the user is not
    /// joined to, or rooms whose server ACL denies `origin`, are ignored (spec: EDUs are about
    /// the sending server's own users); so are unknown types.
    async fn receive_edu(&self, origin: &ServerName, edu: &Raw<Edu>) -> Result<()> {
        let edu = match edu.deserialize() {
            Ok(edu) => edu,
            Err(e) => {
                tracing::debug!(%origin, error = %e, "an EDU is malformed or of an unknown type");
                return Ok(());
            }
        };
        match edu {
            Edu::Typing(typing) => {
                if !self.rooms.server_allowed(&typing.room_id, origin).await? {
                    return Ok(());
                }
                self.rooms
                    .receive_typing(origin, &typing.room_id, &typing.user_id, typing.typing)
                    .await
            }
            Edu::Receipt(receipts) => {
                for (room_id, map) in &receipts.receipts {
                    if !self.rooms.server_allowed(room_id, origin).await? {
                        continue;
                    }
                    for (user_id, receipt) in &map.read {
                        let thread = match &receipt.data.thread {
                            ReceiptThread::Main => Some("main"),
                            ReceiptThread::Thread(root) => Some(root.as_str()),
                            _ => None,
                        };
                        if let Some(event_id) = receipt.event_ids.last() {
                            self.rooms
                                .receive_read_receipt(origin, room_id, user_id, event_id, thread)
                                .await?;
                        }
                    }
                }
                Ok(())
            }
            Edu::DirectToDevice(content) => self.e2ee.receive_to_device(origin, &content).await,
            Edu::Presence(content) => {
                for update in &content.push {
                    self.presence.receive_remote(origin, update).await?;
                }
                Ok(())
            }
            Edu::DeviceListUpdate(update) if update.user_id.server_name() == origin => {
                self.e2ee.remote_device_list_changed(&update.user_id).await
            }
            Edu::SigningKeyUpdate(update) if update.user_id.server_name() == origin => {
                self.e2ee.remote_device_list_changed(&update.user_id).await
            }
            _ => Ok(()),
        }
    }
}

fn room_of(json: &RawValue) -> Option<OwnedRoomId> {
    let object: BTreeMap<String, CanonicalJsonValue> = serde_json::from_str(json.get()).ok()?;
    object
        .get("room_id")
        .and_then(CanonicalJsonValue::as_str)
        .and_then(|id| <&RoomId>::try_from(id).ok())
        .map(ToOwned::to_owned)
}

impl Services {
    /// `send_join` and `send_leave`: a member event of a user of `origin` with `membership`,
    /// built on a template of this server. It is checked and persisted like any received PDU.
    pub async fn receive_member_event(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &ruma::EventId,
        pdu: &RawValue,
        membership: &str,
    ) -> Result<()> {
        let version = self
            .rooms
            .room_version(room_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("Unknown room {room_id}")))?;
        let rules = version
            .rules()
            .ok_or_else(|| Error::Internal(format!("unknown room version {version}")))?;
        self.rooms.check_server_acl(room_id, origin).await?;
        let checked = self
            .federation
            .keys
            .check_pdu(origin, room_id, &rules, pdu)
            .await
            .map_err(|e| Error::BadJson(e.to_string()))?;
        if checked.event_id != event_id {
            return Err(Error::BadJson(format!(
                "The event's ID is {}, not {event_id}",
                checked.event_id
            )));
        }
        let field = |name: &str| {
            checked
                .object
                .get(name)
                .and_then(CanonicalJsonValue::as_str)
        };
        let event_membership = checked
            .object
            .get("content")
            .and_then(CanonicalJsonValue::as_object)
            .and_then(|content| content.get("membership"))
            .and_then(CanonicalJsonValue::as_str);
        let sender = field("sender").unwrap_or_default();
        // A server name may hold a port: the user ID is parsed, not split at its last colon.
        let sender_server = UserId::parse(sender).ok();
        let sender_server = sender_server
            .as_ref()
            .map(|user| user.server_name().as_str());
        if field("type") != Some("m.room.member")
            || event_membership != Some(membership)
            || field("state_key") != Some(sender)
            || sender_server.is_none_or(|server| server != origin.as_str())
        {
            return Err(Error::BadJson(format!(
                "Not a {membership} of a user of {origin} in {room_id}"
            )));
        }
        let json =
            serde_json::to_string(&checked.object).map_err(|e| Error::Internal(e.to_string()))?;
        self.rooms
            .receive_pdu_from(
                room_id,
                &checked.event_id,
                json.into(),
                crate::rooms::EventSource::Relayed,
            )
            .await?;
        if membership == "join" {
            self.rooms
                .send_concurrent_events(room_id, &checked.event_id, origin)
                .await?;
        }
        self.im
            .received(room_id, &checked.event_id, "m.room.member");
        Ok(())
    }
}
