//! The composition root: open the store, load or create the CA, build the cores, start
//! the validator and the HTTP server.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;

use crate::acme::{Acme, AcmeParts, AcmeSettings, ClientIdentity, Links, SharedNonces, ValidationQueue, Validator};
use crate::ca::{Ca, CaError};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::http::AppState;
use crate::http::server::{ServeOptions, serve_api, serve_management};
use crate::jose::JsonDepth;
use crate::model::CaMaterial;
use crate::store::{PgStore, SledStore, Store, StoreError};
use crate::validate::NetworkChecker;

mod background;
use background::{spawn_key_refresh, spawn_purge, watch_quota};

/// Why idca could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("{0}")]
    Io(String),
}

/// The ACME identity challenges check access tokens against the authorization server's
/// keys, and id_tokens against an external OpenID provider's when one is configured.
struct IdentityKeys {
    own: Arc<crate::oauth::AuthServer>,
    /// An external Wire backend's keys, for its `wire-dpop-01` access tokens.
    backend: Option<crate::validate::BackendKeys>,
    clock: Arc<dyn Clock>,
    oidc: Option<Arc<crate::validate::OidcProvider>>,
}

#[async_trait::async_trait]
impl crate::validate::IdentityTokens for IdentityKeys {
    async fn verify(&self, token: &str, typ: &str) -> Result<serde_json::Value, String> {
        match (&self.oidc, &self.backend) {
            (Some(provider), _) if typ == "JWT" => provider.verify(token),
            (_, Some(backend)) if typ != "JWT" => match self.own.verify_own_token(token, typ, self.clock.now()).await {
                Ok(claims) => Ok(claims),
                Err(own) => backend.verify(token, typ).map_err(|b| format!("{own}; {b}")),
            },
            _ => self.own.verify_own_token(token, typ, self.clock.now()).await.map_err(|e| e.to_string()),
        }
    }
}

/// Opens the configured store: PostgreSQL when `storage.url` names a database, else sled
/// in the data directory. The data directory is created either way (it holds `root.pem`,
/// the demo password and, with sled, the CA keys): readable by its owner only.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, AppError> {
    create_data_dir(config)?;
    open_backend(config).await
}

/// The data directory, made (and kept) readable by its owner only.
pub fn create_data_dir(config: &Config) -> Result<(), AppError> {
    let dir = &config.storage.data_dir;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| AppError::Io(format!("cannot create {}: {e}", dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let private = std::fs::Permissions::from_mode(0o700);
        std::fs::set_permissions(dir, private)
            .map_err(|e| AppError::Io(format!("cannot make {} private: {e}", dir.display())))?;
    }
    Ok(())
}

/// The configured store, opened: PostgreSQL (`storage.url`) or sled in the data
/// directory, which must exist.
pub async fn open_backend(config: &Config) -> Result<Arc<dyn Store>, AppError> {
    let dir = &config.storage.data_dir;
    let url = &config.storage.url;
    if !url.is_empty() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let store = PgStore::open(url, config.storage.pool_size, now).await?;
        store.limit_dpop_jti(config.limits.dpop_jti_max);
        tracing::info!(database = %crate::store::database_url(url), "using PostgreSQL");
        return Ok(Arc::new(store));
    }
    let store =
        SledStore::open_with(&dir.join("db"), config.storage.cache_capacity_mib, config.storage.open_unchecked)?;
    // The data directory's name and the store's in theirs, on stable storage.
    for d in [crate::files::parent_dir(dir), dir.as_path()] {
        crate::files::sync_dir(d).map_err(|e| AppError::Io(format!("cannot sync {}: {e}", d.display())))?;
    }
    store.limit_dpop_jti(config.limits.dpop_jti_max);
    store.set_commit_delay(Duration::from_micros(config.storage.commit_delay_us));
    Ok(Arc::new(store))
}

