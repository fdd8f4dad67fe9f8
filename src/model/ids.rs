//! Typed identifiers: 16 bytes, base64url, of which the first 6 are the creation time in
//! milliseconds and the other 10 (80 bits) come from the system CSPRNG. Time first keeps
//! a store's inserts near each other (recent records stay in cache however large the
//! store grows); ids are not secrets (RFC 8555 guards every object with the account key).

use serde::{Deserialize, Serialize};

/// 16 bytes from the system CSPRNG, base64url-encoded (22 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes);
    crate::jose::b64_encode(bytes)
}

/// 6 bytes of Unix time in milliseconds (big-endian), then 10 random bytes.
pub fn time_ordered_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes[6..]);
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    bytes
}

/// Fills `buf` from the system CSPRNG. ring's `SystemRandom` only fails if the OS has no
/// entropy source, in which case nothing idca does is safe: it aborts.
pub fn fill_random(buf: &mut [u8]) {
    use ring::rand::SecureRandom;
    if ring::rand::SystemRandom::new().fill(buf).is_err() {
        tracing::error!("the operating system's random number generator failed");
        std::process::abort();
    }
}

/// True `percent` times out of a hundred (for the test knobs that inject faults).
pub fn percent_chance(percent: u8) -> bool {
    if percent == 0 {
        return false;
    }
    let mut b = [0u8; 2];
    fill_random(&mut b);
    u16::from_be_bytes(b) % 100 < u16::from(percent)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// A fresh id: creation time, then 80 random bits.
            pub fn random() -> Self {
                Self(crate::jose::b64_encode(time_ordered_bytes()))
            }

            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// An ACME account (RFC 8555 §7.1.2).
    AccountId
);
id_type!(
    /// An ACME order (RFC 8555 §7.1.3).
    OrderId
);
id_type!(
    /// An ACME authorization (RFC 8555 §7.1.4).
    AuthzId
);
id_type!(
    /// A challenge inside an authorization (RFC 8555 §7.1.5).
    ChallengeId
);

/// A certificate's serial number as lower-case hex; also its id in URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Serial(pub String);

impl Serial {
    /// A fresh serial: the creation time in milliseconds, then 80 random bits (the
    /// CA/Browser Forum asks for at least 64), top bit clear and first byte non-zero, so
    /// the DER INTEGER is positive and exactly 16 bytes (RFC 5280 §4.1.2.2).
    pub fn random() -> (Self, [u8; 16]) {
        let mut bytes = time_ordered_bytes();
        bytes[0] = (bytes[0] & 0x7f) | 0x01;
        (Self(super::hex(&bytes)), bytes)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Serial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_positive_16_bytes_and_distinct() {
        let (a, ab) = Serial::random();
        let (b, _) = Serial::random();
        assert_ne!(a, b);
        assert_eq!(a.0.len(), 32);
        assert!(ab[0] & 0x80 == 0 && ab[0] != 0);
        // Later serials sort after earlier ones (hex keeps the byte order).
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(Serial::random().0 > a);
    }

    #[test]
    fn ids_are_22_chars_base64url() {
        let id = OrderId::random();
        assert_eq!(id.0.len(), 22);
        assert!(id.0.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }
}
