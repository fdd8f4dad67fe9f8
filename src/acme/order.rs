//! Orders (RFC 8555 §7.4): creating one (identifiers checked, authorizations reused or
//! made, ARI `replaces`), fetching one, and the status of orders and authorizations
//! (§7.1.6), derived from what is stored.

use super::wire::OrderStatus;
use super::*;
use crate::clock::{self, UnixTime};
use crate::model::{Authorization, AuthzStatus, Identifier, Order, OrderPhase};

/// An authorization's status at `now`: pending and valid authorizations expire (§7.1.6).
pub fn authz_status(a: &Authorization, now: UnixTime) -> AuthzStatus {
    match a.status {
        AuthzStatus::Pending | AuthzStatus::Valid if now >= a.expires => AuthzStatus::Expired,
        s => s,
    }
}

/// An order's status at `now`, from its finalization phase and its authorizations:
/// `invalid` if it expired unfinalized or any authorization failed, `ready` when all are
/// valid, `pending` otherwise (§7.1.6).
pub fn order_status(order: &Order, authzs: &[Authorization], now: UnixTime) -> OrderStatus {
    match &order.phase {
        OrderPhase::Valid { .. } => OrderStatus::Valid,
        OrderPhase::Invalid { .. } => OrderStatus::Invalid,
        OrderPhase::Open => {
            if now >= order.expires {
                return OrderStatus::Invalid;
            }
            let statuses: Vec<AuthzStatus> = authzs.iter().map(|a| authz_status(a, now)).collect();
            if statuses.len() != order.authorizations.len() {
                return OrderStatus::Invalid;
            }
            if statuses.iter().any(|s| !matches!(s, AuthzStatus::Pending | AuthzStatus::Valid)) {
                OrderStatus::Invalid
            } else if statuses.iter().all(|s| *s == AuthzStatus::Valid) {
                OrderStatus::Ready
            } else {
                OrderStatus::Pending
            }
        }
    }
}

