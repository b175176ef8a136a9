//! Sending: message and state events from clients, redactions, idempotent transaction IDs.

use std::sync::Arc;

use ruma::{
    EventId, OwnedEventId, RoomAliasId, RoomId, UserId,
    events::{StateEventType, TimelineEventType},
};
use serde_json::{Value as JsonValue, json};

use crate::{
    Error, Result,
    events::{NewEvent, Pdu},
};

use super::{EventSource, RoomState, Rooms, Transaction, read::parse};

impl Rooms {
    /// `PUT /rooms/{roomId}/send/{eventType}/{txnId}`: a retry of a transaction returns the
    /// event it created.
    pub async fn send_message(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        kind: TimelineEventType,
        content: JsonValue,
        transaction: &Transaction,
    ) -> Result<OwnedEventId> {
        if let Some(event_id) = self.transaction_event(sender, transaction).await? {
            return Ok(event_id);
        }
        if kind == TimelineEventType::RoomRedaction {
            let redacts = content
                .get("redacts")
                .and_then(JsonValue::as_str)
                .and_then(|id| EventId::parse(id).ok())
                .ok_or_else(|| Error::BadJson("A redaction needs content.redacts".to_owned()))?;
            return self
                .redact(sender, room_id, &redacts, content, Some(transaction))
                .await;
        }
        self.check_thread_root(room_id, &content).await?;
        let pdu = self
            .send_checked(
                room_id,
                sender,
                NewEvent::message(kind, content),
                Some(transaction),
            )
            .await?;
        Ok(pdu.event_id.clone())
    }

    /// A thread cannot start from an event that itself relates to another (spec: "Threading":
    /// 400 `M_UNKNOWN`); replies are not relations, so a reply may be a thread root.
    async fn check_thread_root(&self, room_id: &RoomId, content: &JsonValue) -> Result<()> {
        let relates_to = &content["m.relates_to"];
        if relates_to["rel_type"] != "m.thread" {
            return Ok(());
        }
        let Some(root) = relates_to["event_id"]
            .as_str()
            .and_then(|id| EventId::parse(id).ok())
        else {
            return Ok(());
        };
        let Some(row) = self.store.event(&root).await? else {
            return Ok(());
        };
        if row.room_id != room_id {
            return Ok(());
        }
        let root = parse(&row)?;
        match super::relation(&root) {
            Some((_, rel_type)) if rel_type != "m.in_reply_to" => Err(Error::Unknown(format!(
                "Cannot start a thread from an event with a relation ({rel_type})"
            ))),
            _ => Ok(()),
        }
    }

    /// `PUT /rooms/{roomId}/state/{eventType}/{stateKey}`.
    pub async fn send_state(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        kind: StateEventType,
        state_key: String,
        content: JsonValue,
    ) -> Result<OwnedEventId> {
        if kind == StateEventType::RoomMember && UserId::parse(&state_key).is_err() {
            return Err(Error::InvalidParam(format!(
                "The state key of an m.room.member event must be a user ID, not {state_key:?}"
            )));
        }
        if kind == StateEventType::RoomCanonicalAlias {
            self.check_canonical_alias(room_id, &content).await?;
        }
        let new = NewEvent::state(
            TimelineEventType::from(kind.to_string()),
            state_key,
            content,
        );
        Ok(self
            .send_checked(room_id, sender, new, None)
            .await?
            .event_id
            .clone())
    }

    /// `PUT /rooms/{roomId}/redact/{eventId}/{txnId}`: the sender may redact their own events;
    /// others need the room's `redact` power level.
    pub async fn redact(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        target: &EventId,
        mut content: JsonValue,
        transaction: Option<&Transaction>,
    ) -> Result<OwnedEventId> {
        if let Some(transaction) = transaction
            && let Some(event_id) = self.transaction_event(sender, transaction).await?
        {
            return Ok(event_id);
        }
        let row = self
            .store
            .event(target)
            .await?
            .filter(|row| row.room_id == room_id)
            .ok_or_else(|| {
                Error::NotFound(format!("Event {target} not found in room {room_id}"))
            })?;
        let target_pdu = parse(&row)?;
        if let Some(object) = content.as_object_mut() {
            object.remove("redacts");
        }
        let mut guard = self.lock(room_id).await.map_err(not_member(room_id))?;
        let room = guard
            .as_mut()
            .ok_or_else(|| Error::NotFound(room_id.to_string()))?;
        let needed = required_level(room, "redact", 50);
        let admin = power_level(room, sender) >= needed;
        if target_pdu.sender != sender && !admin {
            return Err(Error::Forbidden(format!(
                "You need power level {needed} (the room's \"redact\" level) to redact other users' events"
            )));
        }
        let room_type = room
            .get(&StateEventType::RoomCreate, "")
            .and_then(|create| create.content_value()["type"].as_str().map(str::to_owned));
        if !admin && !target_pdu.is_state() && crate::im::recall::applies_in(room_type.as_deref()) {
            crate::im::recall::check_window(
                self.config.im.recall_window_secs,
                target_pdu.origin_server_ts,
                ruma::MilliSecondsSinceUnixEpoch::now(),
            )?;
        }
        let new = NewEvent {
            kind: TimelineEventType::RoomRedaction,
            state_key: None,
            content,
            redacts: Some(target.to_owned()),
        };
        let pdu = self
            .append_and_commit(guard, sender, new, transaction)
            .await?;
        Ok(pdu.event_id.clone())
    }

    /// Sends under the room lock, reporting an unknown room as one the sender is not in.
    pub(super) async fn send_checked(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        new: NewEvent,
        transaction: Option<&Transaction>,
    ) -> Result<Arc<Pdu>> {
        let guard = self.lock(room_id).await.map_err(not_member(room_id))?;
        self.append_and_commit(guard, sender, new, transaction)
            .await
    }

