//! Push rule evaluation (spec: "Push Rules", "Receiving notifications"): every event queued
//! for the database is evaluated against the push rules of each local member joined to the
//! room (but the sender), and the actions of those it notifies or highlights are written with
//! it. They are read back as unread counts (sync's `unread_notifications`) and as the
//! `/notifications` list.
//!
//! Evaluation runs on the send path under the room lock, so what it needs of the room (the
//! local recipients with their display names, the member count, the power levels) is built
//! once per state group, and each event is flattened once for all its recipients.

use std::collections::{BTreeMap, HashMap, HashSet};

use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, ServerName, UInt, UserId,
    api::client::push::get_notifications::v3::Notification,
    events::{
        AnySyncTimelineEvent, StateEventType,
        room::power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent, RoomPowerLevelsSource},
    },
    push::{Action, FlattenedJson, PushConditionRoomCtx, Ruleset},
    serde::Raw,
    state_res::events::RoomCreateEvent,
};
use serde::Deserialize;

use crate::{
    Error, Result,
    store::{NewEventRow, PushActionRow},
};

use super::{
    RoomState, Rooms, aggregations::THREAD, read::parse, visibility::RoomVisibilityFilters,
};

/// `/notifications` page size when the client gives none, and the most it may ask for.
const DEFAULT_NOTIFICATIONS: usize = 50;
const MAX_NOTIFICATIONS: usize = 100;

/// Notification and highlight counts of unread events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotificationCounts {
    pub notification_count: u64,
    pub highlight_count: u64,
}

/// A user's unread counts in one room (spec: "Receiving notifications"): events after their
/// latest `m.read` or `m.read.private` receipt that their push rules made notify or highlight.
/// A threaded receipt covers its thread, an unthreaded one everything before it.
///
/// For sync: `main` is `unread_notifications` and `threads` is `unread_thread_notifications`
/// when the filter asks for threaded counts; otherwise `unread_notifications` is [`Self::total`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnreadCounts {
    /// The main timeline: events in no thread.
    pub main: NotificationCounts,
    /// Per thread root, only threads with unread notifications.
    pub threads: BTreeMap<OwnedEventId, NotificationCounts>,
}

impl UnreadCounts {
    /// The room's counts over its main timeline and all threads.
    pub fn total(&self) -> NotificationCounts {
        self.threads
            .values()
            .fold(self.main, |total, thread| NotificationCounts {
                notification_count: total.notification_count + thread.notification_count,
                highlight_count: total.highlight_count + thread.highlight_count,
            })
    }
}

/// Which page of `GET /notifications`.
#[derive(Debug, Default)]
pub struct NotificationsQuery<'a> {
    /// A `next_token` of an earlier page.
    pub from: Option<&'a str>,
    pub limit: Option<UInt>,
    /// Only notifications that highlight (`only=highlight`).
    pub only_highlight: bool,
}

pub struct NotificationsPage {
    pub notifications: Vec<Notification>,
    pub next_token: Option<String>,
}

#[derive(Clone)]
struct Recipient {
    user_id: OwnedUserId,
    display_name: String,
}

impl Recipient {
    /// Points `ctx` at this recipient, or back at whom it pointed to before.
    fn swap_into(&mut self, ctx: &mut PushConditionRoomCtx) {
        std::mem::swap(&mut self.user_id, &mut ctx.user_id);
        std::mem::swap(&mut self.display_name, &mut ctx.user_display_name);
    }
}

/// What evaluation needs of a room's state, kept in [`RoomState::push_context`].
#[derive(Clone)]
pub(super) struct PushContext {
    recipients: Vec<Recipient>,
    /// The room's part of the evaluation context (member count, power levels), pointed at each
    /// recipient in turn: copying the power levels per recipient would cost more than the
    /// evaluation. `None` when no local user is joined.
    ctx: Option<PushConditionRoomCtx>,
}

