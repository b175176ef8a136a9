//! Per-user account data, global (`room_id` = '') or per room; content kept as JSON text.

use ruma::{RoomId, UserId};

use super::{Result, Store};

fn room_key(room_id: Option<&RoomId>) -> &str {
    room_id.map_or("", RoomId::as_str)
}

impl Store {
    pub async fn account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
    ) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND data_type = $3",
        )
        .bind(user_id.as_str())
        .bind(room_key(room_id))
        .bind(data_type)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn set_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
        content: &str,
    ) -> Result<()> {
        self.writer
            .execute(
                "INSERT INTO account_data (user_id, room_id, data_type, content) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (user_id, room_id, data_type) DO UPDATE SET content = excluded.content",
                vec![
                    user_id.as_str().into(),
                    room_key(room_id).into(),
                    data_type.into(),
                    content.into(),
                ],
            )
            .await?;
        Ok(())
    }
}
