//! Transactions other servers send (spec: Server-Server API, `PUT /send/{txnId}`): processed
//! once per (origin, transaction ID), each PDU checked and persisted on its own, with a result
//! per PDU.

use std::collections::BTreeMap;

use ruma::{
    CanonicalJsonValue, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, RoomId, ServerName,
};
use serde_json::value::RawValue;

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
        edu_count: usize,
    ) -> Result<PduResults> {
        if pdus.len() > MAX_TRANSACTION_PDUS || edu_count > MAX_TRANSACTION_EDUS {
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
        let version = match self.rooms.room_version(&room_id).await {
            Ok(Some(version)) => version,
            Ok(None) => return (None, Err(format!("this server is not in {room_id}"))),
            Err(e) => return (None, Err(e.to_string())),
        };
        let Some(rules) = version.rules() else {
            return (None, Err(format!("unknown room version {version}")));
        };
        let checked = match self
            .federation
            .keys
            .check_pdu(origin, &room_id, &rules, json)
            .await
        {
            Ok(checked) => checked,
            Err(e) => return (None, Err(e.to_string())),
        };
        let json = match serde_json::to_string(&checked.object) {
            Ok(json) => json,
            Err(e) => return (Some(checked.event_id), Err(e.to_string())),
        };
        let outcome = self
            .rooms
            .receive_pdu(&room_id, &checked.event_id, json.into())
            .await
            .map_err(|e| e.to_string());
        (Some(checked.event_id), outcome)
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
