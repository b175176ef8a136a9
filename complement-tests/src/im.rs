//! Helpers for the IM extension endpoints (`/_matrix/client/unstable/im.tessera/`).

use crate::{Response, User, V3, Value, enc};

/// Path prefix of the IM extension endpoints.
pub const IM: &str = "/_matrix/client/unstable/im.tessera";

impl User {
    /// `POST .../dm {user_id}`.
    pub async fn dm_raw(&self, user_id: &str) -> Response {
        self.client
            .post(
                &format!("{IM}/dm"),
                serde_json::json!({ "user_id": user_id }),
            )
            .await
    }

    /// `POST .../dm`, asserting 200: the room ID and whether it was created.
    pub async fn dm(&self, user_id: &str) -> (String, bool) {
        let body = self.dm_raw(user_id).await.ok();
        let room_id = body["room_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no room_id in {body}"))
            .to_owned();
        let created = body["created"]
            .as_bool()
            .unwrap_or_else(|| panic!("no created flag in {body}"));
        (room_id, created)
    }

    /// The user's global account data of `data_type`, `None` when unset (404).
    pub async fn account_data(&self, data_type: &str) -> Option<Value> {
        let resp = self
            .client
            .get(&format!(
                "{V3}/user/{}/account_data/{}",
                enc(&self.user_id),
                enc(data_type)
            ))
            .await;
        if resp.status == 404 {
            return None;
        }
        Some(resp.ok())
    }
}
