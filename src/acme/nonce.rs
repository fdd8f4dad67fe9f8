//! Replay nonces (RFC 8555 §6.5): single use, bounded memory.
//!
//! A nonce is `base64url(seq ‖ HMAC-SHA256(key, seq)[..8])`: 16 bytes, 22 characters.
//! The MAC makes nonces unforgeable; a bitmap over the last [`WINDOW`] sequence numbers
//! records which are still unused. Issuing sequence `n` marks bit `n mod WINDOW`, which
//! also expires the nonce `n - WINDOW`; consuming clears the bit. Memory is fixed
//! (WINDOW bits) however many nonces are issued, and nothing is stored on disk: after a
//! restart old nonces are refused with `badNonce` and clients retry with a fresh one.

use std::sync::Mutex;

use ring::hmac;

use crate::jose::{b64_decode, b64_encode};

/// How many outstanding nonces are remembered by default (2^20: 128 KiB of bitmap;
/// `limits.nonce_window`).
pub const WINDOW: u64 = 1 << 20;

/// Issues and redeems nonces.
#[derive(Debug)]
pub struct NonceSource {
    key: hmac::Key,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    next: u64,
    unused: Vec<u64>,
    /// A multiple of 64.
    window: u64,
}

/// Why a nonce was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    #[error("nonce is not one this server issued")]
    Unknown,
    #[error("nonce was already used or has expired")]
    Used,
    /// The shared replay store could not be asked.
    #[error("{0}")]
    Store(String),
}

/// The nonces of one instance ([`NonceSource`]: a bitmap in memory, the sled default), or
/// of every instance sharing a store ([`SharedNonces`]).
#[derive(Debug)]
pub enum Nonces {
    Local(NonceSource),
    Shared(SharedNonces),
}

impl Nonces {
    /// A fresh nonce; no I/O either way.
    pub fn issue(&self) -> String {
        match self {
            Self::Local(n) => n.issue(),
            Self::Shared(n) => n.issue(),
        }
    }

    /// Redeems `nonce`, once.
    pub async fn consume(&self, nonce: &str) -> Result<(), NonceError> {
        match self {
            Self::Local(n) => n.consume(nonce),
            Self::Shared(n) => n.consume(nonce).await,
        }
    }
}

/// Nonces any instance sharing the store accepts once (research scale-out §3.3):
/// `base64url(1 ‖ issued ‖ rand(12) ‖ HMAC-SHA256(key, 1 ‖ issued ‖ rand)[..12])`, 29 bytes.
/// Issuing is an HMAC with the key every instance reads from the store; redeeming checks
/// the MAC in constant time (garbage costs nothing more), the age (at most `lifetime`
/// seconds, and not from the future beyond a minute of clock skew), then inserts the
/// nonce into the shared replay table, once: the insert's row count decides.
pub struct SharedNonces {
    key: hmac::Key,
    lifetime: u64,
    store: std::sync::Arc<dyn crate::store::Store>,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
}

impl std::fmt::Debug for SharedNonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedNonces").field("lifetime", &self.lifetime).finish()
    }
}

const SHARED_VERSION: u8 = 1;
const SHARED_LEN: usize = 1 + 4 + 12 + 12;

impl SharedNonces {
    /// `key`: the secret all instances read from the store; `lifetime`: seconds a nonce
    /// stays redeemable (`limits.nonce_lifetime_secs`).
    pub fn new(
        key: &[u8],
        lifetime: u64,
        store: std::sync::Arc<dyn crate::store::Store>,
        clock: std::sync::Arc<dyn crate::clock::Clock>,
    ) -> Self {
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, key), lifetime: lifetime.max(1), store, clock }
    }

    fn tag(&self, body: &[u8]) -> [u8; 12] {
        let t = hmac::sign(&self.key, body);
        let mut out = [0u8; 12];
        out.copy_from_slice(t.as_ref().get(..12).unwrap_or(&[0; 12]));
        out
    }

    pub fn issue(&self) -> String {
        let issued = u32::try_from(self.clock.now().max(0)).unwrap_or(u32::MAX);
        let mut raw = [0u8; SHARED_LEN];
        raw[0] = SHARED_VERSION;
        raw[1..5].copy_from_slice(&issued.to_be_bytes());
        crate::model::fill_random(&mut raw[5..17]);
        let tag = self.tag(&raw[..17]);
        raw[17..].copy_from_slice(&tag);
        b64_encode(raw)
    }

    pub async fn consume(&self, nonce: &str) -> Result<(), NonceError> {
        let raw = b64_decode(nonce).map_err(|_| NonceError::Unknown)?;
        let (Some(body), Some(tag)) = (raw.get(..17), raw.get(17..)) else { return Err(NonceError::Unknown) };
        if raw.len() != SHARED_LEN || raw[0] != SHARED_VERSION || !crate::jose::ct_eq(&self.tag(body), tag) {
            return Err(NonceError::Unknown);
        }
        let mut issued = [0u8; 4];
        issued.copy_from_slice(&raw[1..5]);
        let issued = i64::from(u32::from_be_bytes(issued));
        let now = self.clock.now();
        let expires = crate::clock::after(issued, self.lifetime);
        if expires < now || issued > now + 60 {
            return Err(NonceError::Used);
        }
        match self.store.consume_acme_nonce(&b64_encode(body), expires).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(NonceError::Used),
            Err(e) => Err(NonceError::Store(e.to_string())),
        }
    }
}

impl Default for NonceSource {
    fn default() -> Self {
        Self::new()
    }
}

impl NonceSource {
    /// A source with a fresh random key.
    pub fn new() -> Self {
        Self::with_window(WINDOW)
    }

