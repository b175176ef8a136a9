//! Space hierarchies (spec: Client-Server API `GET /rooms/{roomId}/hierarchy`, Server-Server
//! API `GET /hierarchy/{roomId}`): the space tree walked depth first, children in the spec's
//! order, each room shown only to those who may see it. Rooms this server is not in are asked
//! of the servers their parent's `m.space.child` event names.
//!
//! Pagination is stateless: a token is the number of rooms already returned (with the walk's
//! `max_depth` and `suggested_only`, which a later page may not change), and each page walks
//! the tree again from the root, skipping them. Trees are small and a page is at most
//! [`MAX_LIMIT`] rooms; in exchange nothing is kept per client.

use std::collections::{HashMap, HashSet};

use ruma::{
    OwnedRoomId, OwnedServerName, RoomId, ServerName, UInt, UserId,
    api::federation::space::{SpaceHierarchyParentSummary, get_hierarchy},
    events::space::child::HierarchySpaceChildEvent,
    room::{JoinRuleSummary, RoomSummary, RoomType},
    serde::Raw,
};

use crate::{
    Error, Result, Services,
    rooms::{RoomView, SpaceChild, Viewer, in_space_order},
};

/// Rooms per page when the client sets no limit.
pub const DEFAULT_LIMIT: usize = 50;
/// Most rooms per page.
pub const MAX_LIMIT: usize = 100;
/// How deep a walk goes at most, and by default (Synapse's cap).
pub const MAX_DEPTH: usize = 50;
/// Most rooms a walk visits, however the tree is shaped: a page past them ends the walk.
const MAX_VISITED: usize = 1_000;

/// A client's hierarchy request.
#[derive(Debug, Clone)]
pub struct HierarchyQuery {
    pub from: Option<String>,
    pub limit: Option<UInt>,
    pub max_depth: Option<UInt>,
    pub suggested_only: bool,
}

/// One room of a hierarchy page: its summary and, for a space, its children's events.
#[derive(Debug, Clone)]
pub struct HierarchyRoom {
    pub summary: RoomSummary,
    pub children_state: Vec<Raw<HierarchySpaceChildEvent>>,
}

#[derive(Debug, Clone)]
pub struct HierarchyPage {
    pub rooms: Vec<HierarchyRoom>,
    pub next_batch: Option<String>,
}

/// Where a walk resumes: rooms returned so far, under the walk's own settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Resume {
    skip: usize,
    max_depth: usize,
    suggested_only: bool,
}

impl Resume {
    fn token(&self) -> String {
        format!(
            "{}_{}_{}",
            self.skip,
            self.max_depth,
            u8::from(self.suggested_only)
        )
    }

