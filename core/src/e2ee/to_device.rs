//! Send-to-device messaging (spec: "Send-to-Device messaging"): messages straight to devices,
//! outside any room, delivered by the recipients' syncs.

use ruma::{api::client::to_device::send_event_to_device, to_device::DeviceIdOrAllDevices};

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
        let mut outgoing = Vec::new();
        for (user_id, devices) in messages {
            if !self.is_local(user_id) {
                // Until federation exists a message for another server could only be dropped:
                // say so rather than pretend it was sent.
                return Err(Error::InvalidParam(format!(
                    "Cannot send to {user_id}: federation is not available on this server"
                )));
            }
            for (target, content) in devices {
                let json = content.json().get();
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json).map_err(
                    |e| {
                        Error::BadJson(format!(
                            "The message for {user_id} {target} is not a JSON object: {e}"
                        ))
                    },
                )?;
                outgoing.push(OutgoingToDevice {
                    user_id: user_id.clone(),
                    device_id: match target {
                        DeviceIdOrAllDevices::DeviceId(device_id) => Some(device_id.clone()),
                        DeviceIdOrAllDevices::AllDevices => None,
                    },
                    content: json.to_owned(),
                });
            }
        }
        let recipients = self
            .store
            .send_to_device(
                &caller.user_id,
                &caller.device_id,
                txn_id,
                event_type,
                outgoing,
            )
            .await?;
        if let Some(recipients) = recipients {
            self.notifier.wake(recipients.iter().map(AsRef::as_ref));
        }
        Ok(())
    }
}
