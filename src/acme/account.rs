//! Accounts (RFC 8555 §7.3): creation, lookup, update, deactivation, orders list.

use super::{Acme, AcmeError, KeyRule, Reply, SignedRequest, Signer, found, wire};
use crate::clock::{UnixTime, rfc3339};
use crate::model::oauth::{ResourceChallenge, Subject};
use crate::model::{Account, AccountId, AccountStatus, OrderId};
use crate::store::{AccountCreation, StoreError};

/// Checks contact URLs (§7.3): `mailto:` only, one plain address each, no `hfields`.
pub(super) fn check_contacts(contacts: &[String]) -> Result<(), AcmeError> {
    if contacts.len() > 10 {
        return Err(AcmeError::InvalidContact("at most 10 contacts".into()));
    }
    for c in contacts {
        // Wire's E2EI client sends the placeholder `anonymous@anonymous.invalid`, with no
        // scheme: an address under `.invalid` (RFC 2606 §2) can never be mailed, so it is
        // accepted as the "no contact" it means.
        if !c.contains(':')
            && c.ends_with(".invalid")
            && c.len() <= 254
            && c.split('@').count() == 2
            && !c.chars().any(char::is_control)
        {
            continue;
        }
        let Some(addr) = c.strip_prefix("mailto:") else {
            return Err(AcmeError::UnsupportedContact(format!(
                "only mailto: contacts are supported, not `{}`",
                c.chars().take(40).collect::<String>()
            )));
        };
        let valid = addr.len() <= 254
            && !addr.contains(['?', ',', ' ', '<', '>'])
            && !addr.chars().any(char::is_control)
            && addr.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && !domain.is_empty() && !domain.contains('@') && domain.contains('.')
            });
        if !valid {
            return Err(AcmeError::InvalidContact(format!(
                "`{}` is not a valid mailto: address",
                c.chars().take(60).collect::<String>()
            )));
        }
    }
    Ok(())
}

impl Acme {
    fn account_json(&self, a: &Account) -> wire::Account {
        wire::Account {
            status: a.status,
            contact: a.contact.clone(),
            terms_of_service_agreed: a.terms_of_service_agreed,
            orders: self.links.account_orders(&a.id),
            key: a.key.to_value(),
            created_at: rfc3339(a.created),
        }
    }

    /// One of `limits.new_accounts_per_minute_per_address` for `from`'s address group.
    async fn take_new_account_rate(&self, from: std::net::IpAddr) -> Result<(), AcmeError> {
        let per_minute = self.new_accounts_per_minute;
        if per_minute == 0 {
            return Ok(());
        }
        let key = format!("new-account:{}", crate::model::address_group(from));
        match self.store.take_rate(&key, per_minute, crate::clock::wall_ms()).await? {
            Ok(()) => Ok(()),
            Err(retry_after) => Err(AcmeError::RateLimited {
                detail: format!(
                    "at most {per_minute} new accounts per minute from one address \
                     (limits.new_accounts_per_minute_per_address)"
                ),
                retry_after,
            }),
        }
    }

