//! Devices and their client-identity access tokens: Wire's `/clients` endpoints
//! (wire-server brig `createClientDPoPAccessToken`, rusty-jwt-tools access tokens).

use serde::Serialize;

use super::{AccessTokenClaims, AuthServer, OAuthError};
use crate::clock::{self, UnixTime};
use crate::dpop::{DpopError, WireExpected, verify_wire_proof};
use crate::jose::b64_encode;
use crate::model::oauth::Device;
use crate::store::StoreError;

/// The access-token response (wire-server: `{"token", "type": "DPoP", "expires_in"}`).
#[derive(Clone, Serialize)]
pub struct DeviceTokenResponse {
    pub token: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub expires_in: u64,
}

impl std::fmt::Debug for DeviceTokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceTokenResponse([elided])")
    }
}

/// What `POST /clients` answers.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceInfo {
    pub id: String,
    pub client_id: String,
    pub label: String,
    /// The Wire identity the device's proofs and ACME identifiers must carry (`handle`
    /// as the `wireapp://%40handle@domain` URI, as in the id_token).
    pub handle: String,
    pub name: String,
    pub team: String,
    pub domain: String,
}

/// The claims of a client-identity access token (rusty-jwt-tools `access` module).
#[derive(Serialize)]
struct WireAccessClaims<'a> {
    api_version: u32,
    aud: &'a str,
    chal: &'a str,
    client_id: &'a str,
    cnf: Kid<'a>,
    exp: UnixTime,
    iat: UnixTime,
    nbf: UnixTime,
    iss: &'a str,
    jti: String,
    nonce: &'a str,
    proof: &'a str,
    scope: &'static str,
    sub: &'a str,
}

#[derive(Serialize)]
struct Kid<'a> {
    kid: &'a str,
}

/// A user id as Wire writes it: unpadded base64url of 16 bytes (here derived from the
/// user name, so it is stable).
pub fn wire_user_id(username: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, username.as_bytes());
    b64_encode(d.as_ref().get(..16).unwrap_or_default())
}

