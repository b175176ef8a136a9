//! Per-user account data, global (`room_id` = '') or per room; content kept as JSON text. Each
//! change takes the next position of the account data stream, so sync reads changes by range.

use ruma::{OwnedRoomId, RoomId, UserId};
use sqlx::Row;

use super::{
    Result, Store, StoreError,
    ignored_users::{IGNORED_USER_LIST, parse_ignored},
};

fn room_key(room_id: Option<&RoomId>) -> &str {
    room_id.map_or("", RoomId::as_str)
}

/// One account data entry as sync delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountDataEntry {
    /// `None` for global account data.
    pub room_id: Option<OwnedRoomId>,
    pub data_type: String,
    pub content: String,
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

    /// Stores the entry; returns its account data stream position.
    pub async fn set_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
        content: &str,
    ) -> Result<i64> {
        let ignore_list = (room_id.is_none() && data_type == IGNORED_USER_LIST)
            .then(|| (user_id.to_owned(), parse_ignored(content)));
        let (user_id, room_id, data_type, content) = (
            user_id.to_string(),
            room_key(room_id).to_owned(),
            data_type.to_owned(),
            content.to_owned(),
        );
        let position = self
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    let position: i64 = sqlx::query_scalar(
                        "UPDATE account_data_stream SET position = position + 1 RETURNING position",
                    )
                    .fetch_one(&mut *conn)
                    .await?;
                    sqlx::query(
                        "INSERT INTO account_data (user_id, room_id, data_type, content, stream_position) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, room_id, data_type) \
                         DO UPDATE SET content = excluded.content, stream_position = excluded.stream_position",
                    )
                    .bind(user_id)
                    .bind(room_id)
                    .bind(data_type)
                    .bind(content)
                    .bind(position)
                    .execute(&mut *conn)
                    .await?;
                    Ok(position)
                })
            })
            .await?;
        self.positions.account_data_committed(position);
        if let Some((user_id, ignored)) = ignore_list {
            self.ignored_users.remember(&user_id, ignored, true);
        }
        Ok(position)
    }

    /// The account data stream's current position.
    pub fn account_data_position(&self) -> i64 {
        self.positions.account_data()
    }

    /// The user's entries changed after position `since` and up to `upto`, global and per room.
    pub async fn account_data_since(
        &self,
        user_id: &UserId,
        since: i64,
        upto: i64,
    ) -> Result<Vec<AccountDataEntry>> {
        let rows = sqlx::query(
            "SELECT room_id, data_type, content FROM account_data \
             WHERE user_id = $1 AND stream_position > $2 AND stream_position <= $3 \
             ORDER BY stream_position",
        )
        .bind(user_id.as_str())
        .bind(since)
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let room: String = row.try_get("room_id")?;
                let room_id = if room.is_empty() {
                    None
                } else {
                    Some(
                        OwnedRoomId::try_from(room)
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    )
                };
                Ok(AccountDataEntry {
                    room_id,
                    data_type: row.try_get("data_type")?,
                    content: row.try_get("content")?,
                })
            })
            .collect()
    }
}
