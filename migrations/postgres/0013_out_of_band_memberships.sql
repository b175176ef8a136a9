-- Invites from other servers to rooms this server is not in (spec: Server-Server API,
-- "Inviting to a room"): the invite event is stored in `events` with its own timeline position
-- (state groups 0: this server has no state of the room) and in `current_state`, so that sync
-- reports it; this table keeps the room's version and the stripped state the inviting server
-- sent with it. Rejections of such invites are stored the same way, without a row here.
CREATE TABLE invite_states (
    event_id TEXT PRIMARY KEY NOT NULL,
    room_version TEXT NOT NULL,
    stripped_state TEXT NOT NULL
);