    /// newAccount (§7.3): creates an account for the JWS key, or returns the existing
    /// one (200 + `Location`). Durable before a 201 is sent. New accounts from one
    /// address (`from`, IPv6 by its /48) are limited per minute.
    pub async fn new_account(
        &self,
        req: SignedRequest,
        who: Option<&Subject>,
        from: std::net::IpAddr,
        now: UnixTime,
    ) -> Result<Reply<wire::Account>, AcmeError> {
        let v = self.verify(&req, KeyRule::Jwk).await?;
        self.check_token(who)?;
        let Signer::Key(key) = &v.signer else {
            return Err(AcmeError::Malformed("newAccount requires a `jwk`".into()));
        };
        let p: wire::NewAccountPayload = if v.is_post_as_get() { Default::default() } else { v.json()? };
        let jkt = key.thumbprint();
        let existing = |a: crate::store::Versioned<Account>| -> Result<Reply<wire::Account>, AcmeError> {
            if a.value.status != AccountStatus::Valid {
                return Err(AcmeError::AccountDeactivated("the account for this key is deactivated".into()));
            }
            if let (Some(bound), Some(who)) = (&a.value.subject, who)
                && *bound != who.sub
            {
                return Err(AcmeError::Unauthorized("this account belongs to another subject".into()));
            }
            Ok(Reply::ok(self.account_json(&a.value)).at(self.links.account(&a.value.id)))
        };
        match self.store.account_by_key(&jkt).await {
            Ok(a) => return existing(a),
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        if p.only_return_existing == Some(true) {
            return Err(AcmeError::AccountDoesNotExist("no account exists for this key".into()));
        }
        let eab_kid = match &p.external_account_binding {
            // A reusable kid is checked but not recorded, so it binds no account.
            Some(binding) => {
                Some(self.check_binding(binding, key, &req.url)?).filter(|_| !self.config.eab.reusable_keys)
            }
            None if self.config.eab.required => {
                return Err(AcmeError::ExternalAccountRequired(
                    "this server requires an external account binding (externalAccountBinding)".into(),
                ));
            }
            None => None,
        };
        let contact = p.contact.unwrap_or_default();
        check_contacts(&contact)?;
        let agreed = p.terms_of_service_agreed == Some(true);
        if !self.config.terms_of_service.is_empty() && !agreed {
            return Err(AcmeError::UserActionRequired(format!(
                "agree to the terms of service at {} (termsOfServiceAgreed: true)",
                self.config.terms_of_service
            )));
        }
        self.take_new_account_rate(from).await?;
        let account = Account {
            id: AccountId::random(),
            status: AccountStatus::Valid,
            key: key.clone(),
            jkt,
            contact,
            terms_of_service_agreed: agreed,
            created: now,
            eab_kid,
            subject: who.map(|w| w.sub.clone()),
        };
        let created = match self.store.create_account(&account).await {
            Err(StoreError::AlreadyExists) => {
                return Err(AcmeError::Unauthorized(
                    "this external account key id is already bound to an account".into(),
                ));
            }
            other => other?,
        };
        match created {
            AccountCreation::Created => {
                let mut reply = Reply::ok(self.account_json(&account)).at(self.links.account(&account.id));
                reply.created = true;
                Ok(reply)
            }
            AccountCreation::Existing(a) => existing(a),
        }
    }

    /// The ACME API as a protected resource (`acme.require_token`): a valid access token
    /// with scope `acme` is required (RFC 6750 §3.1).
    pub(crate) fn check_token(&self, who: Option<&Subject>) -> Result<(), AcmeError> {
        if !self.config.require_token {
            return Ok(());
        }
        match who {
            None => Err(AcmeError::Unauthenticated {
                detail: "this server requires an access token with scope acme (Authorization: Bearer or DPoP)".into(),
                challenge: ResourceChallenge::Scope("acme"),
                dpop_nonce: None,
            }),
            Some(w) if !w.has_scope("acme") => {
                Err(AcmeError::Unauthorized("the access token lacks the acme scope".into()))
            }
            Some(_) => Ok(()),
        }
    }

    /// Checks an external account binding (§7.3.4) and returns its key id:
    /// 1. a flattened JWS with an HMAC `alg` (HS256/384/512) and no `nonce`;
    /// 2. a `kid` configured in `acme.eab.keys` (else `unauthorized`);
    /// 3. the same `url` as the outer JWS (else `unauthorized`);
    /// 4. a valid MAC under that key (else `unauthorized`);
    /// 5. a payload that is the account's own key (else `malformed`).
    fn check_binding(
        &self,
        binding: &serde_json::Value,
        key: &crate::jose::Jwk,
        url: &str,
    ) -> Result<String, AcmeError> {
        use crate::jose::{JoseError, MacJws};
        // 1.
        let jws = MacJws::parse(binding, self.json_depth).map_err(|e| match e {
            JoseError::UnsupportedAlgorithm(_) => {
                AcmeError::BadSignatureAlgorithm(format!("externalAccountBinding: {e}; use HS256, HS384 or HS512"))
            }
            other => AcmeError::Malformed(format!("externalAccountBinding: {other}")),
        })?;
        if jws.has_nonce {
            return Err(AcmeError::Malformed("externalAccountBinding must not carry a nonce".into()));
        }
        // 2.
        let kid = jws.kid.clone().ok_or_else(|| AcmeError::Malformed("externalAccountBinding needs a `kid`".into()))?;
        let secret = self
            .config
            .eab
            .keys
            .get(&kid)
            .and_then(|k| crate::jose::b64_decode(k).ok())
            .ok_or_else(|| AcmeError::Unauthorized("unknown external account key id".into()))?;
        // 3.
        if jws.url.as_deref() != Some(url) {
            return Err(AcmeError::Unauthorized("externalAccountBinding `url` must equal the request URL".into()));
        }
        // 4.
        jws.verify(&secret).map_err(|_| AcmeError::Unauthorized("externalAccountBinding MAC is invalid".into()))?;
        // 5.
        let bound: serde_json::Value = crate::jose::json::from_slice(&jws.payload, self.json_depth)
            .map_err(|_| AcmeError::Malformed("externalAccountBinding payload is not a JWK".into()))?;
        let bound = crate::jose::Jwk::from_value(&bound)
            .map_err(|e| AcmeError::Malformed(format!("externalAccountBinding payload: {e}")))?;
        if bound.thumbprint() != key.thumbprint() {
            return Err(AcmeError::Malformed("externalAccountBinding payload is not the account key".into()));
        }
        Ok(kid)
    }

    /// The account resource (§7.3.2, §7.3.6): POST-as-GET fetches; a payload updates
    /// `contact` or deactivates.
    pub async fn account(&self, req: SignedRequest, id: &AccountId) -> Result<Reply<wire::Account>, AcmeError> {
        let v = self.verify(&req, KeyRule::Kid).await?;
        let mut account = v.account()?.clone();
        if &account.value.id != id {
            return Err(AcmeError::Unauthorized("the `kid` does not match this account URL".into()));
        }
        if !v.is_post_as_get() {
            let p: wire::AccountUpdatePayload = v.json()?;
            let mut changed = false;
            if let Some(contact) = p.contact {
                check_contacts(&contact)?;
                account.value.contact = contact;
                changed = true;
            }
            match p.status.as_deref() {
                None | Some("valid") => {}
                Some("deactivated") => {
                    account.value.status = AccountStatus::Deactivated;
                    changed = true;
                }
                Some(other) => {
                    return Err(AcmeError::Malformed(format!(
                        "account status cannot be set to `{}`",
                        other.chars().take(20).collect::<String>()
                    )));
                }
            }
            if changed {
                account.version = match self.store.update_account(&account.value, account.version).await {
                    Ok(v) => v,
                    Err(StoreError::Conflict) => {
                        return Err(AcmeError::Malformed("the account changed concurrently; retry".into()));
                    }
                    Err(e) => return Err(e.into()),
                };
            }
        }
        Ok(Reply::ok(self.account_json(&account.value)).at(self.links.account(id)))
    }

    /// keyChange (§7.3.5): the account named by the outer `kid` moves to the new key in
    /// the inner JWS.
    /// 1. the outer JWS verifies with the account's current key;
    /// 2. its payload is a JWS with a `jwk` (the new key), no `kid`, no `nonce`, and the
    ///    same `url` as the outer one;
    /// 3. the inner JWS verifies with the new key;
    /// 4. its payload names this account and its current key as `oldKey`;
    /// 5. the new key differs from the old one and belongs to no other account (else 409
    ///    with that account's URL in `Location`);
    /// 6. the change is durable before `200` is sent.
    pub async fn key_change(&self, req: SignedRequest) -> Result<Reply<wire::Account>, AcmeError> {
        // 1.
        let v = self.verify(&req, KeyRule::Kid).await?;
        let mut account = v.account()?.clone();
        // 2.
        let inner = crate::jose::FlattenedJws::parse(&v.payload, self.json_depth).map_err(|e| match e {
            crate::jose::JoseError::UnsupportedAlgorithm(_) => {
                AcmeError::BadSignatureAlgorithm(format!("inner JWS: {e}"))
            }
            crate::jose::JoseError::BadKey(_) | crate::jose::JoseError::PrivateKey => {
                AcmeError::BadPublicKey(format!("inner JWS: {e}"))
            }
            other => AcmeError::Malformed(format!("inner JWS: {other}")),
        })?;
        let new_key = inner
            .header
            .jwk
            .clone()
            .ok_or_else(|| AcmeError::Malformed("the inner JWS must carry the new key as `jwk`".into()))?;
        if inner.header.kid.is_some() || inner.header.nonce.is_some() {
            return Err(AcmeError::Malformed("the inner JWS must have no `kid` and no `nonce`".into()));
        }
        if inner.header.url.as_deref() != Some(req.url.as_str()) {
            return Err(AcmeError::Malformed("the inner JWS `url` must equal the outer one".into()));
        }
        // 3.
        inner.verify(&new_key).map_err(|_| AcmeError::Malformed("the inner JWS signature is invalid".into()))?;
        // 4.
        let p: wire::KeyChangePayload = crate::jose::json::from_slice(&inner.payload, self.json_depth)
            .map_err(|e| AcmeError::Malformed(format!("invalid keyChange payload: {e}")))?;
        if p.account != self.links.account(&account.value.id) {
            return Err(AcmeError::Malformed("`account` does not name the signing account".into()));
        }
        let old =
            crate::jose::Jwk::from_value(&p.old_key).map_err(|e| AcmeError::Malformed(format!("`oldKey`: {e}")))?;
        if old.thumbprint() != account.value.jkt {
            return Err(AcmeError::Malformed("`oldKey` is not the account's current key".into()));
        }
        // 5.
        let jkt = new_key.thumbprint();
        if jkt == account.value.jkt {
            return Err(AcmeError::Malformed("the new key is the current key".into()));
        }
        let taken = |id: &AccountId| AcmeError::Conflict {
            detail: "the new key already belongs to an account".into(),
            location: self.links.account(id),
        };
        match self.store.account_by_key(&jkt).await {
            Ok(other) => return Err(taken(&other.value.id)),
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        // 6.
        account.value.key = new_key;
        account.value.jkt = jkt.clone();
        match self.store.update_account(&account.value, account.version).await {
            Ok(_) => Ok(Reply::ok(self.account_json(&account.value)).at(self.links.account(&account.value.id))),
            Err(StoreError::AlreadyExists) => match self.store.account_by_key(&jkt).await {
                Ok(other) => Err(taken(&other.value.id)),
                Err(e) => Err(e.into()),
            },
            Err(StoreError::Conflict) => Err(AcmeError::Malformed("the account changed concurrently; retry".into())),
            Err(e) => Err(e.into()),
        }
    }

    /// The account's orders (§7.1.2.1), paginated with `Link: rel="next"`: the next
    /// page's URL names its first order (`?cursor=`), so a page is found by position and
    /// costs the same however deep it is (an offset would walk every order before it).
    pub async fn account_orders(
        &self,
        req: SignedRequest,
        id: &AccountId,
        cursor: Option<&str>,
    ) -> Result<Reply<wire::OrdersList>, AcmeError> {
        let v = self.verify(&req, KeyRule::Kid).await?;
        v.require_post_as_get()?;
        if &v.account()?.value.id != id {
            return Err(AcmeError::Unauthorized("these orders belong to another account".into()));
        }
        let first = cursor.map(|c| OrderId(c.to_owned()));
        let from = match &first {
            Some(first) => Some((self.order_created(id, first).await?, first)),
            None => None,
        };
        let (ids, next) = found(self.store.account_orders(id, from, self.config.orders_per_page).await, "account")?;
        let mut reply = Reply::ok(wire::OrdersList { orders: ids.iter().map(|o| self.links.order(o)).collect() });
        if let Some(next) = next {
            reply = reply.link(format!("{}?cursor={}", self.links.account_orders(id), next.0), "next");
        }
        Ok(reply)
    }

    /// When `order`, a page cursor, was created: `malformed` unless it is an order of
    /// `account`.
    async fn order_created(&self, account: &AccountId, order: &OrderId) -> Result<UnixTime, AcmeError> {
        match self.store.order(order).await {
            Ok(o) if &o.value.account == account => Ok(o.value.created),
            Ok(_) | Err(StoreError::NotFound) => {
                Err(AcmeError::Malformed("the cursor names no order of this account".into()))
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_follow_rfc8555() {
        check_contacts(&["mailto:a@example.com".into()]).unwrap();
        assert!(matches!(check_contacts(&["tel:+1".into()]), Err(AcmeError::UnsupportedContact(_))));
        // Wire's client's placeholder; other scheme-less addresses stay refused.
        check_contacts(&["anonymous@anonymous.invalid".into()]).unwrap();
        assert!(check_contacts(&["a@example.com".into()]).is_err());
        assert!(check_contacts(&["a@b@c.invalid".into()]).is_err());
        for bad in ["mailto:", "mailto:a", "mailto:a@b", "mailto:a@b.c?subject=x", "mailto:a@b.c,d@e.f"] {
            assert!(matches!(check_contacts(&[bad.into()]), Err(AcmeError::InvalidContact(_))), "{bad}");
        }
    }
}
