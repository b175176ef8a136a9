//! Memberships in rooms this server is not in: invites from other servers, knocks of local
//! users, and their rejections or rescissions (see migration 0013). They take a timeline position so that sync reports them,
//! but belong to no state group.

use std::sync::Arc;

use ruma::{
    OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId, RoomId, RoomVersionId, UserId,
};
use sqlx::Row;

use super::{EventRow, Result, Store};

/// An invite, knock, rejection or rescinded knock to store.
#[derive(Debug, Clone)]
pub struct OutOfBandMembership {
    pub stream_ordering: i64,
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub user_id: OwnedUserId,
    pub sender: String,
    pub membership: String,
    pub origin_server_ts: i64,
    pub depth: i64,
    pub json: Arc<str>,
    /// For invites and knocks: the room as this server knows it.
    pub room: Option<OutOfBandRoom>,
}

/// What is known of a room this server is not in, from an invite to it or a knock on it.
#[derive(Debug, Clone)]
pub struct OutOfBandRoom {
    pub version: RoomVersionId,
    /// The stripped state sent with the invite or the knock's answer (a JSON array).
    pub stripped_state: String,
    /// For knocks: the server knocked through.
    pub via: Option<OwnedServerName>,
}

/// A pending invite or knock in a room this server is not in.
#[derive(Debug, Clone)]
pub struct PendingMembership {
    pub event: EventRow,
    pub room: OutOfBandRoom,
}

impl PendingMembership {
    /// A server in the room: the one knocked through, or the inviter's.
    pub fn resident_server(&self) -> std::result::Result<OwnedServerName, super::StoreError> {
        if let Some(via) = &self.room.via {
            return Ok(via.clone());
        }
        #[derive(serde::Deserialize)]
        struct Sender {
            sender: OwnedUserId,
        }
        serde_json::from_str::<Sender>(&self.event.json)
            .map(|event| event.sender.server_name().to_owned())
            .map_err(|e| super::StoreError::Corrupt(format!("stored invite: {e}")))
    }
}

impl Store {
    pub async fn persist_out_of_band_membership(
        &self,
        membership: OutOfBandMembership,
    ) -> Result<()> {
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO events (stream_ordering, event_id, room_id, event_type, \
                         state_key, sender, origin_server_ts, depth, state_before, state_after, json) \
                         VALUES ($1, $2, $3, 'm.room.member', $4, $5, $6, $7, 0, 0, $8)",
                    )
                    .bind(membership.stream_ordering)
                    .bind(membership.event_id.as_str())
                    .bind(membership.room_id.as_str())
                    .bind(membership.user_id.as_str())
                    .bind(&membership.sender)
                    .bind(membership.origin_server_ts)
                    .bind(membership.depth)
                    .bind(&*membership.json)
                    .execute(&mut *conn)
                    .await?;
                    sqlx::query(
                        "INSERT INTO current_state (room_id, event_type, state_key, event_id, membership) \
                         VALUES ($1, 'm.room.member', $2, $3, $4) ON CONFLICT (room_id, event_type, state_key) \
                         DO UPDATE SET event_id = excluded.event_id, membership = excluded.membership",
                    )
                    .bind(membership.room_id.as_str())
                    .bind(membership.user_id.as_str())
                    .bind(membership.event_id.as_str())
                    .bind(&membership.membership)
                    .execute(&mut *conn)
                    .await?;
                    if let Some(room) = &membership.room {
                        sqlx::query(
                            "INSERT INTO invite_states (event_id, room_version, stripped_state, \
                             via_server) VALUES ($1, $2, $3, $4)",
                        )
                        .bind(membership.event_id.as_str())
                        .bind(room.version.as_str())
                        .bind(&room.stripped_state)
                        .bind(room.via.as_ref().map(|via| via.as_str()))
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// The user's pending invite to or knock on `room_id`, a room this server is not in.
    pub async fn pending_membership(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<PendingMembership>> {
        let Some(row) = sqlx::query(&format!(
            "SELECT {}, i.room_version, i.stripped_state, i.via_server FROM current_state c \
             JOIN events e ON e.event_id = c.event_id \
             JOIN invite_states i ON i.event_id = c.event_id \
             WHERE c.room_id = $1 AND c.event_type = 'm.room.member' AND c.state_key = $2 \
             AND c.membership IN ('invite', 'knock')",
            super::rooms::EVENT_COLUMNS
                .split(", ")
                .map(|column| format!("e.{column}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind(room_id.as_str())
        .bind(user_id.as_str())
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let via: Option<String> = row.try_get("via_server")?;
        Ok(Some(PendingMembership {
            event: super::rooms::event_row(&row)?,
            room: OutOfBandRoom {
                version: super::stored_id(row.try_get::<String, _>("room_version")?)?,
                stripped_state: row.try_get("stripped_state")?,
                via: via.map(super::stored_id).transpose()?,
            },
        }))
    }

    /// The stripped state another server sent with the invite `event_id`.
    pub async fn invite_stripped_state(&self, event_id: &ruma::EventId) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT stripped_state FROM invite_states WHERE event_id = $1")
                .bind(event_id.as_str())
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}
