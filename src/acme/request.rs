//! Authenticating ACME requests (RFC 8555 §6.2-6.4): the JWS rules, step by step.

use super::{Acme, AcmeError, NonceError};
use crate::jose::{FlattenedJws, JoseError, JsonDepth, Jwk};
use crate::model::{Account, AccountStatus};
use crate::store::{StoreError, Versioned};

/// A POST to an ACME resource, as received.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    /// The raw `application/jose+json` body.
    pub body: Vec<u8>,
    /// The absolute URL the request was sent to (public URL + path + query).
    pub url: String,
}

/// Which key a resource must be signed with (§6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRule {
    /// `jwk` only: newAccount.
    Jwk,
    /// `kid` only: everything else.
    Kid,
    /// Either: revokeCert (§7.6) accepts the account or the certificate key.
    Any,
}

/// Who signed a request that verified.
#[derive(Debug)]
pub enum Signer {
    /// A key not (necessarily) tied to an account.
    Key(Jwk),
    /// An existing, valid account.
    Account(Versioned<Account>),
}

/// A request whose signature, URL and nonce were checked.
#[derive(Debug)]
pub struct Verified {
    pub signer: Signer,
    /// The payload; empty for POST-as-GET (§6.3).
    pub payload: Vec<u8>,
    /// The nesting limit its JSON is parsed within.
    pub depth: JsonDepth,
}

impl Verified {
    /// The signing account (for `KeyRule::Kid` requests).
    pub fn account(&self) -> Result<&Versioned<Account>, AcmeError> {
        match &self.signer {
            Signer::Account(a) => Ok(a),
            Signer::Key(_) => Err(AcmeError::Malformed("this resource requires a `kid`".into())),
        }
    }

    /// Whether this is a POST-as-GET (§6.3).
    pub fn is_post_as_get(&self) -> bool {
        self.payload.is_empty()
    }

    /// Parses the payload as JSON of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, AcmeError> {
        crate::jose::json::from_slice(&self.payload, self.depth)
            .map_err(|e| AcmeError::Malformed(format!("invalid payload: {e}")))
    }

    /// Refuses anything but a POST-as-GET.
    pub fn require_post_as_get(&self) -> Result<(), AcmeError> {
        if self.is_post_as_get() {
            Ok(())
        } else {
            Err(AcmeError::Malformed("this resource is fetched with POST-as-GET (empty payload)".into()))
        }
    }
}

fn jose_error(e: JoseError) -> AcmeError {
    match e {
        JoseError::UnsupportedAlgorithm(_) => {
            AcmeError::BadSignatureAlgorithm(format!("{e}; supported: ES256, ES384, ES512, EdDSA, RS256"))
        }
        JoseError::BadKey(_) | JoseError::PrivateKey | JoseError::KeyAlgorithmMismatch(_) => {
            AcmeError::BadPublicKey(e.to_string())
        }
        JoseError::BadSignature => AcmeError::Malformed("JWS signature is invalid".into()),
        other => AcmeError::Malformed(other.to_string()),
    }
}

impl Acme {
    /// Verifies a signed request:
    /// 1. the body is a flattened JWS with a supported `alg` and no `crit` (§6.2);
    /// 2. exactly one of `jwk` and `kid`, and the one this resource requires (§6.2);
    /// 3. `url` equals the URL the request was sent to (§6.4), else `unauthorized`;
    /// 4. a `nonce` is present (§6.5);
    /// 5. the key is found: the `jwk`, or the account named by `kid`
    ///    (`accountDoesNotExist`);
    /// 6. the signature verifies with that key;
    /// 7. the nonce is consumed, once (`badNonce`);
    /// 8. a `kid` account is `valid` (§7.3.6), else `unauthorized`.
    pub async fn verify(&self, req: &SignedRequest, rule: KeyRule) -> Result<Verified, AcmeError> {
        // 1.
        let jws = FlattenedJws::parse(&req.body, self.json_depth).map_err(jose_error)?;
        let h = &jws.header;
        // 2.
        match (&h.jwk, &h.kid, rule) {
            (Some(_), Some(_), _) => {
                return Err(AcmeError::Malformed("`jwk` and `kid` are mutually exclusive".into()));
            }
            (None, None, _) => {
                return Err(AcmeError::Malformed("one of `jwk` and `kid` is required".into()));
            }
            (Some(_), None, KeyRule::Kid) => {
                return Err(AcmeError::Malformed("this resource requires a `kid` (an account URL)".into()));
            }
            (None, Some(_), KeyRule::Jwk) => {
                return Err(AcmeError::Malformed("this resource requires a `jwk`".into()));
            }
            _ => {}
        }
        // 3.
        match &h.url {
            Some(u) if *u == req.url => {}
            Some(_) => {
                return Err(AcmeError::Unauthorized("the JWS `url` does not match the request URL".into()));
            }
            None => {
                return Err(AcmeError::Malformed("the JWS `url` header is required".into()));
            }
        }
        // 4.
        let nonce =
            h.nonce.as_deref().ok_or_else(|| AcmeError::BadNonce("the JWS `nonce` header is required".into()))?;
        // 5.
        let signer = match (&h.jwk, &h.kid) {
            (Some(jwk), _) => Signer::Key(jwk.clone()),
            (_, Some(kid)) => {
                let id = self.links.account_id_from_kid(kid).ok_or_else(|| {
                    AcmeError::AccountDoesNotExist("`kid` is not an account URL of this server".into())
                })?;
                match self.store.account(&id).await {
                    Ok(a) => Signer::Account(a),
                    Err(StoreError::NotFound) => {
                        return Err(AcmeError::AccountDoesNotExist("no account at this `kid`".into()));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            (None, None) => {
                return Err(AcmeError::Malformed("one of `jwk` and `kid` is required".into()));
            }
        };
        // 6.
        let key = match &signer {
            Signer::Key(k) => k,
            Signer::Account(a) => &a.value.key,
        };
        jws.verify(key).map_err(|e| match e {
            // An account key that cannot make `alg` signatures: the request was not
            // signed by the account.
            JoseError::KeyAlgorithmMismatch(_) => AcmeError::Malformed("JWS signature is invalid".into()),
            other => jose_error(other),
        })?;
        // 7.
        self.nonces.consume(nonce).await.map_err(|e| match e {
            NonceError::Store(detail) => {
                tracing::warn!(error = %detail, "the shared nonce store is unavailable");
                AcmeError::Unavailable {
                    detail: "the server's database is unavailable; retry shortly".into(),
                    retry_after: super::problem::UNAVAILABLE_RETRY_AFTER,
                }
            }
            other => AcmeError::BadNonce(other.to_string()),
        })?;
        if crate::model::percent_chance(self.config.testing.nonce_reject_percent) {
            return Err(AcmeError::BadNonce("nonce refused at random (acme.testing.nonce_reject_percent)".into()));
        }
        // 8.
        if let Signer::Account(a) = &signer
            && a.value.status != AccountStatus::Valid
        {
            return Err(AcmeError::AccountDeactivated(format!("account is {:?}", a.value.status).to_lowercase()));
        }
        Ok(Verified { signer, payload: jws.payload, depth: self.json_depth })
    }
}
