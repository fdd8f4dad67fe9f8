-- Version 3: what several instances share. Orders not finalized yet (for
-- limits.pending_orders_per_account), validation leases (an instance that dies leaves its
-- validations to the others), lockout counters and rate buckets.
ALTER TABLE orders ADD COLUMN open_until bigint;
UPDATE orders SET open_until = (body->>'expires')::bigint WHERE body->'phase'->>'phase' = 'open';
CREATE INDEX orders_open ON orders (account_id, open_until) WHERE open_until IS NOT NULL;
ALTER TABLE authorizations ADD COLUMN lease_owner text, ADD COLUMN lease_until bigint NOT NULL DEFAULT 0;
CREATE TABLE attempts (
    key text PRIMARY KEY,
    failures integer NOT NULL,
    last_failure bigint NOT NULL,
    pending integer NOT NULL,
    pending_until bigint NOT NULL,
    expires bigint NOT NULL
);
CREATE INDEX attempts_expiry ON attempts (expires);
CREATE TABLE rate_buckets (key text PRIMARY KEY, tat_ms bigint NOT NULL);
CREATE INDEX rate_buckets_expiry ON rate_buckets (tat_ms);
