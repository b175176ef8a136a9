//! Posting, deleting, liking, commenting and reposting moments.

use ruma::{EventId, MxcUri, OwnedEventId, OwnedUserId, UserId, events::TimelineEventType};
use serde_json::{Map, Value as JsonValue, json};

use super::{LIKE_KEY, POST_TYPE, RELATES_TO, REPOST};
use crate::{Error, Result, im::Im, rooms::Transaction, store::MomentRow};

/// Most images one moment may carry (WeChat's nine-grid).
pub const MAX_IMAGES: usize = 9;
/// Longest text of a moment or comment, in characters.
const MAX_TEXT_CHARS: usize = 10_000;
/// Longest location text, in characters.
const MAX_LOCATION_CHARS: usize = 200;

/// A moment as a client composes it.
#[derive(Debug, Clone, Default)]
pub struct NewMoment {
    pub text: Option<String>,
    /// `mxc://` URIs, at most [`MAX_IMAGES`].
    pub images: Vec<String>,
    /// One `mxc://` URI; not together with images.
    pub video: Option<String>,
    pub location: Option<String>,
}

fn check_text(text: &str, what: &str, max: usize) -> Result<()> {
    if text.chars().count() > max {
        return Err(Error::InvalidParam(format!(
            "The {what} is longer than {max} characters"
        )));
    }
    Ok(())
}

fn check_mxc(uri: &str) -> Result<()> {
    <&MxcUri>::from(uri)
        .validate()
        .map_err(|e| Error::InvalidParam(format!("{uri:?} is not an mxc:// URI: {e}")))
}

/// The post's content: `m.room.message`-shaped (MSC4501), one media item in `url` as plain
/// clients expect, all of them in `im.tessera.media`.
fn post_content(moment: &NewMoment) -> Result<JsonValue> {
    let text = moment
        .text
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    if text.is_none() && moment.images.is_empty() && moment.video.is_none() {
        return Err(Error::InvalidParam(
            "A moment needs text, images or a video".to_owned(),
        ));
    }
    if let Some(text) = text {
        check_text(text, "text", MAX_TEXT_CHARS)?;
    }
    if moment.images.len() > MAX_IMAGES {
        return Err(Error::InvalidParam(format!(
            "A moment may carry at most {MAX_IMAGES} images"
        )));
    }
    if !moment.images.is_empty() && moment.video.is_some() {
        return Err(Error::InvalidParam(
            "A moment carries images or one video, not both".to_owned(),
        ));
    }
    for uri in moment.images.iter().chain(&moment.video) {
        check_mxc(uri)?;
    }
    let mut media: Vec<JsonValue> = moment
        .images
        .iter()
        .map(|url| json!({ "type": "image", "url": url }))
        .collect();
    if let Some(url) = &moment.video {
        media.push(json!({ "type": "video", "url": url }));
    }
    let (msgtype, url) = match (&moment.video, moment.images.as_slice()) {
        (Some(video), _) => ("m.video", Some(video)),
        (None, [image]) => ("m.image", Some(image)),
        _ => ("m.text", None),
    };
    let fallback = match msgtype {
        "m.video" => "[video]".to_owned(),
        _ => format!("[{} images]", moment.images.len()),
    };
    let mut content = json!({
        "msgtype": msgtype,
        "body": text.map_or(fallback, str::to_owned),
    });
    if let Some(url) = url {
        content["url"] = json!(url);
    }
    if !media.is_empty() {
        content["im.tessera.media"] = JsonValue::Array(media);
    }
    if let Some(location) = moment
        .location
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        check_text(location, "location", MAX_LOCATION_CHARS)?;
        content["im.tessera.location"] = json!(location);
    }
    Ok(content)
}

fn transaction(device_id: &ruma::DeviceId, scope: &str, txn_id: &str) -> Transaction {
    Transaction {
        device_id: device_id.to_owned(),
        scope: format!("im.tessera/{scope}"),
        txn_id: txn_id.to_owned(),
    }
}

/// A transaction no client will repeat, for actions made idempotent by state (a like).
fn fresh_transaction(device_id: &ruma::DeviceId, scope: &str) -> Transaction {
    use rand::{Rng, distributions::Alphanumeric};
    let txn_id: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    transaction(device_id, scope, &txn_id)
}

impl Im {
    /// Posts a moment in the user's profile room; a retry with the same `txn_id` returns the
    /// same event.
    pub async fn post_moment(
        &self,
        owner: &UserId,
        device_id: &ruma::DeviceId,
        txn_id: &str,
        moment: &NewMoment,
    ) -> Result<OwnedEventId> {
        let content = post_content(moment)?;
        self.send_post(owner, device_id, txn_id, "moments/post", content)
            .await
    }

