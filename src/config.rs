//! idca's configuration: one typed struct, loaded from `config.toml`.
//!
//! Every option has a default that works; the committed `config.toml` documents each
//! one and a test checks that it parses to exactly [`Config::default`]. Unknown keys are
//! rejected with a message naming the key.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub ca: CaConfig,
    pub acme: AcmeConfig,
    pub oauth: OAuthConfig,
    pub dpop: DpopConfig,
    pub devices: DevicesConfig,
    pub management: ManagementConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
}

/// `[server]`: the listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the ACME/OAuth listener binds to.
    pub listen: SocketAddr,
    /// Base URL clients use to reach idca (scheme, host, port, no path). Empty: derived
    /// from `listen` and `tls` (`https://localhost:<port>` for a loopback address).
    pub public_url: String,
    /// Serve HTTPS with a certificate from idca's own CA; `false` serves plain HTTP
    /// (behind a TLS-terminating proxy, or for tests).
    pub tls: bool,
    /// PEM files of a TLS certificate chain and key to serve instead of one issued by
    /// idca's CA (Pebble's `certificate`/`privateKey`); set both or neither.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Seconds a graceful shutdown waits for open connections.
    pub shutdown_timeout_secs: u64,
    /// Worker threads of the HTTP server; 0 means one per CPU.
    pub workers: usize,
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` / `Forwarded` header
    /// is believed for the client's address (lockouts, logs); empty: the peer address is
    /// the client's, and those headers are ignored.
    pub trusted_proxies: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 14000)),
            public_url: String::new(),
            tls: true,
            tls_cert: None,
            tls_key: None,
            shutdown_timeout_secs: 5,
            workers: 0,
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[storage]`: where state lives.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Data directory (relative paths are relative to the working directory).
    pub data_dir: PathBuf,
    /// sled page-cache size in MiB (16: the process stays under 64 MiB RSS after 10,000
    /// issuances; see README "Performance").
    pub cache_capacity_mib: u64,
    /// A PostgreSQL database (`postgres://user@host/db`, or libpq `key=value` words) to
    /// keep state in instead of sled; empty: sled in `data_dir`. Credentials may come
    /// from libpq's environment variables (PGPASSWORD, …) or password file.
    pub url: String,
    /// Connections to PostgreSQL at most.
    pub pool_size: usize,
    /// Seconds between purges of expired codes, sessions, device codes, nonces and replay
    /// keys (either backend).
    pub purge_interval_secs: u64,
    /// sled: after an unclean stop the store is checked on a copy beside it first; when
    /// that copy cannot be made, open the store unchecked (with a warning) instead of
    /// refusing to start.
    pub open_unchecked: bool,
    /// Live data (bytes) past which objects are no longer created (ACME 503
    /// serverInternal, OAuth 503 temporarily_unavailable); 0: no quota.
    pub quota_bytes: u64,
    /// Seconds between measurements of the live data against `quota_bytes`.
    pub quota_check_secs: u64,
    /// sled: how long, in µs, a group commit may wait for the writes of other requests
    /// in progress before it flushes; 0: never waits.
    pub commit_delay_us: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            cache_capacity_mib: 16,
            url: String::new(),
            pool_size: 16,
            purge_interval_secs: 60,
            open_unchecked: false,
            quota_bytes: 16 << 30,
            quota_check_secs: 10,
            commit_delay_us: 1000,
        }
    }
}

/// `[ca]`: the certificate authority.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaConfig {
    /// Organization name written in the root and intermediate subjects.
    pub organization: String,
    /// Names (DNS names or IP addresses) of idca's own TLS server certificate.
    pub server_names: Vec<String>,
    /// PEM files of an existing CA to use instead of generating one. Either all four are
    /// set, or none. Keys must be PKCS#8 (`BEGIN PRIVATE KEY`), P-256, P-384 or Ed25519.
    pub root_cert: Option<PathBuf>,
    pub root_key: Option<PathBuf>,
    pub intermediate_cert: Option<PathBuf>,
    pub intermediate_key: Option<PathBuf>,
    /// When the CA is created: constrain the intermediate's URI names to these hosts
    /// (RFC 5280 §4.2.1.10), so client identity certificates can only name
    /// `wireapp://…@{host}`. Empty: no constraints.
    pub identity_uri_domains: Vec<String>,
    /// Intermediates between a leaf and the root in every chain, the issuing one
    /// included (Pebble's `PEBBLE_CHAIN_LENGTH`). Above 1, extra intermediates certify
    /// the issuing intermediate's key again; the default chain then needs the root key.
    pub chain_length: u32,
    /// Extra roots that cross-sign the issuing intermediate (Pebble's
    /// `PEBBLE_ALTERNATE_ROOTS`): each is an alternate chain for every certificate, at
    /// `{certificate URL}/alternate/N`, and its root is at the management `/roots/N`.
    pub alternate_roots: u32,
}