    /// A source remembering the last `window` nonces (rounded up to a multiple of 64).
    pub fn with_window(window: u64) -> Self {
        let window = window.max(1).div_ceil(64) * 64;
        let mut key = [0u8; 32];
        crate::model::fill_random(&mut key);
        let mut start = [0u8; 4];
        crate::model::fill_random(&mut start);
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
            // Start at a random point so nonces do not reveal how many were issued.
            state: Mutex::new(State {
                next: u64::from(u32::from_be_bytes(start)),
                unused: vec![0; (window / 64) as usize],
                window,
            }),
        }
    }

    fn tag(&self, seq: u64) -> [u8; 8] {
        let t = hmac::sign(&self.key, &seq.to_be_bytes());
        let mut out = [0u8; 8];
        out.copy_from_slice(t.as_ref().get(..8).unwrap_or(&[0; 8]));
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked mid-update of a bitmap;
        // the bitmap is still a valid (if slightly stale) set of bits.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh nonce.
    pub fn issue(&self) -> String {
        let seq = {
            let mut s = self.lock();
            let seq = s.next;
            s.next += 1;
            let (word, bit) = ((seq % s.window / 64) as usize, seq % 64);
            if let Some(w) = s.unused.get_mut(word) {
                *w |= 1 << bit;
            }
            seq
        };
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&seq.to_be_bytes());
        raw[8..].copy_from_slice(&self.tag(seq));
        b64_encode(raw)
    }

    /// Redeems `nonce`: succeeds once for each issued nonce still inside the window.
    pub fn consume(&self, nonce: &str) -> Result<(), NonceError> {
        let raw = b64_decode(nonce).map_err(|_| NonceError::Unknown)?;
        if raw.len() != 16 {
            return Err(NonceError::Unknown);
        }
        let (seq_bytes, tag) = raw.split_at(8);
        let mut seq_arr = [0u8; 8];
        seq_arr.copy_from_slice(seq_bytes);
        let seq = u64::from_be_bytes(seq_arr);
        let expected = self.tag(seq);
        if !crate::jose::ct_eq(&expected, tag) {
            return Err(NonceError::Unknown);
        }
        let mut s = self.lock();
        if seq >= s.next || s.next - seq > s.window {
            return Err(NonceError::Used);
        }
        let (word, bit) = ((seq % s.window / 64) as usize, seq % 64);
        match s.unused.get_mut(word) {
            Some(w) if *w & (1 << bit) != 0 => {
                *w &= !(1 << bit);
                Ok(())
            }
            _ => Err(NonceError::Used),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;

    #[test]
    fn nonce_is_single_use() {
        let n = NonceSource::new();
        let a = n.issue();
        assert_eq!(a.len(), 22);
        assert_eq!(n.consume(&a), Ok(()));
        assert_eq!(n.consume(&a), Err(NonceError::Used));
    }

    #[test]
    fn rejects_forged_and_foreign_nonces() {
        let n = NonceSource::new();
        let other = NonceSource::new();
        assert_eq!(n.consume(&other.issue()), Err(NonceError::Unknown));
        assert_eq!(n.consume("short"), Err(NonceError::Unknown));
        let mut forged = b64_decode(&n.issue()).unwrap();
        forged[15] ^= 1;
        assert_eq!(n.consume(&b64_encode(forged)), Err(NonceError::Unknown));
    }

    #[test]
    fn old_nonces_expire_after_the_window() {
        let n = NonceSource::new();
        let first = n.issue();
        for _ in 0..WINDOW {
            n.issue();
        }
        assert_eq!(n.consume(&first), Err(NonceError::Used));
    }

    #[test]
    fn nonces_are_distinct() {
        let n = NonceSource::new();
        let set: std::collections::HashSet<_> = (0..1000).map(|_| n.issue()).collect();
        assert_eq!(set.len(), 1000);
    }

    fn shared(
        key: &[u8],
        clock: &crate::clock::FixedClock,
        store: &std::sync::Arc<dyn crate::store::Store>,
    ) -> SharedNonces {
        SharedNonces::new(key, 300, store.clone(), std::sync::Arc::new(clock.clone()))
    }

    #[tokio::test]
    async fn shared_nonces_are_accepted_once_by_every_instance() {
        let store: std::sync::Arc<dyn crate::store::Store> =
            std::sync::Arc::new(crate::store::SledStore::temporary().unwrap());
        let clock = crate::clock::FixedClock::new(1_000_000);
        let (a, b) = (shared(b"k", &clock, &store), shared(b"k", &clock, &store));
        let n = a.issue();
        assert_eq!(n.len(), 39);
        assert_eq!(b.consume(&n).await, Ok(()), "issued by A, redeemed at B");
        assert_eq!(a.consume(&n).await, Err(NonceError::Used), "once, wherever");
        // Another key, a tampered tag, garbage: unknown, with no store access needed.
        let other = shared(b"other", &clock, &store);
        assert_eq!(a.consume(&other.issue()).await, Err(NonceError::Unknown));
        let mut raw = b64_decode(&a.issue()).unwrap();
        raw[20] ^= 1;
        assert_eq!(a.consume(&b64_encode(&raw)).await, Err(NonceError::Unknown));
        assert_eq!(a.consume("garbage").await, Err(NonceError::Unknown));
        // Past its lifetime: refused.
        let old = a.issue();
        clock.advance(301);
        assert_eq!(a.consume(&old).await, Err(NonceError::Used));
        // Issued by an instance whose clock runs more than a minute ahead: refused.
        let ahead = crate::clock::FixedClock::new(clock.now() + 120);
        assert_eq!(a.consume(&shared(b"k", &ahead, &store).issue()).await, Err(NonceError::Used));
        let slightly = crate::clock::FixedClock::new(clock.now() + 30);
        assert_eq!(a.consume(&shared(b"k", &slightly, &store).issue()).await, Ok(()));
    }
}
