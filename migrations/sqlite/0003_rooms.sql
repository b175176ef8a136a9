-- Rooms and the event graph: events stored once as canonical JSON, state snapshots as delta
-- chains, forward extremities, the current state, transaction IDs, aliases.
CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY NOT NULL,
    room_version TEXT NOT NULL,
    creator TEXT NOT NULL,
    published BIGINT NOT NULL DEFAULT 0,
    -- The state group of the room's current state.
    state_group BIGINT NOT NULL,
    created_ts BIGINT NOT NULL
);

-- stream_ordering: the server's order of arrival, the timeline stream position.
-- state_before / state_after: state groups (see state_groups) of the state around the event.
-- json: the PDU as signed, canonical JSON; pruned in place when the event is redacted.
CREATE TABLE events (
    stream_ordering BIGINT PRIMARY KEY NOT NULL,
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
CREATE INDEX events_room_stream ON events (room_id, stream_ordering);
CREATE INDEX events_room_ts ON events (room_id, origin_server_ts);
-- Most events relate to nothing: only those that do are indexed.
CREATE INDEX events_relations ON events (relates_to, rel_type) WHERE relates_to IS NOT NULL;

-- A state group is the full state at some point. A group with prev_group holds only the entries
-- that differ from prev_group (a delta); chains are cut by a full snapshot every few dozen links.
CREATE TABLE state_groups (
    group_id BIGINT PRIMARY KEY NOT NULL,
    room_id TEXT NOT NULL,
    prev_group BIGINT,
    chain_length BIGINT NOT NULL
);
CREATE TABLE state_group_entries (
    group_id BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (group_id, event_type, state_key)
);

-- The room's current state, denormalised for membership queries.
CREATE TABLE current_state (
    room_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    membership TEXT,
    PRIMARY KEY (room_id, event_type, state_key)
);
CREATE INDEX current_state_member ON current_state (state_key, event_type, membership);

CREATE TABLE forward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- Transaction IDs are scoped to the device that sent them and the endpoint they were sent to
-- (spec: "Transaction identifiers"); `scope` names the endpoint, e.g. `send/<room>/<type>`.
CREATE TABLE event_transactions (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, scope, txn_id)
);

CREATE TABLE forgotten_rooms (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);

CREATE TABLE room_aliases (
    alias TEXT PRIMARY KEY NOT NULL,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);