impl Default for CaConfig {
    fn default() -> Self {
        Self {
            organization: "idca".to_owned(),
            server_names: vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()],
            root_cert: None,
            root_key: None,
            intermediate_cert: None,
            intermediate_key: None,
            identity_uri_domains: Vec::new(),
            chain_length: 1,
            alternate_roots: 0,
        }
    }
}

/// Most intermediates in one chain (`ca.chain_length`).
pub const MAX_CHAIN_LENGTH: u8 = 8;
/// Most alternate roots (`ca.alternate_roots`).
pub const MAX_ALTERNATE_ROOTS: u8 = 16;

/// `[acme]`: the ACME server (RFC 8555).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AcmeConfig {
    /// `meta.termsOfService` in the directory; empty leaves it out.
    pub terms_of_service: String,
    /// `meta.website` in the directory; empty leaves it out.
    pub website: String,
    /// `meta.caaIdentities` in the directory.
    pub caa_identities: Vec<String>,
    /// Seconds a new order (and its pending authorizations) stays usable.
    pub order_lifetime_secs: u64,
    /// Seconds a valid authorization stays valid.
    pub valid_authz_lifetime_secs: u64,
    /// Orders per page of an account's orders list (RFC 8555 §7.1.2.1).
    pub orders_per_page: usize,
    /// Most identifiers one order may carry.
    pub max_identifiers: usize,
    /// Names refused with `rejectedIdentifier`: each entry and every name under it
    /// (Pebble's `domainBlocklist`).
    pub blocked_domains: Vec<String>,
    /// Pebble's `-strict`: a challenge POST must carry exactly `{}`.
    pub strict: bool,
    /// newAccount and newOrder need `Authorization: Bearer` with an access token of scope
    /// `acme` from idca's authorization server; the account is bound to its subject.
    pub require_token: bool,
    /// Seconds suggested in `Retry-After` while a challenge is processing.
    pub retry_after_secs: u64,
    /// New orders one account may create per minute; 0 means no limit. Over it:
    /// `rateLimited` with `Retry-After`.
    pub new_orders_per_minute: u32,
    /// The profile of orders that name none (draft-ietf-acme-profiles).
    pub default_profile: String,
    /// Certificate profiles offered in `meta.profiles`, by name.
    pub profiles: std::collections::BTreeMap<String, ProfileConfig>,
    pub validation: ValidationConfig,
    pub testing: TestingConfig,
    pub eab: EabConfig,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        Self {
            terms_of_service: String::new(),
            website: String::new(),
            caa_identities: Vec::new(),
            order_lifetime_secs: 86_400,
            valid_authz_lifetime_secs: 30 * 86_400,
            orders_per_page: 50,
            max_identifiers: 100,
            blocked_domains: Vec::new(),
            strict: false,
            require_token: false,
            retry_after_secs: 1,
            new_orders_per_minute: 0,
            default_profile: "default".to_owned(),
            profiles: [
                (
                    "default".to_owned(),
                    ProfileConfig {
                        description: "TLS server certificate valid for 90 days".to_owned(),
                        validity_secs: 90 * 86_400,
                    },
                ),
                (
                    "shortlived".to_owned(),
                    ProfileConfig {
                        description: "TLS server certificate valid for 160 hours".to_owned(),
                        validity_secs: 160 * 3_600,
                    },
                ),
            ]
            .into_iter()
            .collect(),
            validation: ValidationConfig::default(),
            testing: TestingConfig::default(),
            eab: EabConfig::default(),
        }
    }
}

