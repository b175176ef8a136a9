//! The published room directory (spec: "Published room directory") and room summaries
//! (spec: "Room summaries"): what a room looks like from outside, read from its current state.

use std::collections::HashMap;

use ruma::{
    EventEncryptionAlgorithm, OwnedMxcUri, OwnedRoomAliasId, OwnedRoomId, RoomId, RoomOrAliasId,
    ServerName, UInt, UserId,
    directory::{Filter, PublicRoomsChunk, PublicRoomsChunkInit, RoomNetwork},
    room::{AllowRule, JoinRule, JoinRuleKind, JoinRuleSummary, RoomSummary, RoomType},
};
use serde::Deserialize;
use serde_json::Value as JsonValue;

use crate::{
    Error, Result,
    store::{DirectoryPosition, RoomStateJson},
};

use super::Rooms;

/// Who asks to see a room's summary.
#[derive(Debug, Clone, Copy)]
pub enum Viewer<'a> {
    /// No one in particular: only open rooms.
    Anyone,
    User(&'a UserId),
    /// Another server, for its users.
    Server(&'a ServerName),
}

/// What a viewer may know of a room.
#[derive(Debug, Clone)]
pub enum RoomView {
    /// This server is not in the room.
    Unknown,
    /// This server is in the room, and the viewer may not see it.
    Hidden,
    Visible(Box<RoomSummary>),
}

/// Largest page of the directory, also the page size when the client sets no limit.
const MAX_PAGE: usize = 500;
/// Rooms read from the database per step while filling a filtered page.
const SCAN_BATCH: i64 = 100;
/// Most rooms looked at for one page: a search matching little ends early, with a token.
const MAX_SCANNED: usize = 10_000;

/// The state events a directory entry or a summary is made of.
const DESCRIBING_STATE: [&str; 9] = [
    "m.room.create",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.encryption",
];

/// A `POST /publicRooms` (or `GET`) request.
#[derive(Debug, Default)]
pub struct PublicRoomsQuery {
    pub limit: Option<usize>,
    pub since: Option<String>,
    pub search_term: Option<String>,
    /// Room types to include, `None` meaning rooms without a type; empty includes all.
    pub room_types: Vec<Option<String>>,
    /// A third-party network was asked for: this server bridges none.
    pub third_party_network: bool,
}

impl PublicRoomsQuery {
    /// The query of a `POST /publicRooms` (client or federation) request.
    pub fn filtered(
        limit: Option<UInt>,
        since: Option<String>,
        filter: &Filter,
        room_network: &RoomNetwork,
    ) -> Self {
        Self {
            limit: limit.map(|l| usize::try_from(u64::from(l)).unwrap_or(usize::MAX)),
            since,
            search_term: filter
                .generic_search_term
                .clone()
                .filter(|term| !term.trim().is_empty()),
            room_types: filter
                .room_types
                .iter()
                .map(|kind| kind.as_str().map(str::to_owned))
                .collect(),
            third_party_network: matches!(room_network, RoomNetwork::ThirdParty(_)),
        }
    }
}

pub struct PublicRoomsPage {
    pub chunk: Vec<PublicRoomsChunk>,
    pub next_batch: Option<String>,
    pub prev_batch: Option<String>,
    /// As every directory answer carries it.
    pub total_room_count_estimate: UInt,
}

/// A room as its current state describes it.
#[derive(Debug, Default)]
struct Description {
    name: Option<String>,
    topic: Option<String>,
    avatar_url: Option<String>,
    canonical_alias: Option<OwnedRoomAliasId>,
    join_rule: Option<JoinRule>,
    history_visibility: Option<String>,
    guest_access: Option<String>,
    room_type: Option<String>,
    encryption: Option<String>,
}

impl Description {
    fn from_state(events: &[(String, JsonValue)]) -> Self {
        let mut description = Self::default();
        for (kind, content) in events {
            let text = |field: &str| {
                content
                    .get(field)
                    .and_then(JsonValue::as_str)
                    .map(str::to_owned)
            };
            match kind.as_str() {
                "m.room.create" => description.room_type = text("type"),
                "m.room.name" => description.name = text("name").filter(|n| !n.is_empty()),
                "m.room.topic" => description.topic = plain_topic(content),
                "m.room.avatar" => description.avatar_url = text("url").filter(|u| !u.is_empty()),
                "m.room.canonical_alias" => {
                    description.canonical_alias =
                        text("alias").and_then(|a| OwnedRoomAliasId::try_from(a).ok());
                }
                "m.room.join_rules" => {
                    description.join_rule = serde_json::from_value(content.clone()).ok();
                }
                "m.room.history_visibility" => {
                    description.history_visibility = text("history_visibility");
                }
                "m.room.guest_access" => description.guest_access = text("guest_access"),
                "m.room.encryption" => description.encryption = text("algorithm"),
                _ => {}
            }
        }
        description
    }

    fn world_readable(&self) -> bool {
        self.history_visibility.as_deref() == Some("world_readable")
    }

    fn guest_can_join(&self) -> bool {
        self.guest_access.as_deref() == Some("can_join")
    }

    /// The join rule; a room without one cannot be joined without an invite (spec: auth
    /// rules), so that is what it reads as.
    fn join_rule(&self) -> JoinRule {
        self.join_rule.clone().unwrap_or(JoinRule::Invite)
    }

    fn matches(&self, query: &PublicRoomsQuery) -> bool {
        if !query.room_types.is_empty() && !query.room_types.contains(&self.room_type) {
            return false;
        }
        let Some(term) = query.search_term.as_deref().map(str::to_lowercase) else {
            return true;
        };
        [
            self.name.as_deref(),
            self.topic.as_deref(),
            self.canonical_alias.as_ref().map(|a| a.as_str()),
        ]
        .into_iter()
        .flatten()
        .any(|text| text.to_lowercase().contains(&term))
    }

    fn chunk(&self, room_id: OwnedRoomId, joined_members: i64) -> PublicRoomsChunk {
        let mut chunk = PublicRoomsChunk::from(PublicRoomsChunkInit {
            num_joined_members: count(joined_members),
            room_id,
            world_readable: self.world_readable(),
            guest_can_join: self.guest_can_join(),
        });
        chunk.name = self.name.clone();
        chunk.topic = self.topic.clone();
        chunk.avatar_url = self.avatar_url.clone().map(OwnedMxcUri::from);
        chunk.canonical_alias = self.canonical_alias.clone();
        chunk.join_rule = JoinRuleKind::from(self.join_rule().as_str());
        chunk.room_type = self.room_type.as_deref().map(RoomType::from);
        chunk
    }
}

fn count(n: i64) -> UInt {
    UInt::try_from(n.max(0)).unwrap_or(UInt::MAX)
}

/// The plain-text topic: the `text/plain` block of `m.topic`, else `topic`.
fn plain_topic(content: &JsonValue) -> Option<String> {
    let blocks = content.get("m.topic").and_then(JsonValue::as_array);
    let plain = blocks.into_iter().flatten().find(|block| {
        matches!(
            block.get("mimetype").map(JsonValue::as_str),
            None | Some(Some("text/plain"))
        )
    });
    plain
        .and_then(|block| block.get("body"))
        .or_else(|| content.get("topic"))
        .and_then(JsonValue::as_str)
        .filter(|topic| !topic.is_empty())
        .map(str::to_owned)
}

/// A directory pagination token: `n` continues after the room, `p` goes back before it.
#[derive(Debug, PartialEq, Eq)]
struct DirectoryToken {
    forward: bool,
    position: DirectoryPosition,
}

impl DirectoryToken {
    fn encode(forward: bool, position: &DirectoryPosition) -> String {
        let direction = if forward { 'n' } else { 'p' };
        format!(
            "{direction}{}_{}",
            position.joined_members, position.room_id
        )
    }

    fn parse(token: &str) -> Result<Self> {
        let invalid = || Error::InvalidParam(format!("Invalid pagination token {token:?}"));
        let forward = match token.chars().next() {
            Some('n') => true,
            Some('p') => false,
            _ => return Err(invalid()),
        };
        let (joined, room_id) = token[1..].split_once('_').ok_or_else(invalid)?;
        Ok(Self {
            forward,
            position: DirectoryPosition {
                joined_members: joined.parse().map_err(|_| invalid())?,
                room_id: OwnedRoomId::try_from(room_id).map_err(|_| invalid())?,
            },
        })
    }
}

impl Rooms {
    /// `GET`/`POST /publicRooms`: rooms with the most joined members first.
    pub async fn public_rooms(&self, query: PublicRoomsQuery) -> Result<PublicRoomsPage> {
        let total_room_count_estimate =
            UInt::try_from(self.store.published_room_count().await?).unwrap_or_default();
        if query.third_party_network {
            return Ok(PublicRoomsPage {
                chunk: Vec::new(),
                next_batch: None,
                prev_batch: None,
                total_room_count_estimate,
            });
        }
        let limit = match query.limit {
            Some(0) | None => MAX_PAGE,
            Some(limit) => limit.min(MAX_PAGE),
        };
        let since = query
            .since
            .as_deref()
            .map(DirectoryToken::parse)
            .transpose()?;
        let forward = since.as_ref().is_none_or(|t| t.forward);
        let mut position = since.as_ref().map(|t| t.position.clone());
        let mut matched: Vec<(PublicRoomsChunk, DirectoryPosition)> = Vec::new();
        let mut more = false;
        let mut scanned = 0;
        'scan: loop {
            let batch = self
                .store
                .published_rooms(position.as_ref(), forward, SCAN_BATCH)
                .await?;
            let exhausted = batch.len() < usize::try_from(SCAN_BATCH).unwrap_or(usize::MAX);
            let ids: Vec<OwnedRoomId> = batch.iter().map(|(id, _)| id.clone()).collect();
            let mut descriptions = self.describe(&ids).await?;
            for (room_id, joined_members) in batch {
                let description = descriptions.remove(&room_id).unwrap_or_default();
                if description.matches(&query) {
                    if matched.len() == limit {
                        more = true;
                        break 'scan;
                    }
                    let chunk = description.chunk(room_id.clone(), joined_members);
                    matched.push((
                        chunk,
                        DirectoryPosition {
                            joined_members,
                            room_id: room_id.clone(),
                        },
                    ));
                }
                position = Some(DirectoryPosition {
                    joined_members,
                    room_id,
                });
                scanned += 1;
            }
            if exhausted {
                break;
            }
            if scanned >= MAX_SCANNED {
                more = true;
                break;
            }
        }
        let resume = position.filter(|_| more);
        if !forward {
            matched.reverse();
        }
        let first = matched.first().map(|(_, p)| p);
        let last = matched.last().map(|(_, p)| p);
        let (next_batch, prev_batch) = if forward {
            (
                resume.map(|p| DirectoryToken::encode(true, &p)),
                since
                    .as_ref()
                    .and(first)
                    .map(|p| DirectoryToken::encode(false, p)),
            )
        } else {
            (
                last.map(|p| DirectoryToken::encode(true, p)),
                resume.map(|p| DirectoryToken::encode(false, &p)),
            )
        };
        Ok(PublicRoomsPage {
            chunk: matched.into_iter().map(|(chunk, _)| chunk).collect(),
            next_batch,
            prev_batch,
            total_room_count_estimate,
        })
    }

    /// `GET /directory/list/room/{roomId}`: whether the room is published.
    pub async fn directory_visibility(&self, room_id: &RoomId) -> Result<bool> {
        self.store
            .room_published(room_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("Room {room_id} not found")))
    }

    /// `PUT /directory/list/room/{roomId}`: by a member who may change the room's canonical
    /// alias, or a server admin.
    pub async fn set_directory_visibility(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        public: bool,
    ) -> Result<()> {
        self.directory_visibility(room_id).await?;
        if !self.is_server_admin(user_id).await?
            && !self.may_edit_room_listing(user_id, room_id).await?
        {
            return Err(Error::Forbidden(
                "You need the power to change the room's canonical alias to list it".to_owned(),
            ));
        }
        Ok(self.store.set_room_published(room_id, public).await?)
    }

    /// `GET /room_summary/{roomIdOrAlias}`: the summary and the caller's membership (`leave`
    /// when they have none), if the caller may see the room (see [`Rooms::room_view`]).
    /// Anything else is reported as not found.
    pub async fn room_summary(
        &self,
        caller: Option<&UserId>,
        room: &RoomOrAliasId,
    ) -> Result<(RoomSummary, Option<String>)> {
        let not_found = || Error::NotFound(format!("Room {room} not found"));
        let room_id = self.resolve(room).await.map_err(|_| not_found())?;
        let viewer = caller.map_or(Viewer::Anyone, Viewer::User);
        let RoomView::Visible(summary) = self.room_view(&room_id, viewer).await? else {
            return Err(not_found());
        };
        let membership = match caller {
            Some(user_id) => Some(
                self.membership(&room_id, user_id)
                    .await?
                    .unwrap_or_else(|| "leave".to_owned()),
            ),
            None => None,
        };
        Ok((*summary, membership))
    }

    /// A room as `viewer` sees it (spec: "Room summaries", and the space hierarchy's rules):
    /// its summary if the room is public, knockable or world readable; or the user is joined,
    /// invited or knocking, or may join a restricted room through a room they are in; or the
    /// server has a user joined to it, or to a room a restricted join rule allows.
    pub async fn room_view(&self, room_id: &RoomId, viewer: Viewer<'_>) -> Result<RoomView> {
        let Some(version) = self.store.room_version(room_id).await? else {
            return Ok(RoomView::Unknown);
        };
        let description = self
            .describe(std::slice::from_ref(&room_id.to_owned()))
            .await?
            .remove(room_id)
            .unwrap_or_default();
        let join_rule = description.join_rule();
        let joined = self.store.joined_members(room_id).await?;
        let open = matches!(
            join_rule,
            JoinRule::Public | JoinRule::Knock | JoinRule::KnockRestricted(_)
        ) || description.world_readable();
        let visible = open
            || match viewer {
                Viewer::Anyone => false,
                Viewer::User(user_id) => {
                    matches!(
                        self.membership(room_id, user_id).await?.as_deref(),
                        Some("join" | "invite" | "knock")
                    ) || match &join_rule {
                        JoinRule::Restricted(restricted) => {
                            self.in_any_allowed_room(user_id, &restricted.allow).await?
                        }
                        _ => false,
                    }
                }
                Viewer::Server(server) => {
                    joined.iter().any(|user| user.server_name() == server)
                        || match &join_rule {
                            JoinRule::Restricted(restricted) => {
                                self.server_in_any_allowed_room(server, &restricted.allow)
                                    .await?
                            }
                            _ => false,
                        }
                }
            };
        if !visible {
            return Ok(RoomView::Hidden);
        }
        let chunk = description.chunk(
            room_id.to_owned(),
            i64::try_from(joined.len()).unwrap_or(i64::MAX),
        );
        let mut summary = RoomSummary::new(
            room_id.to_owned(),
            summary_join_rule(join_rule),
            chunk.guest_can_join,
            chunk.num_joined_members,
            chunk.world_readable,
        );
        summary.canonical_alias = chunk.canonical_alias;
        summary.name = chunk.name;
        summary.topic = chunk.topic;
        summary.avatar_url = chunk.avatar_url;
        summary.room_type = chunk.room_type;
        summary.encryption = description
            .encryption
            .as_deref()
            .map(EventEncryptionAlgorithm::from);
        summary.room_version = Some(version);
        Ok(RoomView::Visible(Box::new(summary)))
    }

    async fn in_any_allowed_room(&self, user_id: &UserId, allow: &[AllowRule]) -> Result<bool> {
        for rule in allow {
            if let AllowRule::RoomMembership(membership) = rule
                && self
                    .membership(&membership.room_id, user_id)
                    .await?
                    .as_deref()
                    == Some("join")
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn server_in_any_allowed_room(
        &self,
        server: &ServerName,
        allow: &[AllowRule],
    ) -> Result<bool> {
        for rule in allow {
            if let AllowRule::RoomMembership(membership) = rule
                && self
                    .store
                    .joined_members(&membership.room_id)
                    .await?
                    .iter()
                    .any(|user| user.server_name() == server)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The descriptions of rooms from their current state.
    async fn describe(&self, rooms: &[OwnedRoomId]) -> Result<HashMap<OwnedRoomId, Description>> {
        let rows = self.store.room_state_json(rooms, &DESCRIBING_STATE).await?;
        let mut by_room: HashMap<OwnedRoomId, Vec<(String, JsonValue)>> = HashMap::new();
        for RoomStateJson {
            room_id,
            event_type,
            json,
        } in rows
        {
            let event: ContentOnly = serde_json::from_str(&json)
                .map_err(|e| Error::Internal(format!("stored event is not a PDU: {e}")))?;
            by_room
                .entry(room_id)
                .or_default()
                .push((event_type, event.content));
        }
        Ok(by_room
            .into_iter()
            .map(|(room_id, events)| (room_id, Description::from_state(&events)))
            .collect())
    }
}

/// A stored PDU, read only for its content.
#[derive(Deserialize)]
struct ContentOnly {
    content: JsonValue,
}

/// The summary's join rule. Join rules this server does not know read as `invite`: the auth
/// rules let no one in by them without an invite.
fn summary_join_rule(rule: JoinRule) -> JoinRuleSummary {
    match rule {
        JoinRule::_Custom(_) => JoinRuleSummary::Invite,
        known => JoinRuleSummary::from(known),
    }
}

#[cfg(test)]
mod tests {
    use ruma::{owned_room_id, room::JoinRule};
    use serde_json::json;

    use super::{Description, DirectoryToken, PublicRoomsQuery, plain_topic};
    use crate::store::DirectoryPosition;

    #[test]
    fn tokens_round_trip_and_bad_ones_are_refused() {
        let position = DirectoryPosition {
            joined_members: 7,
            room_id: owned_room_id!("!a_b:x.org"),
        };
        let token = DirectoryToken::encode(false, &position);
        assert_eq!(token, "p7_!a_b:x.org");
        assert_eq!(
            DirectoryToken::parse(&token).unwrap(),
            DirectoryToken {
                forward: false,
                position
            }
        );
        for bad in [
            "",
            "x7_!a:x.org",
            "n_!a:x.org",
            "nseven_!a:x.org",
            "n7_room",
        ] {
            assert!(DirectoryToken::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_plain_text_topic_is_preferred() {
        let content = json!({
            "topic": "fallback",
            "m.topic": [
                { "mimetype": "text/html", "body": "<b>rich</b>" },
                { "body": "plain" }
            ]
        });
        assert_eq!(plain_topic(&content).as_deref(), Some("plain"));
        assert_eq!(
            plain_topic(&json!({ "topic": "only" })).as_deref(),
            Some("only")
        );
        assert_eq!(plain_topic(&json!({ "topic": "" })), None);
    }

    #[test]
    fn search_covers_name_topic_and_alias_case_insensitively() {
        let description = Description::from_state(&[
            ("m.room.name".to_owned(), json!({ "name": "Cheese Lovers" })),
            (
                "m.room.topic".to_owned(),
                json!({ "topic": "all about brie" }),
            ),
            (
                "m.room.canonical_alias".to_owned(),
                json!({ "alias": "#fromage:x.org" }),
            ),
            ("m.room.create".to_owned(), json!({ "type": "m.space" })),
        ]);
        let query = |term: &str| PublicRoomsQuery {
            search_term: Some(term.to_owned()),
            ..PublicRoomsQuery::default()
        };
        assert!(description.matches(&query("cheese")));
        assert!(description.matches(&query("BRIE")));
        assert!(description.matches(&query("fromage")));
        assert!(!description.matches(&query("gouda")));
        let types = |types: Vec<Option<&str>>| PublicRoomsQuery {
            room_types: types.into_iter().map(|t| t.map(str::to_owned)).collect(),
            ..PublicRoomsQuery::default()
        };
        assert!(description.matches(&types(vec![Some("m.space")])));
        assert!(!description.matches(&types(vec![None])));
        assert_eq!(description.join_rule(), JoinRule::Invite);
    }
}
