//! Users and passwords (argon2id), and the lockout after repeated login failures.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};

use crate::clock::{self, UnixTime};
use crate::config::UserConfig;

/// Hashes a password (or client secret) as an argon2id PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    crate::model::fill_random(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Checks a password against a PHC hash; any malformed hash fails closed. The argon2
/// output is recomputed with the hash's own algorithm, version and parameters into
/// pooled working memory ([`with_argon2_memory`]) and compared in constant time.
pub fn verify_password(password: &str, hash: &str) -> bool {
    fn recompute(password: &str, hash: &str) -> Option<bool> {
        let h = PasswordHash::new(hash).ok()?;
        let algorithm = argon2::Algorithm::try_from(h.algorithm).ok()?;
        let version = match h.version {
            Some(v) => argon2::Version::try_from(v).ok()?,
            None => argon2::Version::default(),
        };
        let params = argon2::Params::try_from(&h).ok()?;
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

/// Counts failed logins per (user, address) and locks the pair out for a while after
/// too many (in memory: a restart clears it). With [`LoginLimiter::try_begin`], attempts
/// still being checked count too, so a burst of parallel guesses cannot pass the limit.
#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: u32,
    lockout_secs: i64,
    failures: Mutex<Attempts>,
}

/// Per (name, address): failures, the last failure, attempts being checked.
type Attempts = HashMap<(String, IpAddr), (u32, UnixTime, u32)>;

/// How a counted attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Failed,
    Succeeded,
    /// Neither (the request failed for another reason).
    Abandoned,
}

