//! PKCE (RFC 7636) with S256 only.

use super::OAuthError;

/// Checks a `code_challenge` (RFC 7636 §4.2: base64url(SHA-256) is 43 characters).
pub(super) fn check_challenge(challenge: &str, method: Option<&str>) -> Result<(), OAuthError> {
    match method {
        Some("S256") => {}
        None => return Err(OAuthError::InvalidRequest("code_challenge_method must be S256".into())),
        Some(other) => {
            return Err(OAuthError::InvalidRequest(format!(
                "code_challenge_method `{}` is not supported; use S256",
                other.chars().take(16).collect::<String>()
            )));
        }
    }
    if challenge.len() != 43 || crate::jose::b64_decode(challenge).map_or(true, |b| b.len() != 32) {
        return Err(OAuthError::InvalidRequest("code_challenge must be base64url(SHA-256), 43 characters".into()));
    }
    Ok(())
}

/// Verifies a `code_verifier` against the stored challenge (RFC 7636 §4.6): 43 to 128
/// characters of `[A-Za-z0-9-._~]`, whose SHA-256 matches, compared in constant time.
pub(super) fn verify(verifier: &str, challenge: &str) -> Result<(), OAuthError> {
    let ok_chars = verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !(43..=128).contains(&verifier.len()) || !ok_chars {
        return Err(OAuthError::InvalidGrant("code_verifier must be 43-128 characters of [A-Za-z0-9-._~]".into()));
    }
    let digest = crate::jose::b64_encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()));
    if crate::jose::ct_eq(digest.as_bytes(), challenge.as_bytes()) {
        Ok(())
    } else {
        Err(OAuthError::InvalidGrant("code_verifier does not match the code_challenge".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B.
    #[test]
    fn rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        check_challenge(challenge, Some("S256")).unwrap();
        verify(verifier, challenge).unwrap();
    }

    #[test]
    fn rejects_plain_short_and_wrong_verifiers() {
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(check_challenge(challenge, Some("plain")).is_err());
        assert!(check_challenge(challenge, None).is_err());
        assert!(check_challenge("short", Some("S256")).is_err());
        assert!(verify("too-short", challenge).is_err());
        assert!(verify(&"a".repeat(129), challenge).is_err());
        assert!(verify(&format!("{}!", "a".repeat(50)), challenge).is_err());
        assert!(verify(&"a".repeat(43), challenge).is_err());
    }
}
