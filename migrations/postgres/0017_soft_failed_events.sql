-- Soft-failed events (spec: Server-Server API, "Soft failure"): events another server sent
-- that pass the auth rules against the state before them but not against the room's current
-- state. They are kept beside the outliers, not shown to clients nor built on, but with the
-- state groups around them: a later event naming one as its predecessor needs its state.
-- Outliers proper have no state (0).
ALTER TABLE outliers ADD COLUMN state_before BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outliers ADD COLUMN state_after BIGINT NOT NULL DEFAULT 0;
