-- Accounts, devices, sessions, profiles, account data and filters.
CREATE TABLE users (
    user_id TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT,
    is_admin BIGINT NOT NULL DEFAULT 0,
    deactivated BIGINT NOT NULL DEFAULT 0,
    created_ts BIGINT NOT NULL
);

CREATE TABLE devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    last_seen_ts BIGINT,
    last_seen_ip TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- Tokens are stored as SHA-256 hashes; the plain token exists only in the client.
CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    expires_ts BIGINT
);
CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL
);
CREATE INDEX refresh_tokens_device ON refresh_tokens (user_id, device_id);

CREATE TABLE login_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);

-- One row per profile field; value is JSON.
CREATE TABLE profile_fields (
    user_id TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (user_id, field)
);

-- room_id is '' for global account data.
CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    data_type TEXT NOT NULL,
    content TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id, data_type)
);

CREATE TABLE filters (
    user_id TEXT NOT NULL,
    filter_id BIGINT NOT NULL,
    filter TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);
