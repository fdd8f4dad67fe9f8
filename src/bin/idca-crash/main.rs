//! `idca-crash`: crash safety under load.
//!
//! Starts the real `idca serve` on a fresh data directory, runs whole issuance flows
//! against it with N workers, kills it with SIGKILL at a random moment, and restarts it
//! on the same data, again and again. After each restart it checks, through the ACME API
//! and with the owning account's key, that every account, order and certificate the
//! server acknowledged before the kill is still there (certificates byte for byte);
//! while the server is down it opens the store and checks that the CA's keys and
//! certificates are unchanged. At the end it checks everything once more and prints a
//! table. Exit status 1 if anything acknowledged was lost or the CA changed.
//!
//! With `--database URL` idca keeps its state in PostgreSQL; with `--restart-database
//! COMMAND` as well, every fourth cycle (the 2nd, 6th, …) crashes the database instead
//! of idca (COMMAND, such as `bash scripts/pg crash DIR`, stops it as a crash would and
//! starts it again) while idca keeps running, answering 503 until it is back.
//!
//!     cargo build --release --bins
//!     target/release/idca-crash --cycles 20
//!     target/release/idca-crash --cycles 8 --database "host=/tmp/pg user=idca dbname=crash" \
//!         --restart-database "bash scripts/pg crash /tmp/pg"
//!
//! With `--instances N` (and `--database`), N instances run behind HAProxy and each cycle
//! SIGKILLs a random one under load, restarts it, and checks through the load balancer
//! (see `cluster.rs`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use idca::cli::acme_client::{Acknowledged, AcmeClient};
use ring::rand::SecureRandom;
use serde_json::Value;
use tokio::sync::Mutex;

mod cluster;

/// Kills idca with SIGKILL under load, again and again, and checks that nothing a client
/// was told about is lost.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
struct Args {
    /// The idca binary (default: `idca` beside this program).
    #[arg(long)]
    idca: Option<PathBuf>,
    /// Kill-and-restart cycles.
    #[arg(long, default_value_t = 20)]
    cycles: u32,
    /// Concurrent issuance flows.
    #[arg(long, short = 'c', default_value_t = 8)]
    concurrency: usize,
    /// The kill comes at a random moment between these many milliseconds after the
    /// server answered.
    #[arg(long, default_value_t = 200)]
    min_ms: u64,
    #[arg(long, default_value_t = 1500)]
    max_ms: u64,
    /// Loopback port for the server.
    #[arg(long, default_value_t = 14300)]
    port: u16,
    /// The data directory (default: a fresh one under /var/tmp, removed afterwards).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Checks the checker: after the second kill, puts back the data directory as it was
    /// after the first, as if the second cycle's writes had never reached the disk. The
    /// run must then report them lost (and exit 1).
    #[arg(long)]
    self_check: bool,
    /// Keep the state in this PostgreSQL database (`storage.url`).
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// A shell command that crashes and restarts the database; run instead of killing
    /// idca in every fourth cycle.
    #[arg(long, value_name = "COMMAND", requires = "database")]
    restart_database: Option<String>,
    /// Run this many instances behind HAProxy (Debian's `haproxy`) on `--database`, and
    /// kill a random one in each cycle while the others serve: `--port` is the load
    /// balancer's, the instances take the ports after it.
    #[arg(long, value_name = "N", requires = "database")]
    instances: Option<usize>,
}

impl Args {
    /// Whether cycle `n` crashes the database rather than idca.
    fn crashes_database(&self, n: u32) -> bool {
        self.restart_database.is_some() && n % 4 == 2
    }
}

/// What one cycle found.
struct CycleReport {
    killed_after_ms: u64,
    restart_ms: u64,
    lost: Vec<String>,
}

