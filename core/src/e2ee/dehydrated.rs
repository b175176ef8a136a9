//! Dehydrated devices (MSC3814, unstable prefix `org.matrix.msc3814.v1`): a client uploads a
//! device whose private keys it has encrypted (the pickle, opaque here) so that senders keep
//! sharing room keys with the user while none of their devices is online; a new login
//! downloads the pickle, rehydrates the device and reads the to-device messages it received.

use ruma::{
    DeviceId, OwnedDeviceId, UserId,
    api::client::dehydrated_device::{get_events, put_dehydrated_device},
};

use super::{
    E2ee,
    keys::{self_signed_device_keys, uploaded_key_sets},
    signed_json,
    sync::{TO_DEVICE_LIMIT, to_device_events},
};
use crate::{
    Error, Result,
    store::{KeyUpload, NewDehydratedDevice},
    users::Caller,
};

/// A batch of a dehydrated device's to-device messages, and the token for the next batch.
pub struct DehydratedEvents {
    pub events: Vec<ruma::serde::Raw<ruma::events::AnyToDeviceEvent>>,
    pub next_batch: String,
}

impl E2ee {
    /// `PUT /dehydrated_device`: replaces the user's dehydrated device (and everything sent to
    /// the old one) with the uploaded device and keys.
    pub async fn put_dehydrated_device(
        &self,
        user_id: &UserId,
        request: put_dehydrated_device::unstable::Request,
    ) -> Result<OwnedDeviceId> {
        let current = self.store.dehydrated_device(user_id).await?;
        // A device that logged in keeps its keys: a dehydrated device needs an ID of its own.
        if current.as_ref().map(|(id, _)| id) != Some(&request.device_id)
            && self
                .store
                .device(user_id, &request.device_id)
                .await?
                .is_some()
        {
            return Err(Error::InvalidParam(format!(
                "The device ID {} is taken by another device of yours",
                request.device_id
            )));
        }
        let device = Caller {
            user_id: user_id.to_owned(),
            device_id: request.device_id.clone(),
        };
        let device_keys = self_signed_device_keys(&device, &request.device_keys)?;
        let (one_time_keys, fallback_keys) =
            uploaded_key_sets(&request.one_time_keys, &request.fallback_keys)?;
        request.device_data.deserialize().map_err(|e| {
            Error::BadJson(format!("Invalid device_data of the dehydrated device: {e}"))
        })?;
        let replaced = self
            .store
            .replace_dehydrated_device(NewDehydratedDevice {
                display_name: request.initial_device_display_name,
                device_data: request.device_data.json().get().to_owned(),
                keys: KeyUpload {
                    user_id: device.user_id.clone(),
                    device_id: device.device_id.clone(),
                    device_keys: Some(signed_json::canonical(&device_keys)),
                    one_time_keys,
                    fallback_keys,
                },
            })
            .await?;
        if let Some(replaced) = &replaced {
            self.forget_key_counts(user_id, replaced);
            self.edus.device_changed(user_id, replaced, true).await?;
        }
        self.forget_key_counts(user_id, &device.device_id);
        self.notifier.wake_room_mates(&self.store, user_id).await?;
        self.edus
            .device_changed(user_id, &device.device_id, false)
            .await?;
        Ok(device.device_id)
    }

    /// `GET /dehydrated_device`: the user's dehydrated device ID and pickle.
    pub async fn dehydrated_device(&self, user_id: &UserId) -> Result<(OwnedDeviceId, String)> {
        self.store
            .dehydrated_device(user_id)
            .await?
            .ok_or_else(no_dehydrated_device)
    }

    /// `DELETE /dehydrated_device`: deletes it with its keys and messages; its ID.
    pub async fn delete_dehydrated_device(&self, user_id: &UserId) -> Result<OwnedDeviceId> {
        let deleted = self
            .store
            .delete_dehydrated_device(user_id)
            .await?
            .ok_or_else(no_dehydrated_device)?;
        self.forget_key_counts(user_id, &deleted);
        self.notifier.wake_room_mates(&self.store, user_id).await?;
        self.edus.device_changed(user_id, &deleted, true).await?;
        Ok(deleted)
    }

    /// `POST /dehydrated_device/{deviceId}/events`: the next batch of the dehydrated device's
    /// to-device messages. `next_batch` (from the previous answer) acknowledges, and deletes,
    /// the messages before it, as a sync token does for a device that syncs.
    pub async fn dehydrated_device_events(
        &self,
        user_id: &UserId,
        request: &get_events::unstable::Request,
    ) -> Result<DehydratedEvents> {
        let device_id = self
            .own_dehydrated_device(user_id, &request.device_id)
            .await?;
        let since = match &request.next_batch {
            Some(token) => {
                let since = token.parse::<i64>().map_err(|_| {
                    Error::InvalidParam(format!(
                        "next_batch {token:?} is not a token this server gave out"
                    ))
                })?;
                self.store
                    .acknowledge_to_device(user_id, &device_id, since)
                    .await?;
                since
            }
            None => 0,
        };
        let messages = self
            .store
            .to_device_messages(
                user_id,
                &device_id,
                since,
                self.store.to_device_position(),
                TO_DEVICE_LIMIT,
            )
            .await?;
        let next_batch = messages.last().map_or(since, |last| last.position);
        Ok(DehydratedEvents {
            events: to_device_events(&messages)?,
            next_batch: next_batch.to_string(),
        })
    }

    /// The device if it is the user's dehydrated device; only its owner reads its messages.
    async fn own_dehydrated_device(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
    ) -> Result<OwnedDeviceId> {
        match self.store.dehydrated_device(user_id).await? {
            Some((dehydrated, _)) if dehydrated == device_id => Ok(dehydrated),
            _ => Err(Error::Forbidden(format!(
                "{device_id} is not your dehydrated device"
            ))),
        }
    }
}

fn no_dehydrated_device() -> Error {
    Error::NotFound("You have no dehydrated device".to_owned())
}
