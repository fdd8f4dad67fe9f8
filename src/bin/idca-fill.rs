//! Fills an idca data directory with issued certificates, for measuring idca with a large
//! store (README "Performance"). Every record goes in through the same `Store` operations
//! the ACME server uses, each acknowledged write durable: accounts (`create_account`), an
//! order with one authorization per certificate (`create_order`), the authorization made
//! valid (`update_authorization`), the order finalized with a leaf the CA really signed
//! (`finalize_order`), and, for the first `--revoked`, the certificate revoked
//! (`update_certificate`). The server must not be running on the directory.
//!
//! ```sh
//! target/release/idca-fill --data-dir /tmp/big --certificates 1000000 --revoked 100000
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use idca::ca::{Ca, KeyType, LeafRequest, Usage};
use idca::clock::{Clock, SystemClock};
use idca::model::*;
use idca::store::{Store, Version};

const USAGE: &str = "usage: idca-fill --data-dir DIR [--certificates N (1000000)] [--per-account N (100)] \
                     [--revoked N (100000)] [--concurrency N (64)]";

struct Args {
    data_dir: std::path::PathBuf,
    certificates: u64,
    per_account: u64,
    revoked: u64,
    concurrency: usize,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        data_dir: std::path::PathBuf::new(),
        certificates: 1_000_000,
        per_account: 100,
        revoked: 100_000,
        concurrency: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(USAGE)?;
        let number = || value.parse::<u64>().map_err(|_| format!("{flag}: not a number\n{USAGE}"));
        match flag.as_str() {
            "--data-dir" => a.data_dir = value.clone().into(),
            "--certificates" => a.certificates = number()?,
            "--per-account" => a.per_account = number()?.max(1),
            "--revoked" => a.revoked = number()?,
            "--concurrency" => a.concurrency = usize::try_from(number()?.max(1)).map_err(|e| e.to_string())?,
            _ => return Err(USAGE.into()),
        }
    }
    if a.data_dir.as_os_str().is_empty() {
        return Err(USAGE.into());
    }
    Ok(a)
}

/// Everything one issuance writes, as the ACME server would write it.
struct Filler {
    store: Arc<dyn Store>,
    ca: Ca,
    spki: Vec<u8>,
    accounts: Vec<AccountId>,
    revoked: u64,
    now: i64,
}

impl Filler {
    async fn issue(&self, n: u64) -> Result<(), String> {
        let account = &self.accounts[usize::try_from(n).unwrap_or(0) % self.accounts.len()];
        let name = format!("c{n}.fill.test");
        let identifier = Identifier { kind: IdentifierKind::Dns, value: name.clone() };
        let mut authz = Authorization {
            id: AuthzId::random(),
            account: account.clone(),
            identifier: identifier.clone(),
            status: AuthzStatus::Pending,
            expires: self.now + 30 * 86_400,
            wildcard: false,
            challenges: vec![Challenge {
                id: ChallengeId::random(),
                kind: ChallengeType::Http01,
                token: random_token(),
                status: ChallengeStatus::Pending,
                validated: None,
                error: None,
                target: None,
            }],
        };
        let mut order = Order {
            id: OrderId::random(),
            account: account.clone(),
            identifiers: vec![identifier],
            authorizations: vec![authz.id.clone()],
            expires: self.now + 7 * 86_400,
            not_before: None,
            not_after: None,
            phase: OrderPhase::Open,
            created: self.now,
            replaces: None,
            replaces_cert_id: None,
            profile: None,
        };
        let e = |e: idca::store::StoreError| e.to_string();
        self.store.create_order(&order, std::slice::from_ref(&authz), None).await.map_err(e)?;
        authz.status = AuthzStatus::Valid;
        if let Some(c) = authz.challenges.first_mut() {
            c.status = ChallengeStatus::Valid;
            c.validated = Some(self.now);
        }
        self.store.update_authorization(&authz, Version::FIRST).await.map_err(e)?;
        let (not_before, not_after) = (self.now - 60, self.now + 90 * 86_400);
        let leaf = self
            .ca
            .issue(&LeafRequest {
                spki_der: &self.spki,
                key_type: KeyType::P256,
                dns_names: &[name],
                ip_addresses: &[],
                uris: &[],
                emails: &[],
                subject: None,
                not_before,
                not_after,
                usage: Usage::TlsServer,
            })
            .map_err(|e| e.to_string())?;
        let mut cert = IssuedCertificate::new(
            leaf.serial.clone(),
            leaf.chain_pem,
            (not_before, not_after),
            self.now,
            Some((account.clone(), order.id.clone())),
        );
        order.phase = OrderPhase::Valid { certificate: leaf.serial };
        self.store.finalize_order(&order, Version::FIRST, &cert).await.map_err(e)?;
        if n < self.revoked {
            cert.revoked = Some(Revocation { reason: 4, at: self.now });
            self.store.update_certificate(&cert, Version::FIRST).await.map_err(e)?;
        }
        Ok(())
    }
}

