//! Account data: per-user JSON objects by type, global or per room (spec: "Client Config").

use ruma::{RoomId, UserId};
use serde_json::value::RawValue;

use super::Users;
use crate::{Error, Result};

/// Types with their own endpoints, which the generic account data API must not overwrite.
fn check_settable(data_type: &str, room_id: Option<&RoomId>) -> Result<()> {
    match (data_type, room_id) {
        ("m.push_rules", None) => Err(Error::ServerControlled(
            "Cannot set m.push_rules through this API: use /pushrules".to_owned(),
        )),
        ("m.fully_read", Some(_)) => Err(Error::ServerControlled(
            "Cannot set m.fully_read through this API: use /read_markers".to_owned(),
        )),
        ("im.tessera.friends", _) => Err(Error::ServerControlled(
            "Cannot set im.tessera.friends through this API: use the friends endpoints of \
             /_matrix/client/unstable/im.tessera"
                .to_owned(),
        )),
        ("", _) => Err(Error::BadJson(
            "The account data type must not be empty".to_owned(),
        )),
        _ => Ok(()),
    }
}

impl Users {
    pub async fn account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
    ) -> Result<Box<RawValue>> {
        let content = self
            .store
            .account_data(user_id, room_id, data_type)
            .await?
            .ok_or_else(|| Error::NotFound(format!("No account data of type {data_type}")))?;
        RawValue::from_string(content)
            .map_err(|e| Error::Internal(format!("stored account data is not JSON: {e}")))
    }

    /// Stores `content`, which must be a JSON object.
    pub async fn set_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
        content: &RawValue,
    ) -> Result<()> {
        check_settable(data_type, room_id)?;
        if !content.get().trim_start().starts_with('{') {
            return Err(Error::BadJson(
                "Account data content must be a JSON object".to_owned(),
            ));
        }
        self.store
            .set_account_data(user_id, room_id, data_type, content.get())
            .await?;
        // Every device of the user syncs account data.
        self.notifier.wake([user_id]);
        Ok(())
    }
}
