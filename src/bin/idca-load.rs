//! `idca-load`: a load generator for ACME servers on this machine.
//!
//! Runs complete issuance flows (directory, nonce, account, order, authorization,
//! challenge, finalize, poll, certificate download) with N concurrent workers for a fixed
//! number of orders and a time limit, then reports issuances per second, flow and
//! per-request latency percentiles, errors by type, the server's CPU time and peak RSS
//! (given its pid), and that CPU time as a multiple of the signature operations a flow
//! cannot avoid, measured in the same run. It only talks to loopback addresses and always
//! stops by itself. The server should validate without looking (idca:
//! `acme.testing.always_valid`, or `PEBBLE_VA_ALWAYS_VALID=1`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use idca::cli::acme_client::{AcmeClient as Client, check_loopback, fail, transport};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// Load generator for ACME servers on loopback.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
struct Args {
    /// The ACME directory URL (loopback only).
    #[arg(long, default_value = "https://localhost:14000/directory")]
    directory: String,
    /// The server's root certificate (PEM).
    #[arg(long, value_name = "FILE", default_value = "data/root.pem")]
    ca: PathBuf,
    /// Concurrent workers.
    #[arg(long, short = 'c', default_value_t = 8)]
    concurrency: usize,
    /// Issuances to run.
    #[arg(long, short = 'n', default_value_t = 1000)]
    orders: u64,
    /// Stop after this many seconds even if orders remain.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// The server's pid: report its CPU time and peak RSS (Linux /proc).
    #[arg(long)]
    server_pid: Option<u32>,
    /// `issue`: full issuance flows; `nonce`: only newNonce requests (memory check);
    /// `identity`: client identity enrollments as `idca enroll` makes them (login, device,
    /// DPoP access token, wire-dpop-01, wire-oidc-01, finalize) against idca.
    #[arg(long, value_enum, default_value = "issue")]
    mode: Mode,
    /// `identity` mode: the user to log in as (default: the demo user, with the password
    /// from demo-password beside --ca).
    #[arg(long)]
    user: Option<String>,
    /// `identity` mode: that user's password.
    #[arg(long)]
    password: Option<String>,
    /// One account per worker instead of one per flow.
    #[arg(long)]
    reuse_accounts: bool,
    /// Print the report as one JSON object too.
    #[arg(long)]
    json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
enum Mode {
    Issue,
    Nonce,
    Identity,
}

/// The steps of an identity enrollment, as `idca enroll` numbers them.
const IDENTITY_STEPS: [&str; 10] = [
    "discovery",
    "login",
    "registerDevice",
    "acmeAccount",
    "identityOrder",
    "backendNonce",
    "dpopAccessToken",
    "wireDpop01",
    "idToken+wireOidc01",
    "finalize+download",
];

/// One enrollment through `idca enroll`'s own flow, timed step by step.
async fn enroll_once(options: &idca::cli::enroll::EnrollOptions) -> Result<Vec<(&'static str, u32)>, ErrorKind> {
    let marks: std::sync::Mutex<Vec<(u32, Instant)>> = std::sync::Mutex::new(Vec::new());
    let progress = |n: u32, _: &str| {
        if n > 0
            && let Ok(mut m) = marks.lock()
        {
            m.push((n, Instant::now()));
        }
    };
    let result = idca::cli::enroll::enroll_identity(options, &progress).await;
    let end = Instant::now();
    result.map_err(|e| fail(e.split(':').next().unwrap_or("enroll").to_owned()))?;
    let marks = marks.into_inner().unwrap_or_default();
    Ok(marks
        .iter()
        .enumerate()
        .map(|(i, (n, at))| {
            let next = marks.get(i + 1).map_or(end, |(_, t)| *t);
            let name = IDENTITY_STEPS.get((*n as usize).saturating_sub(1)).copied().unwrap_or("step");
            (name, next.duration_since(*at).as_micros().min(u128::from(u32::MAX)) as u32)
        })
        .collect())
}

/// Why a flow failed: the problem type, or the transport error's kind.
type ErrorKind = idca::cli::acme_client::FlowError;

/// What the workers record.
#[derive(Default)]
struct Record {
    /// Microseconds per request type.
    requests: BTreeMap<&'static str, Vec<u32>>,
    /// Microseconds per completed flow.
    flows: Vec<u32>,
    errors: BTreeMap<ErrorKind, u64>,
    /// JWS requests (POSTs) made by completed flows.
    jws: u64,
}

/// A process's CPU seconds (user, system) and peak and current RSS in KiB.
struct ProcStats {
    user: f64,
    system: f64,
    peak_kib: u64,
    rss_kib: u64,
}

fn proc_stats(pid: u32) -> Option<ProcStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let hz = clock_ticks();
    let user = fields.get(11)?.parse::<f64>().ok()? / hz;
    let system = fields.get(12)?.parse::<f64>().ok()? / hz;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> Option<u64> {
        status.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse().ok()
    };
    Some(ProcStats { user, system, peak_kib: kib("VmHWM:")?, rss_kib: kib("VmRSS:")? })
}

