//! The feed (`GET .../moments/feed`) and one user's moments (`GET .../moments/user/{userId}`):
//! pages of moments, newest first, each with the likes and comments the viewer may see.
//!
//! WeChat's rule: a viewer sees the likes and comments of their own friends, of the moment's
//! owner and their own, nothing of strangers; a reply is shown only when the comment it
//! answers is (or was deleted). The counts are of what the viewer sees, so they leak nothing either.
//! Pagination is by the moments' timeline positions: a token names the last position served,
//! so new moments never shift later pages.

use std::collections::{HashMap, HashSet};

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, UserId};
use serde_json::Value as JsonValue;

use super::LIKE_KEY;
use crate::{Error, Result, im::Im, store::MomentRow};

/// Largest page a client may ask for.
pub const MAX_FEED_LIMIT: u32 = 100;

/// A comment as the feed shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct CommentView {
    pub event_id: OwnedEventId,
    pub sender: OwnedUserId,
    pub body: String,
    pub origin_server_ts: u64,
    /// The comment this one answers, and its author.
    pub in_reply_to: Option<(OwnedEventId, OwnedUserId)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FeedItem {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub origin_server_ts: u64,
    pub content: JsonValue,
    /// Likers the viewer may see, oldest first.
    pub likes: Vec<OwnedUserId>,
    pub liked: bool,
    /// Comments the viewer may see, oldest first.
    pub comments: Vec<CommentView>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FeedPage {
    pub items: Vec<FeedItem>,
    /// Token of the next (older) page; `None` at the end.
    pub next_batch: Option<String>,
}

/// The event JSON of a stored row (an object; null if unreadable).
pub(super) fn event_of(json: &str) -> JsonValue {
    serde_json::from_str(json).unwrap_or(JsonValue::Null)
}

pub(super) fn content_of(json: &str) -> JsonValue {
    event_of(json)
        .get_mut("content")
        .map(JsonValue::take)
        .unwrap_or(JsonValue::Null)
}

fn parse_token(from: Option<&str>) -> Result<Option<i64>> {
    from.map(|token| {
        // Moments fetched from before this server joined a profile room sit at negative
        // (backfilled) positions, so any position is a valid token.
        token
            .parse::<i64>()
            .ok()
            .ok_or_else(|| Error::InvalidParam(format!("Invalid pagination token {token:?}")))
    })
    .transpose()
}

fn check_limit(limit: Option<u32>) -> Result<i64> {
    match limit.unwrap_or(20) {
        0 => Err(Error::InvalidParam("limit must be at least 1".to_owned())),
        limit if limit > MAX_FEED_LIMIT => Err(Error::InvalidParam(format!(
            "limit may be at most {MAX_FEED_LIMIT}"
        ))),
        limit => Ok(i64::from(limit)),
    }
}

fn user_of(value: &JsonValue) -> Option<OwnedUserId> {
    value.as_str().and_then(|s| UserId::parse(s).ok())
}

impl Im {
    /// A page of the viewer's feed: the moments of every profile room they are joined to.
    pub async fn feed(
        &self,
        viewer: &UserId,
        from: Option<&str>,
        limit: Option<u32>,
    ) -> Result<FeedPage> {
        let before = parse_token(from)?;
        let limit = check_limit(limit)?;
        let rows = self.store.feed_page(viewer, before, limit).await?;
        self.page(viewer, rows, limit).await
    }

    /// A page of one user's moments; only they and their friends may read them.
    pub async fn user_moments(
        &self,
        viewer: &UserId,
        owner: &UserId,
        from: Option<&str>,
        limit: Option<u32>,
    ) -> Result<FeedPage> {
        let before = parse_token(from)?;
        let limit = check_limit(limit)?;
        if viewer != owner && !self.is_friend(viewer, owner).await? {
            return Err(Error::Forbidden(format!(
                "Only friends of {owner} can see their moments"
            )));
        }
        let rows = self.store.user_moments_page(owner, before, limit).await?;
        self.page(viewer, rows, limit).await
    }

    async fn page(&self, viewer: &UserId, rows: Vec<MomentRow>, limit: i64) -> Result<FeedPage> {
        let next_batch = (i64::try_from(rows.len()).unwrap_or(i64::MAX) >= limit)
            .then(|| rows.last().map(|row| row.position.to_string()))
            .flatten();
        let ids: Vec<OwnedEventId> = rows.iter().map(|row| row.event_id.clone()).collect();
        let posts: HashMap<OwnedEventId, JsonValue> = self
            .store
            .events(&ids)
            .await?
            .into_iter()
            .filter(|row| row.redacted_by.is_none())
            .map(|row| (row.event_id, event_of(&row.json)))
            .collect();
        let children = self
            .store
            .child_relations(&ids, &["m.annotation", "m.thread"])
            .await?;
        let child_ids: Vec<OwnedEventId> = children.iter().map(|c| c.event_id.clone()).collect();
        let mut child_events: HashMap<OwnedEventId, JsonValue> = self
            .store
            .events(&child_ids)
            .await?
            .into_iter()
            .map(|row| (row.event_id, event_of(&row.json)))
            .collect();
        let mut visible: HashSet<OwnedUserId> = self
            .friends_data(viewer)
            .await?
            .friends
            .into_keys()
            .collect();
        visible.insert(viewer.to_owned());

        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(post) = posts.get(&row.event_id) else {
                continue;
            };
            let Some(sender) = user_of(&post["sender"]) else {
                continue;
            };
            let sees = |user: &UserId| user == sender || visible.contains(user);
            let mut likes: Vec<OwnedUserId> = Vec::new();
            let mut comments = Vec::new();
            let mut authors: HashMap<OwnedEventId, OwnedUserId> = HashMap::new();
            for child in children.iter().filter(|c| c.parent == row.event_id) {
                let Some(event) = child_events.remove(&child.event_id) else {
                    continue;
                };
                let content = &event["content"];
                match (child.rel_type.as_str(), child.event_type.as_str()) {
                    ("m.annotation", "m.reaction")
                        if content["m.relates_to"]["key"] == LIKE_KEY
                            && sees(&child.sender)
                            && !likes.contains(&child.sender) =>
                    {
                        likes.push(child.sender.clone());
                    }
                    ("m.thread", "m.room.message") => {
                        authors.insert(child.event_id.clone(), child.sender.clone());
                        if !sees(&child.sender) {
                            continue;
                        }
                        let in_reply_to = content["m.relates_to"]["m.in_reply_to"]["event_id"]
                            .as_str()
                            .filter(|id| *id != row.event_id.as_str())
                            .and_then(|id| ruma::EventId::parse(id).ok());
                        let in_reply_to = match in_reply_to {
                            None => None,
                            Some(target) => match authors.get(&target) {
                                Some(author) if sees(author) => Some((target, author.clone())),
                                // A reply to a hidden comment is hidden too.
                                Some(_) => continue,
                                // The comment replied to was deleted: the reply stays.
                                None => None,
                            },
                        };
                        comments.push(CommentView {
                            event_id: child.event_id.clone(),
                            sender: child.sender.clone(),
                            body: content["body"].as_str().unwrap_or_default().to_owned(),
                            origin_server_ts: u64::try_from(child.origin_server_ts)
                                .unwrap_or_default(),
                            in_reply_to,
                        });
                    }
                    _ => {}
                }
            }
            items.push(FeedItem {
                liked: likes.iter().any(|u| u == viewer),
                event_id: row.event_id,
                room_id: row.room_id,
                origin_server_ts: post["origin_server_ts"].as_u64().unwrap_or_default(),
                content: post["content"].clone(),
                sender,
                likes,
                comments,
            });
        }
        Ok(FeedPage { items, next_batch })
    }
}