impl Acme {
    /// Creates an order and one authorization per identifier (§7.4). Durable before
    /// this returns.
    pub async fn new_order(
        &self,
        req: SignedRequest,
        who: Option<&crate::model::oauth::Subject>,
        now: UnixTime,
    ) -> Result<Reply<wire::Order>, AcmeError> {
        let v = self.verify(&req, KeyRule::Kid).await?;
        let account = &v.account()?.value;
        self.check_token(who)?;
        if let (Some(bound), Some(who)) = (&account.subject, who)
            && *bound != who.sub
        {
            return Err(AcmeError::Unauthorized("the access token's subject does not own this account".into()));
        }
        let per_minute = self.config.new_orders_per_minute;
        if per_minute > 0
            && let Err(retry_after) =
                self.store.take_rate(&format!("new-order:{}", account.id), per_minute, clock::wall_ms()).await?
        {
            return Err(AcmeError::RateLimited {
                detail: format!(
                    "at most {} new orders per minute per account (acme.new_orders_per_minute)",
                    per_minute
                ),
                retry_after,
            });
        }
        let p: wire::NewOrderPayload = v.json()?;
        let profile = self.order_profile(&p)?;
        let identifiers = self.order_identifiers(&p)?;
        let identity = self.order_identity(&identifiers)?;
        let (not_before, not_after) = self.order_validity(&p, identity.is_some(), &profile, now)?;
        let expires = clock::after(now, self.config.order_lifetime_secs);
        let (authzs, authz_ids) = self.make_authorizations(&account.id, &identifiers, &identity, expires, now).await?;
        self.check_pending(&account.id, authzs.len(), now).await?;
        let order = Order {
            id: OrderId::random(),
            account: account.id.clone(),
            identifiers,
            authorizations: authz_ids,
            expires,
            not_before,
            not_after,
            phase: OrderPhase::Open,
            created: now,
            replaces: None,
            replaces_cert_id: None,
            profile: Some(profile),
        };
        let mut order = order;
        let replaced = match &p.replaces {
            Some(id) => Some(self.replacement(id, &order, now).await?),
            None => None,
        };
        if let Some(r) = &replaced {
            order.replaces = Some(r.value.serial.clone());
            order.replaces_cert_id = p.replaces.clone();
        }
        match self.store.create_order(&order, &authzs, replaced.as_ref().map(|r| (&r.value, r.version))).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                return Err(AcmeError::AlreadyReplaced("another order replaced this certificate first".into()));
            }
            Err(e) => return Err(e.into()),
        }
        let all = self.order_authzs(&order).await?;
        let mut reply = Reply::ok(self.order_json(&order, &all, now)).at(self.links.order(&order.id));
        reply.created = true;
        Ok(reply)
    }

    /// The order's profile (draft-aaron-acme-profiles): the one named, if offered, or
    /// the default.
    fn order_profile(&self, p: &wire::NewOrderPayload) -> Result<String, AcmeError> {
        Ok(match &p.profile {
            Some(name) if self.config.profiles.contains_key(name) => name.clone(),
            Some(name) => {
                return Err(AcmeError::InvalidProfile(format!(
                    "profile `{}` is not offered (see meta.profiles)",
                    name.chars().take(40).collect::<String>()
                )));
            }
            None => self.config.default_profile.clone(),
        })
    }

    /// The order's identifiers, parsed, sorted and deduplicated; refused all at once with
    /// one subproblem per refused identifier (§6.7.1): unparseable or unsupported, outside
    /// a local-PKI CA's name constraints, or on the block list.
    fn order_identifiers(&self, p: &wire::NewOrderPayload) -> Result<Vec<Identifier>, AcmeError> {
        if p.identifiers.is_empty() {
            return Err(AcmeError::Malformed("an order needs at least one identifier".into()));
        }
        if p.identifiers.len() > self.config.max_identifiers {
            return Err(AcmeError::RejectedIdentifier(format!(
                "an order may carry at most {} identifiers",
                self.config.max_identifiers
            )));
        }
        // §6.7.1: every refused identifier is named in its own subproblem.
        let mut refused = Vec::new();
        let mut identifiers = Vec::with_capacity(p.identifiers.len());
        for payload in &p.identifiers {
            match parse_identifier(payload) {
                Ok(i) => identifiers.push(i),
                Err(e) => refused.push(((payload.kind.clone(), payload.value.clone()), e)),
            }
        }
        identifiers.sort();
        identifiers.dedup();
        // A local-PKI CA (`idca init --local-pki`) issues only for local names.
        let constraints = self.ca.constraints();
        for i in &identifiers {
            let outside = match i.kind {
                IdentifierKind::Dns => !constraints.permits_dns(&i.value),
                IdentifierKind::Ip => i.value.parse().is_ok_and(|ip| !constraints.permits_ip(&ip)),
                _ => false,
            };
            let why = if outside {
                format!("`{}` is outside this CA's name constraints (permitted: {})", i.value, constraints.describe())
            } else if is_blocked(&self.config.blocked_domains, &i.value) {
                format!("`{}` is on this server's block list (acme.blocked_domains)", i.value)
            } else {
                continue;
            };
            refused.push(((i.kind.as_str().to_owned(), i.value.clone()), AcmeError::RejectedIdentifier(why)));
        }
        if !refused.is_empty() {
            return Err(AcmeError::for_identifiers(refused));
        }
        Ok(identifiers)
    }

    /// A Wire identity order's device and user (`wireapp-device`, `wireapp-user`), checked
    /// against the intermediate's URI name constraints; `None` for other orders.
    fn order_identity(
        &self,
        identifiers: &[Identifier],
    ) -> Result<Option<(identity::WireIdentity, identity::WireIdentity)>, AcmeError> {
        let identity = identity::check_identity_order(identifiers)?;
        // A name-constrained intermediate (ca.identity_uri_domains) can only issue for its
        // domains: refuse others now rather than issue a certificate that cannot verify.
        let permitted = self.ca.permitted_uri_hosts();
        if let Some((device, _)) = &identity
            && !permitted.is_empty()
            && !permitted.iter().any(|h| h.eq_ignore_ascii_case(&device.domain))
        {
            return Err(AcmeError::RejectedIdentifier(format!(
                "this CA's intermediate is name-constrained to {}; `{}` is not among them",
                permitted.join(", "),
                device.domain
            )));
        }
        Ok(identity)
    }

    /// The validity a profile gives its certificates, in seconds (90 days for a profile
    /// this server does not have: orders name only configured ones).
    pub(super) fn profile_validity(&self, profile: &str) -> i64 {
        self.config.profiles.get(profile).map_or(90 * 86_400, |p| clock::span(p.validity_secs))
    }

    /// `notBefore` / `notAfter` (§7.1.3): RFC 3339 if given, in the future and in order,
    /// unbounded as Pebble has them but within what a certificate can encode (years
    /// 0000-9999 in UTC, RFC 5280 §4.1.2.5), with the profile's validity added where
    /// `notAfter` is left to it; identity orders always carry both (Wire clients read them).
    fn order_validity(
        &self,
        p: &wire::NewOrderPayload,
        identity: bool,
        profile: &str,
        now: UnixTime,
    ) -> Result<(Option<UnixTime>, Option<UnixTime>), AcmeError> {
        let parse_time = |s: &Option<String>, field: &str| -> Result<Option<UnixTime>, AcmeError> {
            s.as_deref()
                .map(|t| {
                    clock::parse_rfc3339(t)
                        .ok_or_else(|| AcmeError::Malformed(format!("`{field}` is not an RFC 3339 date-time")))
                })
                .transpose()
        };
        let mut not_before = parse_time(&p.not_before, "notBefore")?;
        let mut not_after = parse_time(&p.not_after, "notAfter")?;
        let validity = self.profile_validity(profile);
        if identity {
            // Wire clients read notBefore and notAfter from every identity order.
            let nb = *not_before.get_or_insert(now - 60);
            not_after.get_or_insert(nb.saturating_add(validity));
        }
        let last = not_after.unwrap_or_else(|| not_before.unwrap_or(now).saturating_add(validity));
        if not_before.is_some_and(|t| !clock::CERTIFICATE_TIMES.contains(&t))
            || !clock::CERTIFICATE_TIMES.contains(&last)
        {
            return Err(AcmeError::Malformed(
                "`notBefore` and `notAfter` (or `notBefore` plus the profile's validity) must fall within the years \
                 0000 to 9999 in UTC, which a certificate can encode (RFC 5280 §4.1.2.5)"
                    .into(),
            ));
        }
        if let Some(na) = not_after
            && na <= not_before.unwrap_or(now).max(now)
        {
            return Err(AcmeError::Malformed("`notAfter` must be in the future and after `notBefore`".into()));
        }
        Ok((not_before, not_after))
    }

    /// One authorization per identifier (reusing a valid one when
    /// `acme.testing.authz_reuse_percent` says so), each with the challenges its
    /// identifier allows (Pebble's makeAuthorizations / makeChallenges).
    async fn make_authorizations(
        &self,
        account: &AccountId,
        identifiers: &[Identifier],
        identity: &Option<(identity::WireIdentity, identity::WireIdentity)>,
        expires: UnixTime,
        now: UnixTime,
    ) -> Result<(Vec<Authorization>, Vec<AuthzId>), AcmeError> {
        let mut authzs = Vec::with_capacity(identifiers.len());
        let mut authz_ids = Vec::with_capacity(identifiers.len());
        for ident in identifiers {
            if percent_chance(self.config.testing.authz_reuse_percent)
                && let Some(reused) = self.reusable_authz(account, ident, now).await?
            {
                authz_ids.push(reused);
                continue;
            }
            let wildcard = ident.kind == IdentifierKind::Dns && ident.value.starts_with("*.");
            let authz = Authorization {
                id: AuthzId::random(),
                account: account.clone(),
                identifier: ident.clone(),
                status: AuthzStatus::Pending,
                expires,
                wildcard,
                challenges: challenge_types(ident.kind, wildcard)
                    .iter()
                    .map(|kind| Challenge {
                        id: ChallengeId::random(),
                        kind: *kind,
                        token: crate::model::random_token() + &crate::model::random_token(),
                        status: ChallengeStatus::Pending,
                        validated: None,
                        error: None,
                        target: self.challenge_target(*kind, identity),
                    })
                    .collect(),
            };
            authz_ids.push(authz.id.clone());
            authzs.push(authz);
        }
        Ok((authzs, authz_ids))
    }

    /// The `target` of a Wire challenge: the device's access-token URL, or the issuer.
    pub(super) fn challenge_target(
        &self,
        kind: ChallengeType,
        identity: &Option<(identity::WireIdentity, identity::WireIdentity)>,
    ) -> Option<String> {
        match (kind, identity) {
            (ChallengeType::WireDpop01, Some((device, _))) => {
                let id = device.device_id.as_deref().unwrap_or_default();
                Some(if self.dpop_target.is_empty() {
                    format!("{}/clients/{id}/access-token", self.links.base())
                } else {
                    self.dpop_target.replace("{device}", id)
                })
            }
            (ChallengeType::WireOidc01, Some(_)) => Some(self.identity_issuer.clone()),
            _ => None,
        }
    }

    /// A valid authorization of `account` for `identifier` that stays valid for at least
    /// the order's lifetime, if one exists (authorization reuse, RFC 8555 §7.1.3).
    pub(super) async fn reusable_authz(
        &self,
        account: &AccountId,
        identifier: &Identifier,
        now: UnixTime,
    ) -> Result<Option<AuthzId>, AcmeError> {
        let margin = clock::span(self.config.order_lifetime_secs);
        for id in self.store.account_authorizations(account, identifier).await? {
            let a = self.store.authorization(&id).await?.value;
            if authz_status(&a, now + margin) == AuthzStatus::Valid {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Checks a `replaces` CertID (RFC 9773 §5) for a new order and returns the
    /// certificate marked as replaced by it: the account's own certificate, sharing an
    /// identifier with the order, not already replaced by a live order.
    pub(super) async fn replacement(
        &self,
        cert_id: &str,
        order: &Order,
        now: UnixTime,
    ) -> Result<Versioned<crate::model::IssuedCertificate>, AcmeError> {
        let mut cert = self.by_cert_id(cert_id).await?;
        let (Some(account), Some(parent)) = (&cert.value.account, &cert.value.order) else {
            return Err(AcmeError::Unauthorized("`replaces` names a certificate not issued through ACME".into()));
        };
        if account != &order.account {
            return Err(AcmeError::Unauthorized("`replaces` names another account's certificate".into()));
        }
        let parent = found(self.store.order(parent).await, "order")?.value;
        if !parent.identifiers.iter().any(|i| order.identifiers.contains(i)) {
            return Err(AcmeError::Malformed("the order shares no identifier with the certificate it replaces".into()));
        }
        if let Some(other) = &cert.value.replaced_by {
            let other = found(self.store.order(other).await, "order")?.value;
            let authzs = self.order_authzs(&other).await?;
            if order_status(&other, &authzs, now) != OrderStatus::Invalid {
                return Err(AcmeError::AlreadyReplaced(format!(
                    "order {} already replaces this certificate",
                    self.links.order(&other.id)
                )));
            }
        }
        cert.value.replaced_by = Some(order.id.clone());
        Ok(cert)
    }

    /// An order (§7.1.3), fetched with POST-as-GET by its account.
    pub async fn order(
        &self,
        req: SignedRequest,
        id: &OrderId,
        now: UnixTime,
    ) -> Result<Reply<wire::Order>, AcmeError> {
        let v = self.verify(&req, KeyRule::Kid).await?;
        v.require_post_as_get()?;
        let order = found(self.store.order(id).await, "order")?.value;
        owned_by(&order.account, &v, "order")?;
        let authzs = self.order_authzs(&order).await?;
        Ok(Reply::ok(self.order_json(&order, &authzs, now)))
    }

    pub(super) async fn order_authzs(&self, order: &Order) -> Result<Vec<Authorization>, AcmeError> {
        let mut out = Vec::with_capacity(order.authorizations.len());
        for id in &order.authorizations {
            out.push(found(self.store.authorization(id).await, "authorization")?.value);
        }
        Ok(out)
    }

    pub(super) fn order_json(&self, order: &Order, authzs: &[Authorization], now: UnixTime) -> wire::Order {
        let (certificate, error) = match &order.phase {
            OrderPhase::Valid { certificate } => (Some(self.links.certificate(certificate)), None),
            OrderPhase::Invalid { error } => (None, Some(error.clone())),
            OrderPhase::Open => (None, None),
        };
        wire::Order {
            status: order_status(order, authzs, now),
            expires: rfc3339(order.expires),
            identifiers: order.identifiers.clone(),
            not_before: order.not_before.map(rfc3339),
            not_after: order.not_after.map(rfc3339),
            error,
            authorizations: order.authorizations.iter().map(|a| self.links.authz(a)).collect(),
            finalize: self.links.finalize(&order.id),
            certificate,
            profile: order.profile.clone(),
            replaces: order.replaces_cert_id.clone(),
        }
    }
}

/// Whether `name` is a blocked domain or under one.
pub(super) fn is_blocked(blocked: &[String], name: &str) -> bool {
    let name = name.trim_start_matches("*.");
    blocked.iter().any(|b| {
        let b = b.trim_end_matches('.').to_ascii_lowercase();
        name == b || name.strip_suffix(&b).is_some_and(|rest| rest.ends_with('.'))
    })
}

/// The challenges offered for an identifier (RFC 8555 §8, RFC 8737, RFC 8738 §7): a
/// wildcard only through dns-01, an IP address not through dns-01.
pub(super) fn challenge_types(kind: IdentifierKind, wildcard: bool) -> &'static [ChallengeType] {
    match (kind, wildcard) {
        (IdentifierKind::Dns, true) => &[ChallengeType::Dns01],
        (IdentifierKind::Dns, false) => &[ChallengeType::Http01, ChallengeType::Dns01, ChallengeType::TlsAlpn01],
        (IdentifierKind::Ip, _) => &[ChallengeType::Http01, ChallengeType::TlsAlpn01],
        (IdentifierKind::WireappDevice, _) => &[ChallengeType::WireDpop01],
        (IdentifierKind::WireappUser, _) => &[ChallengeType::WireOidc01],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn authz(status: AuthzStatus, expires: UnixTime) -> Authorization {
        Authorization {
            id: AuthzId::random(),
            account: AccountId("a".into()),
            identifier: Identifier { kind: IdentifierKind::Dns, value: "a.example".into() },
            status,
            expires,
            wildcard: false,
            challenges: vec![],
        }
    }

    fn order(n: usize, phase: OrderPhase) -> Order {
        Order {
            id: OrderId::random(),
            account: AccountId("a".into()),
            identifiers: vec![],
            authorizations: (0..n).map(|_| AuthzId::random()).collect(),
            expires: 1000,
            not_before: None,
            not_after: None,
            phase,
            created: 0,
            replaces: None,
            replaces_cert_id: None,
            profile: None,
        }
    }

    #[test]
    fn derives_each_state() {
        let o = order(2, OrderPhase::Open);
        let p = authz(AuthzStatus::Pending, 1000);
        let v = authz(AuthzStatus::Valid, 1000);
        let i = authz(AuthzStatus::Invalid, 1000);
        assert_eq!(order_status(&o, &[p.clone(), v.clone()], 10), OrderStatus::Pending);
        assert_eq!(order_status(&o, &[v.clone(), v.clone()], 10), OrderStatus::Ready);
        assert_eq!(order_status(&o, &[v.clone(), i], 10), OrderStatus::Invalid);
        assert_eq!(order_status(&o, &[v.clone(), v.clone()], 1000), OrderStatus::Invalid, "expired order");
        let expired_authz = authz(AuthzStatus::Valid, 5);
        assert_eq!(order_status(&o, &[v.clone(), expired_authz], 10), OrderStatus::Invalid);
        assert_eq!(order_status(&o, &[v], 10), OrderStatus::Invalid, "missing authorization");
        let done = order(1, OrderPhase::Valid { certificate: Serial("01".into()) });
        assert_eq!(order_status(&done, &[], 5000), OrderStatus::Valid);
    }
}
