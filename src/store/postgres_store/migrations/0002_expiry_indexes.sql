-- Version 2: indexes for purging expired records in small batches.
CREATE INDEX oauth_codes_expiry ON oauth_codes (expires);
CREATE INDEX oauth_sessions_expiry ON oauth_sessions (expires);
CREATE INDEX oauth_pending_expiry ON oauth_pending (expires);
CREATE INDEX device_authorizations_expiry ON device_authorizations (expires);
CREATE INDEX device_nonces_expiry ON device_nonces (expires);
