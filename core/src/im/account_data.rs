//! Read-modify-write of a user's account data, one writer per user at a time, so the IM
//! layer's updates (`m.direct`, `im.tessera.friends`, `m.tag`, `m.ignored_user_list`) never
//! lose each other's changes. Written through the store directly: `im.tessera.friends` is
//! server-controlled, clients change it through the IM endpoints only.

use ruma::{RoomId, UserId};
use serde::{Serialize, de::DeserializeOwned};

use super::Im;
use crate::{Error, Result};

impl Im {
    /// The user's account data of `data_type` (global when `room_id` is `None`); the default
    /// when unset or not of the expected shape.
    pub(super) async fn read_account_data<T: DeserializeOwned + Default>(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
    ) -> Result<T> {
        Ok(self
            .store
            .account_data(user_id, room_id, data_type)
            .await?
            .and_then(|content| serde_json::from_str(&content).ok())
            .unwrap_or_default())
    }

    /// Applies `change` to the user's account data of `data_type` and stores the result when
    /// it differs; every device of the user syncs it. Returns what `change` returned.
    pub(super) async fn update_account_data<T, R>(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
        change: impl FnOnce(&mut T) -> Result<R>,
    ) -> Result<R>
    where
        T: Serialize + DeserializeOwned + Default + Clone + PartialEq,
    {
        let _guard = self.account_data_locks.lock(&user_id.to_owned()).await;
        let before: T = self.read_account_data(user_id, room_id, data_type).await?;
        let mut after = before.clone();
        let outcome = change(&mut after)?;
        if after != before {
            let content =
                serde_json::to_string(&after).map_err(|e| Error::Internal(e.to_string()))?;
            self.store
                .set_account_data(user_id, room_id, data_type, &content)
                .await?;
            self.notifier.wake([user_id]);
        }
        Ok(outcome)
    }
}