/// `[acme.validation]`: how challenges are checked (RFC 8555 §8).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidationConfig {
    /// Port http-01 validation connects to (RFC 8555 §8.3 says 80).
    pub http_port: u16,
    /// Port tls-alpn-01 validation connects to (RFC 8737 says 443).
    pub tls_port: u16,
    /// DNS server (`ip:port`) for dns-01 TXT lookups and for resolving names to
    /// validate (Pebble's `-dnsserver`); empty uses the system resolver.
    pub dns_resolver: String,
    /// Connect validations of DNS names to this address instead of resolving them
    /// (like pebble-challtestsrv's default IPv4); IP identifiers are dialled at their own
    /// address. Empty resolves names normally.
    pub connect_to: String,
    /// Milliseconds to wait for a TCP connection.
    pub connect_timeout_ms: u64,
    /// Milliseconds a whole validation request (redirects included) may take.
    pub timeout_ms: u64,
    /// Largest http-01 response body read, in bytes.
    pub max_body_bytes: usize,
    /// Redirects followed by http-01 validation.
    pub max_redirects: usize,
    /// Validations run at the same time.
    pub concurrency: usize,
    /// Seconds an instance holds a validation it runs before another instance may take
    /// it over (renewed every third of it while the check runs; a dead instance's
    /// accepted challenges finish elsewhere about this long after it died).
    pub lease_secs: u64,
    /// Validation may connect to loopback and private addresses (see `validate::dial`).
    pub dial_private_addresses: bool,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        Self {
            http_port: 80,
            tls_port: 443,
            dns_resolver: String::new(),
            connect_to: String::new(),
            connect_timeout_ms: 5_000,
            timeout_ms: 10_000,
            max_body_bytes: 8_192,
            max_redirects: 10,
            concurrency: 16,
            lease_secs: 30,
            dial_private_addresses: true,
        }
    }
}

/// `[acme.profiles.<name>]`: a certificate profile.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// Shown to clients in `meta.profiles`.
    pub description: String,
    /// Validity of certificates issued under this profile, in seconds.
    pub validity_secs: u64,
}

/// `[acme.eab]`: external account binding (RFC 8555 §7.3.4).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct EabConfig {
    /// newAccount must carry a binding (`meta.externalAccountRequired`).
    pub required: bool,
    /// Key identifiers and their HMAC keys (base64url). Each kid binds one account.
    pub keys: std::collections::BTreeMap<String, String>,
    /// A kid may bind any number of accounts, as in Pebble (on for a Pebble JSON
    /// configuration). Off: the first account a kid binds is its only one.
    pub reusable_keys: bool,
}

/// `[acme.testing]`: knobs for a test CA (Pebble's).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TestingConfig {
    /// Every challenge validates without any network check (`PEBBLE_VA_ALWAYS_VALID`).
    pub always_valid: bool,
    /// Milliseconds to wait before each validation.
    pub validation_delay_ms: u64,
    /// Wait a random time below `validation_delay_ms` instead (Pebble's random sleep).
    pub random_delay: bool,
    /// Percentage of valid nonces refused with `badNonce` anyway, to exercise clients'
    /// retry (`PEBBLE_WFE_NONCEREJECT`; Pebble's default is 5). 0-99.
    pub nonce_reject_percent: u8,
    /// Percentage of new orders' identifiers that reuse a valid authorization of the same
    /// account (`PEBBLE_AUTHZREUSE`; Pebble's default is 50). 0-100.
    pub authz_reuse_percent: u8,
    /// The management listener accepts `POST /set-renewal-info/` (Pebble's): a body a
    /// certificate's renewal information is then answered with, verbatim.
    pub set_renewal_info: bool,
}

