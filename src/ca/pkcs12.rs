//! PKCS#12 (RFC 7292) files for Java and Windows users, written as OpenSSL 3 does by
//! default: the key in a PKCS#8 shrouded key bag under PBES2 (PBKDF2-HMAC-SHA256,
//! AES-256-CBC, RFC 8018), the certificates in a plain bag, and an HMAC-SHA256 MAC
//! keyed by the RFC 7292 appendix B KDF. ring has no AES-CBC, hence the `aes`/`cbc`
//! crates; everything else is ring.

use super::CaError;
use super::der::tlv;

/// PBKDF2 and MAC-KDF iterations (OpenSSL 3 and Java use 2048 to 10 000).
const ITERATIONS: u32 = 10_000;

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn octets(b: &[u8]) -> Vec<u8> {
    tlv(0x04, b)
}

/// `[0] EXPLICIT`.
fn explicit0(b: &[u8]) -> Vec<u8> {
    tlv(0xA0, b)
}

fn integer(n: u32) -> Vec<u8> {
    let mut bytes: Vec<u8> = n.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
    if bytes.first().is_none_or(|b| b & 0x80 != 0) {
        bytes.insert(0, 0);
    }
    tlv(0x02, &bytes)
}

fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut push = |mut v: u64| {
        let mut chunk = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            chunk.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        chunk.reverse();
        body.extend(chunk);
    };
    if let [a, b, rest @ ..] = arcs {
        push(a * 40 + b);
        for v in rest {
            push(*v);
        }
    }
    tlv(0x06, &body)
}

const NULL: [u8; 2] = [0x05, 0x00];
const ID_DATA: [u64; 7] = [1, 2, 840, 113_549, 1, 7, 1];

/// ContentInfo { id-data, [0] EXPLICIT OCTET STRING }.
fn data_content_info(content: &[u8]) -> Vec<u8> {
    seq(&[&oid(&ID_DATA), &explicit0(&octets(content))])
}

/// friendlyName and localKeyId bag attributes (RFC 7292 §4.2, PKCS#9).
fn bag_attributes(name: &str, local_key_id: &[u8]) -> Vec<u8> {
    let bmp: Vec<u8> = name.encode_utf16().flat_map(u16::to_be_bytes).collect();
    let friendly = seq(&[&oid(&[1, 2, 840, 113_549, 1, 9, 20]), &tlv(0x31, &tlv(0x1E, &bmp))]);
    let key_id = seq(&[&oid(&[1, 2, 840, 113_549, 1, 9, 21]), &tlv(0x31, &octets(local_key_id))]);
    // DER orders the members of a SET OF by their encodings (X.690 §11.6).
    let mut attrs = [friendly, key_id];
    attrs.sort();
    tlv(0x31, &attrs.concat())
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    crate::model::fill_random(&mut b);
    b
}

/// The RFC 7292 appendix B.2 KDF with SHA-256 for one 32-byte output (`id` 3: MAC key).
fn pkcs12_kdf(password: &str, salt: &[u8], id: u8, iterations: u32) -> Vec<u8> {
    const V: usize = 64;
    let mut bmp: Vec<u8> = password.encode_utf16().flat_map(u16::to_be_bytes).collect();
    bmp.extend([0, 0]);
    let stretch = |s: &[u8]| -> Vec<u8> {
        if s.is_empty() {
            return Vec::new();
        }
        s.iter().copied().cycle().take(V * s.len().div_ceil(V)).collect()
    };
    let mut input = vec![id; V];
    input.extend(stretch(salt));
    input.extend(stretch(&bmp));
    let mut a = ring::digest::digest(&ring::digest::SHA256, &input).as_ref().to_vec();
    for _ in 1..iterations {
        a = ring::digest::digest(&ring::digest::SHA256, &a).as_ref().to_vec();
    }
    a
}

