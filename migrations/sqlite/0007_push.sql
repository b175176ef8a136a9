-- Push rule evaluation results (spec: "Push Notifications"): one row per local recipient of an
-- event that notifies or highlights them, written with the event. Unread counts are the rows
-- after the user's read receipt; `GET /notifications` pages through them newest first.
-- thread_id: "main" for the main timeline, otherwise the thread root's event ID, matching the
-- thread IDs of receipts. notify / highlight: 0 or 1. actions: the matched rule's actions (JSON).
-- ts: when the notification was made (the event's origin_server_ts for local events).
CREATE TABLE event_push_actions (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    notify BIGINT NOT NULL,
    highlight BIGINT NOT NULL,
    actions TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, stream_ordering)
);
CREATE INDEX event_push_actions_room ON event_push_actions (user_id, room_id, stream_ordering);