/// The CA material: from the PEM files named in config, else from the store, else
/// freshly generated and stored (durably) on first start. Also writes `root.pem` and
/// `intermediate.pem` into the data directory for users and tools to read.
pub async fn load_or_create_ca(config: &Config, store: &dyn Store, now: i64) -> Result<CaMaterial, AppError> {
    let c = &config.ca;
    let material = match (&c.root_cert, &c.root_key, &c.intermediate_cert, &c.intermediate_key) {
        (Some(rc), Some(rk), Some(ic), Some(ik)) => Ca::from_pem_files(rc, rk, ic, ik)?,
        _ => match store.ca_material().await? {
            Some(m) => m,
            None => {
                no_ca_was_made_here(config)?;
                let fresh = Ca::generate(
                    &c.organization,
                    &crate::ca::NameConstraints::uri_hosts(&c.identity_uri_domains),
                    now,
                )?;
                store.init_ca_material(&fresh).await?
            }
        },
    };
    let permitted = crate::ca::permitted_uri_hosts(&material.intermediate_cert);
    if permitted != c.identity_uri_domains {
        tracing::warn!(
            configured = ?c.identity_uri_domains,
            in_the_intermediate = ?permitted,
            "ca.identity_uri_domains applies when the CA is created; this intermediate has other URI constraints"
        );
    }
    write_if_changed(&config.storage.data_dir.join("root.pem"), &crate::ca::cert_pem(&material.root_cert))?;
    write_if_changed(
        &config.storage.data_dir.join("intermediate.pem"),
        &crate::ca::cert_pem(&material.intermediate_cert),
    )?;
    // Roots retired by `idca rotate-root`, for `idca trust uninstall --retired`.
    let retired = store.retired_ca_material().await?;
    if !retired.is_empty() {
        let pems: String = retired.iter().map(|m| crate::ca::cert_pem(&m.root_cert)).collect();
        write_if_changed(&config.storage.data_dir.join(RETIRED_ROOTS_FILE), &pems)?;
    }
    Ok(material)
}

