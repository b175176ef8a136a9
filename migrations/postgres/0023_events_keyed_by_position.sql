-- SQLite's events table becomes keyed by its rowid here; PostgreSQL's has no hidden row key
-- (its primary key on stream_ordering is the only index by position): nothing to change.
SELECT 1;
