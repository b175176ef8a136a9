-- Redactions of events this server did not have when the redaction arrived (received into a
-- gap, or backfilled before the older event it redacts): applied when the event is stored.
-- redactor_may_redact: 0 or 1, whether the redaction's sender held the room's redact power
-- level; otherwise it applies only to an event of a user of the redactor's server.
CREATE TABLE pending_redactions (
    target_event_id TEXT NOT NULL,
    redaction_event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    redactor TEXT NOT NULL,
    redactor_may_redact BIGINT NOT NULL,
    PRIMARY KEY (target_event_id, redaction_event_id)
);
