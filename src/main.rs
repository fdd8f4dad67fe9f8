//! The `idca` command.

/// mimalloc instead of glibc's malloc: a request allocates and frees many small buffers
/// (headers, JSON, JWS parts), and glibc's free lists were 8 % of the server's CPU
/// (README "Performance"). Built without transparent huge pages (`no_thp`): with them
/// the resident memory after 2,200 issuances was 89 MiB instead of 48.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use idca::config::Config;

/// idca: an embedded ACME certificate authority with built-in authorization.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (default: ./config.toml if it exists, else built-in defaults).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory (overrides storage.data_dir).
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Print the root certificate (PEM) to trust.
    Root,
    /// The PostgreSQL schema (storage.url): `status`, or `migrate` (idca also migrates
    /// at start).
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Read a password (or client secret) from standard input and print its argon2id
    /// hash, for `password_hash` / `secret_hash` in config.toml.
    HashPassword,
    /// Make a new OAuth signing key the active one (older keys stay published until
    /// their tokens expire). With sled, run while the server is stopped; on PostgreSQL,
    /// while instances run: each signs with the new key within 30 s, and all accept its
    /// tokens at once (an unknown key id reloads the keys).
    OauthRotateKey,
    /// Demo client: log in, register a device and enroll a client identity certificate
    /// against a running idca (wire-dpop-01 + wire-oidc-01).
    Enroll(EnrollArgs),
    /// Create the CA in a new data directory. With --local-pki it can only certify local
    /// names (localhost, *.localhost, *.test, *.internal, *.local, loopback and private
    /// IPs, and --domain), so its root is safe to trust.
    Init(InitArgs),
    /// Issue a certificate and key from the local CA, no server or ACME client needed
    /// (stop a running server first: it holds the data directory).
    Issue(IssueArgs),
    /// List issued certificates (ACME and `idca issue`), show those expiring, revoke.
    Certs {
        #[command(subcommand)]
        command: Option<CertsCommand>,
    },
    /// Replace the root and intermediate: prints the plan; --apply carries it out.
    RotateRoot {
        /// Create the new CA and retire the current one.
        #[arg(long)]
        apply: bool,
        /// Keep the new root key offline: write it to FILE (mode 0600).
        #[arg(long, value_name = "FILE", requires = "apply")]
        offline_root_key: Option<PathBuf>,
    },
    /// Trust the root: system store (Debian/Ubuntu, Fedora/RHEL, Arch), NSS databases
    /// (Chromium, Firefox), and the steps for macOS, Windows, Java and Node.
    Trust {
        #[command(subcommand)]
        command: TrustCommand,
    },
}

/// `db` subcommands.
#[derive(Debug, Subcommand)]
enum DbCommand {
    /// The schema versions applied, and whether this idca's are all there.
    Status,
    /// Apply the migrations the database lacks.
    Migrate,
    /// Copy a sled data directory (CA, accounts, orders, certificates, OAuth clients,
    /// grants, devices) into an empty PostgreSQL database and verify the copy.
    Copy {
        /// The data directory to copy (its server stopped).
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The database (default: storage.url).
        #[arg(long, value_name = "URL")]
        to: Option<String>,
    },
}

/// `init` options.
#[derive(clap::Args)]
struct InitArgs {
    /// Name-constrain the CA to local names.
    #[arg(long)]
    local_pki: bool,
    /// Another domain the local PKI may certify (with every name under it); repeatable.
    #[arg(long = "domain", value_name = "DOMAIN")]
    domains: Vec<String>,
    /// Keep the root key offline: write it to FILE (mode 0600) and store only the
    /// intermediate's key.
    #[arg(long, value_name = "FILE")]
    offline_root_key: Option<PathBuf>,
}

