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
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    #[error("nonce is not one this server issued")]
    Unknown,
    #[error("nonce was already used or has expired")]
    Used,
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
}
