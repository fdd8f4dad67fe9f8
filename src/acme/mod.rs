//! The ACME server (RFC 8555): one async method per resource, typed input, typed output.
//!
//! This module knows nothing of actix or sled: `http::acme` passes in a
//! [`SignedRequest`] and the current time and renders the [`Reply`] or [`AcmeError`];
//! state goes through [`Store`]. Validation runs off the request path (`worker`).

mod account;
mod authz;
mod finalize;
mod identifier;
mod identity;
mod links;
mod nonce;
mod order;
mod problem;
mod request;
mod revoke;
pub mod wire;
mod worker;

pub use crate::validate::KeyAuthorization;
pub use identifier::parse_identifier;
pub use links::{Links, paths};
pub use nonce::{NonceError, NonceSource, Nonces, SharedNonces, WINDOW as NONCE_WINDOW};
pub use order::{authz_status, order_status};
pub use problem::{ACME_ERROR_NS, AcmeError};
pub use request::{KeyRule, SignedRequest, Signer, Verified};
pub use revoke::cert_id;
pub use worker::{QueuedValidations, ValidationQueue, Validator};

use std::sync::Arc;

use crate::ca::Ca;
use crate::clock::{UnixTime, rfc3339};
use crate::config::{AcmeConfig, Config};
use crate::jose::JsonDepth;
use crate::metrics::Metrics;
use crate::model::{
    AccountId, Authorization, AuthzId, AuthzStatus, Challenge, ChallengeId, ChallengeStatus, ChallengeType,
    IdentifierKind, OrderId, percent_chance,
};
use crate::store::{Store, StoreError, Versioned};
use crate::validate::IdentityTokens;

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
    nonces: Nonces,
    links: Links,
    config: AcmeConfig,
    queue: ValidationQueue,
    /// `limits.pending_orders_per_account` and `pending_authorizations_per_account`.
    pending_limits: (usize, usize),
    /// `limits.new_accounts_per_minute_per_address`; 0: no limit.
    new_accounts_per_minute: u32,
    json_depth: JsonDepth,
    metrics: Arc<Metrics>,
    identity_tokens: Option<Arc<dyn IdentityTokens>>,
    identity_issuer: String,
    identity_claims: crate::validate::OidcClaimMap,
    /// `devices.dpop_target` (empty: idca's own).
    dpop_target: String,
    /// CAs retired by root rotations (their CRLs are still served).
    retired: Vec<Arc<Ca>>,
    crls: revoke::CrlCache,
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

/// What the ACME core is configured with: `[acme]` and the `[limits]` it applies.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    pub acme: AcmeConfig,
    /// Outstanding nonces remembered (`limits.nonce_window`).
    pub nonce_window: u64,
    /// Unfinished orders per account; 0: no limit (`limits.pending_orders_per_account`).
    pub pending_orders_per_account: usize,
    /// Pending authorizations per account; 0: no limit
    /// (`limits.pending_authorizations_per_account`).
    pub pending_authorizations_per_account: usize,
    /// New accounts per minute from one address (IPv6: its /48); 0: no limit
    /// (`limits.new_accounts_per_minute_per_address`).
    pub new_accounts_per_minute: u32,
    /// How deeply a JWS's JSON may nest (`limits.json_max_depth`).
    pub json_depth: JsonDepth,
}

impl From<&Config> for AcmeSettings {
    fn from(config: &Config) -> Self {
        let l = &config.limits;
        Self {
            acme: config.acme.clone(),
            nonce_window: l.nonce_window,
            pending_orders_per_account: l.pending_orders_per_account,
            pending_authorizations_per_account: l.pending_authorizations_per_account,
            new_accounts_per_minute: l.new_accounts_per_minute_per_address,
            json_depth: JsonDepth::new(l.json_max_depth),
        }
    }
}

/// The client-identity challenges' trust: tokens are checked against `tokens` (the
/// authorization server's keys, or an OpenID provider's) and id_tokens must come from
/// `issuer`.
pub struct ClientIdentity {
    pub tokens: Arc<dyn IdentityTokens>,
    pub issuer: String,
    /// The client id_tokens are for, and the claims that carry the identity.
    pub claims: crate::validate::OidcClaimMap,
    /// The `wire-dpop-01` target with `{device}`; empty: idca's own access-token URL.
    pub dpop_target: String,
}

/// What the ACME core works with.
pub struct AcmeParts {
    pub store: Arc<dyn Store>,
    pub ca: Arc<Ca>,
    /// CAs retired by root rotations: each still signs the CRL its leaves name.
    pub retired: Vec<Arc<Ca>>,
    pub links: Links,
    pub queue: ValidationQueue,
    pub metrics: Arc<Metrics>,
    /// `None`: the client-identity challenges are not offered.
    pub identity: Option<ClientIdentity>,
    /// Nonces shared by every instance on the store; `None`: this process's own
    /// (`limits.nonce_window` of them in memory).
    pub shared_nonces: Option<SharedNonces>,
}

impl Acme {
    pub fn new(parts: AcmeParts, settings: AcmeSettings) -> Self {
        let AcmeParts { store, ca, retired, links, queue, metrics, identity, shared_nonces } = parts;
        let (identity_tokens, identity_issuer, identity_claims, dpop_target) = match identity {
            Some(ClientIdentity { tokens, issuer, claims, dpop_target }) => (Some(tokens), issuer, claims, dpop_target),
            None => (None, String::new(), crate::validate::OidcClaimMap::default(), String::new()),
        };
        Self {
            store,
            ca,
            nonces: match shared_nonces {
                Some(shared) => Nonces::Shared(shared),
                None => Nonces::Local(NonceSource::with_window(settings.nonce_window)),
            },
            links,
            pending_limits: (settings.pending_orders_per_account, settings.pending_authorizations_per_account),
            new_accounts_per_minute: settings.new_accounts_per_minute,
            json_depth: settings.json_depth,
            config: settings.acme,
            queue,
            metrics,
            identity_tokens,
            identity_issuer,
            identity_claims,
            dpop_target,
            retired,
            crls: revoke::CrlCache::default(),
        }
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
        // Orders that failed for good stay listed until they expire; the bound leaves
        // room for them.
        let bound = max_orders.max(max_authzs).saturating_mul(4).saturating_add(64);
        for id in self.store.open_orders(account, now, bound).await? {
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

    /// Whether the store answers (for `/healthz`), and whether it is past its quota
    /// (then the refusal new objects get).
    pub async fn health(&self) -> Result<Option<String>, AcmeError> {
        self.store.ca_material().await?;
        Ok(self.store.quota().admit().err().map(|e| e.to_string()))
    }

    /// The store's live data as last measured, and its quota (0: none).
    pub fn store_usage(&self) -> (u64, u64) {
        (self.store.quota().used(), self.store.quota().limit())
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
}

/// Helper for tests and the worker: an authorization by id.
pub(crate) async fn load_authz(store: &dyn Store, id: &AuthzId) -> Result<Versioned<Authorization>, AcmeError> {
    found(store.authorization(id).await, "authorization")
}
