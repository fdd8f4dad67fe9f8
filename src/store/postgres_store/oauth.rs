//! The authorization server's records in PostgreSQL.

use super::*;

const CLIENT_EXISTS: &str = "SELECT 1 FROM oauth_clients WHERE client_id = $1";
const DEVICE_AUTHZ_EXISTS: &str = "SELECT 1 FROM device_authorizations WHERE hash = $1";
const REFRESH_EXISTS: &str = "SELECT 1 FROM oauth_refresh WHERE hash = $1";

#[async_trait]
impl OAuthStore for PgStore {
    async fn oauth_keys(&self) -> Result<Vec<OAuthKey>, StoreError> {
        let client = self.client().await?;
        let rows = query(&client, "SELECT body FROM oauth_keys ORDER BY created, kid", &[]).await?;
        rows.iter().map(|r| body(r, 0, "oauth_keys")).collect()
    }

    async fn rotate_oauth_key(&self, key: &OAuthKey) -> Result<(), StoreError> {
        transaction!(self, |tx| {
            let sql = "INSERT INTO oauth_keys (kid, created, body) VALUES ($1, $2, $3) \
                       ON CONFLICT (kid) DO UPDATE SET created = EXCLUDED.created, body = EXCLUDED.body";
            exec(&tx, sql, &[&key.kid, &key.created, &json(key)]).await?;
            let others = query(&tx, "SELECT body FROM oauth_keys WHERE kid <> $1 FOR UPDATE", &[&key.kid]).await?;
            for row in others {
                let mut old: OAuthKey = body(&row, 0, "oauth_keys")?;
                if old.retired.is_none() {
                    old.retired = Some(key.created);
                    exec(&tx, "UPDATE oauth_keys SET body = $2 WHERE kid = $1", &[&old.kid, &json(&old)]).await?;
                }
            }
            Ok(())
        })
    }

    async fn put_pending_authorization(&self, id: &str, p: &PendingAuthorization) -> Result<(), StoreError> {
        self.quota.admit()?;
        let client = self.client().await?;
        let sql = "INSERT INTO oauth_pending (id, expires, body) VALUES ($1, $2, $3) \
                   ON CONFLICT (id) DO UPDATE SET expires = EXCLUDED.expires, body = EXCLUDED.body";
        exec(&client, sql, &[&id, &p.expires, &json(p)]).await?;
        Ok(())
    }

    async fn pending_authorization(&self, id: &str) -> Result<PendingAuthorization, StoreError> {
        let client = self.client().await?;
        let row = query_opt(&client, "SELECT body FROM oauth_pending WHERE id = $1", &[&id]).await?;
        body(&row.ok_or(StoreError::NotFound)?, 0, "oauth_pending")
    }

    /// One statement: whoever deletes the row has it.
    async fn take_pending_authorization(&self, id: &str) -> Result<PendingAuthorization, StoreError> {
        let client = self.client().await?;
        let row = query_opt(&client, "DELETE FROM oauth_pending WHERE id = $1 RETURNING body", &[&id]).await?;
        body(&row.ok_or(StoreError::NotFound)?, 0, "oauth_pending")
    }

    async fn put_pushed_authorization(&self, hash: &SecretHash, p: &PushedAuthorization) -> Result<(), StoreError> {
        self.quota.admit()?;
        let client = self.client().await?;
        let sql = "INSERT INTO oauth_pushed (id, client_id, expires, body) VALUES ($1, $2, $3, $4)";
        exec(&client, sql, &[&hash.0, &p.client_id, &p.expires, &json(p)]).await?;
        Ok(())
    }

    /// One `DELETE … RETURNING` decides, for the right client and unexpired only.
    async fn take_pushed_authorization(
        &self,
        hash: &SecretHash,
        client_id: &str,
        now: UnixTime,
    ) -> Result<PushedAuthorization, StoreError> {
        let client = self.client().await?;
        let sql = "DELETE FROM oauth_pushed WHERE id = $1 AND client_id = $2 AND expires >= $3 RETURNING body";
        let row = query_opt(&client, sql, &[&hash.0, &client_id, &now]).await?;
        body(&row.ok_or(StoreError::NotFound)?, 0, "oauth_pushed")
    }

    async fn put_session(&self, id: &SecretHash, session: &Session) -> Result<(), StoreError> {
        self.quota.admit()?;
        let client = self.client().await?;
        let sql = "INSERT INTO oauth_sessions (id, expires, body) VALUES ($1, $2, $3) \
                   ON CONFLICT (id) DO UPDATE SET expires = EXCLUDED.expires, body = EXCLUDED.body";
        exec(&client, sql, &[&id.0, &session.expires, &json(session)]).await?;
        Ok(())
    }

