-- Receipts (spec: "Receipts"): each user's latest receipt per room, receipt type and thread.
-- thread_id is '' for an unthreaded receipt, otherwise "main" or the thread root's event ID.
-- event_stream_ordering is the receipted event's place in the timeline, so that a receipt never
-- moves backwards; stream_position is the receipts stream position of the receipt's last change.
CREATE TABLE receipts (
    room_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_stream_ordering BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    stream_position BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_room_stream ON receipts (room_id, stream_position);

-- The receipts stream's current position, one row. A write bumps it in its own transaction, so
-- positions become visible in the order they were handed out.
CREATE TABLE receipts_stream (
    position BIGINT NOT NULL
);
INSERT INTO receipts_stream (position) VALUES (0);