/// EncryptedPrivateKeyInfo under PBES2 (RFC 8018 §6.2) with PBKDF2-HMAC-SHA256 and
/// AES-256-CBC; the password is used as its UTF-8 bytes, as OpenSSL does.
fn shroud(pkcs8: &[u8], password: &str) -> Result<Vec<u8>, CaError> {
    use cbc::cipher::{BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
    let salt: [u8; 16] = random();
    let iv: [u8; 16] = random();
    let mut key = [0u8; 32];
    let iterations = std::num::NonZeroU32::new(ITERATIONS).ok_or_else(|| CaError::Material("iterations".into()))?;
    ring::pbkdf2::derive(ring::pbkdf2::PBKDF2_HMAC_SHA256, iterations, &salt, password.as_bytes(), &mut key);
    let mut buf = pkcs8.to_vec();
    buf.resize(pkcs8.len() + 16, 0);
    let encrypted = cbc::Encryptor::<aes::Aes256>::new(&key.into(), &iv.into())
        .encrypt_padded_mut::<Pkcs7>(&mut buf, pkcs8.len())
        .map_err(|_| CaError::Material("PKCS#12 padding".into()))?;
    let prf = seq(&[&oid(&[1, 2, 840, 113_549, 2, 9]), &NULL]);
    let kdf = seq(&[&oid(&[1, 2, 840, 113_549, 1, 5, 12]), &seq(&[&octets(&salt), &integer(ITERATIONS), &prf])]);
    let scheme = seq(&[&oid(&[2, 16, 840, 1, 101, 3, 4, 1, 42]), &octets(&iv)]);
    let alg = seq(&[&oid(&[1, 2, 840, 113_549, 1, 5, 13]), &seq(&[&kdf, &scheme])]);
    Ok(seq(&[&alg, &octets(encrypted)]))
}

/// A PKCS#12 file holding `key` (PKCS#8 DER) and `chain` (leaf first, DER), the leaf
/// and key named `name` and paired by a shared localKeyId.
pub fn encode(key: &[u8], chain: &[Vec<u8>], password: &str, name: &str) -> Result<Vec<u8>, CaError> {
    if password.is_empty() {
        return Err(CaError::Material("a PKCS#12 file needs a password".into()));
    }
    let local_key_id: Vec<u8> = chain
        .first()
        .map(|leaf| ring::digest::digest(&ring::digest::SHA256, leaf).as_ref().to_vec())
        .unwrap_or_default();
    let cert_bags: Vec<u8> = chain
        .iter()
        .enumerate()
        .flat_map(|(i, der)| {
            let value = seq(&[&oid(&[1, 2, 840, 113_549, 1, 9, 22, 1]), &explicit0(&octets(der))]);
            let bag_id = oid(&[1, 2, 840, 113_549, 1, 12, 10, 1, 3]);
            let attrs = if i == 0 { bag_attributes(name, &local_key_id) } else { Vec::new() };
            seq(&[&bag_id, &explicit0(&value), &attrs])
        })
        .collect();
    let key_bag = seq(&[
        &oid(&[1, 2, 840, 113_549, 1, 12, 10, 1, 2]),
        &explicit0(&shroud(key, password)?),
        &bag_attributes(name, &local_key_id),
    ]);
    let auth_safe = seq(&[&data_content_info(&tlv(0x30, &cert_bags)), &data_content_info(&tlv(0x30, &key_bag))]);
    let mac_salt: [u8; 16] = random();
    let mac_key = pkcs12_kdf(password, &mac_salt, 3, ITERATIONS);
    let mac = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &mac_key), &auth_safe);
    let digest_info = seq(&[&seq(&[&oid(&[2, 16, 840, 1, 101, 3, 4, 2, 1]), &NULL]), &octets(mac.as_ref())]);
    let mac_data = seq(&[&digest_info, &octets(&mac_salt), &integer(ITERATIONS)]);
    Ok(seq(&[&integer(3), &data_content_info(&auth_safe), &mac_data]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn der_primitives() {
        assert_eq!(oid(&[1, 2, 840, 113_549, 1, 7, 1]), vec![6, 9, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 7, 1]);
        assert_eq!(integer(3), vec![2, 1, 3]);
        assert_eq!(integer(128), vec![2, 2, 0, 128]);
        assert_eq!(integer(10_000), vec![2, 2, 0x27, 0x10]);
        assert_eq!(tlv(4, &[0; 200])[..3], [4, 0x81, 200]);
    }

    /// RFC 7292 B.2 with SHA-256, cross-checked with OpenSSL's PKCS12_key_gen_utf8
    /// (`openssl kdf … PKCS12KDF`, in fixtures/generate.sh).
    #[test]
    fn mac_kdf_matches_openssl() {
        let key = pkcs12_kdf("changeit", &[1, 2, 3, 4, 5, 6, 7, 8], 3, 2048);
        let hex: String = crate::model::hex(&key);
        assert_eq!(hex, include_str!("../../fixtures/pkcs12-kdf-vector.txt").trim());
    }

    #[test]
    fn empty_password_is_refused() {
        assert!(encode(&[1], &[vec![2]], "", "x").is_err());
    }
}
