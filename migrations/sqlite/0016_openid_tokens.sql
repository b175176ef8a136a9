-- OpenID tokens (spec: "OpenID"): a user proves their identity to a third party (an
-- integration manager, a widget), which checks the token with this server's
-- /_matrix/federation/v1/openid/userinfo. Short-lived; expired rows go as new ones come.
CREATE TABLE openid_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