/// `issue` options.
#[derive(clap::Args)]
struct IssueArgs {
    /// DNS names (wildcards too), IP addresses; with --client also email addresses and URIs.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
    /// A client certificate (clientAuth) for mutual TLS.
    #[arg(long)]
    client: bool,
    /// Key type to generate.
    #[arg(long, value_enum, default_value = "p256")]
    key_type: KeyTypeArg,
    /// Use this PKCS#8 PEM key instead of generating one (e.g. RSA).
    #[arg(long, value_name = "FILE", conflicts_with = "key_type")]
    key: Option<PathBuf>,
    /// Days of validity (at most 825).
    #[arg(long, default_value_t = 397)]
    days: u32,
    /// Certificate chain file (default: NAME.pem, NAME+N.pem for N more names).
    #[arg(long, value_name = "FILE")]
    cert_file: Option<PathBuf>,
    /// Key file (default: NAME-key.pem), written mode 0600.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Write one PKCS#12 file (NAME.p12) instead, for Java and Windows.
    #[arg(long)]
    pkcs12: bool,
    /// The PKCS#12 file's name.
    #[arg(long, value_name = "FILE", requires = "pkcs12")]
    p12_file: Option<PathBuf>,
    /// Its password (or set IDCA_P12_PASSWORD); default `changeit`, as Java's.
    #[arg(long, requires = "pkcs12")]
    p12_password: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum KeyTypeArg {
    P256,
    P384,
    Ed25519,
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Every certificate: serial, expiry, status, ACME or CLI, names (the default).
    List,
    /// Valid certificates that expire within DAYS.
    Expiring {
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// Revoke a certificate: it is in the CRL from then on.
    Revoke {
        /// Its serial (hex), or a unique prefix of at least 8 digits.
        serial: String,
        /// RFC 5280 reason code (0 unspecified, 1 keyCompromise, 4 superseded, 5 cessationOfOperation, …).
        #[arg(long, default_value_t = 0)]
        reason: u8,
    },
}

#[derive(Subcommand)]
enum TrustCommand {
    /// Add the root (a name-constrained one, unless --force) where it is trusted.
    Install(TrustArgs),
    /// Remove this data directory's roots (current and retired) from where install put them.
    Uninstall {
        #[command(flatten)]
        args: TrustArgs,
        /// Only the roots retired by `idca rotate-root`.
        #[arg(long)]
        retired: bool,
    },
    /// Tell where the root is trusted.
    Status(TrustArgs),
}

/// Where `trust` looks (detected when not given).
#[derive(clap::Args)]
struct TrustArgs {
    /// Trust a root that is not name-constrained.
    #[arg(long)]
    force: bool,
    /// The system's anchor directory (default: the distribution's).
    #[arg(long, value_name = "DIR")]
    system_dir: Option<PathBuf>,
    /// Command that rebuilds the system bundle after a change (`none`: do not run one).
    #[arg(long, value_name = "CMD")]
    update_command: Option<String>,
    /// Leave the system store alone.
    #[arg(long)]
    no_system: bool,
    /// An NSS database directory (default: ~/.pki/nssdb and Firefox profiles); repeatable.
    #[arg(long = "nss-db", value_name = "DIR")]
    nss_dbs: Vec<PathBuf>,
    /// Leave NSS databases alone.
    #[arg(long)]
    no_nss: bool,
}

impl From<TrustArgs> for idca::cli::trust::TrustOptions {
    fn from(a: TrustArgs) -> Self {
        Self {
            force: a.force,
            system_dir: a.system_dir,
            update_command: a.update_command,
            no_system: a.no_system,
            nss_dbs: a.nss_dbs,
            no_nss: a.no_nss,
        }
    }
}

/// `enroll` options.
#[derive(clap::Args)]
struct EnrollArgs {
    /// idca's base URL.
    #[arg(long, default_value = "https://localhost:14000")]
    server: String,
    /// A user from [[oauth.users]] with handle, team and domain set. Default: the demo
    /// user, with the password from demo-password next to --ca.
    #[arg(long)]
    user: Option<String>,
    /// Their password (or set IDCA_PASSWORD).
    #[arg(long)]
    password: Option<String>,
    /// Log in with the device grant: approve the printed code in a browser (twice: once
    /// to register the device, once for the id_token of wire-oidc-01).
    #[arg(long, conflicts_with = "browser")]
    device_grant: bool,
    /// Log in with your browser: open the printed URL; the redirect comes back to a
    /// loopback port (twice, the second time without a password prompt).
    #[arg(long)]
    browser: bool,
    /// The root certificate to trust.
    #[arg(long, value_name = "FILE", default_value = "data/root.pem")]
    ca: PathBuf,
    /// Writes OUT.pem (certificate chain) and OUT-key.pem (its key).
    #[arg(long, value_name = "OUT", default_value = "device")]
    out: PathBuf,
}

/// `serve` options. idca also accepts Pebble's flags (`-config`, `-dnsserver`,
/// `-strict`), rewritten to these.
#[derive(clap::Args, Default)]
struct ServeArgs {
    /// Read a Pebble JSON configuration instead of config.toml.
    #[arg(long, value_name = "FILE")]
    pebble_config: Option<PathBuf>,
    /// DNS server (ip:port) for validation lookups (acme.validation.dns_resolver).
    #[arg(long, value_name = "ADDR")]
    dnsserver: Option<String>,
    /// Challenge POSTs must carry exactly {} (acme.strict).
    #[arg(long)]
    strict: bool,
}

/// Overrides `storage.url`.
const STORAGE_URL_ENV: &str = "IDCA_STORAGE_URL";

fn load_config(cli: &Cli, serve: &ServeArgs) -> Result<Config, String> {
    let mut config = match (&serve.pebble_config, &cli.config) {
        (Some(path), _) => idca::pebble::load(path).map_err(|e| e.to_string())?,
        (None, Some(path)) => Config::load(path).map_err(|e| e.to_string())?,
        (None, None) => {
            let default = PathBuf::from("config.toml");
            if default.exists() { Config::load(&default).map_err(|e| e.to_string())? } else { Config::default() }
        }
    };
    if let Some(dir) = &cli.data {
        config.storage.data_dir = dir.clone();
    } else if serve.pebble_config.is_some() {
        // As Pebble: a fresh CA and empty state on every start, so that suites starting
        // one instance per test, side by side in one directory, do not share a store.
        config.storage.data_dir = ephemeral_data_dir()?;
    }
    if let Some(dns) = &serve.dnsserver {
        config.acme.validation.dns_resolver = dns.clone();
    }
    if serve.strict {
        config.acme.strict = true;
    }
    idca::pebble::apply_env(&mut config, |k| std::env::var(k).ok());
    // The database may be named outside config.toml (it may carry a password).
    if let Ok(url) = std::env::var(STORAGE_URL_ENV) {
        config.storage.url = url;
    }
    config.check().map_err(|e| e.to_string())?;
    Ok(config)
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.filter));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut cli = Cli::parse_from(idca::pebble::translate_args(std::env::args().collect()));
    let command = cli.command.take().unwrap_or(Command::Serve(ServeArgs::default()));
    let serve_args = match &command {
        Command::Serve(a) => a,
        _ => &ServeArgs::default(),
    };
    let config = match load_config(&cli, serve_args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("idca: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match command {
        Command::Serve(a) => {
            init_tracing(&config);
            serve(config, a.pebble_config.is_some() && cli.data.is_none()).await
        }
        Command::Root => idca::cli::root(&config).await.map(|pem| print!("{pem}")).map_err(|e| e.to_string()),
        Command::Db { command: DbCommand::Status } => idca::cli::db::status(&config).await.map(|s| print!("{s}")),
        Command::Db { command: DbCommand::Migrate } => idca::cli::db::migrate(&config).await.map(|s| print!("{s}")),
        Command::Db { command: DbCommand::Copy { from, to } } => match to
            .or_else(|| (!config.storage.url.is_empty()).then(|| config.storage.url.clone()))
        {
            Some(to) => idca::cli::db::copy(&from, &to, config.storage.cache_capacity_mib).await.map(|s| print!("{s}")),
            None => Err("give --to URL (or set storage.url / IDCA_STORAGE_URL)".into()),
        },
        Command::HashPassword => hash_password(),
        Command::OauthRotateKey => idca::cli::rotate_oauth_key(&config)
            .await
            .map(|kid| println!("new signing key {kid}; earlier keys stay in the JWKS, retired"))
            .map_err(|e| e.to_string()),
        Command::Enroll(a) => {
            let password = a.password.or_else(|| std::env::var("IDCA_PASSWORD").ok());
            let options = idca::cli::enroll::EnrollOptions {
                server: a.server.trim_end_matches('/').to_owned(),
                user: a.user,
                password,
                login: match (a.browser, a.device_grant) {
                    (true, _) => idca::cli::enroll::Login::Browser,
                    (_, true) => idca::cli::enroll::Login::DeviceGrant,
                    _ => idca::cli::enroll::Login::Form,
                },
                ca: a.ca,
                out: a.out,
            };
            idca::cli::enroll::enroll(&options).await
        }
        Command::Init(a) => {
            let o = idca::cli::pki::InitOptions {
                local_pki: a.local_pki,
                domains: a.domains,
                offline_root_key: a.offline_root_key,
            };
            idca::cli::pki::init(&config, &o).await.map(|r| print!("{r}"))
        }
        Command::Issue(a) => {
            use idca::ca::KeyType;
            let key = match (a.key, a.key_type) {
                (Some(file), _) => idca::cli::pki::KeyChoice::File(file),
                (None, KeyTypeArg::P256) => idca::cli::pki::KeyChoice::Generate(KeyType::P256),
                (None, KeyTypeArg::P384) => idca::cli::pki::KeyChoice::Generate(KeyType::P384),
                (None, KeyTypeArg::Ed25519) => idca::cli::pki::KeyChoice::Generate(KeyType::Ed25519),
            };
            let password = a
                .p12_password
                .or_else(|| std::env::var("IDCA_P12_PASSWORD").ok())
                .unwrap_or_else(|| "changeit".to_owned());
            let o = idca::cli::pki::IssueOptions {
                names: a.names,
                client: a.client,
                key,
                days: a.days,
                cert_file: a.cert_file,
                key_file: a.key_file,
                pkcs12: a.pkcs12.then_some((a.p12_file, password)),
            };
            idca::cli::pki::issue(&config, &o).await.map(|r| print!("{r}"))
        }
        Command::Certs { command } => match command.unwrap_or(CertsCommand::List) {
            CertsCommand::List => {
                idca::cli::pki::list(&config, None).await.map(|c| print!("{}", idca::cli::pki::table(&c)))
            }
            CertsCommand::Expiring { days } => idca::cli::pki::list(&config, Some(i64::from(days) * 86_400))
                .await
                .map(|c| print!("{}", idca::cli::pki::table(&c))),
            CertsCommand::Revoke { serial, reason } => {
                idca::cli::pki::revoke(&config, &serial, reason).await.map(|r| print!("{r}"))
            }
        },
        Command::RotateRoot { apply, offline_root_key } => {
            idca::cli::pki::rotate_root(&config, apply, offline_root_key.as_deref()).await.map(|r| print!("{r}"))
        }
        Command::Trust { command } => match command {
            TrustCommand::Install(a) => idca::cli::trust::install(&config, &a.into()),
            TrustCommand::Uninstall { args, retired } => idca::cli::trust::uninstall(&config, &args.into(), retired),
            TrustCommand::Status(a) => idca::cli::trust::status(&config, &a.into()),
        }
        .map(|r| print!("{r}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idca: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the server; `ephemeral`: the data directory is removed when it stops.
async fn serve(config: Config, ephemeral: bool) -> Result<(), String> {
    let data_dir = config.storage.data_dir.clone();
    let result = async {
        let server = idca::app::start(config, idca::app::StartOptions { handle_signals: true })
            .await
            .map_err(|e| e.to_string())?;
        return_start_up_memory();
        // One line on stdout that scripts (and the tests) can read.
        println!("idca listening on {} directory {}", server.addr, server.directory_url());
        eprintln!("idca: root certificate at {}", data_dir.join("root.pem").display());
        server.wait().await.map_err(|e| e.to_string())
    }
    .await;
    if ephemeral {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    result
}

/// Gives back to the system what the start freed on this thread: sled's recovery reads its
/// snapshot (an entry per page) into memory and drops it once the page table is built,
/// and this thread then only waits for the server, so mimalloc, which returns a thread's
/// free pages when that thread next allocates, would keep them. With a million
/// certificates stored: 138-140 MiB resident after start instead of 235 (with sled's
/// leaves as they were; with vendor/sled patch 8, 62-75 instead of 113).
/// The one `unsafe` in idca (the library forbids it).
#[allow(unsafe_code)]
fn return_start_up_memory() {
    // SAFETY: `mi_collect` takes no pointers and may be called from any thread at any time;
    // it frees the calling thread's empty pages (forced: and abandoned ones).
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// A new private directory under the system's temporary directory, for a Pebble-mode
/// start without `--data`.
fn ephemeral_data_dir() -> Result<PathBuf, String> {
    let base = std::env::temp_dir();
    for attempt in 0..16u32 {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!("idca-pebble-{}-{nanos:08x}{attempt}", std::process::id()));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        match builder.create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("cannot create a data directory under {}: {e}", base.display())),
        }
    }
    Err(format!("cannot create a data directory under {}", base.display()))
}

fn hash_password() -> Result<(), String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| e.to_string())?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err("no password on standard input".into());
    }
    println!("{}", idca::oauth::hash_password(password)?);
    Ok(())
}
