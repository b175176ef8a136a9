-- The content repository (spec: "Content repository"). One row per media ID of this server:
-- created by /upload (uploaded_ts set at once) or by /create (uploaded_ts NULL until the PUT,
-- the ID is given up after unused_expires_ts). size and content_type are known once uploaded.
-- uploader is NULL for media the server stored itself (URL preview images).
CREATE TABLE media (
    media_id TEXT PRIMARY KEY NOT NULL,
    uploader TEXT,
    content_type TEXT,
    filename TEXT,
    size BIGINT,
    created_ts BIGINT NOT NULL,
    uploaded_ts BIGINT,
    unused_expires_ts BIGINT
);
CREATE INDEX media_pending ON media (uploader, unused_expires_ts) WHERE uploaded_ts IS NULL;

-- Thumbnails generated on demand, keyed by what was asked for after rounding to a served size.
CREATE TABLE media_thumbnails (
    media_id TEXT NOT NULL,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    method TEXT NOT NULL,
    animated BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (media_id, width, height, method, animated)
);

-- URL previews (GET /preview_url), cached per URL: the OpenGraph JSON and when it was fetched.
CREATE TABLE url_previews (
    url TEXT PRIMARY KEY NOT NULL,
    fetched_ts BIGINT NOT NULL,
    og TEXT NOT NULL
);
