-- Transaction IDs are looked up by the position of the events they made (`unsigned.transaction_id`
-- in sync), an index each message appends to, instead of by event ID, an index each message
-- writes into at a random place.
ALTER TABLE event_transactions ADD COLUMN stream_ordering BIGINT;
UPDATE event_transactions t SET stream_ordering = e.stream_ordering
    FROM events e WHERE e.event_id = t.event_id;
DELETE FROM event_transactions WHERE stream_ordering IS NULL;
ALTER TABLE event_transactions ALTER COLUMN stream_ordering SET NOT NULL;
DROP INDEX event_transactions_event;
CREATE INDEX event_transactions_position ON event_transactions (stream_ordering);