/// `[oauth]`: the OAuth 2.0 / OpenID Connect authorization server.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuthConfig {
    /// The issuer (`iss`); empty: the public URL.
    pub issuer: String,
    /// Seconds an access token lives.
    pub access_token_lifetime_secs: u64,
    /// Seconds an id_token lives.
    pub id_token_lifetime_secs: u64,
    /// Seconds an authorization code lives (RFC 6749 §4.1.2 says at most 10 minutes).
    pub code_lifetime_secs: u64,
    /// Seconds of inactivity after which a refresh token expires.
    pub refresh_token_idle_secs: u64,
    /// Seconds a login session lasts in the browser.
    pub session_lifetime_secs: u64,
    /// Seconds a user has to complete the login page.
    pub login_page_lifetime_secs: u64,
    /// Failed logins per user and address before a lockout.
    pub login_max_failures: u32,
    /// Seconds a lockout lasts.
    pub login_lockout_secs: u64,
    /// Require PKCE (S256) from confidential clients too (public clients always).
    pub require_pkce: bool,
    /// Seconds a device code lives (RFC 8628 §3.2 `expires_in`).
    pub device_code_lifetime_secs: u64,
    /// Polling interval announced to devices (RFC 8628 §3.2 `interval`).
    pub device_poll_interval_secs: u64,
    /// Wrong user codes one address may enter before a lockout (RFC 8628 §5.1).
    pub device_max_user_code_failures: u32,
    /// Open dynamic client registration (RFC 7591) at `/oauth/register`.
    pub dynamic_registration: bool,
    /// With no `[[oauth.users]]`, a user `demo` whose random password is kept in
    /// `{data_dir}/demo-password` (mode 0600), so the defaults can log in and enroll.
    pub demo_user: bool,
    /// The scopes a dynamically registered client may have: never `acme` unless listed
    /// here (the cozy-stack rule: unknown applications get no powerful scopes).
    pub dynamic_client_scopes: Vec<String>,
    /// The longest a client assertion (`private_key_jwt`, `client_secret_jwt`) may
    /// live: its `exp` at most this many seconds ahead (its `jti` is remembered as long).
    pub client_assertion_max_lifetime_secs: u64,
    /// Every client's authorization requests must come through PAR (RFC 9126 §5).
    pub require_pushed_authorization_requests: bool,
    /// Seconds a pushed request's `request_uri` lives (RFC 9126 §2.2 `expires_in`).
    pub par_lifetime_secs: u64,
    /// Static clients.
    pub clients: Vec<ClientConfig>,
    /// Users who can log in.
    pub users: Vec<UserConfig>,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            access_token_lifetime_secs: 3600,
            id_token_lifetime_secs: 3600,
            code_lifetime_secs: 60,
            refresh_token_idle_secs: 30 * 86_400,
            session_lifetime_secs: 8 * 3600,
            login_page_lifetime_secs: 600,
            login_max_failures: 5,
            login_lockout_secs: 300,
            require_pkce: true,
            device_code_lifetime_secs: 600,
            device_poll_interval_secs: 5,
            device_max_user_code_failures: 5,
            dynamic_registration: true,
            demo_user: true,
            dynamic_client_scopes: ["openid", "profile", "email", "offline_access"].map(str::to_owned).to_vec(),
            client_assertion_max_lifetime_secs: 600,
            require_pushed_authorization_requests: false,
            par_lifetime_secs: 60,
            clients: vec![ClientConfig {
                client_id: "idca-cli".to_owned(),
                name: "idca command line".to_owned(),
                secret_hash: String::new(),
                redirect_uris: vec!["http://127.0.0.1/callback".to_owned()],
                scopes: ["openid", "profile", "email", "offline_access", "acme"].map(str::to_owned).to_vec(),
                grant_types: ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"]
                    .map(str::to_owned)
                    .to_vec(),
                post_logout_redirect_uris: vec!["http://127.0.0.1/signed-out".to_owned()],
                jwks: None,
                jwks_uri: String::new(),
                jwt_secret: String::new(),
                require_pushed_authorization_requests: false,
            }],
            users: Vec::new(),
        }
    }
}

/// `[dpop]`: DPoP (RFC 9449) at the token endpoint and idca's resources.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DpopConfig {
    /// Proofs must carry a server nonce (`use_dpop_nonce` otherwise, RFC 9449 §8, §9).
    pub require_nonce: bool,
    /// How old a proof's `iat` may be, in seconds (§11.1).
    pub max_age_secs: u64,
}

