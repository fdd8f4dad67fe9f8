//! Users and passwords (argon2id), and the lockout after repeated login failures.

use std::net::IpAddr;
use std::sync::Mutex;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, SaltString};

use crate::clock::{self, UnixTime};
use crate::config::UserConfig;
use crate::store::{Attempt, AttemptRule, Store, StoreError};

/// Hashes a password (or client secret) as an argon2id PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    crate::model::fill_random(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Checks a password against a PHC hash; any malformed hash fails closed, and so does
/// one whose costs exceed [`crate::password::MAX_ARGON2`]. The argon2
/// output is recomputed with the hash's own algorithm, version and parameters into
/// pooled working memory ([`with_argon2_memory`]) and compared in constant time.
pub fn verify_password(password: &str, hash: &str) -> bool {
    fn recompute(password: &str, hash: &str) -> Option<bool> {
        let (h, algorithm, params) = crate::password::parse_checkable(hash).ok()?;
        let version = match h.version {
            Some(v) => argon2::Version::try_from(v).ok()?,
            None => argon2::Version::default(),
        };
        let mut salt_buf = [0u8; 64];
        let salt = h.salt?.decode_b64(&mut salt_buf).ok()?;
        let expected = h.hash?;
        let mut out = vec![0u8; expected.len()];
        let blocks = params.block_count();
        let argon = Argon2::new(algorithm, version, params);
        with_argon2_memory(blocks, |memory| {
            argon.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, memory)
        })
        .ok()?;
        Some(crate::jose::ct_eq(&out, expected.as_bytes()))
    }
    recompute(password, hash).unwrap_or(false)
}

/// Runs `f` with `blocks` argon2 memory blocks (1 KiB each; 19 MiB with the default
/// parameters) taken from a small pool. Allocated and freed per login, such blocks stay
/// in glibc's arenas once its dynamic mmap threshold has risen, and the process grew by
/// about one block per login without bound (measured with `idca-load --mode identity`:
/// 1.9 GiB after 120 logins); reused, memory stays flat. At most `POOLED` are kept: one
/// per concurrent check, and checks run on the HTTP workers (two by default).
fn with_argon2_memory<T>(blocks: usize, f: impl FnOnce(&mut [argon2::Block]) -> T) -> T {
    const POOLED: usize = 2;
    static POOL: Mutex<Vec<Vec<argon2::Block>>> = Mutex::new(Vec::new());
    const _: () = assert!(POOLED >= CONCURRENT_CHECKS);
    let taken = POOL.lock().unwrap_or_else(|p| p.into_inner()).pop();
    let mut memory = taken.unwrap_or_default();
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::default());
    }
    let result = f(memory.get_mut(..blocks).unwrap_or_default());
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    if pool.len() < POOLED {
        pool.push(memory);
    }
    result
}

/// A PHC hash of nothing anyone knows, checked against for unknown users so that a
/// wrong user name takes as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&crate::model::random_token()).unwrap_or_default())
}

/// A user who can log in.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub username: String,
    pub name: String,
    pub email: String,
    pub handle: String,
    pub team: String,
    pub domain: String,
    password_hash: String,
}

impl From<&UserConfig> for User {
    fn from(u: &UserConfig) -> Self {
        Self {
            username: u.username.clone(),
            name: u.name.clone(),
            email: u.email.clone(),
            handle: u.handle.clone(),
            team: u.team.clone(),
            domain: u.domain.clone(),
            password_hash: u.password_hash.clone(),
        }
    }
}

/// At most this many password checks run at once: each takes one argon2 working
/// buffer (19 MiB, pooled) and about 20 ms of a core.
const CONCURRENT_CHECKS: usize = 2;

