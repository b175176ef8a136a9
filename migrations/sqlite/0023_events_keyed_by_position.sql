-- `stream_ordering BIGINT PRIMARY KEY` is not SQLite's rowid: the table had a hidden rowid and a
-- second index for the position, which every event was written into and every read by position
-- went through. As `INTEGER PRIMARY KEY` the position is the rowid. (The table is copied once.)
CREATE TABLE events_by_position (
    stream_ordering INTEGER PRIMARY KEY NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    state_key TEXT,
    sender TEXT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    depth BIGINT NOT NULL,
    state_before BIGINT NOT NULL,
    state_after BIGINT NOT NULL,
    replaces_state TEXT,
    relates_to TEXT,
    rel_type TEXT,
    redacted_by TEXT,
    json TEXT NOT NULL
);
INSERT INTO events_by_position (
    stream_ordering, event_id, room_id, event_type, state_key, sender, origin_server_ts, depth,
    state_before, state_after, replaces_state, relates_to, rel_type, redacted_by, json
)
SELECT
    stream_ordering, event_id, room_id, event_type, state_key, sender, origin_server_ts, depth,
    state_before, state_after, replaces_state, relates_to, rel_type, redacted_by, json
FROM events ORDER BY stream_ordering;
DROP TABLE events;
ALTER TABLE events_by_position RENAME TO events;
CREATE INDEX events_room_stream ON events (room_id, stream_ordering);
CREATE INDEX events_room_ts ON events (room_id, origin_server_ts);
CREATE INDEX events_relations ON events (relates_to, rel_type) WHERE relates_to IS NOT NULL;
CREATE INDEX events_member_changes ON events (state_key, stream_ordering)
    WHERE event_type = 'm.room.member';
