-- Invites from other servers to rooms this server is not in, and knocks of local users on such
-- rooms (spec: Server-Server API, "Inviting to a room", "Knocking upon a room"): the member
-- event is stored in `events` with its own timeline position (state groups 0: this server has
-- no state of the room) and in `current_state`, so that sync reports it; this table keeps the
-- room's version, the stripped state sent with it, and for knocks the server knocked through
-- (an invite goes back through its sender's server). Rejections and rescinded knocks are stored
-- the same way, without a row here.
CREATE TABLE invite_states (
    event_id TEXT PRIMARY KEY NOT NULL,
    room_version TEXT NOT NULL,
    stripped_state TEXT NOT NULL,
    via_server TEXT
);
