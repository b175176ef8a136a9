//! Server access control lists (spec: Server-Server API, "Server Access Control Lists"): a
//! room's `m.room.server_acl` says which servers may take part. Their PDUs and room EDUs are
//! dropped, and their membership and read requests for the room refused.

use ruma::{
    RoomId, ServerName,
    events::{StateEventType, room::server_acl::RoomServerAclEventContent},
};

use super::Rooms;
use crate::{Error, Result};

impl Rooms {
    /// Whether the room's ACL lets `server` take part; a room without one lets everyone.
    /// An ACL whose content does not parse is ignored, as Synapse does.
    pub async fn server_allowed(&self, room_id: &RoomId, server: &ServerName) -> Result<bool> {
        let guard = self.lock(room_id).await?;
        let Some(acl) = guard
            .as_ref()
            .and_then(|room| room.get(&StateEventType::RoomServerAcl, ""))
        else {
            return Ok(true);
        };
        Ok(
            serde_json::from_str::<RoomServerAclEventContent>(acl.content.get())
                .map_or(true, |acl| acl.is_allowed(server)),
        )
    }

    /// Refuses `server` with 403 `M_FORBIDDEN` if the room's ACL denies it.
    pub async fn check_server_acl(&self, room_id: &RoomId, server: &ServerName) -> Result<()> {
        if self.server_allowed(room_id, server).await? {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "{server} is denied by the server ACL of {room_id}"
            )))
        }
    }
}