/// A backend nonce: a random UUIDv4 as unpadded base64url of its 16 bytes (22 chars).
fn uuid_nonce() -> String {
    let mut b = [0u8; 16];
    crate::model::fill_random(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b64_encode(b)
}

impl AuthServer {
    fn wire_user(&self, username: &str) -> Result<&super::User, OAuthError> {
        let user = self
            .users
            .iter()
            .find(|u| u.username == username)
            .ok_or_else(|| OAuthError::AccessDenied("only users can register devices".into()))?;
        if user.domain.is_empty() || user.handle.is_empty() || user.name.is_empty() {
            return Err(OAuthError::InvalidRequest(
                "this user has no Wire identity (handle, name and domain in [[oauth.users]])".into(),
            ));
        }
        Ok(user)
    }

    /// `POST /clients`: registers a device for the token's user.
    pub async fn register_device(
        &self,
        who: &AccessTokenClaims,
        label: &str,
        now: UnixTime,
    ) -> Result<DeviceInfo, OAuthError> {
        let user = self.wire_user(&who.sub)?;
        self.take_rate(super::Rate::DeviceRegistration, &who.sub).await?;
        for _ in 0..5 {
            let mut b = [0u8; 8];
            crate::model::fill_random(&mut b);
            let id = format!("{:x}", u64::from_be_bytes(b));
            let device = Device {
                client_id: format!("wireapp://{}!{id}@{}", wire_user_id(&user.username), user.domain),
                id,
                user: user.username.clone(),
                label: label.chars().take(100).collect(),
                created: now,
            };
            match self.store.create_device(&device).await {
                Ok(()) => {
                    return Ok(DeviceInfo {
                        id: device.id,
                        client_id: device.client_id,
                        label: device.label,
                        handle: format!("wireapp://%40{}@{}", user.handle, user.domain),
                        name: user.name.clone(),
                        team: user.team.clone(),
                        domain: user.domain.clone(),
                    });
                }
                Err(StoreError::AlreadyExists) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(OAuthError::server(StoreError::Conflict))
    }

    async fn owned_device(&self, who: &AccessTokenClaims, cid: &str) -> Result<Device, OAuthError> {
        match self.store.device(cid).await {
            Ok(d) if d.user == who.sub => Ok(d),
            Ok(_) | Err(StoreError::NotFound) => Err(OAuthError::InvalidRequest("no such device for this user".into())),
            Err(e) => Err(e.into()),
        }
    }

    /// `HEAD|GET /clients/{cid}/nonce`: a fresh backend nonce for the device, replacing
    /// the previous one; single use, for `devices.nonce_ttl_secs`.
    pub async fn device_nonce(&self, who: &AccessTokenClaims, cid: &str, now: UnixTime) -> Result<String, OAuthError> {
        self.owned_device(who, cid).await?;
        self.take_rate(super::Rate::BackendNonce, &who.sub).await?;
        let nonce = uuid_nonce();
        self.store.put_device_nonce(cid, &nonce, clock::after(now, self.devices.nonce_ttl_secs)).await?;
        Ok(nonce)
    }

    /// `POST /clients/{cid}/access-token`, in order:
    /// 1. the device is the token user's, and the user has a Wire identity;
    /// 2. exactly one `DPoP` proof;
    /// 3. the device's backend nonce is taken (once) and unexpired;
    /// 4. the proof passes Wire's checks (`dpop::verify_wire_proof`);
    /// 5. its `jti` was never seen (replay memory shared with RFC 9449 proofs);
    /// 6. the access token is signed with idca's key, its `jwk` in the header.
    pub async fn device_access_token(
        &self,
        who: &AccessTokenClaims,
        cid: &str,
        proofs: &[&str],
        now: UnixTime,
    ) -> Result<DeviceTokenResponse, OAuthError> {
        // 1.
        let device = self.owned_device(who, cid).await?;
        let user = self.wire_user(&who.sub)?;
        // 2.
        let [proof] = proofs else {
            return Err(OAuthError::InvalidDpopProof("send exactly one DPoP header".into()));
        };
        // 3.
        let (nonce, expires) = match self.store.take_device_nonce(cid).await {
            Ok(n) => n,
            Err(StoreError::NotFound) => {
                return Err(OAuthError::InvalidDpopProof(format!(
                    "no backend nonce: get one from /clients/{cid}/nonce"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        if expires <= now {
            return Err(OAuthError::InvalidDpopProof("the backend nonce has expired".into()));
        }
        // 4.
        let htu = format!("{}/clients/{cid}/access-token", self.audience);
        let handle = format!("wireapp://%40{}@{}", user.handle, user.domain);
        let expected = WireExpected {
            client_id: &device.client_id,
            nonce: &nonce,
            htu: &htu,
            handle: &handle,
            team: &user.team,
            name: &user.name,
            max_exp: clock::after(now, self.devices.max_proof_lifetime_secs),
            max_skew_secs: clock::span(self.devices.max_skew_secs),
            depth: self.json_depth,
        };
        let verified = verify_wire_proof(proof, &expected, now).map_err(|e| match e {
            DpopError::InvalidProof(m) | DpopError::UseNonce(m) => OAuthError::InvalidDpopProof(m),
            DpopError::Store(e) => e.into(),
        })?;
        // 5.
        let replay_key = b64_encode(ring::digest::digest(
            &ring::digest::SHA256,
            format!("wire\u{0}{}\u{0}{}", verified.jkt.0, verified.jti).as_bytes(),
        ));
        let window = clock::span(self.devices.max_proof_lifetime_secs) + 120;
        if !self.store.remember_dpop_jti(&replay_key, now + window, now).await? {
            return Err(OAuthError::InvalidDpopProof("the proof was already used (jti replay)".into()));
        }
        // 6.
        let lifetime = self.devices.access_token_lifetime_secs;
        let claims = WireAccessClaims {
            api_version: 5,
            aud: &verified.aud,
            chal: &verified.chal,
            client_id: &device.client_id,
            cnf: Kid { kid: &verified.jkt.0 },
            exp: now + lifetime as i64,
            iat: now,
            nbf: now,
            iss: &htu,
            jti: crate::model::random_token(),
            nonce: &nonce,
            proof,
            scope: "wire_client_id",
            sub: &device.client_id,
        };
        let token = self.keys.current().sign_embedding_jwk(super::AT_JWT, &claims)?;
        Ok(DeviceTokenResponse { token, kind: "DPoP", expires_in: lifetime })
    }
}
