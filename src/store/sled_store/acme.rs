//! ACME accounts, orders and authorizations in sled.

use super::*;

#[async_trait]
impl AcmeStore for SledStore {
    async fn create_account(&self, account: &Account) -> Result<AccountCreation, StoreError> {
        self.inner.quota.admit()?;
        let i = &self.inner;
        let bytes = encode(account, Version::FIRST)?;
        if account.eab_kid.is_none() {
            // No sled transaction on this path (see `update_authorization`): the record
            // first, then its key index by compare-and-swap, so a reader that finds the
            // key finds the account; losing the race (or a crash in between) leaves only
            // an unreachable record, which is removed here.
            let id = account.id.0.as_bytes();
            insert_new(&i.accounts, id, bytes)?;
            return match i.account_keys.compare_and_swap(account.jkt.0.as_bytes(), None as Option<&[u8]>, Some(id)) {
                Ok(Ok(())) => {
                    self.durable().await?;
                    Ok(AccountCreation::Created)
                }
                Ok(Err(cas)) => {
                    i.accounts.remove(id).map_err(backend)?;
                    let owner = cas.current.ok_or(StoreError::Conflict)?;
                    let existing = Self::get(&i.accounts, "accounts", &owner)?;
                    // Its creator may not have flushed yet; it is not reported before it is.
                    self.durable().await?;
                    Ok(AccountCreation::Existing(existing))
                }
                Err(e) => Err(backend(e)),
            };
        }
        let existing = (&i.accounts, &i.account_keys, &i.eab_kids)
            .transaction(|(accounts, keys, eab_kids)| {
                if let Some(id) = keys.get(account.jkt.0.as_bytes())? {
                    return match accounts.get(&id)? {
                        Some(b) => match decode::<Account>("accounts", &b) {
                            Ok(a) => Ok(Some(a)),
                            Err(e) => abort(e),
                        },
                        None => abort(StoreError::Corrupt { tree: "account_keys", message: "dangling key".into() }),
                    };
                }
                if let Some(kid) = &account.eab_kid {
                    if eab_kids.get(kid.as_bytes())?.is_some() {
                        return abort(StoreError::AlreadyExists);
                    }
                    eab_kids.insert(kid.as_bytes(), account.id.0.as_bytes())?;
                }
                accounts.insert(account.id.0.as_bytes(), bytes.as_slice())?;
                keys.insert(account.jkt.0.as_bytes(), account.id.0.as_bytes())?;
                Ok(None)
            })
            .map_err(tx_err)?;
        self.durable().await?;
        Ok(existing.map_or(AccountCreation::Created, AccountCreation::Existing))
    }

    async fn account(&self, id: &AccountId) -> Result<Versioned<Account>, StoreError> {
        Self::get(&self.inner.accounts, "accounts", id.0.as_bytes())
    }

    async fn account_by_key(&self, jkt: &Jkt) -> Result<Versioned<Account>, StoreError> {
        let id = self.inner.account_keys.get(jkt.0.as_bytes()).map_err(backend)?.ok_or(StoreError::NotFound)?;
        Self::get(&self.inner.accounts, "accounts", &id)
    }

