//! The ACME server (RFC 8555): one async method per resource, typed input, typed output.
//!
//! This module knows nothing of actix or sled: `http::acme` passes in a
//! [`SignedRequest`] and the current time and renders the [`Reply`] or [`AcmeError`];
//! state goes through [`Store`]. Validation runs off the request path (`worker`).

mod account;
mod finalize;
mod identifier;
mod identity;
mod links;
mod nonce;
mod order;
mod problem;
mod ratelimit;
mod request;
mod revoke;
pub mod wire;
mod worker;

pub use crate::validate::KeyAuthorization;
pub use identifier::parse_identifier;
pub use links::{Links, paths};
pub use nonce::{NonceError, NonceSource, WINDOW as NONCE_WINDOW};
pub use order::{authz_status, order_status};
pub use problem::{ACME_ERROR_NS, AcmeError};
pub use ratelimit::RateLimiter;
pub use request::{KeyRule, SignedRequest, Signer, Verified};
pub use revoke::cert_id;
pub use worker::{QueuedValidations, ValidationQueue, Validator};

use std::sync::Arc;

use crate::ca::Ca;
use crate::clock::{UnixTime, rfc3339};
use crate::config::AcmeConfig;
use crate::model::{
    AccountId, Authorization, AuthzId, AuthzStatus, Challenge, ChallengeId, ChallengeStatus, ChallengeType,
    IdentifierKind, Order, OrderId, OrderPhase, Serial, percent_chance,
};
use crate::store::{Store, StoreError, Versioned};

/// What a successful request answers: a body plus the headers RFC 8555 asks for.
#[derive(Debug)]
pub struct Reply<T> {
    pub body: T,
    /// `201 Created` rather than `200 OK`.
    pub created: bool,
    /// `Location` (§7.1).
    pub location: Option<String>,
    /// `Link` headers: (URL, relation) (§7.1).
    pub links: Vec<(String, &'static str)>,
    /// `Retry-After` seconds (§8.2).
    pub retry_after: Option<u64>,
}

impl<T> Reply<T> {
    fn ok(body: T) -> Self {
        Self { body, created: false, location: None, links: Vec::new(), retry_after: None }
    }

    fn at(mut self, location: String) -> Self {
        self.location = Some(location);
        self
    }

    fn link(mut self, url: String, rel: &'static str) -> Self {
        self.links.push((url, rel));
        self
    }
}

/// The ACME server core.
pub struct Acme {
    store: Arc<dyn Store>,
    ca: Arc<Ca>,
    nonces: NonceSource,
    links: Links,
    config: AcmeConfig,
    queue: ValidationQueue,
    order_limit: RateLimiter,
    open_orders: ratelimit::OpenOrders,
    /// `limits.pending_orders_per_account` and `pending_authorizations_per_account`.
    pending_limits: (usize, usize),
    metrics: Arc<crate::metrics::Metrics>,
    identity_tokens: Option<Arc<dyn crate::validate::IdentityTokens>>,
    identity_issuer: String,
    /// CAs retired by root rotations (their CRLs are still served).
    retired: Vec<Arc<Ca>>,
}

impl std::fmt::Debug for Acme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acme").field("base", &self.links.base()).finish()
    }
}

fn not_found(what: &str) -> AcmeError {
    AcmeError::NotFound(format!("no such {what}"))
}

/// Maps `NotFound` to a 404 problem naming `what`.
fn found<T>(r: Result<T, StoreError>, what: &str) -> Result<T, AcmeError> {
    match r {
        Ok(v) => Ok(v),
        Err(StoreError::NotFound) => Err(not_found(what)),
        Err(e) => Err(e.into()),
    }
}

/// Refuses access to another account's resource (§7.1, Pebble and Boulder answer
/// `unauthorized`).
fn owned_by(owner: &AccountId, verified: &Verified, what: &str) -> Result<(), AcmeError> {
    if &verified.account()?.value.id == owner {
        Ok(())
    } else {
        Err(AcmeError::Unauthorized(format!("this {what} belongs to another account")))
    }
}

