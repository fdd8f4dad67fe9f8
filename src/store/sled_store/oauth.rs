//! The authorization server's records in sled.

use super::*;

#[async_trait]
impl OAuthStore for SledStore {
    async fn oauth_keys(&self) -> Result<Vec<OAuthKey>, StoreError> {
        let mut keys = self
            .inner
            .oauth
            .keys
            .iter()
            .values()
            .map(|v| decode::<OAuthKey>("oauth_keys", &v.map_err(backend)?).map(|v| v.value))
            .collect::<Result<Vec<_>, _>>()?;
        keys.sort_by_key(|k| k.created);
        Ok(keys)
    }

    async fn rotate_oauth_key(&self, key: &OAuthKey) -> Result<(), StoreError> {
        let bytes = encode(key, Version::FIRST)?;
        let now = key.created;
        self.inner.oauth.keys.insert(key.kid.as_bytes(), bytes).map_err(backend)?;
        // Retire the others (outside the insert: a crash between leaves two active keys,
        // which is harmless: the newest one signs).
        for entry in self.inner.oauth.keys.iter() {
            let (k, v) = entry.map_err(backend)?;
            let mut old = decode::<OAuthKey>("oauth_keys", &v)?.value;
            if old.kid != key.kid && old.retired.is_none() {
                old.retired = Some(now);
                self.inner.oauth.keys.insert(k, encode(&old, Version::FIRST)?).map_err(backend)?;
            }
        }
        self.durable().await
    }

    async fn put_pending_authorization(&self, id: &str, p: &PendingAuthorization) -> Result<(), StoreError> {
        self.inner.quota.admit()?;
        self.inner.oauth.pending.insert(id.as_bytes(), encode(p, Version::FIRST)?).map_err(backend)?;
        self.durable().await
    }

    async fn pending_authorization(&self, id: &str) -> Result<PendingAuthorization, StoreError> {
        Self::get(&self.inner.oauth.pending, "oauth_pending", id.as_bytes()).map(|v| v.value)
    }

    async fn take_pending_authorization(&self, id: &str) -> Result<PendingAuthorization, StoreError> {
        let old = self.inner.oauth.pending.remove(id.as_bytes()).map_err(backend)?.ok_or(StoreError::NotFound)?;
        self.durable().await?;
        decode("oauth_pending", &old).map(|v| v.value)
    }

    async fn put_pushed_authorization(&self, hash: &SecretHash, p: &PushedAuthorization) -> Result<(), StoreError> {
        self.inner.quota.admit()?;
        self.inner.oauth.pushed.insert(hash.0.as_bytes(), encode(p, Version::FIRST)?).map_err(backend)?;
        self.durable().await
    }

    /// Read, check, then remove only if still the bytes read (compare-and-swap): of
    /// racing takers one wins.
    async fn take_pushed_authorization(
        &self,
        hash: &SecretHash,
        client_id: &str,
        now: UnixTime,
    ) -> Result<PushedAuthorization, StoreError> {
        let tree = &self.inner.oauth.pushed;
        let old = tree.get(hash.0.as_bytes()).map_err(backend)?.ok_or(StoreError::NotFound)?;
        let p: PushedAuthorization = decode("oauth_pushed", &old)?.value;
        if p.client_id != client_id || p.expires < now {
            return Err(StoreError::NotFound);
        }
        match tree.compare_and_swap(hash.0.as_bytes(), Some(old), None as Option<&[u8]>).map_err(backend)? {
            Ok(()) => {
                self.durable().await?;
                Ok(p)
            }
            Err(_) => Err(StoreError::NotFound),
        }
    }

    async fn put_session(&self, id: &SecretHash, session: &Session) -> Result<(), StoreError> {
        self.inner.quota.admit()?;
        self.inner.oauth.sessions.insert(id.0.as_bytes(), encode(session, Version::FIRST)?).map_err(backend)?;
        self.durable().await
    }

    async fn session(&self, id: &SecretHash) -> Result<Session, StoreError> {
        Self::get(&self.inner.oauth.sessions, "oauth_sessions", id.0.as_bytes()).map(|v| v.value)
    }

    async fn put_code(&self, hash: &SecretHash, code: &AuthorizationCode) -> Result<(), StoreError> {
        self.inner.quota.admit()?;
        self.inner.oauth.codes.insert(hash.0.as_bytes(), encode(code, Version::FIRST)?).map_err(backend)?;
        self.durable().await
    }