    async fn send_post(
        &self,
        owner: &UserId,
        device_id: &ruma::DeviceId,
        txn_id: &str,
        scope: &str,
        content: JsonValue,
    ) -> Result<OwnedEventId> {
        let room_id = self.profile_room(owner).await?;
        let event_id = self
            .rooms
            .send_message(
                owner,
                &room_id,
                TimelineEventType::from(POST_TYPE),
                content,
                &transaction(device_id, scope, txn_id),
            )
            .await?;
        let row =
            self.store.event(&event_id).await?.ok_or_else(|| {
                Error::Internal(format!("posted moment {event_id} is not stored"))
            })?;
        self.index_moment(
            MomentRow {
                position: row.stream_ordering,
                event_id: event_id.clone(),
                room_id,
            },
            owner,
        )
        .await?;
        Ok(event_id)
    }

    /// Indexes a moment and puts it in the feeds of its profile room's local members.
    pub(in crate::im) async fn index_moment(
        &self,
        moment: MomentRow,
        owner: &UserId,
    ) -> Result<()> {
        let viewers: Vec<OwnedUserId> = self
            .store
            .joined_members(&moment.room_id)
            .await?
            .into_iter()
            .filter(|user| user.server_name() == self.config.server_name)
            .collect();
        self.store.add_moment(&moment, owner, &viewers).await?;
        Ok(())
    }

    /// A moment the user may see (they are joined to its profile room): its index row and
    /// owner. Others get `M_NOT_FOUND`, so nobody learns of moments they cannot see.
    pub(super) async fn visible_moment(
        &self,
        user_id: &UserId,
        event_id: &EventId,
    ) -> Result<(MomentRow, OwnedUserId)> {
        let not_found = || Error::NotFound(format!("Moment {event_id} not found"));
        let (row, owner) = self.store.moment(event_id).await?.ok_or_else(not_found)?;
        if self
            .rooms
            .membership(&row.room_id, user_id)
            .await?
            .as_deref()
            != Some("join")
        {
            return Err(not_found());
        }
        let event = self.store.event(event_id).await?.ok_or_else(not_found)?;
        if event.redacted_by.is_some() {
            return Err(not_found());
        }
        Ok((row, owner))
    }

    /// Deletes the user's own moment (a redaction) and takes it out of every feed.
    pub async fn delete_moment(&self, user_id: &UserId, event_id: &EventId) -> Result<()> {
        let (row, owner) = self.visible_moment(user_id, event_id).await?;
        if owner != user_id {
            return Err(Error::Forbidden(
                "Only its author can delete a moment".to_owned(),
            ));
        }
        self.rooms
            .redact(user_id, &row.room_id, event_id, json!({}), None)
            .await?;
        self.store.delete_moment(event_id).await?;
        Ok(())
    }

    /// The user's likes (`m.reaction` 👍) of a moment.
    async fn likes_by(&self, user_id: &UserId, event_id: &EventId) -> Result<Vec<OwnedEventId>> {
        let children = self
            .store
            .child_relations(&[event_id.to_owned()], &["m.annotation"])
            .await?;
        let ids: Vec<OwnedEventId> = children
            .into_iter()
            .filter(|c| c.sender == user_id && c.event_type == "m.reaction")
            .map(|c| c.event_id)
            .collect();
        let mut likes = Vec::new();
        for row in self.store.events(&ids).await? {
            let content = super::feed::content_of(&row.json);
            if content["m.relates_to"]["key"] == LIKE_KEY {
                likes.push(row.event_id);
            }
        }
        Ok(likes)
    }

    /// Likes a moment; liking it again changes nothing (one like per user).
    pub async fn like(
        &self,
        user_id: &UserId,
        device_id: &ruma::DeviceId,
        event_id: &EventId,
    ) -> Result<()> {
        let (row, owner) = self.visible_moment(user_id, event_id).await?;
        let _guard = self
            .like_locks
            .lock(&(user_id.to_owned(), event_id.to_owned()))
            .await;
        if !self.likes_by(user_id, event_id).await?.is_empty() {
            return Ok(());
        }
        let mut content = json!({
            "m.relates_to": { "rel_type": "m.annotation", "event_id": event_id, "key": LIKE_KEY },
        });
        if owner != user_id {
            content["m.mentions"] = json!({ "user_ids": [owner] });
        }
        self.rooms
            .send_message(
                user_id,
                &row.room_id,
                TimelineEventType::Reaction,
                content,
                &fresh_transaction(device_id, "moments/like"),
            )
            .await?;
        Ok(())
    }

    /// Takes back the user's like; not liking it is no error.
    pub async fn unlike(&self, user_id: &UserId, event_id: &EventId) -> Result<()> {
        let (row, _) = self.visible_moment(user_id, event_id).await?;
        let _guard = self
            .like_locks
            .lock(&(user_id.to_owned(), event_id.to_owned()))
            .await;
        for like in self.likes_by(user_id, event_id).await? {
            self.rooms
                .redact(user_id, &row.room_id, &like, json!({}), None)
                .await?;
        }
        Ok(())
    }