    async fn session(&self, id: &SecretHash) -> Result<Session, StoreError> {
        let client = self.client().await?;
        let row = query_opt(&client, "SELECT body FROM oauth_sessions WHERE id = $1", &[&id.0]).await?;
        body(&row.ok_or(StoreError::NotFound)?, 0, "oauth_sessions")
    }

    async fn put_code(&self, hash: &SecretHash, code: &AuthorizationCode) -> Result<(), StoreError> {
        self.quota.admit()?;
        let client = self.client().await?;
        let sql = "INSERT INTO oauth_codes (hash, redeemed_grant, expires, body) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (hash) DO UPDATE SET redeemed_grant = EXCLUDED.redeemed_grant, \
                   expires = EXCLUDED.expires, body = EXCLUDED.body";
        exec(&client, sql, &[&hash.0, &code.redeemed, &code.expires, &json(code)]).await?;
        Ok(())
    }

    async fn code(&self, hash: &SecretHash) -> Result<AuthorizationCode, StoreError> {
        let client = self.client().await?;
        let row = query_opt(&client, "SELECT body FROM oauth_codes WHERE hash = $1", &[&hash.0]).await?;
        body(&row.ok_or(StoreError::NotFound)?, 0, "oauth_codes")
    }

    /// The statement Hydra lacks (fosite #778): `UPDATE … WHERE redeemed_grant IS NULL`
    /// decides; racers wait on its row lock, then find it redeemed. A replay revokes the
    /// grant the first redemption made, in the same transaction.
    async fn redeem_code(
        &self,
        hash: &SecretHash,
        grant: &Grant,
        refresh: Option<(&SecretHash, &RefreshToken)>,
    ) -> Result<CodeRedemption, StoreError> {
        transaction!(self, |tx| {
            let redeem = "UPDATE oauth_codes SET redeemed_grant = $2, \
                          body = jsonb_set(body, '{redeemed}', to_jsonb($2::text)) \
                          WHERE hash = $1 AND redeemed_grant IS NULL RETURNING body";
            if let Some(row) = query_opt(&tx, redeem, &[&hash.0, &grant.id]).await? {
                let code: AuthorizationCode = body(&row, 0, "oauth_codes")?;
                insert_grant(&tx, grant, refresh).await?;
                return Ok(CodeRedemption::Redeemed(Box::new(code)));
            }
            let first = query_opt(&tx, "SELECT redeemed_grant FROM oauth_codes WHERE hash = $1", &[&hash.0]).await?;
            let previous: Option<String> = first.ok_or(StoreError::NotFound)?.try_get(0).map_err(StoreError::from)?;
            let previous = previous.ok_or(StoreError::Conflict)?;
            let revoke = "UPDATE oauth_grants SET version = version + 1, \
                          body = jsonb_set(body, '{revoked}', 'true') WHERE id = $1";
            exec(&tx, revoke, &[&previous]).await?;
            Ok(CodeRedemption::Replayed { grant: previous })
        })
    }

    async fn create_grant(
        &self,
        grant: &Grant,
        refresh: Option<(&SecretHash, &RefreshToken)>,
    ) -> Result<(), StoreError> {
        self.quota.admit()?;
        transaction!(self, |tx| insert_grant(&tx, grant, refresh).await)
    }

    async fn grant(&self, id: &str) -> Result<Grant, StoreError> {
        let client = self.client().await?;
        let row = query_opt(&client, "SELECT body FROM oauth_grants WHERE id = $1", &[&id]).await?;
        body(&row.ok_or(StoreError::NotFound)?, 0, "oauth_grants")
    }

    async fn user_grants(&self, sub: &str) -> Result<Vec<Grant>, StoreError> {
        let client = self.client().await?;
        let sql = "SELECT body FROM oauth_grants WHERE body->>'sub' = $1 AND body->'revoked' = 'false' \
                   ORDER BY (body->>'created')::bigint, id";
        let rows = query(&client, sql, &[&sub]).await?;
        rows.iter().map(|r| body(r, 0, "oauth_grants")).collect()
    }

    async fn user_sessions(&self, sub: &str, now: UnixTime) -> Result<Vec<(SecretHash, Session)>, StoreError> {
        let client = self.client().await?;
        let sql = "SELECT id, body FROM oauth_sessions WHERE body->>'sub' = $1 AND expires > $2 \
                   ORDER BY (body->>'auth_time')::bigint, id";
        let rows = query(&client, sql, &[&sub, &now]).await?;
        rows.iter().map(|r| Ok((SecretHash(r.get(0)), body(r, 1, "oauth_sessions")?))).collect()
    }

