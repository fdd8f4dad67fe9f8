//! `--instances N`: N `idca serve` processes on one PostgreSQL database behind HAProxy
//! (`mode http`, round robin, health checks on `/healthz`, TLS ended at the balancer).
//! Each cycle runs issuance flows through the balancer, SIGKILLs a random instance at a
//! random moment while the others keep serving, restarts it, and checks through the
//! balancer that everything acknowledged is there (certificates byte for byte) and that
//! no challenge stays `processing` longer than a validation lease and a poll.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Args, Clients, Load, ca_snapshot, check, count, directory, http_client, kill_delay, random_below};

/// The validation lease the instances run with (`acme.validation.lease_secs`): a killed
/// instance's accepted challenges are taken over this long after it died.
const LEASE_SECS: u64 = 5;

struct Cluster {
    binary: PathBuf,
    base: PathBuf,
    lb_port: u16,
    ports: Vec<u16>,
    instances: Vec<Option<Child>>,
    haproxy: Option<Child>,
}

impl Cluster {
    fn config(&self, i: usize, database: &str) -> PathBuf {
        let path = self.base.join(format!("idca{i}.toml"));
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"https://localhost:{lb}\"\ntls = false\n\
             trusted_proxies = [\"127.0.0.1/32\"]\n[storage]\nurl = {database:?}\n[management]\nlisten = \"\"\n\
             [acme.testing]\nalways_valid = true\nvalidation_delay_ms = 100\n[acme.validation]\nlease_secs = {LEASE_SECS}\n\
             [limits]\nnew_accounts_per_minute_per_address = 0\n[log]\nfilter = \
             \"warn\"\n",
            port = self.ports[i],
            lb = self.lb_port,
        );
        let _ = std::fs::write(&path, text);
        path
    }

    fn data(&self, i: usize) -> PathBuf {
        self.base.join(format!("data{i}"))
    }

    /// Starts instance `i` and waits until its health check passes; how long it took.
    async fn start(&mut self, i: usize, database: &str) -> Result<Duration, String> {
        let started = Instant::now();
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(self.config(i, database))
            .arg("--data")
            .arg(self.data(i))
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        self.instances[i] = Some(child);
        let plain = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().map_err(|e| e.to_string())?;
        let health = format!("http://127.0.0.1:{}/healthz", self.ports[i]);
        while started.elapsed() < Duration::from_secs(30) {
            if plain.get(&health).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(started.elapsed());
            }
            if let Some(status) = self.instances[i].as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(format!("instance {i} exited at start with {status}"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Err(format!("instance {i} did not answer within 30 s"))
    }

    fn kill(&mut self, i: usize) -> Result<(), String> {
        if let Some(mut child) = self.instances[i].take() {
            child.kill().map_err(|e| format!("kill: {e}"))?;
            child.wait().map_err(|e| format!("wait: {e}"))?;
        }
        Ok(())
    }

    fn directory(&self) -> String {
        format!("https://localhost:{}/directory", self.lb_port)
    }

    /// HAProxy in front of the instances, with a certificate for localhost from a CA made
    /// here; returns that CA's PEM file (what the clients trust).
    async fn start_balancer(&mut self) -> Result<PathBuf, String> {
        let (ca_pem, lb_pem) = balancer_tls(&self.base)?;
        let mut cfg = format!(
            "global\n  maxconn 4000\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 60s\n  \
             timeout server 60s\n  option forwardfor\n  retries 2\n  option redispatch\n\
             frontend acme\n  bind 127.0.0.1:{} ssl crt {}\n  default_backend idca\n\
             backend idca\n  balance roundrobin\n  option httpchk GET /healthz\n  \
             default-server inter 500ms fall 2 rise 1\n",
            self.lb_port,
            lb_pem.display()
        );
        for (i, p) in self.ports.iter().enumerate() {
            cfg.push_str(&format!("  server idca{i} 127.0.0.1:{p} check\n"));
        }
        let path = self.base.join("haproxy.cfg");
        std::fs::write(&path, cfg).map_err(|e| e.to_string())?;
        let bin = if Path::new("/usr/sbin/haproxy").exists() { "/usr/sbin/haproxy" } else { "haproxy" };
        let child = Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start haproxy ({e}); Debian: apt-get install haproxy"))?;
        self.haproxy = Some(child);
        let http = http_client(&ca_pem).await?;
        for _ in 0..200 {
            if http.get(self.directory()).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(ca_pem);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err("haproxy did not serve the directory within 10 s".into())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.instances.iter_mut().chain(std::iter::once(&mut self.haproxy)) {
            if let Some(mut c) = child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// A CA and a certificate for localhost (the balancer's), as PEM files.
fn balancer_tls(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let bad = |e: rcgen::Error| e.to_string();
    let ca_key = rcgen::KeyPair::generate().map_err(bad)?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(bad)?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "idca-crash load balancer CA");
    let ca_cert = ca.self_signed(&ca_key).map_err(bad)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().map_err(bad)?;
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .map_err(bad)?
        .signed_by(&key, &issuer)
        .map_err(bad)?;
    let (ca_pem, lb_pem) = (dir.join("lb-ca.pem"), dir.join("lb.pem"));
    std::fs::write(&ca_pem, ca_cert.pem()).map_err(|e| e.to_string())?;
    std::fs::write(&lb_pem, format!("{}{}", cert.pem(), key.serialize_pem())).map_err(|e| e.to_string())?;
    Ok((ca_pem, lb_pem))
}

/// Seconds from `since` until no authorization is `processing` any more (waiting at most
/// a lease and ten seconds); `None` if some still are then.
async fn processing_drains(database: &str, data: &Path, since: Instant) -> Result<Option<f64>, String> {
    let mut config = idca::config::Config::default();
    config.storage.data_dir = data.to_owned();
    config.storage.url = database.to_owned();
    let store = idca::app::open_store(&config).await.map_err(|e| e.to_string())?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(LEASE_SECS + 10) {
        if store.authorizations_processing().await.map_err(|e| e.to_string())?.is_empty() {
            return Ok(Some(since.elapsed().as_secs_f64()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(None)
}

pub(super) async fn run(args: &Args, binary: &Path, base: &Path, n: usize, database: &str) -> Result<bool, String> {
    if n < 2 {
        return Err("--instances needs at least 2 (one to kill, one to serve)".into());
    }
    let ports = (1..=n).map(|i| args.port + u16::try_from(i).unwrap_or(u16::MAX)).collect();
    let mut cluster = Cluster {
        binary: binary.to_owned(),
        base: base.to_owned(),
        lb_port: args.port,
        ports,
        instances: (0..n).map(|_| None).collect(),
        haproxy: None,
    };
    for i in 0..n {
        cluster.start(i, database).await?;
    }
    let ca_pem = cluster.start_balancer().await?;
    let ca_before = ca_snapshot(&cluster.data(0), Some(database)).await?;
    let mut all: Clients = Vec::new();
    let (mut lost_total, mut failed_max, mut failed_total, mut stuck) = (0usize, 0usize, 0usize, 0usize);
    let mut drains: Vec<f64> = Vec::new();
    let mut lost_lines = Vec::new();
    for cycle in 1..=args.cycles {
        let http = http_client(&ca_pem).await?;
        let dir = directory(&http, &cluster.directory()).await?;
        let load = Load::start(&http, &dir, args.concurrency, &format!("c{cycle}"));
        let delay = kill_delay(args);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let victim = usize::try_from(random_below(n as u64)).unwrap_or(0);
        let before_kill = load.errors_so_far().await;
        cluster.kill(victim)?;
        let killed_at = Instant::now();
        // The others serve alone for a while, then the victim comes back.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let restart = cluster.start(victim, database).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (clients, errors) = load.finish().await;
        // Before the check: the victim's accepted challenges wait for their lease.
        let drained = processing_drains(database, &cluster.data(0), killed_at).await?;
        let failed = errors.len().saturating_sub(before_kill);
        failed_max = failed_max.max(failed);
        failed_total += errors.len();
        let (accounts, orders, certificates) = count(&clients);
        let (clients, lost) = check(clients, &http, args.concurrency).await?;
        match drained {
            Some(s) => drains.push(s),
            None => stuck += 1,
        }
        println!(
            "cycle {cycle:>3}: killed instance {victim} after {delay:>5} ms; {accounts} accounts, {orders} orders, \
             {certificates} certificates acknowledged; {} lost; {failed} flows failed after the kill (of {} in \
             flight at most); restarted in {} ms; no challenge processing {} after the kill",
            lost.len(),
            args.concurrency,
            restart.as_millis(),
            drained.map_or_else(|| "NOT within lease + 10 s".into(), |s| format!("{s:.1} s"))
        );
        for e in errors.iter().take(3) {
            println!("    {e}");
        }
        lost_total += lost.len();
        lost_lines.extend(lost);
        all.extend(clients);
    }
    let (accounts, orders, certificates) = count(&all);
    let http = http_client(&ca_pem).await?;
    let (_, final_lost) = check(all, &http, args.concurrency).await?;
    let ca_changed = ca_snapshot(&cluster.data(0), Some(database)).await? != ca_before;
    drains.sort_by(f64::total_cmp);
    println!();
    println!(
        "| cycles (one instance killed in each) | instances | acknowledged accounts | orders | certificates | lost | flows failed \
         per kill (max) | processing left after lease + 10 s | CA |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {n} | {accounts} | {orders} | {certificates} | {} | {failed_max} (of {} in flight) | {stuck} | {} |",
        args.cycles,
        lost_total + final_lost.len(),
        args.concurrency,
        if ca_changed { "CHANGED" } else { "unchanged" }
    );
    println!(
        "flows failed in all: {failed_total}; no challenge processing {:.1} s (median), {:.1} s (max) after a kill \
         (lease {LEASE_SECS} s)",
        drains.get(drains.len() / 2).copied().unwrap_or(0.0),
        drains.last().copied().unwrap_or(0.0)
    );
    for l in lost_lines.iter().chain(&final_lost).take(50) {
        println!("LOST {l}");
    }
    Ok(lost_total == 0 && final_lost.is_empty() && !ca_changed && stuck == 0 && failed_max <= args.concurrency)
}
