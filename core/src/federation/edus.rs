//! The outbound EDU queue (spec: Server-Server API, "EDUs"): typing notices, receipts,
//! to-device messages and device list updates are queued in the database for each server
//! concerned, and the sender sends them with the next transaction to that server.

use std::sync::Arc;

use ruma::{OwnedServerName, ServerName, UserId};
use serde_json::{Value as JsonValue, json};
use tokio::sync::Notify;

use crate::{Result, store::Store};

pub struct EduQueue {
    store: Store,
    server_name: OwnedServerName,
    /// Woken when anything (events or EDUs) was queued for other servers.
    wake: Arc<Notify>,
}

impl EduQueue {
    pub fn new(store: Store, server_name: OwnedServerName) -> Self {
        Self {
            store,
            server_name,
            wake: Arc::default(),
        }
    }

    /// The name of this server, whose users' EDUs these are.
    pub fn server_name(&self) -> &ServerName {
        &self.server_name
    }

    /// Notified whenever events or EDUs were queued for other servers.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Queues an EDU of a room for its other servers (`RoomState::remote_servers`).
    pub async fn to_servers(
        &self,
        servers: &[OwnedServerName],
        edu_type: &str,
        content: JsonValue,
        expires_ts: Option<i64>,
    ) -> Result<()> {
        let servers = servers.iter().map(ToString::to_string).collect();
        self.to(servers, edu_type, content, expires_ts).await
    }

    /// Queues an EDU for every other server with a user sharing a joined room with `user_id`;
    /// one not sent by `expires_ts` is dropped.
    pub async fn to_room_mates(
        &self,
        user_id: &UserId,
        edu_type: &str,
        content: JsonValue,
        expires_ts: Option<i64>,
    ) -> Result<()> {
        let servers = self
            .store
            .servers_sharing_a_room(user_id, self.server_name.as_str())
            .await?;
        self.to(servers, edu_type, content, expires_ts).await
    }

    /// Queues an EDU for one server.
    pub async fn to_server(
        &self,
        server: &ServerName,
        edu_type: &str,
        content: JsonValue,
    ) -> Result<()> {
        self.to(vec![server.to_string()], edu_type, content, None)
            .await
    }

    async fn to(
        &self,
        servers: Vec<String>,
        edu_type: &str,
        content: JsonValue,
        expires_ts: Option<i64>,
    ) -> Result<()> {
        if servers.is_empty() {
            return Ok(());
        }
        let edu = json!({ "edu_type": edu_type, "content": content }).to_string();
        self.store.queue_edus(servers, edu, expires_ts).await?;
        self.wake.notify_one();
        Ok(())
    }
}

impl EduQueue {
    /// A local user's device was added to, changed (new keys) or deleted: servers sharing a room
    /// with the user are told with `m.device_list_update`, carrying the device's keys.
    pub async fn device_changed(
        &self,
        user_id: &UserId,
        device_id: &ruma::DeviceId,
        deleted: bool,
    ) -> Result<()> {
        let (stream_id, prev_id) = self.store.device_list_update_ids(user_id).await?;
        let mut content = json!({
            "user_id": user_id,
            "device_id": device_id,
            "stream_id": stream_id,
            "prev_id": Vec::from_iter(prev_id),
        });
        if deleted {
            content["deleted"] = true.into();
        } else {
            if let Some(keys) = self.store.device_keys_json(user_id, device_id).await?
                && let Ok(keys) = serde_json::from_str::<JsonValue>(&keys)
            {
                content["keys"] = keys;
            }
            if let Some(name) = self
                .store
                .device(user_id, device_id)
                .await?
                .and_then(|device| device.display_name)
            {
                content["device_display_name"] = name.into();
            }
        }
        self.to_room_mates(user_id, "m.device_list_update", content, None)
            .await
    }

    /// A local user's cross-signing keys or signatures changed: `m.signing_key_update` with
    /// the user's current master and self-signing keys.
    pub async fn signing_keys_changed(&self, user_id: &UserId) -> Result<()> {
        let keys = self.store.cross_signing_keys(user_id).await?;
        let mut content = json!({ "user_id": user_id });
        for (key_type, field) in [
            ("master", "master_key"),
            ("self_signing", "self_signing_key"),
        ] {
            if let Some(key) = keys
                .get(key_type)
                .and_then(|key| serde_json::from_str::<JsonValue>(key).ok())
            {
                content[field] = key;
            }
        }
        self.to_room_mates(user_id, "m.signing_key_update", content, None)
            .await
    }
}