impl Acme {
    pub fn new(
        store: Arc<dyn Store>,
        ca: Arc<Ca>,
        links: Links,
        config: AcmeConfig,
        queue: ValidationQueue,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self {
            store,
            ca,
            nonces: NonceSource::new(),
            links,
            order_limit: RateLimiter::per_minute(config.new_orders_per_minute),
            open_orders: ratelimit::OpenOrders::default(),
            pending_limits: {
                let l = crate::config::LimitsConfig::default();
                (l.pending_orders_per_account, l.pending_authorizations_per_account)
            },
            config,
            queue,
            metrics,
            identity_tokens: None,
            identity_issuer: String::new(),
            retired: Vec::new(),
        }
    }

    /// The limits on what one account may hold pending (`[limits]`).
    pub fn with_limits(mut self, limits: &crate::config::LimitsConfig) -> Self {
        self.nonces = NonceSource::with_window(limits.nonce_window);
        self.pending_limits = (limits.pending_orders_per_account, limits.pending_authorizations_per_account);
        self
    }

    /// Refuses a new order with `new_authzs` fresh authorizations when the account
    /// already holds `limits.pending_orders_per_account` unfinished orders, or would hold
    /// more than `limits.pending_authorizations_per_account` pending authorizations in
    /// them (Boulder's limits of the same names).
    async fn check_pending(&self, account: &AccountId, new_authzs: usize, now: UnixTime) -> Result<(), AcmeError> {
        let (max_orders, max_authzs) = self.pending_limits;
        if max_orders == 0 && max_authzs == 0 {
            return Ok(());
        }
        let mut open = Vec::new();
        let mut pending_authzs = std::collections::HashSet::new();
        for id in self.open_orders.live(account, now) {
            let order = match self.store.order(&id).await {
                Ok(o) => o.value,
                Err(StoreError::NotFound) => continue,
                Err(e) => return Err(e.into()),
            };
            let authzs = self.order_authzs(&order).await?;
            if matches!(
                order_status(&order, &authzs, now),
                wire::OrderStatus::Pending | wire::OrderStatus::Ready | wire::OrderStatus::Processing
            ) {
                open.push(id);
                pending_authzs.extend(
                    authzs.iter().filter(|a| authz_status(a, now) == AuthzStatus::Pending).map(|a| a.id.clone()),
                );
            }
        }
        self.open_orders.keep(account, &open);
        let limited = |detail: String| AcmeError::RateLimited { detail, retry_after: 60 };
        if max_orders > 0 && open.len() >= max_orders {
            return Err(limited(format!(
                "this account already has {} orders that are not finished (limits.pending_orders_per_account); \
                 finalize them or let them expire",
                open.len()
            )));
        }
        if max_authzs > 0 && pending_authzs.len() + new_authzs > max_authzs {
            return Err(limited(format!(
                "this order would give this account more than {max_authzs} pending authorizations \
                 (limits.pending_authorizations_per_account); complete or deactivate some first"
            )));
        }
        Ok(())
    }

    /// The CAs retired by root rotations: each still signs the CRL its leaves name.
    pub fn with_retired(mut self, retired: Vec<Arc<Ca>>) -> Self {
        self.retired = retired;
        self
    }

    /// Enables the client-identity challenges: tokens are checked against `tokens` (the
    /// authorization server's keys) and id_tokens must come from `issuer`.
    pub fn with_identity(mut self, tokens: Arc<dyn crate::validate::IdentityTokens>, issuer: String) -> Self {
        self.identity_tokens = Some(tokens);
        self.identity_issuer = issuer;
        self
    }