#[derive(Deserialize)]
struct MemberContent {
    membership: String,
    /// Any JSON: a display name that is not a string does not make the member not count.
    displayname: Option<serde_json::Value>,
}

impl PushContext {
    fn build(room: &RoomState, server_name: &ServerName) -> Self {
        let mut member_count = 0usize;
        let mut recipients = Vec::new();
        for ((kind, state_key), pdu) in &room.state {
            if *kind != StateEventType::RoomMember {
                continue;
            }
            let Ok(member) = serde_json::from_str::<MemberContent>(pdu.content.get()) else {
                continue;
            };
            if member.membership != "join" {
                continue;
            }
            member_count += 1;
            if let Ok(user_id) = UserId::parse(state_key.as_str())
                && user_id.server_name() == server_name
            {
                recipients.push(Recipient {
                    user_id,
                    display_name: member
                        .displayname
                        .as_ref()
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                });
            }
        }
        let ctx = recipients.first().map(|parked| {
            let ctx = PushConditionRoomCtx::new(
                room.room_id.clone(),
                UInt::try_from(member_count).unwrap_or(UInt::MAX),
                parked.user_id.clone(),
                parked.display_name.clone(),
            );
            ctx.with_power_levels(power_levels(room).into())
        });
        Self { recipients, ctx }
    }
}

/// The room's power levels as the auth rules see them (the creators of v12 rooms included),
/// for `sender_notification_permission` (`@room`).
fn power_levels(room: &RoomState) -> RoomPowerLevels {
    let rules = &room.rules.authorization;
    let source = room
        .get(&StateEventType::RoomPowerLevels, "")
        .and_then(|pdu| serde_json::from_str::<RoomPowerLevelsEventContent>(pdu.content.get()).ok())
        .map_or(RoomPowerLevelsSource::None, RoomPowerLevelsSource::Original);
    let creators: HashSet<OwnedUserId> = room
        .get(&StateEventType::RoomCreate, "")
        .and_then(|create| RoomCreateEvent::new(&**create).creators(rules).ok())
        .unwrap_or_default();
    RoomPowerLevels::new(source, rules, creators)
}

/// `Ruleset::get_actions`, on an event flattened once for all recipients rather than once per
/// recipient.
async fn actions_for<'a>(
    ruleset: &'a Ruleset,
    event: &FlattenedJson,
    ctx: &PushConditionRoomCtx,
) -> &'a [Action] {
    for rule in ruleset {
        if rule.applies(event, ctx).await {
            return rule.actions();
        }
    }
    &[]
}

impl Rooms {
    /// Evaluates the push rules of the room's local joined members for each row, filling in
    /// the rows' `push_actions`. The room's state is the state after the rows (they were
    /// appended already): for messages that is the state they were sent in.
    pub(super) async fn evaluate_push_rules(
        &self,
        room: &mut RoomState,
        rows: &mut [NewEventRow],
    ) -> Result<()> {
        let mut context = match room.push_context.take() {
            Some(context) => context,
            None => Box::new(PushContext::build(room, &self.config.server_name)),
        };
        if let Some(ctx) = &mut context.ctx {
            for row in rows.iter_mut() {
                self.evaluate_row(&mut context.recipients, ctx, row).await?;
            }
        }
        room.push_context = Some(context);
        Ok(())
    }