    /// Comments on a moment, or replies to a comment on it (`reply_to`): a threaded reply
    /// (`m.thread` on the moment), with `m.in_reply_to` naming the comment replied to.
    pub async fn comment(
        &self,
        user_id: &UserId,
        device_id: &ruma::DeviceId,
        txn_id: &str,
        event_id: &EventId,
        text: &str,
        reply_to: Option<&EventId>,
    ) -> Result<OwnedEventId> {
        let (row, owner) = self.visible_moment(user_id, event_id).await?;
        let text = text.trim();
        if text.is_empty() {
            return Err(Error::InvalidParam("A comment needs text".to_owned()));
        }
        check_text(text, "comment", MAX_TEXT_CHARS)?;
        let mut mentions: Vec<OwnedUserId> = vec![owner];
        if let Some(reply_to) = reply_to {
            let target = self.comment_on(event_id, reply_to).await?;
            mentions.push(target);
        }
        mentions.retain(|u| u != user_id);
        mentions.dedup();
        let content = json!({
            "msgtype": "m.text",
            "body": text,
            "m.relates_to": {
                "rel_type": "m.thread",
                "event_id": event_id,
                "is_falling_back": reply_to.is_none(),
                "m.in_reply_to": { "event_id": reply_to.unwrap_or(event_id) },
            },
            "m.mentions": { "user_ids": mentions },
        });
        self.rooms
            .send_message(
                user_id,
                &row.room_id,
                TimelineEventType::RoomMessage,
                content,
                &transaction(device_id, &format!("moments/comment/{event_id}"), txn_id),
            )
            .await
    }

    /// The author of `comment`, a live comment on `moment`; `M_NOT_FOUND` otherwise.
    async fn comment_on(&self, moment: &EventId, comment: &EventId) -> Result<OwnedUserId> {
        let not_found = || Error::NotFound(format!("Comment {comment} not found on {moment}"));
        let row = self.store.event(comment).await?.ok_or_else(not_found)?;
        if row.redacted_by.is_some() {
            return Err(not_found());
        }
        let event = super::feed::event_of(&row.json);
        let relates_to = &event["content"]["m.relates_to"];
        if relates_to["rel_type"] != "m.thread" || relates_to["event_id"] != moment.as_str() {
            return Err(not_found());
        }
        event["sender"]
            .as_str()
            .and_then(|s| UserId::parse(s).ok())
            .ok_or_else(not_found)
    }

    /// Deletes a comment: its author, or the moment's owner, may.
    pub async fn delete_comment(&self, user_id: &UserId, comment: &EventId) -> Result<()> {
        let not_found = || Error::NotFound(format!("Comment {comment} not found"));
        let row = self.store.event(comment).await?.ok_or_else(not_found)?;
        let event = super::feed::event_of(&row.json);
        let moment = event["content"]["m.relates_to"]["event_id"]
            .as_str()
            .and_then(|id| EventId::parse(id).ok())
            .ok_or_else(not_found)?;
        let (moment_row, owner) = self.visible_moment(user_id, &moment).await?;
        let author = self.comment_on(&moment, comment).await?;
        if author != user_id && owner != user_id {
            return Err(Error::Forbidden(
                "Only its author or the moment's owner can delete a comment".to_owned(),
            ));
        }
        self.rooms
            .redact(user_id, &moment_row.room_id, comment, json!({}), None)
            .await?;
        Ok(())
    }

    /// Reposts a moment the user can see into their own profile room (MSC4501 repost, or a
    /// quote post with `text`).
    pub async fn repost(
        &self,
        user_id: &UserId,
        device_id: &ruma::DeviceId,
        txn_id: &str,
        event_id: &EventId,
        text: Option<&str>,
    ) -> Result<OwnedEventId> {
        let (row, owner) = self.visible_moment(user_id, event_id).await?;
        let original = self
            .store
            .event(event_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("Moment {event_id} not found")))?;
        let original = super::feed::content_of(&original.json);
        let text = text.map(str::trim).filter(|t| !t.is_empty());
        if let Some(text) = text {
            check_text(text, "text", MAX_TEXT_CHARS)?;
        }
        let permalink = format!("https://matrix.to/#/{}/{}", row.room_id, event_id);
        let (displayname, _) = self.profile(&owner).await?;
        let mut reference = Map::new();
        reference.insert("rel_type".to_owned(), json!(REPOST));
        reference.insert("event_id".to_owned(), json!(event_id));
        reference.insert("room_id".to_owned(), json!(row.room_id));
        reference.insert("sender".to_owned(), json!(owner));
        reference.insert("content".to_owned(), original);
        if let Some(displayname) = displayname {
            reference.insert("displayname".to_owned(), json!(displayname));
        }
        let content = json!({
            "msgtype": "m.text",
            "body": text.map_or(permalink, str::to_owned),
            RELATES_TO: reference,
        });
        self.send_post(user_id, device_id, txn_id, "moments/repost", content)
            .await
    }
}
