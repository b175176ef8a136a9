-- Dehydrated devices (MSC3814): at most one per user, a device with no session whose
-- encrypted pickle (device_data, opaque to the server) a new login of the user downloads to
-- read the to-device messages it received while the user had no device online.
CREATE TABLE dehydrated_devices (
    user_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    device_data TEXT NOT NULL
);

-- A user's latest device list changes, for the stream_id and prev_id of the
-- m.device_list_update sent to other servers.
CREATE INDEX device_list_changes_user ON device_list_changes (user_id, position);