    async fn update_account(&self, account: &Account, seen: Version) -> Result<Version, StoreError> {
        let i = &self.inner;
        let bytes = encode(account, seen.next())?;
        (&i.accounts, &i.account_keys)
            .transaction(|(accounts, keys)| {
                let key = account.id.0.as_bytes();
                let Some(old) = accounts.get(key)? else {
                    return abort(StoreError::NotFound);
                };
                let old = match decode::<Account>("accounts", &old) {
                    Ok(o) => o,
                    Err(e) => return abort(e),
                };
                if old.version != seen {
                    return abort(StoreError::Conflict);
                }
                if old.value.jkt != account.jkt {
                    if keys.get(account.jkt.0.as_bytes())?.is_some() {
                        return abort(StoreError::AlreadyExists);
                    }
                    keys.remove(old.value.jkt.0.as_bytes())?;
                    keys.insert(account.jkt.0.as_bytes(), key)?;
                }
                accounts.insert(key, bytes.as_slice())?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.durable().await?;
        Ok(seen.next())
    }

    async fn create_order(
        &self,
        order: &Order,
        new_authzs: &[Authorization],
        replaces: Option<(&IssuedCertificate, Version)>,
    ) -> Result<(), StoreError> {
        self.inner.quota.admit()?;
        let i = &self.inner;
        let order_bytes = encode(order, Version::FIRST)?;
        let authz_bytes = new_authzs
            .iter()
            .map(|a| {
                let mut index = authz_index_prefix(&a.account, &a.identifier);
                index.extend_from_slice(a.id.0.as_bytes());
                Ok((a.id.0.as_bytes(), encode(a, Version::FIRST)?, index))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let cert_bytes = replaces
            .map(|(c, seen)| Ok::<_, StoreError>((c.serial.0.as_bytes(), seen, encode(c, seen.next())?)))
            .transpose()?;
        let index = order_index_key(&order.account, order.created, &order.id);
        let open_key = open_order_key(&order.account, &order.id);
        if cert_bytes.is_none() {
            // No sled transaction on this path (see `update_authorization`): the
            // authorizations and their index first, then the order, then its index, so
            // a reader that finds an order finds all it names. A crash in between leaves
            // only records nothing acknowledged points to (pending authorizations of the
            // account, which a later order may reuse as RFC 8555 §7.4 allows). A failure
            // removes what this call wrote.
            let mut written = 0;
            let result = authz_bytes
                .iter()
                .try_for_each(|(id, bytes, authz_index)| {
                    insert_new(&i.authzs, id, bytes.clone())?;
                    written += 1;
                    i.account_authzs.insert(authz_index.as_slice(), &[]).map_err(backend).map(drop)
                })
                .and_then(|()| insert_new(&i.orders, order.id.0.as_bytes(), order_bytes));
            if let Err(e) = result {
                for (id, _, authz_index) in &authz_bytes[..written] {
                    i.account_authzs.remove(authz_index.as_slice()).map_err(backend)?;
                    i.authzs.remove(id).map_err(backend)?;
                }
                return Err(e);
            }
            i.account_orders.insert(index, &[]).map_err(backend)?;
            i.open_orders.insert(open_key.as_slice(), &order.expires.to_be_bytes()).map_err(backend)?;
            return self.durable().await;
        }
        (&i.orders, &i.account_orders, &i.authzs, &i.certs, &i.account_authzs, &i.open_orders)
            .transaction(|(orders, account_orders, authzs, certs, account_authzs, open_orders)| {
                if orders.get(order.id.0.as_bytes())?.is_some() {
                    return abort(StoreError::AlreadyExists);
                }
                if let Some((serial, seen, bytes)) = &cert_bytes {
                    if tx_version(certs, "certs", serial)? != *seen {
                        return abort(StoreError::Conflict);
                    }
                    certs.insert(*serial, bytes.as_slice())?;
                }
                for (id, bytes, index) in &authz_bytes {
                    if authzs.get(id)?.is_some() {
                        return abort(StoreError::AlreadyExists);
                    }
                    authzs.insert(*id, bytes.as_slice())?;
                    account_authzs.insert(index.as_slice(), &[])?;
                }
                orders.insert(order.id.0.as_bytes(), order_bytes.as_slice())?;
                account_orders.insert(index.as_slice(), &[])?;
                open_orders.insert(open_key.as_slice(), &order.expires.to_be_bytes())?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.durable().await
    }

    async fn order(&self, id: &OrderId) -> Result<Versioned<Order>, StoreError> {
        Self::get(&self.inner.orders, "orders", id.0.as_bytes())
    }

    async fn account_orders(
        &self,
        account: &AccountId,
        from: Option<(UnixTime, &OrderId)>,
        per_page: usize,
    ) -> Result<(Vec<OrderId>, Option<OrderId>), StoreError> {
        let mut prefix = account.0.as_bytes().to_vec();
        prefix.push(0);
        let start = match from {
            Some((created, id)) => order_index_key(account, created, id),
            None => prefix.clone(),
        };
        let mut ids = Vec::new();
        for entry in self.inner.account_orders.range(start..) {
            let (key, _) = entry.map_err(backend)?;
            if !key.starts_with(&prefix) {
                break;
            }
            let id = OrderId(String::from_utf8_lossy(key.get(prefix.len() + 8..).unwrap_or_default()).into_owned());
            if ids.len() == per_page {
                return Ok((ids, Some(id)));
            }
            ids.push(id);
        }
        Ok((ids, None))
    }

    async fn authorization(&self, id: &AuthzId) -> Result<Versioned<Authorization>, StoreError> {
        Self::get(&self.inner.authzs, "authzs", id.0.as_bytes())
    }

    async fn account_authorizations(
        &self,
        account: &AccountId,
        identifier: &Identifier,
    ) -> Result<Vec<AuthzId>, StoreError> {
        let prefix = authz_index_prefix(account, identifier);
        self.inner
            .account_authzs
            .scan_prefix(&prefix)
            .keys()
            .map(|k| {
                let k = k.map_err(backend)?;
                Ok(AuthzId(String::from_utf8_lossy(k.get(prefix.len()..).unwrap_or_default()).into_owned()))
            })
            .collect()
    }

    async fn update_authorization(&self, authz: &Authorization, seen: Version) -> Result<Version, StoreError> {
        let i = &self.inner;
        let bytes = encode(authz, seen.next())?;
        let processing = authz.challenges.iter().any(|c| c.status == ChallengeStatus::Processing);
        // No sled transaction (each takes sled's global lock exclusively, stalling every
        // read; this runs twice per issuance): a compare-and-swap on the authorization,
        // and the `validating` index kept as a resumption hint around it. The index entry
        // holds the version that set it; it is written before an authorization says
        // processing and cleared after it stops (only if no later version set it), so a
        // crash or a race leaves at most a stale entry, which `authorizations_processing`
        // drops, and never a processing authorization without one.
        let key = authz.id.0.as_bytes();
        if processing {
            i.validating.insert(key, &seen.next().0.to_be_bytes()).map_err(backend)?;
        }
        replace_versioned(&i.authzs, "authzs", key, seen, bytes)?;
        if !processing
            && let Some(set_by) = i.validating.get(key).map_err(backend)?
            && index_version(&set_by) <= seen.next()
        {
            // Lost only to a later writer, whose entry then stays.
            let _ = i.validating.compare_and_swap(key, Some(set_by), None as Option<&[u8]>).map_err(backend)?;
        }
        if !processing {
            i.leases.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        }
        self.durable().await?;
        Ok(seen.next())
    }

    async fn authorizations_processing(&self) -> Result<Vec<AuthzId>, StoreError> {
        let i = &self.inner;
        let mut ids = Vec::new();
        for entry in i.validating.iter() {
            let (key, set_by) = entry.map_err(backend)?;
            let id = AuthzId(String::from_utf8_lossy(&key).into_owned());
            let processing = match Self::get::<Authorization>(&i.authzs, "authzs", &key) {
                Ok(a) => a.value.challenges.iter().any(|c| c.status == ChallengeStatus::Processing),
                Err(StoreError::NotFound) => false,
                Err(e) => return Err(e),
            };
            if processing {
                ids.push(id);
            } else {
                // A stale hint (see update_authorization): drop it unless rewritten meanwhile.
                let _ = i.validating.compare_and_swap(&key, Some(set_by), None as Option<&[u8]>).map_err(backend)?;
            }
        }
        Ok(ids)
    }

    async fn finalize_order(&self, order: &Order, seen: Version, cert: &IssuedCertificate) -> Result<(), StoreError> {
        self.inner.quota.admit()?;
        let i = &self.inner;
        // No sled transaction (see `update_authorization`): the certificate first, then
        // the order by compare-and-swap. A lost race removes the certificate again; a
        // crash in between leaves a signed certificate on record that no order names,
        // and the order still ready to finalize.
        let serial = cert.serial.0.as_bytes();
        insert_new(&i.certs, serial, encode(cert, Version::FIRST)?)?;
        if let Err(e) = replace_versioned(&i.orders, "orders", order.id.0.as_bytes(), seen, encode(order, seen.next())?)
        {
            i.certs.remove(serial).map_err(backend)?;
            return Err(e);
        }
        i.open_orders.remove(open_order_key(&order.account, &order.id)).map_err(backend)?;
        self.durable().await
    }

    async fn claim_validation(
        &self,
        id: &AuthzId,
        owner: &str,
        now: UnixTime,
        until: UnixTime,
    ) -> Result<bool, StoreError> {
        let key = id.0.as_bytes();
        if self.inner.validating.get(key).map_err(backend)?.is_none() {
            return Ok(false);
        }
        let mut leases = self.inner.leases.lock().unwrap_or_else(|p| p.into_inner());
        match leases.get(key) {
            Some((holder, expires)) if holder != owner && *expires >= now => Ok(false),
            _ => {
                leases.insert(key.to_vec(), (owner.to_owned(), until));
                Ok(true)
            }
        }
    }

    async fn claim_expired_validations(
        &self,
        owner: &str,
        now: UnixTime,
        until: UnixTime,
        max: usize,
    ) -> Result<Vec<AuthzId>, StoreError> {
        let processing = self.authorizations_processing().await?;
        let mut leases = self.inner.leases.lock().unwrap_or_else(|p| p.into_inner());
        leases.retain(|k, _| processing.iter().any(|id| id.0.as_bytes() == k.as_slice()));
        let mut taken = Vec::new();
        for id in processing {
            if taken.len() == max {
                break;
            }
            let key = id.0.as_bytes();
            if leases.get(key).is_none_or(|(_, expires)| *expires < now) {
                leases.insert(key.to_vec(), (owner.to_owned(), until));
                taken.push(id);
            }
        }
        Ok(taken)
    }

    async fn open_orders(&self, account: &AccountId, now: UnixTime, max: usize) -> Result<Vec<OrderId>, StoreError> {
        let mut prefix = account.0.as_bytes().to_vec();
        prefix.push(0);
        let mut ids = Vec::new();
        for entry in self.inner.open_orders.scan_prefix(&prefix) {
            let (key, expires) = entry.map_err(backend)?;
            if ids.len() == max {
                break;
            }
            if stored_time(&expires) > now {
                ids.push(OrderId(String::from_utf8_lossy(key.get(prefix.len()..).unwrap_or_default()).into_owned()));
            }
        }
        Ok(ids)
    }
}

/// The `open_orders` key of an order.
fn open_order_key(account: &AccountId, order: &OrderId) -> Vec<u8> {
    let mut key = account.0.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(order.0.as_bytes());
    key
}
