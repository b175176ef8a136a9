-- End-to-end encryption (spec: "End-to-End Encryption"): the server keeps public keys, opaque
-- encrypted payloads and signatures; it never sees plaintext. Flags are 0/1 BIGINTs so the same
-- queries run on both backends.

-- Device keys as the device uploaded them (signed by the device itself), immutable once set.
CREATE TABLE e2e_device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- One-time keys: each is handed out once by /keys/claim, then deleted. key_id is the full
-- "<algorithm>:<id>".
CREATE TABLE e2e_one_time_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, key_id)
);
CREATE INDEX e2e_one_time_keys_by_algorithm ON e2e_one_time_keys (user_id, device_id, algorithm, key_id);

-- At most one fallback key per device and algorithm; claimed (used = 1) when no one-time key is
-- left, and kept until the device uploads a new one.
CREATE TABLE e2e_fallback_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    used BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- Cross-signing keys; key_type is "master", "self_signing" or "user_signing".
CREATE TABLE e2e_cross_signing_keys (
    user_id TEXT NOT NULL,
    key_type TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures added after upload (/keys/signatures/upload): signer_key_id's signature on the
-- target user's device keys (target_key_id = device ID) or master key (target_key_id = its
-- public key).
CREATE TABLE e2e_signatures (
    target_user_id TEXT NOT NULL,
    target_key_id TEXT NOT NULL,
    signer_user_id TEXT NOT NULL,
    signer_key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);

-- The device list stream: every change to a user's devices or keys takes the next position, so
-- sync and /keys/changes read the users whose lists changed between two tokens.
CREATE TABLE device_list_changes (
    position BIGINT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL
);
CREATE TABLE device_list_stream (
    position BIGINT NOT NULL
);
INSERT INTO device_list_stream (position) VALUES (0);

-- To-device messages waiting in a device's inbox until a sync token acknowledges them.
CREATE TABLE to_device_messages (
    position BIGINT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    event_type TEXT NOT NULL,
    content TEXT NOT NULL
);
CREATE INDEX to_device_inbox ON to_device_messages (user_id, device_id, position);
CREATE TABLE to_device_stream (
    position BIGINT NOT NULL
);
INSERT INTO to_device_stream (position) VALUES (0);
-- sendToDevice transaction IDs, per sending device (spec: "Transaction identifiers").
CREATE TABLE to_device_transactions (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

-- Server-side key backup (spec: "Server-side key backups"). Versions count up per user; a
-- deleted version keeps its row (deleted = 1) so its number is never reused. etag changes
-- whenever the version's keys change.
CREATE TABLE backup_versions (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag BIGINT NOT NULL DEFAULT 0,
    deleted BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, version)
);
CREATE TABLE backup_keys (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count BIGINT NOT NULL,
    is_verified BIGINT NOT NULL,
    session_data TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