    async fn code(&self, hash: &SecretHash) -> Result<AuthorizationCode, StoreError> {
        Self::get(&self.inner.oauth.codes, "oauth_codes", hash.0.as_bytes()).map(|v| v.value)
    }

    async fn redeem_code(
        &self,
        hash: &SecretHash,
        grant: &Grant,
        refresh: Option<(&SecretHash, &RefreshToken)>,
    ) -> Result<CodeRedemption, StoreError> {
        let o = &self.inner.oauth;
        let write = GrantWrite::new(grant, refresh)?;
        let result = (&o.codes, &o.grants, &o.refresh)
            .transaction(|(codes, grants, refresh_tree)| {
                let Some(bytes) = codes.get(hash.0.as_bytes())? else {
                    return abort(StoreError::NotFound);
                };
                let mut code = match decode::<AuthorizationCode>("oauth_codes", &bytes) {
                    Ok(c) => c.value,
                    Err(e) => return abort(e),
                };
                if let Some(previous) = &code.redeemed {
                    // Reuse: revoke what the first redemption issued.
                    if let Some(g) = grants.get(previous.as_bytes())? {
                        match decode::<Grant>("oauth_grants", &g) {
                            Ok(mut g) => {
                                g.value.revoked = true;
                                match encode(&g.value, g.version.next()) {
                                    Ok(b) => grants.insert(previous.as_bytes(), b)?,
                                    Err(e) => return abort(e),
                                };
                            }
                            Err(e) => return abort(e),
                        }
                    }
                    return Ok(CodeRedemption::Replayed { grant: previous.clone() });
                }
                code.redeemed = Some(grant.id.clone());
                match encode(&code, Version::FIRST.next()) {
                    Ok(b) => codes.insert(hash.0.as_bytes(), b)?,
                    Err(e) => return abort(e),
                };
                write.insert(grants, refresh_tree)?;
                Ok(CodeRedemption::Redeemed(Box::new(code)))
            })
            .map_err(tx_err)?;
        self.durable().await?;
        Ok(result)
    }