    pub(super) async fn append_and_commit(
        &self,
        mut guard: tokio::sync::OwnedMutexGuard<Option<RoomState>>,
        sender: &UserId,
        new: NewEvent,
        transaction: Option<&Transaction>,
    ) -> Result<Arc<Pdu>> {
        let room = guard
            .as_mut()
            .ok_or_else(|| Error::Internal("room not loaded".to_owned()))?;
        let room_id = room.room_id.clone();
        let key = transaction.map(|t| (sender.to_owned(), t.clone()));
        // A retry racing its first attempt: the database did not have it when the retry
        // arrived, but the first attempt has been queued since.
        if let Some(event_id) = key
            .as_ref()
            .and_then(|key| self.recent_transactions().get(key))
        {
            return self.event_pdu(&room_id, event_id).await;
        }
        let (pdu, row) = self.append(room, sender, new, transaction.map(|t| (sender, t)))?;
        let pending = self
            .enqueue_locked(&mut guard, row, EventSource::Local, None)
            .await?;
        if let Some(key) = &key {
            self.recent_transactions()
                .insert(key.clone(), pdu.event_id.clone());
        }
        drop(guard);
        let outcome = self.committed(&room_id, pending).await;
        if let (Err(_), Some(key)) = (&outcome, &key) {
            self.recent_transactions().remove(key);
        }
        outcome.map(|()| pdu)
    }

    async fn event_pdu(&self, room_id: &RoomId, event_id: OwnedEventId) -> Result<Arc<Pdu>> {
        let row =
            self.store.event(&event_id).await?.ok_or_else(|| {
                Error::NotFound(format!("Event {event_id} not found in {room_id}"))
            })?;
        Ok(Arc::new(parse(&row)?))
    }

    async fn transaction_event(
        &self,
        sender: &UserId,
        transaction: &Transaction,
    ) -> Result<Option<OwnedEventId>> {
        Ok(self
            .store
            .transaction_event(
                sender,
                &transaction.device_id,
                &transaction.scope,
                &transaction.txn_id,
            )
            .await?)
    }

    /// `m.room.canonical_alias` may only name aliases that point to this room (spec:
    /// `M_BAD_ALIAS`); remote aliases cannot be checked yet and are refused.
    async fn check_canonical_alias(&self, room_id: &RoomId, content: &JsonValue) -> Result<()> {
        let mut aliases: Vec<&JsonValue> = content.get("alias").into_iter().collect();
        if let Some(alt) = content.get("alt_aliases") {
            let alt = alt
                .as_array()
                .ok_or_else(|| Error::InvalidParam("alt_aliases must be a list".to_owned()))?;
            aliases.extend(alt);
        }
        for alias in aliases {
            let alias = alias
                .as_str()
                .and_then(|a| RoomAliasId::parse(a).ok())
                .ok_or_else(|| Error::InvalidParam(format!("{alias} is not a room alias")))?;
            if self.store.alias_room(&alias).await?.as_deref() != Some(room_id) {
                return Err(Error::BadAlias(format!(
                    "The alias {alias} does not point to this room"
                )));
            }
        }
        Ok(())
    }
}

pub(super) fn not_member(room_id: &RoomId) -> impl FnOnce(Error) -> Error + '_ {
    move |e| match e {
        Error::NotFound(_) => Error::Forbidden(format!("You are not a member of room {room_id}")),
        other => other,
    }
}

/// Whether the user is a creator of a room whose creators have unlimited power (v12).
fn is_privileged_creator(room: &RoomState, user_id: &UserId) -> bool {
    if !room.rules.authorization.explicitly_privilege_room_creators {
        return false;
    }
    let Some(create) = room.get(&StateEventType::RoomCreate, "") else {
        return false;
    };
    create.sender == user_id
        || create
            .content_value()
            .get("additional_creators")
            .and_then(JsonValue::as_array)
            .is_some_and(|creators| {
                creators
                    .iter()
                    .any(|c| c.as_str() == Some(user_id.as_str()))
            })
}

/// The user's power level (spec: `m.room.power_levels`); `i64::MAX` for v12 creators.
pub(super) fn power_level(room: &RoomState, user_id: &UserId) -> i64 {
    if is_privileged_creator(room, user_id) {
        return i64::MAX;
    }
    match room.get(&StateEventType::RoomPowerLevels, "") {
        Some(levels) => {
            let content = levels.content_value();
            content
                .get("users")
                .and_then(|users| users.get(user_id.as_str()))
                .or_else(|| content.get("users_default"))
                .and_then(level_value)
                .unwrap_or(0)
        }
        // Without power levels the creator has 100, everyone else 0.
        None => match room.get(&StateEventType::RoomCreate, "") {
            Some(create) if create.sender == user_id => 100,
            _ => 0,
        },
    }
}

/// A top-level level of the power levels content (`invite`, `redact`, ...).
pub(super) fn required_level(room: &RoomState, field: &str, default: i64) -> i64 {
    room.get(&StateEventType::RoomPowerLevels, "")
        .and_then(|levels| levels.content_value().get(field).and_then(level_value))
        .unwrap_or(default)
}

/// Levels may be integers, or strings holding integers in old room versions.
fn level_value(value: &JsonValue) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

/// The default content of a member event.
/// The content of a member event with `membership` and, if given, its `reason`.
pub fn member_content(membership: &str, reason: Option<&str>) -> JsonValue {
    let mut content = json!({ "membership": membership });
    if let Some(reason) = reason {
        content["reason"] = JsonValue::String(reason.to_owned());
    }
    content
}
