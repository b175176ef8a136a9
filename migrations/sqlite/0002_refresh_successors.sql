-- Spec (POST /refresh): the old refresh token stays valid until the new access or refresh
-- token is used, so a client that lost the response can refresh again.
-- successor_hash: the refresh token issued when this one was redeemed (NULL until then).
ALTER TABLE refresh_tokens ADD COLUMN successor_hash TEXT;
-- predecessor_refresh_hash: the refresh token this access token's pair replaces; cleared, and
-- that refresh token deleted, on the access token's first use.
ALTER TABLE access_tokens ADD COLUMN predecessor_refresh_hash TEXT;
