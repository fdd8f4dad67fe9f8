//! The `idca` command.

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
    /// Read a password (or client secret) from standard input and print its argon2id
    /// hash, for `password_hash` / `secret_hash` in config.toml.
    HashPassword,
    /// Make a new OAuth signing key the active one (older keys stay published until
    /// their tokens expire). Run while the server is stopped.
    OauthRotateKey,
    /// Demo client: log in, register a device and enroll a client identity certificate
    /// against a running idca (wire-dpop-01 + wire-oidc-01).
    Enroll(EnrollArgs),
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
    }
    if let Some(dns) = &serve.dnsserver {
        config.acme.validation.dns_resolver = dns.clone();
    }
    if serve.strict {
        config.acme.strict = true;
    }
    config.apply_pebble_env(|k| std::env::var(k).ok());
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
        Command::Serve(_) => {
            init_tracing(&config);
            serve(config).await
        }
        Command::Root => idca::cli::root(&config).await.map(|pem| print!("{pem}")).map_err(|e| e.to_string()),
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idca: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let data_dir = config.storage.data_dir.clone();
    let server =
        idca::app::start(config, idca::app::StartOptions { handle_signals: true }).await.map_err(|e| e.to_string())?;
    // One line on stdout that scripts (and the tests) can read.
    println!("idca listening on {} directory {}", server.addr, server.directory_url());
    eprintln!("idca: root certificate at {}", data_dir.join("root.pem").display());
    server.wait().await.map_err(|e| e.to_string())
}

fn hash_password() -> Result<(), String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| e.to_string())?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err("no password on standard input".into());
    }
    println!("{}", idca::authz::hash_password(password)?);
    Ok(())
}
