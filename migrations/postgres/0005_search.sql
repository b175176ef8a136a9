-- Full-text search (`POST /search`) over message bodies, room names and topics.
-- key: `content.body`, `content.name` or `content.topic`. value: the text as the server
-- lowercased it, so that matching ignores case alike on both backends. A trigram index (pg_trgm,
-- a trusted extension shipped with PostgreSQL) serves substring LIKE patterns in any script,
-- Chinese included, which has no spaces between words.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE TABLE event_search (
    stream_ordering BIGINT PRIMARY KEY NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX event_search_value ON event_search USING gin (value gin_trgm_ops);
