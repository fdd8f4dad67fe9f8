//! Stateless DPoP nonces (RFC 9449 §8): `base64url(step ‖ HMAC(secret, step)[..16])`
//! with 60-second steps. The secret is kept in the store, so nonces survive restarts and
//! are shared by instances on the same store; the previous, current and next step are
//! accepted (an instance whose clock runs a little ahead issues the next step's nonce at a
//! boundary; node-oidc-provider accepts ±2 steps for the same reason).

use ring::hmac;

use crate::clock::UnixTime;
use crate::jose::{b64_decode, b64_encode};

/// Seconds per nonce step.
const STEP_SECS: i64 = 60;

/// Issues and checks DPoP nonces.
pub struct DpopNonces {
    key: hmac::Key,
}

impl DpopNonces {
    /// From the stored secret (32 random bytes).
    pub fn new(secret: &[u8]) -> Self {
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, secret) }
    }

    fn nonce_for(&self, step: i64) -> String {
        let tag = hmac::sign(&self.key, &step.to_be_bytes());
        let mut raw = step.to_be_bytes().to_vec();
        raw.extend_from_slice(tag.as_ref().get(..16).unwrap_or_default());
        b64_encode(raw)
    }

    /// The nonce of the current step.
    pub fn current(&self, now: UnixTime) -> String {
        self.nonce_for(now.div_euclid(STEP_SECS))
    }

    /// Whether `nonce` is ours and of the previous, current or next step.
    pub fn accepts(&self, nonce: &str, now: UnixTime) -> bool {
        let Ok(raw) = b64_decode(nonce) else { return false };
        let Some(step_bytes) = raw.get(..8) else { return false };
        let mut b = [0u8; 8];
        b.copy_from_slice(step_bytes);
        let step = i64::from_be_bytes(b);
        let current = now.div_euclid(STEP_SECS);
        (current - 1..=current + 1).contains(&step)
            && crate::jose::ct_eq(self.nonce_for(step).as_bytes(), nonce.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_live_two_steps_and_cannot_be_forged() {
        let n = DpopNonces::new(b"0123456789abcdef0123456789abcdef");
        let nonce = n.current(1_000_000);
        assert!(n.accepts(&nonce, 1_000_000));
        assert!(n.accepts(&nonce, 1_000_000 + 60));
        assert!(!n.accepts(&nonce, 1_000_000 + 180));
        assert!(n.accepts(&nonce, 1_000_000 - 60), "from an instance one step ahead");
        assert!(!n.accepts(&nonce, 1_000_000 - 120), "nonces from further in the future");
        let other = DpopNonces::new(b"another secret, another server..");
        assert!(!other.accepts(&nonce, 1_000_000));
        assert!(!n.accepts("garbage", 1_000_000));
    }
}