    /// The metrics the cores and the HTTP layer record into.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    pub fn links(&self) -> &Links {
        &self.links
    }

    /// A fresh `Replay-Nonce` (§7.2).
    pub fn new_nonce(&self) -> String {
        self.nonces.issue()
    }

    /// The directory (§7.1.1).
    pub fn directory(&self) -> wire::Directory {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        wire::Directory {
            new_nonce: self.links.url(paths::NEW_NONCE),
            new_account: self.links.url(paths::NEW_ACCOUNT),
            new_order: self.links.url(paths::NEW_ORDER),
            revoke_cert: self.links.url(paths::REVOKE_CERT),
            key_change: self.links.url(paths::KEY_CHANGE),
            renewal_info: self.links.url(paths::RENEWAL_INFO),
            meta: wire::Meta {
                terms_of_service: opt(&self.config.terms_of_service),
                website: opt(&self.config.website),
                caa_identities: self.config.caa_identities.clone(),
                profiles: self.config.profiles.iter().map(|(k, v)| (k.clone(), v.description.clone())).collect(),
                external_account_required: self.config.eab.required,
            },
        }
    }

    /// Whether the store answers (for `/healthz`).
    pub async fn health(&self) -> Result<(), AcmeError> {
        self.store.ca_material().await?;
        Ok(())
    }

    /// The root certificate PEM.
    pub fn root_pem(&self) -> &str {
        self.ca.root_pem()
    }

    /// How many chains certificates are offered with (1 + `ca.alternate_roots`).
    pub fn chain_count(&self) -> usize {
        self.ca.chain_count()
    }

    /// The root chain `n` ends at, PEM.
    pub fn chain_root_pem(&self, n: usize) -> Option<String> {
        self.ca.chain_root_pem(n).map(str::to_owned)
    }

    /// The issuing intermediate's certificate in chain `n`, PEM.
    pub fn chain_intermediate_pem(&self, n: usize) -> Option<String> {
        self.ca.chain_intermediate_pem(n)
    }

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
        if let Err(retry_after) = self.order_limit.check(&account.id) {
            return Err(AcmeError::RateLimited {
                detail: format!(
                    "at most {} new orders per minute per account (acme.new_orders_per_minute)",
                    self.config.new_orders_per_minute
                ),
                retry_after,
            });
        }
        let p: wire::NewOrderPayload = v.json()?;
        let profile = match &p.profile {
            Some(name) if self.config.profiles.contains_key(name) => name.clone(),
            Some(name) => {
                return Err(AcmeError::InvalidProfile(format!(
                    "profile `{}` is not offered (see meta.profiles)",
                    name.chars().take(40).collect::<String>()
                )));
            }
            None => self.config.default_profile.clone(),
        };
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
        let identity = identity::check_identity_order(&identifiers)?;
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
        let parse_time = |s: &Option<String>, field: &str| -> Result<Option<UnixTime>, AcmeError> {
            s.as_deref()
                .map(|t| {
                    crate::clock::parse_rfc3339(t)
                        .ok_or_else(|| AcmeError::Malformed(format!("`{field}` is not an RFC 3339 date-time")))
                })
                .transpose()
        };
        let mut not_before = parse_time(&p.not_before, "notBefore")?;
        let mut not_after = parse_time(&p.not_after, "notAfter")?;
        if identity.is_some() {
            // Wire clients read notBefore and notAfter from every identity order.
            let validity = self.config.profiles.get(&profile).map_or(90 * 86_400, |p| p.validity_secs as i64);
            let nb = *not_before.get_or_insert(now - 60);
            not_after.get_or_insert(nb + validity);
        }
        if let Some(na) = not_after
            && na <= not_before.unwrap_or(now).max(now)
        {
            return Err(AcmeError::Malformed("`notAfter` must be in the future and after `notBefore`".into()));
        }
        let expires = now + self.config.order_lifetime_secs as i64;
        let mut authzs = Vec::with_capacity(identifiers.len());
        let mut authz_ids = Vec::with_capacity(identifiers.len());
        for ident in &identifiers {
            if percent_chance(self.config.testing.authz_reuse_percent)
                && let Some(reused) = self.reusable_authz(&account.id, ident, now).await?
            {
                authz_ids.push(reused);
                continue;
            }
            let wildcard = ident.kind == IdentifierKind::Dns && ident.value.starts_with("*.");
            let authz = Authorization {
                id: AuthzId::random(),
                account: account.id.clone(),
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
                        target: self.challenge_target(*kind, &identity),
                    })
                    .collect(),
            };
            authz_ids.push(authz.id.clone());
            authzs.push(authz);
        }
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
            Ok(()) if self.pending_limits == (0, 0) => {}
            Ok(()) => self.open_orders.add(&account.id, order.id.clone(), order.expires, now),
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

    /// The `target` of a Wire challenge: the device's access-token URL, or the issuer.
    fn challenge_target(
        &self,
        kind: ChallengeType,
        identity: &Option<(identity::WireIdentity, identity::WireIdentity)>,
    ) -> Option<String> {
        match (kind, identity) {
            (ChallengeType::WireDpop01, Some((device, _))) => Some(format!(
                "{}/clients/{}/access-token",
                self.links.base(),
                device.device_id.as_deref().unwrap_or_default()
            )),
            (ChallengeType::WireOidc01, Some(_)) => Some(self.identity_issuer.clone()),
            _ => None,
        }
    }

    /// A valid authorization of `account` for `identifier` that stays valid for at least
    /// the order's lifetime, if one exists (authorization reuse, RFC 8555 §7.1.3).
    async fn reusable_authz(
        &self,
        account: &AccountId,
        identifier: &crate::model::Identifier,
        now: UnixTime,
    ) -> Result<Option<AuthzId>, AcmeError> {
        let margin = self.config.order_lifetime_secs as i64;
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
    async fn replacement(
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
            if order_status(&other, &authzs, now) != wire::OrderStatus::Invalid {
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

    async fn order_authzs(&self, order: &Order) -> Result<Vec<Authorization>, AcmeError> {
        let mut out = Vec::with_capacity(order.authorizations.len());
        for id in &order.authorizations {
            out.push(found(self.store.authorization(id).await, "authorization")?.value);
        }
        Ok(out)
    }

    fn order_json(&self, order: &Order, authzs: &[Authorization], now: UnixTime) -> wire::Order {
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

    /// An authorization (§7.5), fetched with POST-as-GET, or deactivated (§7.5.2).
    pub async fn authorization(
        &self,
        req: SignedRequest,
        id: &AuthzId,
        now: UnixTime,
    ) -> Result<Reply<wire::Authorization>, AcmeError> {
        let v = self.verify(&req, KeyRule::Kid).await?;
        let mut authz = found(self.store.authorization(id).await, "authorization")?;
        owned_by(&authz.value.account, &v, "authorization")?;
        if !v.is_post_as_get() {
            let p: wire::AuthzUpdatePayload = v.json()?;
            match p.status.as_deref() {
                Some("deactivated") => {
                    let status = authz_status(&authz.value, now);
                    if !matches!(status, AuthzStatus::Pending | AuthzStatus::Valid) {
                        return Err(AcmeError::Malformed(
                            format!("a {status:?} authorization cannot be deactivated").to_lowercase(),
                        ));
                    }
                    authz.value.status = AuthzStatus::Deactivated;
                    found(self.store.update_authorization(&authz.value, authz.version).await, "authorization")?;
                }
                _ => {
                    return Err(AcmeError::Malformed("the only update is {\"status\": \"deactivated\"}".into()));
                }
            }
        }
        let processing = authz.value.challenges.iter().any(|c| c.status == ChallengeStatus::Processing);
        let mut reply = Reply::ok(self.authz_json(&authz.value, now));
        if processing {
            reply.retry_after = Some(self.config.retry_after_secs);
        }
        Ok(reply)
    }

    fn authz_json(&self, a: &Authorization, now: UnixTime) -> wire::Authorization {
        let status = authz_status(a, now);
        // Once decided, show only the challenge that decided it (as Pebble and Boulder do).
        let shown: Vec<&Challenge> = if status == AuthzStatus::Valid {
            a.challenges.iter().filter(|c| c.status == ChallengeStatus::Valid).collect()
        } else {
            a.challenges.iter().collect()
        };
        wire::Authorization {
            identifier: crate::model::Identifier {
                kind: a.identifier.kind,
                value: a.identifier.value.trim_start_matches("*.").to_owned(),
            },
            status,
            expires: rfc3339(a.expires),
            challenges: shown.into_iter().map(|c| self.challenge_json(&a.id, c)).collect(),
            wildcard: a.wildcard,
        }
    }

    fn challenge_json(&self, authz: &AuthzId, c: &Challenge) -> wire::Challenge {
        wire::Challenge {
            kind: c.kind.as_str(),
            url: self.links.challenge(authz, &c.id),
            status: c.status,
            token: c.token.clone(),
            validated: c.validated.map(rfc3339),
            error: c.error.clone(),
            target: c.target.clone(),
        }
    }

    /// A challenge (§7.5.1): POST-as-GET fetches it, `{}` asks the server to validate.
    /// The challenge is `processing` (durably) before this returns; validation runs in
    /// the background.
    pub async fn challenge(
        &self,
        req: SignedRequest,
        authz_id: &AuthzId,
        id: &ChallengeId,
        now: UnixTime,
    ) -> Result<Reply<wire::Challenge>, AcmeError> {
        let v = self.verify(&req, KeyRule::Kid).await?;
        let mut authz = found(self.store.authorization(authz_id).await, "challenge")?;
        owned_by(&authz.value.account, &v, "challenge")?;
        let idx = authz.value.challenges.iter().position(|c| &c.id == id).ok_or_else(|| not_found("challenge"))?;
        let identity_kind = authz
            .value
            .challenges
            .get(idx)
            .is_some_and(|c| matches!(c.kind, ChallengeType::WireDpop01 | ChallengeType::WireOidc01));
        if !v.is_post_as_get() && identity_kind {
            let body: serde_json::Map<String, serde_json::Value> = v.json()?;
            let pending = authz_status(&authz.value, now) == AuthzStatus::Pending;
            let challenge_pending =
                authz.value.challenges.get(idx).is_some_and(|c| c.status == ChallengeStatus::Pending);
            if pending && challenge_pending {
                // Identity challenges are decided now: Wire clients expect the answer to
                // the POST to be `valid` already.
                let outcome = self.check_identity_challenge(&authz.value, idx, &body, &v, now)?;
                worker::record_outcome(
                    &mut authz.value,
                    id,
                    &outcome,
                    now,
                    self.config.valid_authz_lifetime_secs as i64,
                );
                match self.store.update_authorization(&authz.value, authz.version).await {
                    Ok(version) => {
                        authz.version = version;
                        if let Some(c) = authz.value.challenges.get(idx) {
                            self.metrics.validation(c.kind.as_str(), outcome.is_ok());
                        }
                    }
                    Err(StoreError::Conflict) => authz = found(self.store.authorization(authz_id).await, "challenge")?,
                    Err(e) => return Err(e.into()),
                }
            }
        } else if !v.is_post_as_get() {
            let body: serde_json::Map<String, serde_json::Value> = v.json()?;
            // The legacy ACME v1 field is refused always, any other field in strict mode
            // (as Pebble does).
            if body.contains_key("keyAuthorization") || (self.config.strict && !body.is_empty()) {
                return Err(AcmeError::Malformed("a challenge is answered with an empty object {}".into()));
            }
            let pending = authz_status(&authz.value, now) == AuthzStatus::Pending;
            let challenge_pending =
                authz.value.challenges.get(idx).is_some_and(|c| c.status == ChallengeStatus::Pending);
            if pending && challenge_pending {
                if !self.queue.has_room() {
                    return Err(AcmeError::RateLimited {
                        detail: "too many validations are waiting (limits.queued_validations); retry shortly".into(),
                        retry_after: self.config.retry_after_secs.max(1),
                    });
                }
                if let Some(c) = authz.value.challenges.get_mut(idx) {
                    c.status = ChallengeStatus::Processing;
                }
                match self.store.update_authorization(&authz.value, authz.version).await {
                    Ok(version) => {
                        authz.version = version;
                        self.queue.push(authz_id.clone());
                    }
                    // Someone else moved it first; answer with what is stored now.
                    Err(StoreError::Conflict) => authz = found(self.store.authorization(authz_id).await, "challenge")?,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let c = authz.value.challenges.get(idx).ok_or_else(|| not_found("challenge"))?;
        let mut reply = Reply::ok(self.challenge_json(authz_id, c)).link(self.links.authz(authz_id), "up");
        if c.status == ChallengeStatus::Processing {
            reply.retry_after = Some(self.config.retry_after_secs);
        }
        Ok(reply)
    }

    /// Checks the answer to a `wire-dpop-01` (`{"access_token"}`) or `wire-oidc-01`
    /// (`{"id_token"}`) challenge. A payload without the token is `malformed`; a token
    /// that does not bind is a failed validation (the challenge becomes invalid).
    fn check_identity_challenge(
        &self,
        authz: &Authorization,
        idx: usize,
        body: &serde_json::Map<String, serde_json::Value>,
        v: &Verified,
        now: UnixTime,
    ) -> Result<Result<(), crate::validate::ValidationError>, AcmeError> {
        let tokens = self
            .identity_tokens
            .as_ref()
            .ok_or_else(|| AcmeError::Malformed("identity challenges are not enabled on this server".into()))?;
        let c = authz.challenges.get(idx).ok_or_else(|| not_found("challenge"))?;
        let account = &v.account()?.value;
        let ident = identity::wire_identity(authz.identifier.kind, &authz.identifier.value)?;
        let target = c.target.clone().unwrap_or_default();
        let url = self.links.challenge(&authz.id, &c.id);
        let token = |field: &str| {
            body.get(field)
                .and_then(|t| t.as_str())
                .ok_or_else(|| AcmeError::Malformed(format!("the payload must be {{\"{field}\": \"…\"}}")))
        };
        Ok(match c.kind {
            ChallengeType::WireDpop01 => crate::validate::check_wire_dpop(
                tokens.as_ref(),
                token("access_token")?,
                &crate::validate::DpopChallenge {
                    target: &target,
                    url: &url,
                    token: &c.token,
                    account_jkt: &account.jkt.0,
                    client_id: ident.client_id.as_deref().unwrap_or_default(),
                    handle: &ident.handle,
                    name: &ident.name,
                },
                now,
            ),
            _ => crate::validate::check_wire_oidc(
                tokens.as_ref(),
                token("id_token")?,
                &crate::validate::OidcChallenge {
                    issuer: &target,
                    url: &url,
                    key_authorization: &format!("{}.{}", c.token, account.jkt),
                    handle: &ident.handle,
                    name: &ident.name,
                },
                now,
            ),
        })
    }

    /// The certificate chain (§7.4.2), PEM, fetched with POST-as-GET by its account:
    /// chain `alternate` (0: the default, as stored at issuance), with a
    /// `Link: rel="alternate"` to each other chain (Pebble's `/alternate/N` URLs).
    pub async fn certificate(
        &self,
        req: SignedRequest,
        serial: &Serial,
        alternate: usize,
    ) -> Result<Reply<String>, AcmeError> {
        let v = self.verify(&req, KeyRule::Kid).await?;
        v.require_post_as_get()?;
        let cert = self.issued(serial).await?.value;
        match &cert.account {
            Some(owner) => owned_by(owner, &v, "certificate")?,
            None => return Err(AcmeError::Unauthorized("this certificate was not issued through ACME".into())),
        }
        // Alternates exist for the current CA's leaves only (not a rotated-out one's).
        let leaf = cert.leaf_der().unwrap_or_default();
        let chains = if self.ca.chain_pem(&leaf, 0).is_some() { self.ca.chain_count() } else { 1 };
        let body = match alternate {
            0 => cert.chain_pem,
            n => self
                .ca
                .chain_pem(&leaf, n)
                .filter(|_| n < chains)
                .ok_or_else(|| AcmeError::NotFound(format!("certificate {serial} has no alternate chain {n}")))?,
        };
        let mut reply = Reply::ok(body);
        for n in (0..chains).filter(|n| *n != alternate) {
            reply = reply.link(self.links.certificate_chain(serial, n), "alternate");
        }
        Ok(reply)
    }
}

/// Whether `name` is a blocked domain or under one.
fn is_blocked(blocked: &[String], name: &str) -> bool {
    let name = name.trim_start_matches("*.");
    blocked.iter().any(|b| {
        let b = b.trim_end_matches('.').to_ascii_lowercase();
        name == b || name.strip_suffix(&b).is_some_and(|rest| rest.ends_with('.'))
    })
}

/// The challenges offered for an identifier (RFC 8555 §8, RFC 8737, RFC 8738 §7): a
/// wildcard only through dns-01, an IP address not through dns-01.
fn challenge_types(kind: IdentifierKind, wildcard: bool) -> &'static [ChallengeType] {
    match (kind, wildcard) {
        (IdentifierKind::Dns, true) => &[ChallengeType::Dns01],
        (IdentifierKind::Dns, false) => &[ChallengeType::Http01, ChallengeType::Dns01, ChallengeType::TlsAlpn01],
        (IdentifierKind::Ip, _) => &[ChallengeType::Http01, ChallengeType::TlsAlpn01],
        (IdentifierKind::WireappDevice, _) => &[ChallengeType::WireDpop01],
        (IdentifierKind::WireappUser, _) => &[ChallengeType::WireOidc01],
    }
}

/// Helper for tests and the worker: an authorization by id.
pub(crate) async fn load_authz(store: &dyn Store, id: &AuthzId) -> Result<Versioned<Authorization>, AcmeError> {
    found(store.authorization(id).await, "authorization")
}
