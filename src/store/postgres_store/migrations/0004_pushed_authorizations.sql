-- Pushed authorization requests (RFC 9126): kept under the hash of their request_uri
-- until one DELETE ... WHERE client_id = ... RETURNING takes them (one-time use).
CREATE TABLE oauth_pushed (
    id text PRIMARY KEY,
    client_id text NOT NULL,
    expires bigint NOT NULL,
    body jsonb NOT NULL
);
CREATE INDEX oauth_pushed_expiry ON oauth_pushed (expires);
-- A user's grants and sessions (the account page, remembered consent).
CREATE INDEX oauth_grants_by_sub ON oauth_grants ((body->>'sub'));
CREATE INDEX oauth_sessions_by_sub ON oauth_sessions ((body->>'sub'));
