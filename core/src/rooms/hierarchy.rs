//! A space's children (spec: Client-Server API, "Spaces"): its `m.space.child` state events
//! that still name servers to join through (`via`), in the spec's order, as the stripped events
//! with `origin_server_ts` that the hierarchy endpoints answer with.

use ruma::{
    OwnedRoomId, OwnedServerName, RoomId,
    events::space::child::{HierarchySpaceChildEvent, SpaceChildOrd},
    serde::Raw,
};
use serde_json::{Value as JsonValue, json};

use super::Rooms;
use crate::Result;

/// The state event type naming a space's children.
pub const SPACE_CHILD: &str = "m.space.child";

/// One child of a space.
#[derive(Debug, Clone)]
pub struct SpaceChild {
    pub room_id: OwnedRoomId,
    /// Servers to ask about (or join) the child through.
    pub via: Vec<OwnedServerName>,
    pub suggested: bool,
    /// The stripped state event, as `children_state` lists it.
    pub event: Raw<HierarchySpaceChildEvent>,
}

impl SpaceChild {
    /// Reads a stripped child event (ours or another server's); `None` when it is malformed or
    /// names no server, which removes the child (spec: "`via` ... omitted").
    pub fn from_stripped(
        event: Raw<HierarchySpaceChildEvent>,
    ) -> Option<(Self, HierarchySpaceChildEvent)> {
        let parsed = event.deserialize().ok()?;
        if parsed.content.via.is_empty() {
            return None;
        }
        Some((
            Self {
                room_id: parsed.state_key.clone(),
                via: parsed.content.via.clone(),
                suggested: parsed.content.suggested,
                event,
            },
            parsed,
        ))
    }
}

/// Sorts children by the spec's "Ordering of children within a space": a valid `order`
/// first, then the event's `origin_server_ts`, then the room ID.
pub fn in_space_order(
    mut children: Vec<(SpaceChild, HierarchySpaceChildEvent)>,
) -> Vec<SpaceChild> {
    children.sort_by(|(_, a), (_, b)| a.cmp_space_child(b));
    children.into_iter().map(|(child, _)| child).collect()
}

impl Rooms {
    /// The children of a room this server is in, in the spec's order; only the suggested ones
    /// with `suggested_only`.
    pub async fn space_children(
        &self,
        room_id: &RoomId,
        suggested_only: bool,
    ) -> Result<Vec<SpaceChild>> {
        let ids: Vec<_> = self
            .store
            .current_state(room_id)
            .await?
            .into_iter()
            .filter(|entry| entry.event_type == SPACE_CHILD)
            .map(|entry| entry.event_id)
            .collect();
        let mut children = Vec::with_capacity(ids.len());
        for row in self.store.events(&ids).await? {
            let Ok(event) = serde_json::from_str::<JsonValue>(&row.json) else {
                continue;
            };
            let stripped = json!({
                "type": SPACE_CHILD,
                "state_key": event["state_key"],
                "sender": event["sender"],
                "content": event["content"],
                "origin_server_ts": event["origin_server_ts"],
            });
            let Ok(raw) = Raw::from_json_string(stripped.to_string()) else {
                continue;
            };
            if let Some((child, parsed)) = SpaceChild::from_stripped(raw)
                && (!suggested_only || child.suggested)
            {
                children.push((child, parsed));
            }
        }
        Ok(in_space_order(children))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(
        room: &str,
        order: Option<&str>,
        ts: u64,
        via: &[&str],
    ) -> Raw<HierarchySpaceChildEvent> {
        let mut content = json!({ "via": via });
        if let Some(order) = order {
            content["order"] = json!(order);
        }
        Raw::from_json_string(
            json!({
                "type": SPACE_CHILD,
                "state_key": room,
                "sender": "@a:example.org",
                "origin_server_ts": ts,
                "content": content,
            })
            .to_string(),
        )
        .unwrap()
    }

    #[test]
    fn children_follow_the_spec_order_and_without_via_are_removed() {
        // The spec's example: " " before "aaaa" before "first", then by timestamp, then by ID.
        let events = [
            child("!first:x", Some("first"), 5, &["x"]),
            child("!late:x", None, 9, &["x"]),
            child("!space:x", Some(" "), 7, &["x"]),
            child("!aaaa:x", Some("aaaa"), 6, &["x"]),
            child("!early-b:x", None, 1, &["x"]),
            child("!early-a:x", None, 1, &["x"]),
            child("!removed:x", Some("0"), 1, &[]),
            // Over 50 characters: the order is ignored, not the child.
            child("!long:x", Some(&"z".repeat(51)), 3, &["x"]),
        ];
        let children = in_space_order(
            events
                .into_iter()
                .filter_map(SpaceChild::from_stripped)
                .collect(),
        );
        let ids: Vec<&str> = children.iter().map(|c| c.room_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "!space:x",
                "!aaaa:x",
                "!first:x",
                "!early-a:x",
                "!early-b:x",
                "!long:x",
                "!late:x"
            ]
        );
    }
}
