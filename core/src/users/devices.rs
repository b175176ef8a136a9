//! A user's devices: list, rename, delete (deleting also ends the device's session).

use ruma::{DeviceId, OwnedDeviceId, UserId};

use super::Users;
use crate::{Error, Result, store::Device};

impl Users {
    pub async fn devices(&self, user_id: &UserId) -> Result<Vec<Device>> {
        Ok(self.store.devices(user_id).await?)
    }

    pub async fn device(&self, user_id: &UserId, device_id: &DeviceId) -> Result<Device> {
        self.store
            .device(user_id, device_id)
            .await?
            .ok_or_else(|| Error::NotFound("Device not found".to_owned()))
    }

    pub async fn rename_device(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        name: Option<&str>,
    ) -> Result<()> {
        // Spec: "If not given, the display name is unchanged" (the device must still exist).
        let Some(name) = name else {
            return self.device(user_id, device_id).await.map(drop);
        };
        if !self.store.rename_device(user_id, device_id, name).await? {
            return Err(Error::NotFound("Device not found".to_owned()));
        }
        self.notifier.wake_room_mates(&self.store, user_id).await?;
        self.edus.device_changed(user_id, device_id, false).await
    }

    /// Those of `candidates` the user no longer has were deleted: the syncs that track the
    /// user's device list learn of it, and so do the other servers sharing a room with them.
    pub(super) async fn devices_deleted(
        &self,
        user_id: &UserId,
        candidates: &[OwnedDeviceId],
    ) -> Result<()> {
        self.notifier.wake_room_mates(&self.store, user_id).await?;
        let remaining = self.device_ids(user_id).await?;
        for device_id in candidates.iter().filter(|id| !remaining.contains(id)) {
            self.edus.device_changed(user_id, device_id, true).await?;
        }
        Ok(())
    }

    pub(super) async fn device_ids(&self, user_id: &UserId) -> Result<Vec<OwnedDeviceId>> {
        Ok(self
            .store
            .devices(user_id)
            .await?
            .into_iter()
            .map(|device| device.device_id)
            .collect())
    }

    /// Deletes devices; IDs the user does not have are ignored, as the spec's
    /// `POST /delete_devices` allows.
    pub async fn delete_devices(
        &self,
        user_id: &UserId,
        device_ids: &[OwnedDeviceId],
    ) -> Result<u64> {
        let deleted = self.store.delete_devices(user_id, device_ids).await?;
        if deleted > 0 {
            self.devices_deleted(user_id, device_ids).await?;
        }
        Ok(deleted)
    }
}