async fn account(store: &dyn Store, now: i64) -> Result<AccountId, String> {
    let x = idca::jose::b64_encode(ring_random::<32>()?);
    let key = idca::jose::Jwk::from_value(&serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x}))
        .map_err(|e| e.to_string())?;
    let account = Account::new(key, now);
    store.create_account(&account).await.map_err(|e| e.to_string())?;
    Ok(account.id)
}

fn ring_random<const N: usize>() -> Result<[u8; N], String> {
    let mut b = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).map_err(|_| "no randomness")?;
    Ok(b)
}

async fn run(a: Args) -> Result<(), String> {
    idca::install_crypto_provider();
    let mut config = idca::config::Config::default();
    config.storage.data_dir = a.data_dir.clone();
    idca::app::create_data_dir(&config).map_err(|e| e.to_string())?;
    let store = idca::app::open_store(&config).await.map_err(|e| e.to_string())?;
    let now = SystemClock.now();
    let material = idca::app::load_or_create_ca(&config, store.as_ref(), now).await.map_err(|e| e.to_string())?;
    let crl_base = format!("{}{}", config.public_url(config.server.listen), idca::acme::paths::CRL);
    let ca = Ca::load(&material, Some(crl_base)).map_err(|e| e.to_string())?;
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut accounts = Vec::new();
    for _ in 0..a.certificates.div_ceil(a.per_account).max(1) {
        accounts.push(account(store.as_ref(), now).await?);
    }
    let filler = Arc::new(Filler {
        store,
        ca,
        spki: rcgen::PublicKeyData::subject_public_key_info(&key),
        accounts,
        revoked: a.revoked.min(a.certificates),
        now,
    });
    let next = Arc::new(AtomicU64::new(0));
    let total = a.certificates;
    // The first failure stops every task: each takes no further number past it.
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks: Vec<_> = (0..a.concurrency)
        .map(|_| {
            let (filler, next, failed) = (filler.clone(), next.clone(), failed.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total || failed.load(Ordering::Relaxed) {
                        return Ok::<_, String>(());
                    }
                    if let Err(e) = filler.issue(n).await {
                        failed.store(true, Ordering::Relaxed);
                        return Err(format!("certificate {n}: {e}"));
                    }
                    if (n + 1) % 50_000 == 0 {
                        let secs = started.elapsed().as_secs_f64();
                        eprintln!("{} certificates in {secs:.0} s ({:.0}/s)", n + 1, (n + 1) as f64 / secs);
                    }
                }
            })
        })
        .collect();
    let mut first_error = None;
    for t in tasks {
        if let Err(e) = t.await.map_err(|e| e.to_string()).and_then(|r| r) {
            first_error.get_or_insert(e);
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{total} certificates ({} revoked) in {} accounts, {} writes, in {secs:.1} s ({:.0} certificates/s)",
        filler.revoked,
        filler.accounts.len(),
        filler.accounts.len() as u64 + total * 3 + filler.revoked,
        total as f64 / secs
    );
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idca-fill: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
