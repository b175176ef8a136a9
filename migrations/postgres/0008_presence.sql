-- Presence (spec: "Presence") of local users: the state last published for each, so that a
-- restart keeps status messages and the presence stream's position. state is "online",
-- "unavailable" or "offline"; last_active_ts is NULL until the user's first activity;
-- stream_position is the presence stream position of the user's last visible change.
CREATE TABLE presence (
    user_id TEXT PRIMARY KEY NOT NULL,
    state TEXT NOT NULL,
    status_msg TEXT,
    last_active_ts BIGINT,
    stream_position BIGINT NOT NULL
);
