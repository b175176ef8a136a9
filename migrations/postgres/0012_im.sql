-- The IM layer (docs/im-api.md). Everything else it keeps is rooms, events and account data;
-- these tables are indexes over them.

-- The direct-message room of each pair of users, user_a < user_b: POST .../dm returns it, and
-- the primary key keeps concurrent calls from recording two rooms for one pair.
CREATE TABLE im_dm_rooms (
    user_a TEXT NOT NULL,
    user_b TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (user_a, user_b)
);

-- Pending friend requests: each is also an invite to the pair's DM room, its member event
-- marked with `im.tessera.friend_request`; this index lists them and finds the one a join of
-- that room accepts. A row goes when the request is accepted, rejected or cancelled.
CREATE TABLE im_friend_requests (
    requester TEXT NOT NULL,
    target TEXT NOT NULL,
    room_id TEXT NOT NULL,
    message TEXT,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (requester, target)
);
CREATE INDEX im_friend_requests_target ON im_friend_requests (target);

-- Each user's moments profile room (MSC4501 `social.profile`), created on first use.
CREATE TABLE im_profile_rooms (
    user_id TEXT PRIMARY KEY NOT NULL,
    room_id TEXT NOT NULL
);

-- Moments posted through the IM API, by the timeline position of their event: the feed's order.
CREATE TABLE im_moments (
    event_id TEXT PRIMARY KEY NOT NULL,
    room_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    position BIGINT NOT NULL
);
CREATE INDEX im_moments_room ON im_moments (room_id, position);
CREATE INDEX im_moments_owner ON im_moments (owner, position);

-- Each local user's feed: the moments of the profile rooms they are joined to (their own
-- included), written when a moment is posted or a profile room is joined, so a page is one
-- index range however many friends there are.
CREATE TABLE im_feed (
    viewer TEXT NOT NULL,
    position BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (viewer, position)
);
CREATE INDEX im_feed_room ON im_feed (viewer, room_id);

-- Members muted in a group until a time: their power level is lowered below the send level,
-- and restored (to previous_level, or the default when NULL) by muted_by once until_ts passes,
-- also after a restart.
CREATE TABLE im_mutes (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    muted_by TEXT NOT NULL,
    until_ts BIGINT NOT NULL,
    previous_level BIGINT,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX im_mutes_until ON im_mutes (until_ts);
