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
    Serve,
    /// Print the root certificate (PEM) to trust.
    Root,
}

fn load_config(cli: &Cli) -> Result<Config, String> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => {
            let default = PathBuf::from("config.toml");
            if default.exists() { Config::load(&default).map_err(|e| e.to_string())? } else { Config::default() }
        }
    };
    if let Some(dir) = &cli.data {
        config.storage.data_dir = dir.clone();
    }
    config.apply_pebble_env(|k| std::env::var(k).ok());
    Ok(config)
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.filter));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("idca: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            init_tracing(&config);
            serve(config).await
        }
        Command::Root => idca::cli::root(&config).await.map(|pem| print!("{pem}")).map_err(|e| e.to_string()),
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
