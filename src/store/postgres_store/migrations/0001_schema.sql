-- idca's schema, version 1. Each record is its serde JSON in `body`, with a `version`
-- bumped by every write; only what SQL must index, constrain or filter is a column.
-- Times are bigint Unix seconds from idca's clock, never the database's now().
CREATE TABLE meta (key text PRIMARY KEY, version bigint NOT NULL, body jsonb NOT NULL);
CREATE TABLE accounts (
    id text PRIMARY KEY,
    jkt text NOT NULL UNIQUE,
    eab_kid text UNIQUE,
    version bigint NOT NULL,
    body jsonb NOT NULL
);
CREATE TABLE orders (
    id text PRIMARY KEY,
    account_id text NOT NULL,
    created bigint NOT NULL,
    version bigint NOT NULL,
    body jsonb NOT NULL
);
CREATE INDEX orders_by_account ON orders (account_id, created, id);
CREATE TABLE authorizations (
    id text PRIMARY KEY,
    account_id text NOT NULL,
    identifier_type text NOT NULL,
    identifier_value text NOT NULL,
    processing boolean NOT NULL,
    version bigint NOT NULL,
    body jsonb NOT NULL
);
CREATE INDEX authorizations_by_identifier ON authorizations (account_id, identifier_type, identifier_value, id);
CREATE INDEX authorizations_processing ON authorizations (id) WHERE processing;
CREATE TABLE certificates (
    serial text PRIMARY KEY,
    revoked boolean NOT NULL,
    version bigint NOT NULL,
    body jsonb NOT NULL
);
CREATE INDEX certificates_revoked ON certificates (serial) WHERE revoked;
CREATE TABLE oauth_keys (kid text PRIMARY KEY, created bigint NOT NULL, body jsonb NOT NULL);
CREATE TABLE oauth_pending (id text PRIMARY KEY, expires bigint NOT NULL, body jsonb NOT NULL);
CREATE TABLE oauth_sessions (id text PRIMARY KEY, expires bigint NOT NULL, body jsonb NOT NULL);
CREATE TABLE oauth_codes (
    hash text PRIMARY KEY,
    redeemed_grant text,
    expires bigint NOT NULL,
    body jsonb NOT NULL
);
CREATE TABLE oauth_grants (id text PRIMARY KEY, version bigint NOT NULL, body jsonb NOT NULL);
CREATE TABLE oauth_refresh (
    hash text PRIMARY KEY,
    grant_id text NOT NULL,
    version bigint NOT NULL,
    body jsonb NOT NULL
);
CREATE INDEX oauth_refresh_by_grant ON oauth_refresh (grant_id);
CREATE TABLE device_authorizations (
    hash text PRIMARY KEY,
    user_code text NOT NULL UNIQUE,
    expires bigint NOT NULL,
    version bigint NOT NULL,
    body jsonb NOT NULL
);
CREATE TABLE oauth_clients (client_id text PRIMARY KEY, version bigint NOT NULL, body jsonb NOT NULL);
CREATE TABLE devices (id text PRIMARY KEY, user_name text NOT NULL, body jsonb NOT NULL);
CREATE INDEX devices_by_user ON devices (user_name);
CREATE TABLE device_nonces (device_id text PRIMARY KEY, nonce text NOT NULL, expires bigint NOT NULL);
-- Single-use keys until they expire: kind 2 is a DPoP proof's replay key.
CREATE TABLE replay (kind smallint NOT NULL, key text NOT NULL, expires bigint NOT NULL, PRIMARY KEY (kind, key));
CREATE INDEX replay_expiry ON replay (expires);