    fn parse(token: &str) -> Option<Self> {
        let mut parts = token.split('_');
        let (Some(skip), Some(max_depth), Some(suggested), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        Some(Self {
            skip: skip.parse().ok()?,
            max_depth: max_depth.parse().ok()?,
            suggested_only: match suggested {
                "0" => false,
                "1" => true,
                _ => return None,
            },
        })
    }
}

/// A room of the walk as found: where it came from and how deep it is.
struct Pending {
    room_id: OwnedRoomId,
    via: Vec<OwnedServerName>,
    depth: usize,
}

/// Summaries of rooms this server is not in, from other servers' answers about their parent
/// spaces, kept for when the walk reaches them.
type RemoteChildren = HashMap<OwnedRoomId, RoomSummary>;

impl Services {
    /// `GET /rooms/{roomId}/hierarchy` for `user_id`.
    pub async fn space_hierarchy(
        &self,
        user_id: &UserId,
        root: &RoomId,
        query: HierarchyQuery,
    ) -> Result<HierarchyPage> {
        let limit = match query.limit.map(u64::from) {
            None => DEFAULT_LIMIT,
            Some(0) => {
                return Err(Error::InvalidParam(
                    "limit must be greater than zero".to_owned(),
                ));
            }
            Some(limit) => usize::try_from(limit).unwrap_or(MAX_LIMIT).min(MAX_LIMIT),
        };
        let max_depth = query
            .max_depth
            .map_or(MAX_DEPTH, |depth| {
                usize::try_from(u64::from(depth)).unwrap_or(MAX_DEPTH)
            })
            .min(MAX_DEPTH);
        let resume = match &query.from {
            None => Resume {
                skip: 0,
                max_depth,
                suggested_only: query.suggested_only,
            },
            Some(token) => {
                let resume = Resume::parse(token).ok_or_else(|| {
                    Error::InvalidParam(format!("{token} is not a hierarchy token of this server"))
                })?;
                if resume.max_depth != max_depth || resume.suggested_only != query.suggested_only {
                    return Err(Error::InvalidParam(
                        "max_depth and suggested_only cannot change between pages".to_owned(),
                    ));
                }
                resume
            }
        };
        if !matches!(
            self.rooms.room_view(root, Viewer::User(user_id)).await?,
            RoomView::Visible(_)
        ) {
            return Err(Error::Forbidden(format!(
                "You may not see room {root}: you are not in it and it is not open"
            )));
        }

        let mut stack = vec![Pending {
            room_id: root.to_owned(),
            via: Vec::new(),
            depth: 0,
        }];
        let mut visited = HashSet::new();
        let mut remote = RemoteChildren::new();
        let mut rooms = Vec::new();
        let mut seen = 0;
        while let Some(pending) = stack.pop() {
            if !visited.insert(pending.room_id.clone()) {
                continue;
            }
            if visited.len() > MAX_VISITED {
                break;
            }
            let Some(room) = self
                .hierarchy_room(user_id, &pending, resume.suggested_only, &mut remote)
                .await?
            else {
                continue;
            };
            let is_space = room.summary.room_type == Some(RoomType::Space);
            if is_space && pending.depth < resume.max_depth {
                let children = in_space_order(
                    room.children_state
                        .iter()
                        .cloned()
                        .filter_map(SpaceChild::from_stripped)
                        .filter(|(child, _)| !resume.suggested_only || child.suggested)
                        .collect(),
                );
                // Reversed onto the stack: the first child is walked first.
                stack.extend(children.into_iter().rev().map(|child| Pending {
                    room_id: child.room_id,
                    via: child.via,
                    depth: pending.depth + 1,
                }));
            }
            seen += 1;
            if seen <= resume.skip {
                continue;
            }
            rooms.push(room);
            if rooms.len() == limit {
                break;
            }
        }
        let next_batch = (rooms.len() == limit && !stack.is_empty()).then(|| {
            Resume {
                skip: resume.skip + rooms.len(),
                ..resume
            }
            .token()
        });
        Ok(HierarchyPage { rooms, next_batch })
    }

    /// A room of the walk as `user_id` may see it, from this server or the servers its parent
    /// named; `None` when it is hidden from the user or no one could tell about it.
    async fn hierarchy_room(
        &self,
        user_id: &UserId,
        pending: &Pending,
        suggested_only: bool,
        remote: &mut RemoteChildren,
    ) -> Result<Option<HierarchyRoom>> {
        let room_id = &pending.room_id;
        match self.rooms.room_view(room_id, Viewer::User(user_id)).await? {
            RoomView::Visible(summary) => {
                let children_state = self.children_state(&summary, suggested_only).await?;
                return Ok(Some(HierarchyRoom {
                    summary: *summary,
                    children_state,
                }));
            }
            RoomView::Hidden => return Ok(None),
            RoomView::Unknown => {}
        }
        // A space's children are not in its parent's answer: it is asked about itself.
        let known = match remote.remove(room_id) {
            Some(summary) if summary.room_type != Some(RoomType::Space) => Some(HierarchyRoom {
                summary,
                children_state: Vec::new(),
            }),
            _ => {
                self.ask_hierarchy(room_id, &pending.via, suggested_only, remote)
                    .await
            }
        };
        let Some(room) = known else {
            return Ok(None);
        };
        Ok(self
            .remote_room_visible(user_id, &room.summary)
            .await?
            .then_some(room))
    }

    /// The room's children's events if it is a space.
    async fn children_state(
        &self,
        summary: &RoomSummary,
        suggested_only: bool,
    ) -> Result<Vec<Raw<HierarchySpaceChildEvent>>> {
        if summary.room_type != Some(RoomType::Space) {
            return Ok(Vec::new());
        }
        Ok(self
            .rooms
            .space_children(&summary.room_id, suggested_only)
            .await?
            .into_iter()
            .map(|child| child.event)
            .collect())
    }

