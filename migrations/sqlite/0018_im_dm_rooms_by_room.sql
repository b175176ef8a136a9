-- The pair whose DM room a room is: looked up when a member of another server leaves a room,
-- which ends a friendship when it is their DM room with a local friend.
CREATE INDEX im_dm_rooms_room ON im_dm_rooms (room_id);