    async fn user_devices(&self, user: &str) -> Result<Vec<Device>, StoreError> {
        let client = self.client().await?;
        let sql = "SELECT body FROM devices WHERE user_name = $1 ORDER BY (body->>'created')::bigint, id";
        let rows = query(&client, sql, &[&user]).await?;
        rows.iter().map(|r| body(r, 0, "devices")).collect()
    }

    async fn delete_device(&self, id: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        match exec(&client, "DELETE FROM devices WHERE id = $1", &[&id]).await? {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }

    async fn revoke_grant(&self, id: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        let sql = "UPDATE oauth_grants SET version = version + 1, body = jsonb_set(body, '{revoked}', 'true') \
                   WHERE id = $1 AND body->'revoked' = 'false'";
        if exec(&client, sql, &[&id]).await? == 1 {
            return Ok(());
        }
        match query_opt(&client, "SELECT 1 FROM oauth_grants WHERE id = $1", &[&id]).await? {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound),
        }
    }

    async fn refresh_token(&self, hash: &SecretHash) -> Result<Versioned<RefreshToken>, StoreError> {
        let client = self.client().await?;
        let row = query_opt(&client, "SELECT version, body FROM oauth_refresh WHERE hash = $1", &[&hash.0]).await?;
        versioned(&row.ok_or(StoreError::NotFound)?, "oauth_refresh")
    }

    async fn create_device(&self, device: &Device) -> Result<(), StoreError> {
        self.quota.admit()?;
        let client = self.client().await?;
        let sql = "INSERT INTO devices (id, user_name, body) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
        match exec(&client, sql, &[&device.id, &device.user, &json(device)]).await? {
            1 => Ok(()),
            _ => Err(StoreError::AlreadyExists),
        }
    }

    async fn device(&self, id: &str) -> Result<Device, StoreError> {
        let client = self.client().await?;
        let row = query_opt(&client, "SELECT body FROM devices WHERE id = $1", &[&id]).await?;
        body(&row.ok_or(StoreError::NotFound)?, 0, "devices")
    }

    async fn create_client(&self, c: &RegisteredClient) -> Result<(), StoreError> {
        self.quota.admit()?;
        let client = self.client().await?;
        let sql = "INSERT INTO oauth_clients (client_id, version, body) VALUES ($1, 1, $2) ON CONFLICT DO NOTHING";
        match exec(&client, sql, &[&c.client_id, &json(c)]).await? {
            1 => Ok(()),
            _ => Err(StoreError::AlreadyExists),
        }
    }

    async fn registered_client(&self, client_id: &str) -> Result<Versioned<RegisteredClient>, StoreError> {
        let client = self.client().await?;
        let sql = "SELECT version, body FROM oauth_clients WHERE client_id = $1";
        versioned(&query_opt(&client, sql, &[&client_id]).await?.ok_or(StoreError::NotFound)?, "oauth_clients")
    }

    async fn update_client(&self, c: &RegisteredClient, seen: Version) -> Result<Version, StoreError> {
        let client = self.client().await?;
        let sql = "UPDATE oauth_clients SET version = version + 1, body = $2 WHERE client_id = $1 AND version = $3";
        match exec(&client, sql, &[&c.client_id, &json(c), &db_version(seen)]).await? {
            1 => Ok(seen.next()),
            _ => Err(lost(&client, CLIENT_EXISTS, &c.client_id).await),
        }
    }

