//! Send-to-device messaging (spec: "Send-to-Device messaging"): messages straight to devices,
//! outside any room, delivered by the recipients' syncs.

use std::collections::BTreeMap;

use ruma::{
    OwnedDeviceId, OwnedServerName, ServerName,
    api::{
        client::to_device::send_event_to_device, federation::transactions::edu::DirectDeviceContent,
    },
    to_device::DeviceIdOrAllDevices,
};
use serde_json::{Map as JsonMap, Value as JsonValue, json};

use super::E2ee;
use crate::{Error, Result, store::OutgoingToDevice, users::Caller};

impl E2ee {
    /// `PUT /sendToDevice/{eventType}/{txnId}`: stores the messages in the recipients'
    /// inboxes and wakes their syncs. A retry with the same transaction ID stores nothing.
    pub async fn send_to_device(
        &self,
        caller: &Caller,
        event_type: &str,
        txn_id: &str,
        messages: &send_event_to_device::v3::Messages,
    ) -> Result<()> {
        let mut local = Vec::new();
        let mut remote: BTreeMap<OwnedServerName, JsonMap<String, JsonValue>> = BTreeMap::new();
        for (user_id, devices) in messages {
            for (target, content) in devices {
                let json = content.json().get();
                // The body parsed as JSON already: an object is all that is left to check, and
                // only messages for other servers are parsed again, to be nested in an EDU.
                if !json.trim_start().starts_with('{') {
                    return Err(Error::BadJson(format!(
                        "The message for {user_id} {target} is not a JSON object"
                    )));
                }
                if self.is_local(user_id) {
                    local.push(OutgoingToDevice {
                        user_id: user_id.clone(),
                        device_id: match target {
                            DeviceIdOrAllDevices::DeviceId(device_id) => Some(device_id.clone()),
                            DeviceIdOrAllDevices::AllDevices => None,
                        },
                        content: json.to_owned(),
                    });
                } else {
                    let object = serde_json::from_str::<JsonMap<String, JsonValue>>(json)
                        .map_err(|e| Error::BadJson(format!("The message for {user_id}: {e}")))?;
                    let for_user = remote
                        .entry(user_id.server_name().to_owned())
                        .or_default()
                        .entry(user_id.to_string())
                        .or_insert_with(|| JsonValue::Object(JsonMap::new()));
                    for_user[target.to_string()] = JsonValue::Object(object);
                }
            }
        }
        // The transaction is recorded with the local deliveries: a retry sends nothing again,
        // to local or remote devices.
        let Some(recipients) = self
            .store
            .send_to_device(
                &caller.user_id,
                &caller.device_id,
                txn_id,
                event_type,
                local,
            )
            .await?
        else {
            return Ok(());
        };
        self.notifier.wake(recipients.iter().map(AsRef::as_ref));
        let message_id = format!("{}-{txn_id}", caller.device_id);
        for (server, messages) in remote {
            let content = json!({
                "sender": caller.user_id,
                "type": event_type,
                "message_id": message_id,
                "messages": messages,
            });
            self.edus
                .to_server(&server, "m.direct_to_device", content)
                .await?;
        }
        Ok(())
    }

    /// An `m.direct_to_device` EDU of `origin`: its messages for local devices are delivered.
    /// The sender and message ID make the transaction, so a message sent twice is delivered
    /// once.
    pub async fn receive_to_device(
        &self,
        origin: &ServerName,
        content: &DirectDeviceContent,
    ) -> Result<()> {
        if content.sender.server_name() != origin {
            return Ok(());
        }
        let mut local = Vec::new();
        for (user_id, devices) in &content.messages {
            if !self.is_local(user_id) {
                continue;
            }
            for (target, message) in devices {
                local.push(OutgoingToDevice {
                    user_id: user_id.clone(),
                    device_id: match target {
                        DeviceIdOrAllDevices::DeviceId(device_id) => Some(device_id.clone()),
                        DeviceIdOrAllDevices::AllDevices => None,
                    },
                    content: message.json().get().to_owned(),
                });
            }
        }
        // Remote senders have no device here; the origin stands in for it in the transaction.
        let origin_device = OwnedDeviceId::from(origin.as_str());
        if let Some(recipients) = self
            .store
            .send_to_device(
                &content.sender,
                &origin_device,
                content.message_id.as_str(),
                &content.ev_type.to_string(),
                local,
            )
            .await?
        {
            self.notifier.wake(recipients.iter().map(AsRef::as_ref));
        }
        Ok(())
    }
}