    async fn evaluate_row(
        &self,
        recipients: &mut [Recipient],
        ctx: &mut PushConditionRoomCtx,
        row: &mut NewEventRow,
    ) -> Result<()> {
        // An invite notifies its invitee of this server, who is not a member yet (the default
        // `.m.rule.invite_for_me`).
        let mut invitee = (row.membership.as_deref() == Some("invite"))
            .then(|| {
                row.state_key
                    .as_deref()
                    .and_then(|key| UserId::parse(key).ok())
            })
            .flatten()
            .filter(|user| {
                user.server_name() == self.config.server_name
                    && !recipients.iter().any(|r| &r.user_id == user)
            })
            .map(|user_id| Recipient {
                user_id,
                display_name: String::new(),
            });
        if invitee.is_none() && recipients.iter().all(|r| r.user_id.as_str() == row.sender) {
            return Ok(());
        }
        let raw = Raw::<AnySyncTimelineEvent>::from_json_string(row.json.to_string())
            .map_err(|e| Error::Internal(format!("a built event is not JSON: {e}")))?;
        let event = FlattenedJson::from_raw(&raw);
        let thread_id = match &row.relates_to {
            Some((root, rel_type)) if rel_type == THREAD => Some(root.clone()),
            _ => None,
        };
        let sender = UserId::parse(row.sender.as_str())
            .map_err(|e| Error::Internal(format!("a stored sender is not a user ID: {e}")))?;
        for recipient in recipients.iter_mut().chain(invitee.as_mut()) {
            // Nothing an ignored user does notifies (spec: "Ignoring Users").
            if recipient.user_id == sender
                || self
                    .store
                    .ignored_users(&recipient.user_id)
                    .await?
                    .contains(&sender)
            {
                continue;
            }
            let ruleset = self.push_rules.ruleset(&recipient.user_id).await?;
            recipient.swap_into(ctx);
            let actions = actions_for(&ruleset, &event, ctx).await;
            recipient.swap_into(ctx);
            let notify = actions.iter().any(Action::should_notify);
            let highlight = actions.iter().any(Action::is_highlight);
            if !notify && !highlight {
                continue;
            }
            let actions = serde_json::to_string(actions)
                .map_err(|e| Error::Internal(format!("push actions do not serialise: {e}")))?;
            row.push_actions.push(PushActionRow {
                user_id: recipient.user_id.clone(),
                thread_id: thread_id.clone(),
                notify,
                highlight,
                actions,
            });
        }
        Ok(())
    }

    /// The user's unread counts in each of the rooms (from memory, or one query per few hundred
    /// rooms), at least as of timeline position `upto`, which must be released to readers.
    /// Every room given has an entry.
    pub async fn unread_counts_in(
        &self,
        user_id: &UserId,
        room_ids: &[OwnedRoomId],
        upto: i64,
    ) -> Result<HashMap<OwnedRoomId, UnreadCounts>> {
        let mut counts: HashMap<OwnedRoomId, UnreadCounts> = room_ids
            .iter()
            .map(|room_id| (room_id.clone(), UnreadCounts::default()))
            .collect();
        for row in self
            .store
            .unread_push_counts(user_id, room_ids, upto)
            .await?
        {
            let thread = NotificationCounts {
                notification_count: row.notifications,
                highlight_count: row.highlights,
            };
            let room = counts.entry(row.room_id).or_default();
            match row.thread_id {
                Some(root) => {
                    room.threads.insert(root, thread);
                }
                None => room.main = thread,
            }
        }
        Ok(counts)
    }