/// A client and what the server acknowledged to it.
type Clients = Vec<AcmeClient>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    idca::install_crypto_provider();
    match run(Args::parse()).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("idca-crash: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

struct Server {
    binary: PathBuf,
    config: PathBuf,
    data: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Server {
    /// Starts idca and waits until its directory answers; returns how long that took.
    async fn start(&mut self) -> Result<Duration, String> {
        let started = Instant::now();
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(&self.config)
            .arg("--data")
            .arg(&self.data)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        let plain = reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(1))
            .build()
            .map_err(|e| e.to_string())?;
        while started.elapsed() < Duration::from_secs(30) {
            if plain.get(self.directory()).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(started.elapsed());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(format!("idca exited at start with {status}"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Err("idca did not answer within 30 s".into())
    }

    /// Waits until idca's health check passes again (its database is back); how long.
    async fn wait_healthy(&self) -> Result<Duration, String> {
        let started = Instant::now();
        let plain = reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(1))
            .build()
            .map_err(|e| e.to_string())?;
        let health = format!("https://localhost:{}/healthz", self.port);
        while started.elapsed() < Duration::from_secs(60) {
            if plain.get(&health).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err("idca did not become healthy within 60 s of the database's restart".into())
    }

    fn directory(&self) -> String {
        format!("https://localhost:{}/directory", self.port)
    }

    /// SIGKILL, then wait for the process to be gone.
    fn kill(&mut self) -> Result<(), String> {
        if let Some(mut child) = self.child.take() {
            child.kill().map_err(|e| format!("kill: {e}"))?;
            child.wait().map_err(|e| format!("wait: {e}"))?;
        }
        Ok(())
    }

    /// SIGTERM (a graceful stop), then wait.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

fn random_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() || n == 0 {
        return 0;
    }
    u64::from_le_bytes(b) % n
}

async fn http_client(root: &Path) -> Result<reqwest::Client, String> {
    let pem = std::fs::read(root).map_err(|e| format!("cannot read {}: {e}", root.display()))?;
    let root = reqwest::Certificate::from_pem(&pem).map_err(|e| e.to_string())?;
    reqwest::Client::builder()
        .tls_certs_only([root])
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())
}

async fn directory(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let text =
        http.get(url).send().await.map_err(|e| format!("GET {url}: {e}"))?.text().await.map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("the directory is not JSON: {e}"))
}

/// The CA as stored, serialized: what must not change across crashes.
async fn ca_snapshot(data: &Path, database: Option<&str>) -> Result<String, String> {
    let mut config = idca::config::Config::default();
    config.storage.data_dir = data.to_owned();
    config.storage.url = database.unwrap_or_default().to_owned();
    let store = idca::app::open_store(&config).await.map_err(|e| format!("cannot open the store after a kill: {e}"))?;
    let material = store.ca_material().await.map_err(|e| format!("cannot read the CA after a kill: {e}"))?;
    let material = material.ok_or("the CA is gone after a kill")?;
    let mut snapshot = serde_json::to_string(&material).map_err(|e| e.to_string())?;
    for file in ["root.pem", "intermediate.pem"] {
        snapshot.push_str(&std::fs::read_to_string(data.join(file)).unwrap_or_default());
    }
    Ok(snapshot)
}

/// Issuance flows running until [`Load::finish`]: every client that was acknowledged
/// something, and the errors flows met before the end.
struct Load {
    stopped: Arc<AtomicBool>,
    clients: Arc<Mutex<Clients>>,
    errors: Arc<Mutex<Vec<String>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(http: &reqwest::Client, dir: &Value, concurrency: usize, label: &str) -> Self {
        let stopped = Arc::new(AtomicBool::new(false));
        let clients: Arc<Mutex<Clients>> = Arc::default();
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut workers = Vec::new();
        for w in 0..concurrency {
            let (http, dir, stopped, clients, errors) =
                (http.clone(), dir.clone(), stopped.clone(), clients.clone(), errors.clone());
            let label = label.to_owned();
            workers.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stopped.load(Ordering::SeqCst) {
                    let Ok(mut client) = AcmeClient::new(http.clone(), dir.clone()) else { return };
                    let result = client.issue(&format!("{label}w{w}-{n}.crash.test")).await;
                    n += 1;
                    if let Err(e) = result
                        && !stopped.load(Ordering::SeqCst)
                    {
                        errors.lock().await.push(e);
                    }
                    if !client.acknowledged.is_empty() {
                        clients.lock().await.push(client);
                    }
                }
            }));
        }
        Self { stopped, clients, errors, workers }
    }

    /// From now on, failing flows are not errors (the server is being killed).
    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// How many flows failed so far.
    async fn errors_so_far(&self) -> usize {
        self.errors.lock().await.len()
    }

    async fn finish(self) -> (Clients, Vec<String>) {
        self.stop();
        for w in self.workers {
            let _ = w.await;
        }
        let clients = std::mem::take(&mut *self.clients.lock().await);
        let errors = std::mem::take(&mut *self.errors.lock().await);
        (clients, errors)
    }
}