impl Default for DpopConfig {
    fn default() -> Self {
        Self { require_nonce: true, max_age_secs: 300 }
    }
}

/// `[devices]`: devices and their client-identity access tokens (Wire's profile).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevicesConfig {
    /// Seconds a backend nonce from `/clients/{cid}/nonce` lives.
    pub nonce_ttl_secs: u64,
    /// Seconds a client-identity access token lives (Wire: 360).
    pub access_token_lifetime_secs: u64,
    /// How far in the future a proof's `exp` may be, in seconds.
    pub max_proof_lifetime_secs: u64,
    /// Clock skew tolerated on a device proof's `iat`, `nbf` and `exp`, in seconds (brig's
    /// `setDpopMaxSkewSecs`, 1).
    pub max_skew_secs: u64,
    /// The OpenID provider whose id_tokens answer `wire-oidc-01` (the challenge's
    /// `target`); empty: idca's own authorization server.
    pub oidc_issuer: String,
    /// Its JWKS URL; empty: `jwks_uri` from `{oidc_issuer}/.well-known/openid-configuration`.
    pub oidc_jwks_uri: String,
    /// The client a `wire-oidc-01` id_token's `aud` must name (idca's own id_tokens
    /// included): `idca-cli`, the built-in public client, unless set.
    pub oidc_client_id: String,
    /// The id_token claim with the user's handle (`wireapp://%40{handle}@{domain}`,
    /// `{handle}@{domain}` or the bare handle); empty: `handle`, else
    /// `preferred_username` (Wire's Keycloak and Dex setups).
    pub oidc_handle_claim: String,
    /// The id_token claim with the user's display name.
    pub oidc_name_claim: String,
    /// A PEM root to trust when fetching the provider's keys; empty: the default roots.
    pub oidc_ca_file: String,
    /// Seconds between refreshes of the provider's keys.
    pub oidc_refresh_secs: u64,
    /// `wire-dpop-01` access tokens may also be signed by an external Wire backend
    /// (wire-server's brig, step-ca's `dpop.key`): its public keys, each a PEM
    /// SubjectPublicKeyInfo or a JWK (JSON).
    pub backend_keys: Vec<String>,
    /// The `wire-dpop-01` challenge's `target` (the device's access-token URL), with
    /// `{device}` for the device id; empty: idca's own `/clients/{device}/access-token`.
    /// Set it to the backend's URL when the backend issues the tokens.
    pub dpop_target: String,
}

impl Default for DevicesConfig {
    fn default() -> Self {
        Self {
            nonce_ttl_secs: 300,
            access_token_lifetime_secs: 360,
            max_proof_lifetime_secs: 300,
            max_skew_secs: 1,
            oidc_issuer: String::new(),
            oidc_jwks_uri: String::new(),
            oidc_client_id: "idca-cli".into(),
            oidc_handle_claim: String::new(),
            oidc_name_claim: "name".into(),
            oidc_ca_file: String::new(),
            oidc_refresh_secs: 300,
            backend_keys: Vec::new(),
            dpop_target: String::new(),
        }
    }
}

/// `[management]`: Pebble's management API (roots, intermediates, certificate status).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManagementConfig {
    /// Address of the management listener; empty switches it off.
    pub listen: String,
}

impl Default for ManagementConfig {
    fn default() -> Self {
        Self { listen: "127.0.0.1:15000".to_owned() }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter (`info`, `idca=debug`, …); `RUST_LOG` overrides it.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { filter: "info".to_owned() }
    }
}

impl Config {
    /// Loads `path`, rejecting unknown keys, and checks the values.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let config = Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.to_owned(), message },
            other => other,
        })?;
        Ok(config)
    }

    /// Parses TOML text (see [`Config::load`]).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: PathBuf::new(), message: e.to_string() })?;
        config.check()?;
        Ok(config)
    }
}

mod check;
mod cidr;
mod error;
mod limits;
mod oauth_clients;
mod public_url;
mod redirect_uri;

pub use cidr::Cidr;
pub use error::ConfigError;
pub use limits::LimitsConfig;
pub use oauth_clients::{ClientConfig, UserConfig};
pub use redirect_uri::check_redirect_uri;

#[cfg(test)]
mod tests;