impl LoginLimiter {
    pub fn new(max_failures: u32, lockout_secs: u64) -> Self {
        Self {
            max_failures: max_failures.max(1),
            lockout_secs: clock::span(lockout_secs),
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Attempts> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Seconds until `username` may try again from `ip`, if locked out.
    pub fn locked(&self, username: &str, ip: IpAddr, now: UnixTime) -> Option<i64> {
        let map = self.lock();
        let (count, last, _) = map.get(&(username.to_owned(), ip))?;
        let until = last + self.lockout_secs;
        (*count >= self.max_failures && now < until).then_some(until - now)
    }

    pub fn failed(&self, username: &str, ip: IpAddr, now: UnixTime) {
        self.end(username, ip, now, Attempt::Failed, false);
    }

    pub fn succeeded(&self, username: &str, ip: IpAddr) {
        self.end(username, ip, 0, Attempt::Succeeded, false);
    }

    /// Bounds memory: past 100,000 pairs, those with no attempt in flight and no lockout
    /// running are forgotten.
    fn forget_idle(&self, map: &mut Attempts, now: UnixTime) {
        if map.len() > 100_000 {
            let lockout = self.lockout_secs;
            map.retain(|_, (_, last, flying)| *flying > 0 || now < *last + lockout);
        }
    }

    /// Counts an attempt about to be checked, unless failures and attempts in flight
    /// already reach the limit: then the seconds to wait.
    pub fn try_begin(&self, username: &str, ip: IpAddr, now: UnixTime) -> Result<(), i64> {
        let mut map = self.lock();
        self.forget_idle(&mut map, now);
        let entry = map.entry((username.to_owned(), ip)).or_insert((0, now, 0));
        if now >= entry.1 + self.lockout_secs {
            entry.0 = 0;
        }
        if entry.0 >= self.max_failures {
            return Err((entry.1 + self.lockout_secs - now).max(1));
        }
        if entry.0 + entry.2 >= self.max_failures {
            return Err(1);
        }
        entry.2 += 1;
        Ok(())
    }

    /// Ends an attempt (`begun`: counted by `try_begin`).
    pub fn end(&self, username: &str, ip: IpAddr, now: UnixTime, how: Attempt, begun: bool) {
        let mut map = self.lock();
        self.forget_idle(&mut map, now);
        let key = (username.to_owned(), ip);
        let entry = map.entry(key.clone()).or_insert((0, now, 0));
        if begun {
            entry.2 = entry.2.saturating_sub(1);
        }
        match how {
            Attempt::Failed => {
                if now >= entry.1 + self.lockout_secs {
                    entry.0 = 0;
                }
                entry.0 += 1;
                entry.1 = now;
            }
            Attempt::Succeeded => entry.0 = 0,
            Attempt::Abandoned => {}
        }
        if entry.0 == 0 && entry.2 == 0 {
            map.remove(&key);
        }
    }
}

/// Failed attempts counted per (name, address) and per address over all names, each
/// with its own lockout: logins (user names, `oauth.login_max_failures` and
/// `limits.login_max_failures_per_address`) and client authentications (client ids,
/// `limits.token_max_failures` and `token_max_failures_per_address`).
#[derive(Debug)]
pub(super) struct AttemptLimiter {
    per_name: LoginLimiter,
    per_address: LoginLimiter,
}

impl AttemptLimiter {
    pub(super) fn new(per_name: u32, per_address: u32, lockout_secs: u64) -> Self {
        Self {
            per_name: LoginLimiter::new(per_name, lockout_secs),
            per_address: LoginLimiter::new(per_address, lockout_secs),
        }
    }

    /// Counts an attempt about to be checked; the seconds to wait if `name` or `ip` is
    /// locked out (failures and attempts in flight both count). Each `Ok` must be
    /// followed by one [`AttemptLimiter::end`].
    pub(super) fn begin(&self, name: &str, ip: IpAddr, now: UnixTime) -> Result<(), i64> {
        self.per_name.try_begin(name, ip, now)?;
        if let Err(wait) = self.per_address.try_begin("", ip, now) {
            self.per_name.end(name, ip, now, Attempt::Abandoned, true);
            return Err(wait);
        }
        Ok(())
    }

    /// Ends an attempt counted by `begin`. A success clears the name's failures, not the
    /// address's.
    pub(super) fn end(&self, name: &str, ip: IpAddr, now: UnixTime, how: Attempt) {
        self.per_name.end(name, ip, now, how, true);
        let for_address = if how == Attempt::Succeeded { Attempt::Abandoned } else { how };
        self.per_address.end("", ip, now, for_address, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parallel guesses: attempts still being checked count, so a burst stops at the
    /// limit even before any of them has failed.
    #[test]
    fn attempts_in_flight_count_against_the_limit() {
        let ip = IpAddr::from([10, 0, 0, 1]);
        let l = AttemptLimiter::new(3, 100, 300);
        for _ in 0..3 {
            l.begin("alice", ip, 0).unwrap();
        }
        assert!(l.begin("alice", ip, 0).is_err(), "a fourth parallel guess waits");
        l.end("alice", ip, 0, Attempt::Failed);
        assert!(l.begin("alice", ip, 0).is_err(), "one failure and two in flight");
        l.end("alice", ip, 0, Attempt::Abandoned);
        l.end("alice", ip, 0, Attempt::Succeeded);
        l.begin("alice", ip, 1).unwrap();
        l.end("alice", ip, 1, Attempt::Succeeded);
        // Per address: names do not matter.
        let l = AttemptLimiter::new(100, 2, 300);
        l.begin("a", ip, 0).unwrap();
        l.begin("b", ip, 0).unwrap();
        assert!(l.begin("c", ip, 0).is_err());
        l.end("a", ip, 0, Attempt::Failed);
        l.end("b", ip, 0, Attempt::Failed);
        assert_eq!(l.begin("c", ip, 10), Err(290), "two failures lock the address out");
        assert!(l.begin("c", ip, 301).is_ok(), "and the lockout ends");
    }

    #[test]
    fn hashes_verify_and_fail_closed() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("correct horse", "not a hash"));
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

    #[test]
    fn locks_out_after_failures_then_forgives() {
        let l = LoginLimiter::new(3, 60);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for t in 0..3 {
            assert!(l.locked("alice", ip, 100 + t).is_none());
            l.failed("alice", ip, 100 + t);
        }
        assert_eq!(l.locked("alice", ip, 103), Some(59));
        assert!(l.locked("bob", ip, 103).is_none());
        assert!(l.locked("alice", ip, 200).is_none());
    }
}