/// The kernel's clock tick rate (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Microseconds per ECDSA P-256 verification and signature with ring, on one core now.
fn crypto_floor() -> (f64, f64) {
    let rng = SystemRandom::new();
    let Ok(pkcs8) = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng) else {
        return (0.0, 0.0);
    };
    let Ok(key) = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng) else {
        return (0.0, 0.0);
    };
    let msg = [7u8; 200];
    let Ok(sig) = key.sign(&rng, &msg) else { return (0.0, 0.0) };
    let public = signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, key.public_key().as_ref());
    let time = |f: &dyn Fn()| {
        // The best of five rounds: the machine is shared, the floor is what it can do.
        (0..5)
            .map(|_| {
                let started = Instant::now();
                for _ in 0..200 {
                    f();
                }
                started.elapsed().as_secs_f64() * 1e6 / 200.0
            })
            .fold(f64::INFINITY, f64::min)
    };
    let verify = time(&|| {
        let _ = public.verify(&msg, sig.as_ref());
    });
    let sign = time(&|| {
        let _ = key.sign(&rng, &msg);
    });
    (verify, sign)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted.get(i).copied().unwrap_or(0)) / 1000.0
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idca-load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    idca::install_crypto_provider();
    check_loopback(&args.directory)?;
    if args.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    let root = std::fs::read(&args.ca).map_err(|e| format!("cannot read {}: {e}", args.ca.display()))?;
    let root = reqwest::Certificate::from_pem(&root).map_err(|e| format!("{}: {e}", args.ca.display()))?;
    let http = reqwest::Client::builder()
        .tls_certs_only([root])
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .map_err(|e| e.to_string())?;
    let dir: Value = http
        .get(&args.directory)
        .send()
        .await
        .map_err(|e| format!("GET {}: {e}", args.directory))?
        .text()
        .await
        .map_err(|e| format!("GET {}: {e}", args.directory))
        .and_then(|t| serde_json::from_str(&t).map_err(|e| format!("the directory is not JSON: {e}")))?;
    for url in dir.as_object().into_iter().flatten().filter_map(|(_, v)| v.as_str()) {
        check_loopback(url)?;
    }

    let (verify_us, sign_us) = crypto_floor();
    let before = args.server_pid.and_then(proc_stats);
    let record = Arc::new(Mutex::new(Record::default()));
    let done = Arc::new(AtomicU64::new(0));
    let tickets = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);

    // Progress: completions in each second of the run.
    let progress = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut per_second = Vec::new();
            let mut last = 0;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = done.load(Ordering::Relaxed);
                per_second.push(now - last);
                last = now;
                if Instant::now() >= deadline {
                    return per_second;
                }
            }
        })
    };

    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let (http, dir, record, done, tickets, args) =
            (http.clone(), dir.clone(), record.clone(), done.clone(), tickets.clone(), args.clone());
        workers.push(tokio::spawn(async move {
            let mut client: Option<Client> = None;
            loop {
                let n = tickets.fetch_add(1, Ordering::Relaxed);
                if n >= args.orders || Instant::now() >= deadline {
                    return;
                }
                let flow_started = Instant::now();
                let outcome = match args.mode {
                    Mode::Nonce => {
                        let started = Instant::now();
                        match http.head(dir["newNonce"].as_str().unwrap_or_default()).send().await {
                            Ok(r) if r.headers().contains_key("replay-nonce") => {
                                Ok((vec![("newNonce", started.elapsed().as_micros() as u32)], 0))
                            }
                            Ok(r) => Err(fail(format!("newNonce: {}", r.status().as_u16()))),
                            Err(e) => Err(transport(e)),
                        }
                    }
                    Mode::Identity => {
                        let options = idca::cli::enroll::EnrollOptions {
                            server: args.directory.trim_end_matches("/directory").to_owned(),
                            user: args.user.clone(),
                            password: args.password.clone(),
                            login: idca::cli::enroll::Login::Form,
                            ca: args.ca.clone(),
                            out: PathBuf::new(),
                        };
                        enroll_once(&options).await.map(|t| (t, 0))
                    }
                    Mode::Issue => {
                        let mut c = match client.take() {
                            Some(c) if args.reuse_accounts => c,
                            _ => match Client::new(http.clone(), dir.clone()) {
                                Ok(c) => c,
                                Err(e) => {
                                    record.lock().await.errors.entry(e).and_modify(|n| *n += 1).or_insert(1);
                                    continue;
                                }
                            },
                        };
                        let directory_started = Instant::now();
                        let fetched = http.get(&args.directory).send().await.map(|_| ()).map_err(transport);
                        c.record("directory", directory_started);
                        let name = format!("w{w}-{n}.load.test");
                        let result = match fetched {
                            Ok(()) => c.issue(&name).await,
                            Err(e) => Err(e),
                        };
                        let timings = std::mem::take(&mut c.timings);
                        let posts = std::mem::take(&mut c.posts);
                        if result.is_err() {
                            c.nonce = None;
                        }
                        client = Some(c);
                        result.map(|()| (timings, posts))
                    }
                };
                let mut r = record.lock().await;
                match outcome {
                    Ok((timings, posts)) => {
                        for (what, us) in timings {
                            r.requests.entry(what).or_default().push(us);
                        }
                        r.flows.push(flow_started.elapsed().as_micros() as u32);
                        r.jws += posts;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => *r.errors.entry(e).or_insert(0) += 1,
                }
            }
        }));
    }
    let all = futures_util::future::join_all(workers);
    if tokio::time::timeout_at((deadline + Duration::from_secs(35)).into(), all).await.is_err() {
        eprintln!("idca-load: workers still busy 35 s after the time limit; stopping");
    }
    let elapsed = started.elapsed().as_secs_f64();
    progress.abort();
    let per_second = progress.await.unwrap_or_default();
    let after = args.server_pid.and_then(proc_stats);

    let mut r = record.lock().await;
    let completed = done.load(Ordering::Relaxed);
    let error_count: u64 = r.errors.values().sum();
    let unit = match args.mode {
        Mode::Nonce => "nonces",
        Mode::Issue => "issuances",
        Mode::Identity => "enrollments",
    };
    let mut out = String::new();
    out.push_str(&format!(
        "idca-load: {completed} {unit} in {elapsed:.2} s at concurrency {} ({error_count} errors)\n",
        args.concurrency
    ));
    out.push_str(&format!("  throughput: {:.1} {unit}/s\n", completed as f64 / elapsed));
    r.flows.sort_unstable();
    out.push_str(&format!(
        "  flow latency (ms): p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}\n",
        percentile(&r.flows, 0.5),
        percentile(&r.flows, 0.9),
        percentile(&r.flows, 0.99),
        percentile(&r.flows, 1.0)
    ));
    out.push_str("  per request (ms):        count      p50      p90      p99\n");
    let mut per_request = serde_json::Map::new();
    for (what, times) in r.requests.iter_mut() {
        times.sort_unstable();
        let (p50, p90, p99) = (percentile(times, 0.5), percentile(times, 0.9), percentile(times, 0.99));
        out.push_str(&format!("    {what:<18} {:>9} {p50:>8.2} {p90:>8.2} {p99:>8.2}\n", times.len()));
        per_request.insert((*what).to_owned(), json!({"count": times.len(), "p50": p50, "p90": p90, "p99": p99}));
    }
    if r.errors.is_empty() {
        out.push_str("  errors: none\n");
    } else {
        out.push_str("  errors:\n");
        for (kind, n) in &r.errors {
            out.push_str(&format!("    {n:>7}  {kind}\n"));
        }
    }
    let zero_seconds = per_second.iter().filter(|n| **n == 0).count();
    let min_per_second = per_second.iter().min().copied().unwrap_or(0);
    out.push_str(&format!(
        "  progress: {} whole seconds, {zero_seconds} without a completion, the slowest saw {min_per_second}\n",
        per_second.len()
    ));
    let jws_per_flow = if completed > 0 { r.jws as f64 / completed as f64 } else { 0.0 };
    // The floor: each JWS verified, the CSR's signature checked, the leaf signed.
    let floor_ms = (jws_per_flow * verify_us + verify_us + sign_us) / 1000.0;
    let mut server = json!(null);
    if let (Some(b), Some(a)) = (before, after) {
        let (user, system) = (a.user - b.user, a.system - b.system);
        let cpu = user + system;
        let per = if completed > 0 { cpu * 1000.0 / completed as f64 } else { 0.0 };
        let (peak, rss) = (a.peak_kib as f64 / 1024.0, a.rss_kib as f64 / 1024.0);
        out.push_str(&format!(
            "  server: {cpu:.2} CPU s ({user:.2} user, {system:.2} system), {per:.3} ms per {}, peak RSS {peak:.1} \
             MiB, RSS now {rss:.1} MiB\n",
            unit.trim_end_matches('s'),
        ));
        server = json!({"cpu_s": cpu, "user_s": user, "system_s": system, "cpu_ms_per_op": per,
            "peak_rss_mib": peak, "rss_mib": rss});
        if args.mode == Mode::Issue && floor_ms > 0.0 {
            out.push_str(&format!(
                "  crypto floor: {jws_per_flow:.1} JWS + 1 CSR verifications ({verify_us:.0} µs each) + 1 signature \
                 ({sign_us:.0} µs) = {floor_ms:.3} ms per issuance; server CPU is {:.2}× the floor\n",
                per / floor_ms
            ));
        }
    } else if args.mode == Mode::Issue {
        out.push_str(&format!(
            "  crypto floor: {jws_per_flow:.1} JWS + 1 CSR verifications ({verify_us:.0} µs each) + 1 signature \
             ({sign_us:.0} µs) = {floor_ms:.3} ms per issuance (give --server-pid for the server's CPU)\n"
        ));
    }
    print!("{out}");
    if args.json {
        let flows = json!({"p50": percentile(&r.flows, 0.5), "p90": percentile(&r.flows, 0.9), "p99": percentile(&r.flows, 0.99)});
        let report = json!({
            "mode": format!("{:?}", args.mode).to_lowercase(), "concurrency": args.concurrency, "completed": completed,
            "elapsed_s": elapsed, "per_second": completed as f64 / elapsed, "errors": r.errors, "flow_ms": flows,
            "requests_ms": per_request, "jws_per_flow": jws_per_flow, "floor_ms": floor_ms, "server": server,
            "seconds_without_completion": zero_seconds,
        });
        println!("{report}");
    }
    if completed == 0 {
        return Err("nothing completed".into());
    }
    Ok(())
}