/// [`verify_password`] on tokio's blocking threads, at most [`CONCURRENT_CHECKS`] at a
/// time, so that a login never stalls the HTTP worker serving other requests, and many
/// logins at once queue instead of taking memory and cores.
pub(super) async fn verify_password_off_worker(password: &str, hash: &str) -> bool {
    static CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(CONCURRENT_CHECKS);
    let Ok(_permit) = CHECKS.acquire().await else { return false };
    let (password, hash) = (password.to_owned(), hash.to_owned());
    tokio::task::spawn_blocking(move || verify_password(&password, &hash)).await.unwrap_or(false)
}

/// Finds the user and checks the password, in about the same time either way.
pub(super) async fn check_credentials<'a>(users: &'a [User], username: &str, password: &str) -> Option<&'a User> {
    match users.iter().find(|u| u.username == username) {
        Some(u) if verify_password_off_worker(password, &u.password_hash).await => Some(u),
        Some(_) => None,
        None => {
            let _ = verify_password_off_worker(password, decoy_hash()).await;
            None
        }
    }
}

/// Failed attempts counted through the store (so every instance sees the same counts)
/// per (name, address) and per address over all names, each with its own lockout:
/// logins (user names, `oauth.login_max_failures` and
/// `limits.login_max_failures_per_address`), client authentications (client ids,
/// `limits.token_max_failures` and `token_max_failures_per_address`) and device user
/// codes (per address only). Attempts still being checked count, so a burst of parallel
/// guesses, spread over instances or not, stops at the limit.
#[derive(Debug, Clone)]
pub(super) struct AttemptLimiter {
    kind: &'static str,
    per_name: AttemptRule,
    per_address: Option<AttemptRule>,
}

impl AttemptLimiter {
    /// `kind` keeps the counters of different limiters apart.
    pub(super) fn new(kind: &'static str, per_name: u32, per_address: Option<u32>, lockout_secs: u64) -> Self {
        let rule = |max: u32| AttemptRule { max: max.max(1), lockout_secs: clock::span(lockout_secs) };
        Self { kind, per_name: rule(per_name), per_address: per_address.map(rule) }
    }

    /// The key of `name` at `ip` (a long name by its digest, so keys stay short).
    fn name_key(&self, name: &str, ip: IpAddr) -> String {
        if name.len() > 64 {
            let digest = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
            format!("{}:#{}|{ip}", self.kind, crate::jose::b64_encode(digest.as_ref()))
        } else {
            format!("{}:{name}|{ip}", self.kind)
        }
    }

    fn address_key(&self, ip: IpAddr) -> String {
        format!("{}@{ip}", self.kind)
    }

    /// Counts an attempt about to be checked; `Err(seconds to wait)` if `name` or `ip` is
    /// locked out. Each `Ok(Ok(()))` must be followed by one [`AttemptLimiter::end`].
    pub(super) async fn begin(
        &self,
        store: &dyn Store,
        name: &str,
        ip: IpAddr,
        now: UnixTime,
    ) -> Result<Result<(), i64>, StoreError> {
        let key = self.name_key(name, ip);
        if let Err(wait) = store.begin_attempt(&key, self.per_name, now).await? {
            return Ok(Err(wait));
        }
        if let Some(rule) = self.per_address {
            let refused = match store.begin_attempt(&self.address_key(ip), rule, now).await {
                Ok(r) => r.err(),
                Err(e) => {
                    store.end_attempt(&key, self.per_name, Attempt::Abandoned, now).await?;
                    return Err(e);
                }
            };
            if let Some(wait) = refused {
                store.end_attempt(&key, self.per_name, Attempt::Abandoned, now).await?;
                return Ok(Err(wait));
            }
        }
        Ok(Ok(()))
    }

