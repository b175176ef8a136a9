-- Other servers' signing keys (spec: Server-Server API, "Retrieving server keys").
-- server_key_responses: the latest signed key response of each server, served again when this
-- server acts as a notary. server_signing_keys: every key ever seen, so that events signed with
-- a key the server has since retired still verify. valid_until_ts is the key's validity (for an
-- old key, its expired_ts).
CREATE TABLE server_key_responses (
    server_name TEXT PRIMARY KEY NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    json TEXT NOT NULL
);

CREATE TABLE server_signing_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    verify_key TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);

-- Events of remote rooms that are not part of this server's timeline: the room state and auth
-- chain received when joining over federation. Read wherever events are read by ID.
CREATE TABLE outliers (
    event_id TEXT PRIMARY KEY NOT NULL,
    room_id TEXT NOT NULL,
    json TEXT NOT NULL
);

-- The durable outbound queue: each local event still to be sent to each remote server in its
-- room, written in the same transaction as the event. Rows go once the server accepted them.
CREATE TABLE federation_outbox (
    destination TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    PRIMARY KEY (destination, stream_ordering)
);

-- Inbound transactions already processed, per origin (spec: idempotent `PUT /send/{txnId}`).
CREATE TABLE federation_inbound_transactions (
    origin TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    response TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
