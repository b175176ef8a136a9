-- Push actions keep a single index, by user and room: unread counts read them so, and
-- `/notifications` reads them room by room. A second index by user alone doubled the pages each
-- message writes, as every recipient's rows land in a different place of each index.
ALTER TABLE event_push_actions DROP CONSTRAINT event_push_actions_pkey;
DROP INDEX event_push_actions_room;
ALTER TABLE event_push_actions ADD PRIMARY KEY (user_id, room_id, stream_ordering);
