-- Transaction IDs are looked up by the position of the events they made (`unsigned.transaction_id`
-- in sync), an index each message appends to, instead of by event ID, an index each message
-- writes into at a random place (a page per message per commit). Without a rowid the table is
-- its primary key.
CREATE TABLE event_transactions_by_position (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, scope, txn_id)
) WITHOUT ROWID;
INSERT INTO event_transactions_by_position
    SELECT t.user_id, t.device_id, t.scope, t.txn_id, t.event_id, e.stream_ordering
    FROM event_transactions t JOIN events e ON e.event_id = t.event_id;
DROP TABLE event_transactions;
ALTER TABLE event_transactions_by_position RENAME TO event_transactions;
CREATE INDEX event_transactions_position ON event_transactions (stream_ordering);
