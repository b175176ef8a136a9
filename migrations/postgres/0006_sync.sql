-- Sync reads every stream as a range of positions (spec: "Syncing").

-- Account data: each change takes the next position of the account data stream.
ALTER TABLE account_data ADD COLUMN stream_position BIGINT NOT NULL DEFAULT 0;
CREATE INDEX account_data_by_position ON account_data (user_id, stream_position);
-- The account data stream's current position, one row; bumped in the write's own transaction,
-- so positions become visible in the order they were handed out.
CREATE TABLE account_data_stream (
    position BIGINT NOT NULL
);
INSERT INTO account_data_stream (position) VALUES (0);

-- A user's membership changes in timeline order: the rooms they joined, left or were invited to
-- between two sync tokens.
CREATE INDEX events_member_changes ON events (state_key, stream_ordering)
    WHERE event_type = 'm.room.member';

-- Receipts changed between two sync tokens, across rooms.
CREATE INDEX receipts_stream_position ON receipts (stream_position);

-- The transaction ID of an event for its sender's device (`unsigned.transaction_id` in sync).
CREATE INDEX event_transactions_event ON event_transactions (event_id);