    /// `GET /notifications`: the events that notified the user, newest first, as far as the
    /// history visibility rules still let them see the events.
    pub async fn notifications_for(
        &self,
        user_id: &UserId,
        query: NotificationsQuery<'_>,
    ) -> Result<NotificationsPage> {
        let before = query
            .from
            .map(|token| {
                token
                    .parse::<i64>()
                    .map_err(|_| Error::InvalidParam(format!("Invalid from token {token:?}")))
            })
            .transpose()?;
        let limit = query
            .limit
            .map_or(DEFAULT_NOTIFICATIONS, |limit| {
                usize::try_from(u64::from(limit)).unwrap_or(usize::MAX)
            })
            .clamp(1, MAX_NOTIFICATIONS);
        let found = self
            .store
            .push_notifications(user_id, before, query.only_highlight, limit)
            .await?;
        // A short page is the last one.
        let next_token = found
            .last()
            .filter(|_| found.len() == limit)
            .map(|last| last.stream_ordering.to_string());
        let ids: Vec<OwnedEventId> = found.iter().map(|n| n.event_id.clone()).collect();
        let mut rows = self.store.events_by_id(&ids).await?;
        let mut filters = RoomVisibilityFilters::new(self, user_id);
        let mut visible = Vec::new();
        let mut visible_rows = Vec::new();
        for notification in found {
            let Some(row) = rows.remove(&notification.event_id) else {
                continue;
            };
            if filters.allows(&row, &parse(&row)?).await? {
                visible.push(notification);
                visible_rows.push(row);
            }
        }
        let events = self.serve(&visible_rows, user_id).await?;
        let notifications = visible
            .into_iter()
            .zip(events)
            .map(|(notification, event)| {
                let actions: Vec<Action> = serde_json::from_str(&notification.actions)
                    .map_err(|e| Error::Internal(format!("stored push actions: {e}")))?;
                let ts = UInt::try_from(notification.ts).unwrap_or_default();
                Ok(Notification::new(
                    actions,
                    Raw::from_json(event),
                    notification.read,
                    notification.room_id,
                    MilliSecondsSinceUnixEpoch(ts),
                ))
            })
            .collect::<Result<_>>()?;
        Ok(NotificationsPage {
            notifications,
            next_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use ruma::{
        RoomId, UserId,
        events::StateEventType,
        push::{
            Action, HighlightTweakValue, NewConditionalPushRule, NewPushRule, NewSimplePushRule,
            PushCondition, RuleKind, Tweak,
        },
    };
    use serde_json::{Value as JsonValue, json};

    use super::{NotificationCounts, NotificationsQuery, UnreadCounts};
    use crate::rooms::{
        ReceiptKind, ReceiptThread,
        testing::{TestRooms as Server, user},
    };

    const NOTHING: NotificationCounts = NotificationCounts {
        notification_count: 0,
        highlight_count: 0,
    };
    const NOTIFIED: NotificationCounts = NotificationCounts {
        notification_count: 1,
        highlight_count: 0,
    };

    impl Server {
        async fn unread(&self, user_id: &UserId, room_id: &RoomId) -> UnreadCounts {
            self.rooms
                .unread_counts_in(
                    user_id,
                    &[room_id.to_owned()],
                    self.rooms.current_position(),
                )
                .await
                .expect("unread counts")
                .remove(room_id)
                .expect("an entry for every room asked")
        }

        async fn main_unread(&self, user_id: &UserId, room_id: &RoomId) -> NotificationCounts {
            self.unread(user_id, room_id).await.main
        }
    }

    #[tokio::test]
    async fn a_message_in_a_two_member_room_notifies_the_other_member_only() {
        let server = Server::start().await;
        let (alice, bob) = (user("alice"), user("bob"));
        let room = server.room(&[&bob]).await;
        server.text(&alice, &room, "hello").await;
        server.text(&alice, &room, "again").await;
        assert_eq!(
            server.main_unread(&bob, &room).await,
            NotificationCounts {
                notification_count: 2,
                highlight_count: 0,
            }
        );
        // The sender's own messages never count, even mentioning themselves.
        server.text(&alice, &room, "alice said this").await;
        assert_eq!(server.unread(&alice, &room).await, UnreadCounts::default());

        let page = server
            .rooms
            .notifications_for(&bob, NotificationsQuery::default())
            .await
            .expect("notifications");
        assert_eq!(page.notifications.len(), 3);
        assert_eq!(page.next_token, None);
        let newest = &page.notifications[0];
        let actions = serde_json::to_value(&newest.actions).expect("actions serialise");
        // `.m.rule.room_one_to_one`: notify with the default sound.
        assert_eq!(
            actions,
            json!(["notify", { "set_tweak": "sound", "value": "default" }])
        );
        assert!(!newest.read);
        assert_eq!(newest.room_id, room);
        let event: JsonValue = serde_json::from_str(newest.event.json().get()).expect("event JSON");
        assert_eq!(event["content"]["body"], "alice said this");
    }

    #[tokio::test]
    async fn display_name_and_user_mentions_highlight() {
        let server = Server::start().await;
        let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
        let room = server.room(&[&bob, &carol]).await;
        server
            .rooms
            .send_state(
                &bob,
                &room,
                StateEventType::RoomMember,
                bob.to_string(),
                json!({ "membership": "join", "displayname": "Bobby" }),
            )
            .await
            .expect("display name set");

        // Since spec v1.17 no server-default rule looks for display names in the body...
        server.text(&alice, &room, "is Bobby around?").await;
        assert_eq!(server.main_unread(&bob, &room).await, NOTIFIED);
        // ... but a rule of the user's own can, with the display name of their member event
        // (rules made before v1.17 still use the deprecated condition).
        #[allow(deprecated)]
        let by_name = NewConditionalPushRule::new(
            "display_name".to_owned(),
            vec![PushCondition::ContainsDisplayName],
            vec![
                Action::Notify,
                Action::SetTweak(Tweak::Highlight(HighlightTweakValue::Yes)),
            ],
        );
        server
            .users
            .set_push_rule(&bob, NewPushRule::Override(by_name), None, None)
            .await
            .expect("rule added");
        server.text(&alice, &room, "Bobby?").await;
        assert_eq!(
            server.main_unread(&bob, &room).await,
            NotificationCounts {
                notification_count: 2,
                highlight_count: 1,
            }
        );
        assert_eq!(
            server.main_unread(&carol, &room).await,
            NotificationCounts {
                notification_count: 2,
                highlight_count: 0,
            }
        );

        // An intentional mention highlights whoever it names, and no one else.
        server
            .send(
                &alice,
                &room,
                json!({
                    "msgtype": "m.text",
                    "body": "carol: look",
                    "m.mentions": { "user_ids": [carol] },
                }),
            )
            .await;
        assert_eq!(
            server.main_unread(&bob, &room).await,
            NotificationCounts {
                notification_count: 3,
                highlight_count: 1,
            }
        );
        assert_eq!(
            server.main_unread(&carol, &room).await,
            NotificationCounts {
                notification_count: 3,
                highlight_count: 1,
            }
        );
        let highlights = server
            .rooms
            .notifications_for(
                &carol,
                NotificationsQuery {
                    only_highlight: true,
                    ..NotificationsQuery::default()
                },
            )
            .await
            .expect("notifications");
        assert_eq!(highlights.notifications.len(), 1);
    }

    #[tokio::test]
    async fn muted_rooms_and_disabled_rules_stop_notifying() {
        let server = Server::start().await;
        let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
        let room = server.room(&[&bob, &carol]).await;

        server
            .users
            .set_push_rule_enabled(&bob, RuleKind::Underride, ".m.rule.message", false)
            .await
            .expect("rule disabled");
        let mute = NewSimplePushRule::new(room.clone(), Vec::new());
        server
            .users
            .set_push_rule(&carol, NewPushRule::Room(mute), None, None)
            .await
            .expect("room muted");

        server.text(&alice, &room, "anyone?").await;
        assert_eq!(server.main_unread(&bob, &room).await, NOTHING);
        assert_eq!(server.main_unread(&carol, &room).await, NOTHING);

        server
            .users
            .set_push_rule_enabled(&bob, RuleKind::Underride, ".m.rule.message", true)
            .await
            .expect("rule enabled");
        server.text(&alice, &room, "anyone now?").await;
        assert_eq!(server.main_unread(&bob, &room).await, NOTIFIED);
        assert_eq!(server.main_unread(&carol, &room).await, NOTHING);
    }

    #[tokio::test]
    async fn receipts_reset_their_thread_and_unthreaded_receipts_everything() {
        let server = Server::start().await;
        let (alice, bob) = (user("alice"), user("bob"));
        let room = server.room(&[&bob]).await;
        let root = server.text(&alice, &room, "root").await;
        let in_thread = |body: &str| {
            json!({
                "msgtype": "m.text",
                "body": body,
                "m.relates_to": { "rel_type": "m.thread", "event_id": root },
            })
        };
        let first_reply = server.send(&alice, &room, in_thread("one")).await;
        server.send(&alice, &room, in_thread("two")).await;
        let main = server.text(&alice, &room, "main").await;

        let unread = server.unread(&bob, &room).await;
        assert_eq!(
            unread.main,
            NotificationCounts {
                notification_count: 2,
                highlight_count: 0,
            }
        );
        assert_eq!(
            unread.threads.get(&root),
            Some(&NotificationCounts {
                notification_count: 2,
                highlight_count: 0,
            })
        );
        assert_eq!(unread.total().notification_count, 4);

        // A receipt in the thread covers the thread only, up to the receipted event.
        server
            .rooms
            .set_receipt(
                &bob,
                &room,
                ReceiptKind::Read,
                &first_reply,
                ReceiptThread::Thread(root.clone()),
            )
            .await
            .expect("thread receipt");
        let unread = server.unread(&bob, &room).await;
        assert_eq!(unread.main.notification_count, 2);
        assert_eq!(unread.threads.get(&root), Some(&NOTIFIED));

        // A private main-timeline receipt covers the main timeline.
        server
            .rooms
            .set_receipt(
                &bob,
                &room,
                ReceiptKind::ReadPrivate,
                &main,
                ReceiptThread::Main,
            )
            .await
            .expect("main receipt");
        let unread = server.unread(&bob, &room).await;
        assert_eq!(unread.main, NOTHING);
        assert_eq!(unread.threads.get(&root), Some(&NOTIFIED));

        // An unthreaded receipt covers everything before it.
        server
            .rooms
            .set_receipt(
                &bob,
                &room,
                ReceiptKind::Read,
                &main,
                ReceiptThread::Unthreaded,
            )
            .await
            .expect("unthreaded receipt");
        assert_eq!(server.unread(&bob, &room).await, UnreadCounts::default());
        let page = server
            .rooms
            .notifications_for(&bob, NotificationsQuery::default())
            .await
            .expect("notifications");
        assert!(page.notifications.iter().all(|n| n.read));
    }

    #[tokio::test]
    async fn notifications_page_newest_first() {
        let server = Server::start().await;
        let (alice, bob) = (user("alice"), user("bob"));
        let room = server.room(&[&bob]).await;
        let mut sent = Vec::new();
        for i in 0..5 {
            sent.push(server.text(&alice, &room, &format!("message {i}")).await);
        }
        let mut seen = Vec::new();
        let mut from = None;
        loop {
            let page = server
                .rooms
                .notifications_for(
                    &bob,
                    NotificationsQuery {
                        from: from.as_deref(),
                        limit: Some(2u32.into()),
                        only_highlight: false,
                    },
                )
                .await
                .expect("notifications");
            for notification in &page.notifications {
                let event: JsonValue =
                    serde_json::from_str(notification.event.json().get()).expect("event JSON");
                seen.push(event["event_id"].as_str().expect("event ID").to_owned());
            }
            match page.next_token {
                Some(token) => from = Some(token),
                None => break,
            }
        }
        let expected: Vec<String> = sent.iter().rev().map(ToString::to_string).collect();
        assert_eq!(seen, expected);

        let bad = server
            .rooms
            .notifications_for(
                &bob,
                NotificationsQuery {
                    from: Some("nonsense"),
                    ..NotificationsQuery::default()
                },
            )
            .await;
        assert!(matches!(bad, Err(crate::Error::InvalidParam(_))));
    }
}
