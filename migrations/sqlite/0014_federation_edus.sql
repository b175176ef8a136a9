-- EDUs waiting to be sent to other servers (spec: Server-Server API, "EDUs"): typing notices,
-- receipts, to-device messages and device list updates, sent with the next transaction to their
-- destination. expires_ts: typing notices are dropped rather than sent late.
CREATE TABLE federation_outbox_edus (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    edu TEXT NOT NULL,
    expires_ts BIGINT
);
CREATE INDEX federation_outbox_edus_destination ON federation_outbox_edus (destination, id);