    async fn delete_client(&self, client_id: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        match exec(&client, "DELETE FROM oauth_clients WHERE client_id = $1", &[&client_id]).await? {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }

    async fn create_device_authorization(&self, hash: &SecretHash, d: &DeviceAuthorization) -> Result<(), StoreError> {
        self.quota.admit()?;
        let client = self.client().await?;
        let sql = "INSERT INTO device_authorizations (hash, user_code, expires, version, body) \
                   VALUES ($1, $2, $3, 1, $4) ON CONFLICT DO NOTHING";
        match exec(&client, sql, &[&hash.0, &d.user_code, &d.expires, &json(d)]).await? {
            1 => Ok(()),
            _ => Err(StoreError::AlreadyExists),
        }
    }

    async fn device_authorization(&self, hash: &SecretHash) -> Result<Versioned<DeviceAuthorization>, StoreError> {
        let client = self.client().await?;
        let sql = "SELECT version, body FROM device_authorizations WHERE hash = $1";
        versioned(&query_opt(&client, sql, &[&hash.0]).await?.ok_or(StoreError::NotFound)?, "device_authorizations")
    }

    async fn device_authorization_by_user_code(
        &self,
        user_code: &str,
    ) -> Result<(SecretHash, Versioned<DeviceAuthorization>), StoreError> {
        let client = self.client().await?;
        let sql = "SELECT version, body, hash FROM device_authorizations WHERE user_code = $1";
        let row = query_opt(&client, sql, &[&user_code]).await?.ok_or(StoreError::NotFound)?;
        Ok((SecretHash(text(&row, 2, "device_authorizations")?), versioned(&row, "device_authorizations")?))
    }

    async fn update_device_authorization(
        &self,
        hash: &SecretHash,
        d: &DeviceAuthorization,
        seen: Version,
    ) -> Result<Version, StoreError> {
        let client = self.client().await?;
        let sql = "UPDATE device_authorizations SET user_code = $2, expires = $3, version = version + 1, body = $4 \
                   WHERE hash = $1 AND version = $5";
        let params: [&(dyn ToSql + Sync); 5] = [&hash.0, &d.user_code, &d.expires, &json(d), &db_version(seen)];
        match exec(&client, sql, &params).await? {
            1 => Ok(seen.next()),
            _ => Err(lost(&client, DEVICE_AUTHZ_EXISTS, &hash.0).await),
        }
    }

    /// One transaction whose first statement locks the device authorization: racers
    /// wait, then find it redeemed (`Conflict`).
    async fn redeem_device_authorization(
        &self,
        hash: &SecretHash,
        seen: Version,
        grant: &Grant,
        refresh: Option<(&SecretHash, &RefreshToken)>,
    ) -> Result<(), StoreError> {
        transaction!(self, |tx| {
            let sql = "SELECT version, body FROM device_authorizations WHERE hash = $1 FOR UPDATE";
            let row = query_opt(&tx, sql, &[&hash.0]).await?.ok_or(StoreError::NotFound)?;
            let mut d: Versioned<DeviceAuthorization> = versioned(&row, "device_authorizations")?;
            if d.version != seen || !matches!(d.value.status, DeviceStatus::Approved { .. }) {
                return Err(StoreError::Conflict);
            }
            d.value.status = DeviceStatus::Redeemed;
            let sql = "UPDATE device_authorizations SET version = version + 1, body = $2 WHERE hash = $1";
            exec(&tx, sql, &[&hash.0, &json(&d.value)]).await?;
            insert_grant(&tx, grant, refresh).await
        })
    }

    async fn purge_expired_oauth(&self, now: UnixTime, batch: usize) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        let mut purged = 0;
        for sql in [
            "DELETE FROM oauth_codes WHERE hash IN (SELECT hash FROM oauth_codes WHERE expires < $1 LIMIT $2)",
            "DELETE FROM oauth_sessions WHERE id IN (SELECT id FROM oauth_sessions WHERE expires < $1 LIMIT $2)",
            "DELETE FROM oauth_pending WHERE id IN (SELECT id FROM oauth_pending WHERE expires < $1 LIMIT $2)",
            "DELETE FROM oauth_pushed WHERE id IN (SELECT id FROM oauth_pushed WHERE expires < $1 LIMIT $2)",
            "DELETE FROM device_authorizations WHERE hash IN \
             (SELECT hash FROM device_authorizations WHERE expires < $1 LIMIT $2)",
        ] {
            purged += exec(&client, sql, &[&now, &batch]).await?;
        }
        Ok(usize::try_from(purged).unwrap_or(usize::MAX))
    }

    /// One transaction whose first statement decides: `old` is marked used only if it
    /// is still at `seen` and unused.
    async fn rotate_refresh_token(
        &self,
        old: &SecretHash,
        seen: Version,
        new: (&SecretHash, &RefreshToken),
    ) -> Result<(), StoreError> {
        transaction!(self, |tx| {
            let sql = "UPDATE oauth_refresh SET version = version + 1, body = jsonb_set(body, '{used}', 'true') \
                       WHERE hash = $1 AND version = $2 AND body->'used' = 'false'";
            if exec(&tx, sql, &[&old.0, &db_version(seen)]).await? != 1 {
                return Err(lost(&tx, REFRESH_EXISTS, &old.0).await);
            }
            let sql = "INSERT INTO oauth_refresh (hash, grant_id, version, body) VALUES ($1, $2, 1, $3)";
            exec(&tx, sql, &[&new.0.0, &new.1.grant, &json(new.1)]).await?;
            Ok(())
        })
    }
}