    /// Ends an attempt counted by `begin`. A success clears the name's failures, not the
    /// address's. A store that fails here only delays: the attempt's place is freed
    /// after [`crate::store::ATTEMPT_RESERVATION_SECS`].
    pub(super) async fn end(&self, store: &dyn Store, name: &str, ip: IpAddr, now: UnixTime, how: Attempt) {
        let mut result = store.end_attempt(&self.name_key(name, ip), self.per_name, how, now).await;
        if let Some(rule) = self.per_address {
            let for_address = if how == Attempt::Succeeded { Attempt::Abandoned } else { how };
            result = result.and(store.end_attempt(&self.address_key(ip), rule, for_address, now).await);
        }
        if let Err(e) = result {
            tracing::warn!(kind = self.kind, error = %e, "an attempt's end could not be counted");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parallel guesses: attempts still being checked count, so a burst stops at the
    /// limit even before any of them has failed; per address, names do not matter; a
    /// lockout ends.
    #[tokio::test]
    async fn attempts_in_flight_count_against_the_limit() {
        let store = crate::store::SledStore::temporary().unwrap();
        let s: &dyn Store = &store;
        let ip = IpAddr::from([10, 0, 0, 1]);
        let l = AttemptLimiter::new("login", 3, Some(100), 300);
        for _ in 0..3 {
            l.begin(s, "alice", ip, 0).await.unwrap().unwrap();
        }
        assert!(l.begin(s, "alice", ip, 0).await.unwrap().is_err(), "a fourth parallel guess waits");
        l.end(s, "alice", ip, 0, Attempt::Failed).await;
        assert!(l.begin(s, "alice", ip, 0).await.unwrap().is_err(), "one failure and two in flight");
        l.end(s, "alice", ip, 0, Attempt::Abandoned).await;
        l.end(s, "alice", ip, 0, Attempt::Succeeded).await;
        l.begin(s, "alice", ip, 1).await.unwrap().unwrap();
        l.end(s, "alice", ip, 1, Attempt::Succeeded).await;
        let other = AttemptLimiter::new("client", 3, Some(100), 300);
        other.begin(s, "alice", ip, 1).await.unwrap().unwrap();
        let l = AttemptLimiter::new("addr", 100, Some(2), 300);
        l.begin(s, "a", ip, 0).await.unwrap().unwrap();
        l.begin(s, "b", ip, 0).await.unwrap().unwrap();
        assert!(l.begin(s, "c", ip, 0).await.unwrap().is_err());
        l.end(s, "a", ip, 0, Attempt::Failed).await;
        l.end(s, "b", ip, 10, Attempt::Failed).await;
        assert_eq!(l.begin(s, "c", ip, 10).await.unwrap(), Err(300), "two failures lock the address out");
        assert!(l.begin(s, "c", ip, 311).await.unwrap().is_ok(), "and the lockout ends");
        let long = "x".repeat(1000);
        assert!(l.name_key(&long, ip).len() < 100, "long names are keyed by their digest");
    }

    #[test]
    fn hashes_verify_and_fail_closed() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        // Costs beyond password::MAX_ARGON2 fail closed at once (4 TiB of memory asked
        // by the hash itself aborted the process).
        let huge = h.replacen("m=19456", "m=4294967295", 1);
        assert_ne!(huge, h);
        assert!(!verify_password("correct horse", &huge));
    }

    /// Hashes made with other parameters, algorithms and lengths verify too: each is
    /// recomputed with its own (pooled memory of the right size).
    #[test]
    fn verifies_hashes_with_their_own_parameters() {
        for (alg, m, t, p, len) in [
            (argon2::Algorithm::Argon2id, 8192, 1, 2, 32),
            (argon2::Algorithm::Argon2i, 4096, 3, 1, 16),
            (argon2::Algorithm::Argon2d, 32768, 1, 1, 64),
        ] {
            let params = argon2::Params::new(m, t, p, Some(len)).unwrap();
            let argon = Argon2::new(alg, argon2::Version::V0x13, params);
            let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
            let h = argon.hash_password(b"s3cret", &salt).unwrap().to_string();
            assert!(verify_password("s3cret", &h), "{h}");
            assert!(!verify_password("s3cret!", &h), "{h}");
        }
    }
}
