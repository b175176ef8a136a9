-- Push actions keep a single index, by user and room: unread counts read them so, and
-- `/notifications` reads them room by room. A second index by user alone doubled the pages each
-- message writes, as every recipient's rows land in a different place of each index. Without a
-- rowid the table is that index.
CREATE TABLE event_push_actions_by_room (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    notify BIGINT NOT NULL,
    highlight BIGINT NOT NULL,
    actions TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, stream_ordering)
) WITHOUT ROWID;
INSERT INTO event_push_actions_by_room
    SELECT user_id, room_id, stream_ordering, event_id, thread_id, notify, highlight, actions, ts
    FROM event_push_actions;
DROP TABLE event_push_actions;
ALTER TABLE event_push_actions_by_room RENAME TO event_push_actions;
