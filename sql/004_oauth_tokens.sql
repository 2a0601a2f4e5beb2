-- OAuth2 tokens of `auth.type = oauth2` clients, one row per client, the
-- tokens sealed with ATLAS_TOKEN_KEY (XChaCha20-Poly1305: 24-byte nonce,
-- then ciphertext and tag), never in clear. A refresh takes this row
-- `FOR UPDATE`, so one process at a time refreshes a client on every
-- machine, and commits the rotated refresh token before using the new
-- access token. `generation` counts the refreshes (and seeds).
CREATE TABLE atlas.oauth_tokens (
    client            TEXT PRIMARY KEY,
    access_token      BYTEA,
    access_expires_at TIMESTAMPTZ,
    -- When the access token is renewed ahead of its expiry.
    access_renew_at   TIMESTAMPTZ,
    refresh_token     BYTEA,
    generation        BIGINT NOT NULL DEFAULT 0,
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_by        TEXT
);
