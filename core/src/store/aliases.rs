//! Local room aliases.

use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId, UserId};
use sqlx::Row;

use super::{Result, Store};

impl Store {
    /// Creates the alias; `false` if it already exists.
    pub async fn create_alias(
        &self,
        alias: &RoomAliasId,
        room_id: &RoomId,
        creator: &UserId,
    ) -> Result<bool> {
        let inserted = self
            .writer
            .execute(
                "INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, $2, $3) \
                 ON CONFLICT (alias) DO NOTHING",
                vec![
                    alias.as_str().into(),
                    room_id.as_str().into(),
                    creator.as_str().into(),
                ],
            )
            .await?;
        Ok(inserted == 1)
    }

    pub async fn alias_room(&self, alias: &RoomAliasId) -> Result<Option<OwnedRoomId>> {
        let room: Option<String> =
            sqlx::query_scalar("SELECT room_id FROM room_aliases WHERE alias = $1")
                .bind(alias.as_str())
                .fetch_optional(&self.pool)
                .await?;
        room.map(super::stored_id::<OwnedRoomId>).transpose()
    }

    /// The alias's room and creator.
    pub async fn alias(&self, alias: &RoomAliasId) -> Result<Option<(OwnedRoomId, OwnedUserId)>> {
        let row = sqlx::query("SELECT room_id, creator FROM room_aliases WHERE alias = $1")
            .bind(alias.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            let room: String = row.try_get(0)?;
            let creator: String = row.try_get(1)?;
            Ok((
                super::stored_id::<OwnedRoomId>(room)?,
                super::stored_id::<OwnedUserId>(creator)?,
            ))
        })
        .transpose()
    }

    pub async fn delete_alias(&self, alias: &RoomAliasId) -> Result<bool> {
        Ok(self
            .writer
            .execute(
                "DELETE FROM room_aliases WHERE alias = $1",
                vec![alias.as_str().into()],
            )
            .await?
            == 1)
    }

    /// Points every alias of `from` at `to` (a room upgrade moves its aliases).
    pub async fn repoint_aliases(&self, from: &RoomId, to: &RoomId) -> Result<()> {
        self.writer
            .execute(
                "UPDATE room_aliases SET room_id = $1 WHERE room_id = $2",
                vec![to.as_str().into(), from.as_str().into()],
            )
            .await?;
        Ok(())
    }

    pub async fn room_aliases(&self, room_id: &RoomId) -> Result<Vec<OwnedRoomAliasId>> {
        let aliases: Vec<String> =
            sqlx::query_scalar("SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias")
                .bind(room_id.as_str())
                .fetch_all(&self.pool)
                .await?;
        aliases
            .into_iter()
            .map(super::stored_id::<OwnedRoomAliasId>)
            .collect()
    }
}