/// `ca.chain_length` and `ca.alternate_roots` applied to `ca`: the stored chains when
/// they fit the CA and the configuration, else built (keeping the chains that fit, so a
/// root once handed out stays) and stored first, by one compare-and-swap, so instances
/// starting together all serve the winner's.
pub async fn with_configured_chains(
    config: &Config,
    store: &dyn Store,
    material: &CaMaterial,
    ca: Ca,
    now: i64,
) -> Result<Ca, AppError> {
    let (length, alternates) = (config.ca.chain_length, config.ca.alternate_roots);
    if (length, alternates) == (1, 0) {
        return Ok(ca);
    }
    for _ in 0..8 {
        let stored = store.ca_chains().await?;
        if let Some(fit) = stored.as_ref().filter(|s| crate::ca::chains_fit(s, material, length, alternates)) {
            let mut used = fit.clone();
            used.chains.truncate(1 + alternates as usize);
            return Ok(ca.with_chains(&used)?);
        }
        let fresh =
            crate::ca::build_chains(material, &config.ca.organization, (length, alternates), stored.as_ref(), now)?;
        match store.swap_ca_chains(stored.as_ref(), &fresh).await {
            Ok(()) => return Ok(ca.with_chains(&fresh)?),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(AppError::Store(StoreError::Conflict))
}

/// Before a CA is created in an empty store: refuses if `root.pem` says one was made in
/// this data directory before (the store was removed or replaced; a new CA would
/// silently take the old one's place).
pub fn no_ca_was_made_here(config: &Config) -> Result<(), AppError> {
    let root = config.storage.data_dir.join("root.pem");
    if root.exists() {
        return Err(AppError::Io(format!(
            "{} exists but the store holds no CA: the store was removed or replaced. Nothing was changed; restore \
             the store, or move the data directory away to create a new CA",
            root.display()
        )));
    }
    Ok(())
}

/// The roots retired by rotations (PEM, oldest first), in the data directory.
pub const RETIRED_ROOTS_FILE: &str = "retired-roots.pem";

/// The file holding the demo user's password, in the data directory.
pub const DEMO_PASSWORD_FILE: &str = "demo-password";

/// `oauth.demo_user`: the user `demo`, with the password kept in the data directory
/// (created on first start: 24 random bytes, written mode 0600 and synced).
fn demo_user(data_dir: &Path) -> Result<crate::config::UserConfig, AppError> {
    let path = data_dir.join(DEMO_PASSWORD_FILE);
    let io = |e: std::io::Error| AppError::Io(format!("{}: {e}", path.display()));
    let password = match std::fs::read_to_string(&path) {
        Ok(p) if !p.trim().is_empty() => p.trim().to_owned(),
        Ok(_) => return Err(AppError::Io(format!("{} is empty", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 24];
            crate::model::fill_random(&mut bytes);
            let password = crate::jose::b64_encode(bytes);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path).map_err(io)?;
            std::io::Write::write_all(&mut file, format!("{password}\n").as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
            crate::files::sync_dir(data_dir).map_err(io)?;
            tracing::info!(file = %path.display(), "created the demo user `demo`; its password is in the file");
            password
        }
        Err(e) => return Err(io(e)),
    };
    Ok(crate::config::UserConfig {
        username: "demo".into(),
        password_hash: crate::oauth::hash_password(&password).map_err(AppError::Io)?,
        name: "Demo User".into(),
        email: "demo@localhost".into(),
        handle: "demo".into(),
        team: "demo".into(),
        domain: "localhost".into(),
    })
}

fn write_if_changed(path: &Path, text: &str) -> Result<(), AppError> {
    crate::files::write_if_changed(path, text).map_err(AppError::Io)
}

/// A running server.
pub struct Server {
    /// The address the listener is bound to.
    pub addr: SocketAddr,
    /// The base URL clients use.
    pub public_url: String,
    /// The root certificate, PEM.
    pub root_pem: String,
    handle: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    management: Option<(SocketAddr, actix_web::dev::ServerHandle)>,
    /// The store, to close it here once the listeners and their tasks let go of it.
    store: Arc<dyn Store>,
    /// The validator's task (with the validations it runs).
    validations: tokio::task::AbortHandle,
}

impl Server {
    /// The directory URL.
    pub fn directory_url(&self) -> String {
        format!("{}{}", self.public_url, crate::acme::paths::DIRECTORY)
    }

    /// The management listener's address, when it is on.
    pub fn management_addr(&self) -> Option<SocketAddr> {
        self.management.as_ref().map(|(a, _)| *a)
    }

    /// Stops gracefully.
    pub async fn stop(self) {
        if let Some((_, h)) = &self.management {
            h.stop(true).await;
        }
        self.handle.stop(true).await;
        let _ = self.task.await;
        close(self.store).await;
    }

    /// Stops as a crash would, in this process: listeners closed at once, requests in
    /// flight and validations running dropped (their leases run out; another instance
    /// takes them over). For tests of several instances.
    pub async fn kill(self) {
        self.validations.abort();
        if let Some((_, h)) = &self.management {
            h.stop(false).await;
        }
        self.handle.stop(false).await;
        let _ = self.task.await;
    }

    /// Runs until the server stops (on SIGINT/SIGTERM when signals are handled).
    pub async fn wait(self) -> Result<(), AppError> {
        let result = self.task.await;
        if let Some((_, h)) = &self.management {
            h.stop(true).await;
        }
        close(self.store).await;
        match result {
            Ok(r) => r.map_err(|e| AppError::Io(e.to_string())),
            Err(e) => Err(AppError::Io(e.to_string())),
        }
    }
}

/// Waits (up to 10 s) until the server's is the last reference to the store, then drops
/// it here, so that when `stop` or `wait` returns the store is closed: flushed, its clean
/// close recorded, its lock released (a restart in the same process, or removing the
/// data directory, is then safe). The validation worker lets go once the listeners'
/// state is dropped.
async fn close(store: Arc<dyn Store>) {
    for _ in 0..200 {
        if Arc::strong_count(&store) == 1 {
            drop(store);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!("the store is still in use 10 s after the server stopped");
}

/// With a shared store (PostgreSQL), instances behind one load balancer must give out the
/// same URLs (account and order URLs, the issuer, DPoP `htu`): `server.public_url` is
/// required, unless the listener is on loopback or on a port chosen at start (0): one
/// developer's instance, warned about. Instances should also share `[oauth]` clients and
/// users and `[acme.eab]` keys: a fingerprint of those is kept in the store, and a start
/// with a different one is warned about.
async fn check_shared_config(config: &Config, store: &dyn Store) -> Result<(), AppError> {
    if config.storage.url.is_empty() {
        return Ok(());
    }
    if config.server.public_url.is_empty() {
        let listen = config.server.listen;
        if !listen.ip().is_loopback() && listen.port() != 0 {
            return Err(AppError::Config(crate::config::ConfigError::Invalid(
                "with storage.url set (a store several instances share), set server.public_url to the URL \
                 clients reach them at (the load balancer's), so that every instance gives out the same URLs"
                    .into(),
            )));
        }
        tracing::warn!(
            "storage.url is set but server.public_url is not: fine for one instance; instances sharing this \
             database need the same server.public_url (the load balancer's URL)"
        );
    }
    let shared =
        format!("{:?}", (&config.oauth.clients, &config.oauth.users, &config.acme.eab, &config.server.public_url));
    let fingerprint = ring::digest::digest(&ring::digest::SHA256, shared.as_bytes());
    match store.swap_shared_value(CONFIG_FINGERPRINT, fingerprint.as_ref()).await? {
        Some(previous) if previous != fingerprint.as_ref() => tracing::warn!(
            "this instance's [oauth] clients or users, [acme.eab] keys or server.public_url differ from those of \
             the instance that started before it on this database: every instance behind one load balancer needs \
             the same, or clients see different answers from each"
        ),
        _ => {}
    }
    Ok(())
}

/// The shared value the configuration fingerprint is kept under.
const CONFIG_FINGERPRINT: &str = "config_fingerprint";

/// Start-up options that are not configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartOptions {
    /// Stop on SIGINT/SIGTERM (the binary); off for servers embedded in tests.
    pub handle_signals: bool,
}

/// Starts idca with `config` on the current Tokio runtime.
pub async fn start(config: Config, options: StartOptions) -> Result<Server, AppError> {
    crate::install_crypto_provider();
    config.check()?;
    if config.acme.eab.required && config.acme.eab.keys.is_empty() {
        // As Pebble: it starts, and every newAccount is refused with externalAccountRequired.
        tracing::warn!("acme.eab.required is set but acme.eab.keys is empty: no account can be created");
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = open_store(&config).await?;
    spawn_purge(Arc::downgrade(&store), clock.clone(), Duration::from_secs(config.storage.purge_interval_secs));
    let quota_every = Duration::from_secs(config.storage.quota_check_secs);
    watch_quota(&store, config.storage.quota_bytes, quota_every).await;
    let material = load_or_create_ca(&config, store.as_ref(), clock.now()).await?;

    check_shared_config(&config, store.as_ref()).await?;
    let listener = std::net::TcpListener::bind(config.server.listen)
        .map_err(|e| AppError::Io(format!("cannot listen on {}: {e}", config.server.listen)))?;
    let addr = listener.local_addr().map_err(|e| AppError::Io(e.to_string()))?;
    let public_url = config.public_url(addr);
    let crl_base = format!("{public_url}{}", crate::acme::paths::CRL);
    let ca = Ca::load(&material, Some(crl_base.clone()))?;
    let ca = Arc::new(with_configured_chains(&config, store.as_ref(), &material, ca, clock.now()).await?);
    let retired = store
        .retired_ca_material()
        .await?
        .iter()
        .map(|m| Ca::load(m, Some(crl_base.clone())).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;

    let metrics = Arc::new(crate::metrics::Metrics::default());
    let (queue, rx) = ValidationQueue::new(config.limits.queued_validations);
    let checker = NetworkChecker::new(&config.acme.validation).map_err(AppError::Io)?;
    let instance = format!("{}-{}", std::process::id(), crate::model::random_token());
    let validator = Arc::new(Validator::new(
        store.clone(),
        Arc::new(checker),
        clock.clone(),
        config.acme.clone(),
        metrics.clone(),
        instance.clone(),
    ));
    // Validations left processing by a previous run (or a dead instance) are taken over
    // once their lease runs out: at once on sled, whose leases live in memory.
    let validations = tokio::spawn(validator.run(queue.clone(), rx)).abort_handle();

    let mut oauth = crate::oauth::OAuthSettings::from(&config);
    if oauth.oauth.users.is_empty() && oauth.oauth.demo_user {
        oauth.oauth.users.push(demo_user(&config.storage.data_dir)?);
    }
    let authz = Arc::new(
        crate::oauth::AuthServer::new(store.clone(), oauth, &public_url, clock.now())
            .await
            .map_err(|e| AppError::Io(format!("OAuth: {e:?}")))?,
    );
    let d = &config.devices;
    let oidc = if d.oidc_issuer.is_empty() {
        None
    } else {
        let provider = crate::validate::OidcProvider::new(
            &d.oidc_issuer,
            &d.oidc_jwks_uri,
            &d.oidc_client_id,
            &d.oidc_ca_file,
            JsonDepth::new(config.limits.json_max_depth),
        )
        .map_err(|e| AppError::Io(format!("devices.oidc_issuer: {e}")))?;
        let provider = Arc::new(provider);
        let fetched = match provider.refresh().await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot fetch the OIDC provider's keys yet; retrying in the background");
                false
            }
        };
        provider.clone().keep_fresh(Duration::from_secs(d.oidc_refresh_secs.max(10)), fetched);
        Some(provider)
    };
    spawn_key_refresh(Arc::downgrade(&authz));
    let oidc_issuer = oidc.as_ref().map_or_else(|| authz.issuer().to_owned(), |p| p.issuer().to_owned());
    let links = Links::new(public_url.clone());
    let identity = ClientIdentity {
        tokens: Arc::new(IdentityKeys {
            own: authz.clone(),
            backend: crate::validate::BackendKeys::from_config(
                &config.devices.backend_keys,
                JsonDepth::new(config.limits.json_max_depth),
            )
            .map_err(|e| AppError::Config(crate::config::ConfigError::Invalid(e)))?,
            clock: clock.clone(),
            oidc,
        }),
        issuer: oidc_issuer,
        dpop_target: config.devices.dpop_target.clone(),
        claims: crate::validate::OidcClaimMap {
            client_id: config.devices.oidc_client_id.clone(),
            handle_claim: config.devices.oidc_handle_claim.clone(),
            name_claim: config.devices.oidc_name_claim.clone(),
        },
    };
    // On a shared store (PostgreSQL) every instance must accept the others' nonces.
    let shared_nonces = if config.storage.url.is_empty() {
        None
    } else {
        let mut fresh = [0u8; 32];
        crate::model::fill_random(&mut fresh);
        let key = store.shared_secret(crate::store::ACME_NONCE_KEY, &fresh).await?;
        Some(SharedNonces::new(&key, config.limits.nonce_lifetime_secs, store.clone(), clock.clone()))
    };
    let parts = AcmeParts {
        store: store.clone(),
        ca: ca.clone(),
        retired,
        links,
        queue,
        metrics: metrics.clone(),
        identity: Some(identity),
        shared_nonces,
    };
    let acme = Arc::new(Acme::new(parts, AcmeSettings::from(&config)));
    let state = web::Data::new(AppState {
        acme,
        authz,
        metrics,
        public_url: public_url.clone(),
        trusted_proxies: config.server.trusted_proxies.iter().filter_map(|p| p.parse().ok()).collect(),
        secure_cookies: config.server.tls,
        clock: clock.clone(),
        limits: config.limits.clone(),
    });
    let tls = match (config.server.tls, &config.server.tls_cert, &config.server.tls_key) {
        (false, _, _) => None,
        (true, Some(cert), Some(key)) => Some(crate::http::tls::pem_config(cert, key).map_err(AppError::Io)?),
        (true, _, _) => {
            let (chain, key) = ca.issue_server_certificate(&config.ca.server_names, clock.now())?;
            Some(crate::http::tls::issued_config(chain, key).map_err(|e| AppError::Io(format!("TLS: {e}")))?)
        }
    };

    let serve = ServeOptions::new(&config, tls, options.handle_signals);
    let (handle, task) =
        serve_api(listener, state.clone(), &serve).map_err(|e| AppError::Io(format!("cannot serve on {addr}: {e}")))?;
    // Pebble's management listener, when configured.
    let management = match config.management.listen.as_str() {
        "" => None,
        listen => {
            let listener = std::net::TcpListener::bind(listen)
                .map_err(|e| AppError::Io(format!("cannot listen on {listen} (management.listen): {e}")))?;
            let mgmt_addr = listener.local_addr().map_err(|e| AppError::Io(e.to_string()))?;
            let (mgmt_handle, _) = serve_management(listener, state, &serve)
                .map_err(|e| AppError::Io(format!("cannot serve on {mgmt_addr}: {e}")))?;
            Some((mgmt_addr, mgmt_handle))
        }
    };
    tracing::info!(instance = %instance, "validations run under this instance's leases");
    Ok(Server { addr, public_url, root_pem: ca.root_pem().to_owned(), handle, task, management, store, validations })
}
