-- Always empty. An event write inserts into it every predecessor of its events that is not in
-- `events`; the check refuses any row, which fails the write. The check so runs inside the
-- write's own statements instead of as a query before them.
CREATE TABLE unpersisted_prev_events (
    event_id TEXT CONSTRAINT prev_events_persisted CHECK (event_id IS NULL)
);