    /// Asks each of `via` in turn about a room this server is not in; its children's
    /// summaries are kept for when the walk reaches them.
    async fn ask_hierarchy(
        &self,
        room_id: &RoomId,
        via: &[OwnedServerName],
        suggested_only: bool,
        remote: &mut RemoteChildren,
    ) -> Option<HierarchyRoom> {
        for server in via {
            if server == &self.config.server_name {
                continue;
            }
            let mut request = get_hierarchy::v1::Request::new(room_id.to_owned());
            request.suggested_only = suggested_only;
            let response = match self.federation.client.send(server, request).await {
                Ok(response) if response.room.summary.room_id == room_id => response,
                Ok(_) => {
                    tracing::info!(%server, %room_id, "a hierarchy answer about another room");
                    continue;
                }
                Err(e) => {
                    tracing::info!(%server, %room_id, error = %e, "cannot ask for a hierarchy");
                    continue;
                }
            };
            for child in response.children {
                remote.entry(child.room_id.clone()).or_insert(child);
            }
            return Some(HierarchyRoom {
                summary: response.room.summary,
                children_state: response.room.children_state,
            });
        }
        None
    }

    /// Whether a user may see a room another server described (spec: the hierarchy's rules,
    /// as far as this server can tell): it is open, the user is a member here, or a restricted
    /// join rule lets them in through a room they are in.
    async fn remote_room_visible(&self, user_id: &UserId, summary: &RoomSummary) -> Result<bool> {
        if summary.world_readable
            || matches!(
                summary.join_rule,
                JoinRuleSummary::Public
                    | JoinRuleSummary::Knock
                    | JoinRuleSummary::KnockRestricted(_)
            )
            || matches!(
                self.rooms
                    .membership(&summary.room_id, user_id)
                    .await?
                    .as_deref(),
                Some("join" | "invite" | "knock")
            )
        {
            return Ok(true);
        }
        if let JoinRuleSummary::Restricted(restricted) = &summary.join_rule {
            for allowed in &restricted.allowed_room_ids {
                if self.rooms.membership(allowed, user_id).await?.as_deref() == Some("join") {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// `GET /_matrix/federation/v1/hierarchy/{roomId}` for `origin`: the room if the server
    /// may see it, and those of its children this server is in, sorted into those it may and
    /// may not see (spec: Server-Server API, "Spaces").
    pub async fn served_hierarchy(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        suggested_only: bool,
    ) -> Result<get_hierarchy::v1::Response> {
        self.rooms.check_server_acl(room_id, origin).await?;
        let RoomView::Visible(summary) = self
            .rooms
            .room_view(room_id, Viewer::Server(origin))
            .await?
        else {
            return Err(Error::NotFound(format!(
                "Room {room_id} is unknown here or not open to {origin}"
            )));
        };
        let children = if summary.room_type == Some(RoomType::Space) {
            self.rooms.space_children(room_id, suggested_only).await?
        } else {
            Vec::new()
        };
        let children_state = children.iter().map(|child| child.event.clone()).collect();
        let mut response = get_hierarchy::v1::Response::new(SpaceHierarchyParentSummary::new(
            *summary,
            children_state,
        ));
        for child in children {
            match self
                .rooms
                .room_view(&child.room_id, Viewer::Server(origin))
                .await?
            {
                RoomView::Visible(summary) => response.children.push(*summary),
                RoomView::Hidden => response.inaccessible_children.push(child.room_id),
                RoomView::Unknown => {}
            }
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::Resume;

    #[test]
    fn tokens_round_trip_and_refuse_nonsense() {
        let resume = Resume {
            skip: 40,
            max_depth: 3,
            suggested_only: true,
        };
        assert_eq!(Resume::parse(&resume.token()), Some(resume));
        for bad in ["", "1", "1_2", "1_2_3", "x_2_0", "1_2_0_4", "-1_2_0"] {
            assert_eq!(Resume::parse(bad), None, "{bad}");
        }
    }
}
