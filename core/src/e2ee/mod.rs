//! End-to-end encryption support (spec: "End-to-End Encryption"): device, one-time, fallback
//! and cross-signing keys, to-device messages, device list tracking and server-side key backup.
//! The server stores public keys, signatures and ciphertext; it never sees plaintext.

mod backup;
mod cross_signing;
mod dehydrated;
mod keys;
mod signed_json;
mod sync;
mod to_device;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use ruma::{OwnedDeviceId, OwnedServerName, OwnedUserId, UserId};

pub use backup::KeysToBackUp;
pub use cross_signing::{SignatureFailure, SigningKeysUpload};
pub use dehydrated::DehydratedEvents;
pub use keys::KeyCounts;
pub use sync::DeviceSync;

use crate::{Result, federation::edus::EduQueue, store::Store, sync::Notifier};

pub struct E2ee {
    store: Store,
    notifier: Arc<Notifier>,
    server_name: OwnedServerName,
    /// To-device messages and device list updates for other servers.
    edus: Arc<EduQueue>,
    /// One-time and fallback key counts of devices that synced, so that a sync does not count
    /// them in the database each time; dropped whenever the keys change.
    key_counts: Mutex<HashMap<(OwnedUserId, OwnedDeviceId), Arc<KeyCounts>>>,
}

impl E2ee {
    pub fn new(
        store: Store,
        notifier: Arc<Notifier>,
        server_name: OwnedServerName,
        edus: Arc<EduQueue>,
    ) -> Self {
        Self {
            store,
            notifier,
            server_name,
            edus,
            key_counts: Mutex::default(),
        }
    }

    fn key_counts(&self) -> MutexGuard<'_, HashMap<(OwnedUserId, OwnedDeviceId), Arc<KeyCounts>>> {
        // Entries are only inserted or removed whole: a panic elsewhere cannot break the map.
        self.key_counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_local(&self, user_id: &UserId) -> bool {
        user_id.server_name() == self.server_name
    }

    /// Wakes the syncs of the user and of everyone sharing a room with them: their device list
    /// changed. Other servers sharing a room hear of a local user's new cross-signing keys or
    /// signatures.
    async fn device_list_changed(&self, user_id: &UserId) -> Result<()> {
        self.notifier.wake_room_mates(&self.store, user_id).await?;
        if self.is_local(user_id) {
            self.edus.signing_keys_changed(user_id).await?;
        }
        Ok(())
    }

    /// A remote user's devices or keys changed (an `m.device_list_update` or
    /// `m.signing_key_update` from their server): local users sharing a room with them see
    /// them in `device_lists.changed`.
    pub async fn remote_device_list_changed(&self, user_id: &UserId) -> Result<()> {
        self.store.record_remote_device_list_change(user_id).await?;
        Ok(self.notifier.wake_room_mates(&self.store, user_id).await?)
    }
}