    async fn create_grant(
        &self,
        grant: &Grant,
        refresh: Option<(&SecretHash, &RefreshToken)>,
    ) -> Result<(), StoreError> {
        self.inner.quota.admit()?;
        let o = &self.inner.oauth;
        let write = GrantWrite::new(grant, refresh)?;
        (&o.grants, &o.refresh)
            .transaction(|(grants, refresh_tree)| {
                write.insert(grants, refresh_tree)?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.durable().await
    }

    async fn grant(&self, id: &str) -> Result<Grant, StoreError> {
        Self::get(&self.inner.oauth.grants, "oauth_grants", id.as_bytes()).map(|v| v.value)
    }

    /// A scan of the grants: fine for the users of one embedded instance.
    async fn user_grants(&self, sub: &str) -> Result<Vec<Grant>, StoreError> {
        let mut grants = Vec::new();
        for entry in self.inner.oauth.grants.iter() {
            let (_, bytes) = entry.map_err(backend)?;
            let g: Grant = decode("oauth_grants", &bytes)?.value;
            if g.sub == sub && !g.revoked {
                grants.push(g);
            }
        }
        grants.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(grants)
    }

    async fn user_sessions(&self, sub: &str, now: UnixTime) -> Result<Vec<(SecretHash, Session)>, StoreError> {
        let mut sessions = Vec::new();
        for entry in self.inner.oauth.sessions.iter() {
            let (key, bytes) = entry.map_err(backend)?;
            let s: Session = decode("oauth_sessions", &bytes)?.value;
            if s.sub == sub && s.expires > now {
                sessions.push((SecretHash(String::from_utf8_lossy(&key).into_owned()), s));
            }
        }
        sessions.sort_by(|a, b| (a.1.auth_time, &a.0.0).cmp(&(b.1.auth_time, &b.0.0)));
        Ok(sessions)
    }

    async fn user_devices(&self, user: &str) -> Result<Vec<Device>, StoreError> {
        let mut devices = Vec::new();
        for entry in self.inner.oauth.user_devices.iter() {
            let (_, bytes) = entry.map_err(backend)?;
            let d: Device = decode("user_devices", &bytes)?.value;
            if d.user == user {
                devices.push(d);
            }
        }
        devices.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(devices)
    }

    async fn delete_device(&self, id: &str) -> Result<(), StoreError> {
        self.inner.oauth.user_devices.remove(id.as_bytes()).map_err(backend)?.ok_or(StoreError::NotFound)?;
        self.durable().await
    }

    async fn revoke_grant(&self, id: &str) -> Result<(), StoreError> {
        let grants = &self.inner.oauth.grants;
        loop {
            let current = Self::get::<Grant>(grants, "oauth_grants", id.as_bytes())?;
            if current.value.revoked {
                return Ok(());
            }
            let mut g = current.value.clone();
            g.revoked = true;
            let old = encode(&current.value, current.version)?;
            let new = encode(&g, current.version.next())?;
            match grants.compare_and_swap(id.as_bytes(), Some(old), Some(new)).map_err(backend)? {
                Ok(()) => return self.durable().await,
                Err(_) => continue,
            }
        }
    }

    async fn refresh_token(&self, hash: &SecretHash) -> Result<Versioned<RefreshToken>, StoreError> {
        Self::get(&self.inner.oauth.refresh, "oauth_refresh", hash.0.as_bytes())
    }

    async fn rotate_refresh_token(
        &self,
        old: &SecretHash,
        seen: Version,
        new: (&SecretHash, &RefreshToken),
    ) -> Result<(), StoreError> {
        let new_bytes = encode(new.1, Version::FIRST)?;
        self.inner
            .oauth
            .refresh
            .transaction(|refresh| {
                let Some(bytes) = refresh.get(old.0.as_bytes())? else {
                    return abort(StoreError::NotFound);
                };
                let mut current = match decode::<RefreshToken>("oauth_refresh", &bytes) {
                    Ok(c) => c,
                    Err(e) => return abort(e),
                };
                if current.version != seen || current.value.used {
                    return abort(StoreError::Conflict);
                }
                current.value.used = true;
                match encode(&current.value, seen.next()) {
                    Ok(b) => refresh.insert(old.0.as_bytes(), b)?,
                    Err(e) => return abort(e),
                };
                refresh.insert(new.0.0.as_bytes(), new_bytes.as_slice())?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.durable().await
    }

    async fn purge_expired_oauth(&self, now: i64, batch: usize) -> Result<usize, StoreError> {
        let o = &self.inner.oauth;
        let mut purged = purge_tree::<AuthorizationCode>(&o.codes, "oauth_codes", batch, |c| c.expires < now)?.len();
        purged += purge_tree::<Session>(&o.sessions, "oauth_sessions", batch, |s| s.expires < now)?.len();
        purged += purge_tree::<PendingAuthorization>(&o.pending, "oauth_pending", batch, |p| p.expires < now)?.len();
        purged += purge_tree::<PushedAuthorization>(&o.pushed, "oauth_pushed", batch, |p| p.expires < now)?.len();
        let devices = purge_tree::<DeviceAuthorization>(&o.devices, "oauth_devices", batch, |d| d.expires < now)?;
        for d in &devices {
            o.user_codes.remove(d.user_code.as_bytes()).map_err(backend)?;
        }
        purged += devices.len();
        if purged > 0 {
            self.durable().await?;
        }
        Ok(purged)
    }

    async fn create_device_authorization(&self, hash: &SecretHash, d: &DeviceAuthorization) -> Result<(), StoreError> {
        self.inner.quota.admit()?;
        let o = &self.inner.oauth;
        let bytes = encode(d, Version::FIRST)?;
        (&o.devices, &o.user_codes)
            .transaction(|(devices, user_codes)| {
                if user_codes.get(d.user_code.as_bytes())?.is_some() {
                    return abort(StoreError::AlreadyExists);
                }
                user_codes.insert(d.user_code.as_bytes(), hash.0.as_bytes())?;
                devices.insert(hash.0.as_bytes(), bytes.as_slice())?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.durable().await
    }

    async fn device_authorization(&self, hash: &SecretHash) -> Result<Versioned<DeviceAuthorization>, StoreError> {
        Self::get(&self.inner.oauth.devices, "oauth_devices", hash.0.as_bytes())
    }

    async fn device_authorization_by_user_code(
        &self,
        user_code: &str,
    ) -> Result<(SecretHash, Versioned<DeviceAuthorization>), StoreError> {
        let hash =
            self.inner.oauth.user_codes.get(user_code.as_bytes()).map_err(backend)?.ok_or(StoreError::NotFound)?;
        let hash = SecretHash(String::from_utf8_lossy(&hash).into_owned());
        let d = self.device_authorization(&hash).await?;
        Ok((hash, d))
    }

    async fn update_device_authorization(
        &self,
        hash: &SecretHash,
        d: &DeviceAuthorization,
        seen: Version,
    ) -> Result<Version, StoreError> {
        let bytes = encode(d, seen.next())?;
        self.inner
            .oauth
            .devices
            .transaction(|devices| {
                if tx_version(devices, "oauth_devices", hash.0.as_bytes())? != seen {
                    return abort(StoreError::Conflict);
                }
                devices.insert(hash.0.as_bytes(), bytes.as_slice())?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.durable().await?;
        Ok(seen.next())
    }

    async fn redeem_device_authorization(
        &self,
        hash: &SecretHash,
        seen: Version,
        grant: &Grant,
        refresh: Option<(&SecretHash, &RefreshToken)>,
    ) -> Result<(), StoreError> {
        let o = &self.inner.oauth;
        let write = GrantWrite::new(grant, refresh)?;
        (&o.devices, &o.grants, &o.refresh)
            .transaction(|(devices, grants, refresh_tree)| {
                let Some(bytes) = devices.get(hash.0.as_bytes())? else {
                    return abort(StoreError::NotFound);
                };
                let mut d = match decode::<DeviceAuthorization>("oauth_devices", &bytes) {
                    Ok(d) => d,
                    Err(e) => return abort(e),
                };
                if d.version != seen || !matches!(d.value.status, DeviceStatus::Approved { .. }) {
                    return abort(StoreError::Conflict);
                }
                d.value.status = DeviceStatus::Redeemed;
                match encode(&d.value, seen.next()) {
                    Ok(b) => devices.insert(hash.0.as_bytes(), b)?,
                    Err(e) => return abort(e),
                };
                write.insert(grants, refresh_tree)?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.durable().await
    }

    async fn create_client(&self, client: &RegisteredClient) -> Result<(), StoreError> {
        self.inner.quota.admit()?;
        let bytes = encode(client, Version::FIRST)?;
        let prev = self
            .inner
            .oauth
            .clients
            .compare_and_swap(client.client_id.as_bytes(), None as Option<&[u8]>, Some(bytes))
            .map_err(backend)?;
        if prev.is_err() {
            return Err(StoreError::AlreadyExists);
        }
        self.durable().await
    }

    async fn registered_client(&self, client_id: &str) -> Result<Versioned<RegisteredClient>, StoreError> {
        Self::get(&self.inner.oauth.clients, "oauth_clients", client_id.as_bytes())
    }

    async fn update_client(&self, client: &RegisteredClient, seen: Version) -> Result<Version, StoreError> {
        let bytes = encode(client, seen.next())?;
        self.inner
            .oauth
            .clients
            .transaction(|clients| {
                if tx_version(clients, "oauth_clients", client.client_id.as_bytes())? != seen {
                    return abort(StoreError::Conflict);
                }
                clients.insert(client.client_id.as_bytes(), bytes.as_slice())?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.durable().await?;
        Ok(seen.next())
    }

    async fn delete_client(&self, client_id: &str) -> Result<(), StoreError> {
        self.inner.oauth.clients.remove(client_id.as_bytes()).map_err(backend)?.ok_or(StoreError::NotFound)?;
        self.durable().await
    }

    async fn create_device(&self, device: &Device) -> Result<(), StoreError> {
        self.inner.quota.admit()?;
        let prev = self
            .inner
            .oauth
            .user_devices
            .compare_and_swap(device.id.as_bytes(), None as Option<&[u8]>, Some(encode(device, Version::FIRST)?))
            .map_err(backend)?;
        if prev.is_err() {
            return Err(StoreError::AlreadyExists);
        }
        self.durable().await
    }

    async fn device(&self, id: &str) -> Result<Device, StoreError> {
        Self::get(&self.inner.oauth.user_devices, "user_devices", id.as_bytes()).map(|v| v.value)
    }
}