/// The random moment of a cycle's kill, in ms after the load started.
fn kill_delay(args: &Args) -> u64 {
    args.min_ms + random_below(args.max_ms.saturating_sub(args.min_ms) + 1)
}

/// Runs flows until the server is killed; returns every client that was acknowledged
/// something, and the errors seen while the server was still up.
async fn load_until_killed(
    server: &mut Server,
    http: &reqwest::Client,
    dir: &Value,
    args: &Args,
    crash_database: bool,
) -> Result<(Clients, u64, Vec<String>), String> {
    let load = Load::start(http, dir, args.concurrency, "");
    let delay = kill_delay(args);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    match (&args.restart_database, crash_database) {
        (Some(command), true) => {
            // Under load: the flows keep going while the database is down and back.
            let run = command.clone();
            let status = tokio::task::spawn_blocking(move || Command::new("sh").arg("-c").arg(run).status())
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("{command}: {e}"))?;
            if !status.success() {
                return Err(format!("{command}: {status}"));
            }
            server.wait_healthy().await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            load.stop();
        }
        _ => {
            load.stop();
            server.kill()?;
        }
    }
    let (clients, errors) = load.finish().await;
    Ok((clients, delay, errors))
}

/// Checks, through the API with each owner's key, that everything acknowledged to
/// `clients` is there; returns what is missing or different.
async fn check(clients: Clients, http: &reqwest::Client, concurrency: usize) -> Result<(Clients, Vec<String>), String> {
    let groups = concurrency.max(1);
    let mut buckets: Vec<Clients> = (0..groups).map(|_| Vec::new()).collect();
    for (i, c) in clients.into_iter().enumerate() {
        buckets[i % groups].push(c);
    }
    let tasks: Vec<_> = buckets
        .into_iter()
        .map(|bucket| {
            let http = http.clone();
            tokio::spawn(async move {
                let mut lost = Vec::new();
                let mut checked = Vec::with_capacity(bucket.len());
                for mut client in bucket {
                    // The previous server's connections and nonces died with it.
                    client.reconnect(http.clone());
                    for ack in client.acknowledged.clone() {
                        if let Some(problem) = check_one(&mut client, &ack).await? {
                            lost.push(problem);
                        }
                    }
                    checked.push(client);
                }
                Ok::<_, String>((checked, lost))
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut lost = Vec::new();
    for t in tasks {
        let (c, l) = t.await.map_err(|e| e.to_string())??;
        all.extend(c);
        lost.extend(l);
    }
    Ok((all, lost))
}

/// `Ok(Some(why))` when the object is missing or different; `Err` when the server could
/// not be asked at all.
async fn check_one(client: &mut AcmeClient, ack: &Acknowledged) -> Result<Option<String>, String> {
    let (what, url) = match ack {
        Acknowledged::Account { url } => ("account", url),
        Acknowledged::Order { url } | Acknowledged::Finalized { order: url, .. } => ("order", url),
        Acknowledged::Certificate { url, .. } => ("certificate", url),
    };
    let (body, _, text) = match client.post("check", url, None).await {
        Ok(found) => found,
        Err(e) if e.starts_with("check: ") => return Ok(Some(format!("{what} {url}: {e}"))),
        Err(e) => return Err(format!("cannot check {url}: {e}")),
    };
    Ok(match ack {
        Acknowledged::Account { .. } if body["status"] != "valid" => Some(format!("account {url}: {}", body["status"])),
        Acknowledged::Certificate { pem, .. } if text != *pem => Some(format!("certificate {url}: different bytes")),
        Acknowledged::Finalized { certificate, .. } => (body["status"] != "valid"
            || body["certificate"] != certificate.as_str())
        .then(|| format!("order {url}: finalized with {certificate}, now {} {}", body["status"], body["certificate"])),
        Acknowledged::Certificate { order, url: cert, .. } => {
            let (order_body, _, _) = match client.post("check", order, None).await {
                Ok(found) => found,
                Err(e) if e.starts_with("check: ") => return Ok(Some(format!("order {order}: {e}"))),
                Err(e) => return Err(format!("cannot check {order}: {e}")),
            };
            (order_body["status"] != "valid" || order_body["certificate"] != cert.as_str())
                .then(|| format!("order {order}: no longer valid with {cert}"))
        }
        _ => None,
    })
}

fn count(clients: &Clients) -> (usize, usize, usize) {
    let mut n = (0, 0, 0);
    for ack in clients.iter().flat_map(|c| &c.acknowledged) {
        match ack {
            Acknowledged::Account { .. } => n.0 += 1,
            Acknowledged::Order { .. } => n.1 += 1,
            // Checked (the order is still valid with that certificate), counted as its order.
            Acknowledged::Finalized { .. } => {}
            Acknowledged::Certificate { .. } => n.2 += 1,
        }
    }
    n
}

async fn run(args: Args) -> Result<bool, String> {
    if args.concurrency == 0 || args.cycles == 0 || args.min_ms > args.max_ms {
        return Err("--concurrency and --cycles must be at least 1, and --min-ms at most --max-ms".into());
    }
    if args.self_check && args.database.is_some() {
        return Err("--self-check puts back a sled data directory; it does not apply to --database".into());
    }
    let binary = match &args.idca {
        Some(b) => b.clone(),
        None => std::env::current_exe().map_err(|e| e.to_string())?.with_file_name("idca"),
    };
    let (base, temporary) = match &args.data {
        Some(d) => (d.clone(), false),
        None => {
            let parent = if Path::new("/var/tmp").is_dir() { PathBuf::from("/var/tmp") } else { std::env::temp_dir() };
            let mut suffix = [0u8; 6];
            ring::rand::SystemRandom::new().fill(&mut suffix).map_err(|_| "no randomness")?;
            (parent.join(format!("idca-crash-{}", idca::jose::b64_encode(suffix))), true)
        }
    };
    std::fs::create_dir_all(&base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
    let config = base.join("crash.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{}\"\n[management]\nlisten = \"\"\n[acme.testing]\nalways_valid = \
             true\n[limits]\nnew_accounts_per_minute_per_address = 0\n[log]\nfilter = \"warn\"\n{}",
            args.port,
            args.database.as_ref().map(|url| format!("[storage]\nurl = {url:?}\n")).unwrap_or_default()
        ),
    )
    .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
    if let (Some(n), Some(database)) = (args.instances, &args.database) {
        let result = cluster::run(&args, &binary, &base, n, database).await;
        if temporary {
            let _ = std::fs::remove_dir_all(&base);
        }
        return result;
    }
    let data = base.join("data");
    let mut server = Server { binary, config, data: data.clone(), port: args.port, child: None };
    let result = cycles(&mut server, &args).await;
    server.stop();
    if temporary {
        let _ = std::fs::remove_dir_all(&base);
    }
    result
}

async fn cycles(server: &mut Server, args: &Args) -> Result<bool, String> {
    server.start().await?;
    let root = server.data.join("root.pem");
    let mut ca: Option<String> = None;
    let mut all: Clients = Vec::new();
    let mut reports = Vec::new();
    let mut load_errors = Vec::new();
    let mut ca_changed = false;
    let mut database_errors = 0;
    for cycle in 1..=args.cycles {
        let http = http_client(&root).await?;
        let dir = directory(&http, &server.directory()).await?;
        let crash_database = args.crashes_database(cycle);
        let (clients, delay, errors) = load_until_killed(server, &http, &dir, args, crash_database).await?;
        if crash_database {
            // The flows that met the database down failed (503, or a reset): expected.
            database_errors += errors.len();
            let restart = server.wait_healthy().await?;
            let (accounts, orders, certificates) = count(&clients);
            let (clients, lost) = check(clients, &http_client(&root).await?, args.concurrency).await?;
            println!(
                "cycle {cycle:>3}: the database crashed after {delay:>5} ms; {accounts} accounts, {orders} orders, \
                 {certificates} certificates acknowledged; {} lost; idca healthy again in {} ms",
                lost.len(),
                restart.as_millis()
            );
            reports.push(CycleReport { killed_after_ms: delay, restart_ms: restart.as_millis() as u64, lost });
            all.extend(clients);
            continue;
        }
        load_errors.extend(errors.into_iter().map(|e| format!("cycle {cycle}: {e}")));
        let snapshot = ca_snapshot(&server.data, args.database.as_deref()).await?;
        if args.self_check {
            let saved = server.data.with_extension("saved");
            match cycle {
                1 => idca::store::copy_dir(&server.data, &saved).map_err(|e| format!("cannot copy the data: {e}"))?,
                2 => {
                    std::fs::remove_dir_all(&server.data).map_err(|e| e.to_string())?;
                    std::fs::rename(&saved, &server.data).map_err(|e| e.to_string())?;
                }
                _ => {}
            }
        }
        match &ca {
            None => ca = Some(snapshot),
            Some(before) if *before != snapshot => ca_changed = true,
            Some(_) => {}
        }
        let restart = server.start().await?;
        let (accounts, orders, certificates) = count(&clients);
        let (clients, lost) = check(clients, &http_client(&root).await?, args.concurrency).await?;
        println!(
            "cycle {cycle:>3}: killed after {delay:>5} ms; {accounts} accounts, {orders} orders, {certificates} \
             certificates acknowledged; {} lost; restarted in {} ms",
            lost.len(),
            restart.as_millis()
        );
        reports.push(CycleReport { killed_after_ms: delay, restart_ms: restart.as_millis() as u64, lost });
        all.extend(clients);
    }
    // Everything once more, on the last restart.
    let (final_accounts, final_orders, final_certs) = count(&all);
    let (_, final_lost) = check(all, &http_client(&root).await?, args.concurrency).await?;
    let sum = |f: fn(&CycleReport) -> usize| reports.iter().map(f).sum::<usize>();
    let lost_in_cycles = sum(|r| r.lost.len());
    let mut restarts: Vec<u64> = reports.iter().map(|r| r.restart_ms).collect();
    restarts.sort_unstable();
    let kills: Vec<u64> = reports.iter().map(|r| r.killed_after_ms).collect();
    println!();
    println!("| cycles | acknowledged accounts | orders | certificates | lost | CA keys | restart (median) |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {final_accounts} | {final_orders} | {final_certs} | {} | {} | {} ms |",
        reports.len(),
        lost_in_cycles + final_lost.len(),
        if ca_changed { "CHANGED" } else { "unchanged" },
        restarts.get(restarts.len() / 2).copied().unwrap_or(0)
    );
    println!(
        "kills came {}..{} ms after the server answered; errors while it was up: {}",
        kills.iter().min().copied().unwrap_or(0),
        kills.iter().max().copied().unwrap_or(0),
        load_errors.len()
    );
    if args.restart_database.is_some() {
        println!(
            "database crashes: {}; flows refused while it was down: {database_errors}",
            (1..=args.cycles).filter(|n| args.crashes_database(*n)).count()
        );
    }
    for e in load_errors.iter().take(10) {
        println!("  {e}");
    }
    for l in reports.iter().flat_map(|r| &r.lost).chain(&final_lost).take(50) {
        println!("LOST {l}");
    }
    Ok(lost_in_cycles == 0 && final_lost.is_empty() && !ca_changed && load_errors.is_empty())
}
