-- A counter every change to the set of revoked certificates bumps, in the statement that
-- makes it (triggers), so that each instance can keep its CRL until the counter moves.
CREATE TABLE revocation_epoch (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    epoch bigint NOT NULL
);
INSERT INTO revocation_epoch (id, epoch) VALUES (true, 0);

CREATE FUNCTION bump_revocation_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE revocation_epoch SET epoch = epoch + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER certificates_revoked_insert AFTER INSERT ON certificates
    FOR EACH ROW WHEN (NEW.revoked) EXECUTE FUNCTION bump_revocation_epoch();
CREATE TRIGGER certificates_revoked_update AFTER UPDATE ON certificates
    FOR EACH ROW WHEN (OLD.revoked OR NEW.revoked) EXECUTE FUNCTION bump_revocation_epoch();
CREATE TRIGGER certificates_revoked_delete AFTER DELETE ON certificates
    FOR EACH ROW WHEN (OLD.revoked) EXECUTE FUNCTION bump_revocation_epoch();
CREATE TRIGGER certificates_truncate AFTER TRUNCATE ON certificates
    FOR EACH STATEMENT EXECUTE FUNCTION bump_revocation_epoch();
-- A load with triggers disabled (pg_restore --disable-triggers) must bump it by hand:
--   UPDATE revocation_epoch SET epoch = epoch + 1;
