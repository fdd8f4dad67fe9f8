//! Pushed authorization requests (RFC 9126): a client POSTs its authorization request,
//! authenticated, and sends the browser with only `client_id` and the `request_uri` it
//! got back, which stands for the pushed parameters once, for a minute.

use std::collections::BTreeMap;

use super::*;
use crate::clock;
use crate::model::oauth::PushedAuthorization;

/// The `request_uri` scheme RFC 9126 §2.2 suggests.
const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// Client authentication's fields, which are not part of the request kept.
const AUTHENTICATION_FIELDS: [&str; 3] = ["client_secret", "client_assertion", "client_assertion_type"];

/// The PAR endpoint's answer (RFC 9126 §2.2).
#[derive(Debug, Clone, Serialize)]
pub struct PushedResponse {
    pub request_uri: String,
    pub expires_in: u64,
}

/// A PAR endpoint body: its fields once each (RFC 6749 §3.1), as the client
/// authentication form and as the authorization request's parameters.
#[derive(Debug)]
pub struct PushedForm {
    pub authentication: TokenForm,
    params: BTreeMap<String, String>,
}

impl PushedForm {
    /// Parses form fields; a field sent twice is `invalid_request`.
    pub fn parse(fields: Vec<(String, String)>) -> Result<Self, OAuthError> {
        let mut params = BTreeMap::new();
        for (k, v) in fields {
            if params.contains_key(&k) {
                return Err(OAuthError::InvalidRequest(format!("{k} is given more than once")));
            }
            params.insert(k, v);
        }
        let authentication = serde_json::from_value(json_object(&params))
            .map_err(|e| OAuthError::InvalidRequest(format!("malformed request: {e}")))?;
        for field in AUTHENTICATION_FIELDS {
            params.remove(field);
        }
        Ok(Self { authentication, params })
    }
}

/// Form fields as a JSON object of strings, to deserialize the typed forms from.
fn json_object(params: &BTreeMap<String, String>) -> serde_json::Value {
    serde_json::Value::Object(params.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str()))).collect())
}

fn authorize_params(params: &BTreeMap<String, String>) -> Result<AuthorizeParams, OAuthError> {
    serde_json::from_value(json_object(params))
        .map_err(|e| OAuthError::InvalidRequest(format!("malformed authorization request: {e}")))
}

impl AuthServer {
    /// The PAR endpoint (RFC 9126 §2): the client authenticates (a public client names
    /// itself); the request is checked as the authorization endpoint checks it (§2.1),
    /// its errors answered here as JSON; `request_uri` may not be pushed (§2.1) and
    /// `request` objects are not supported; the kept request is durable before the `201`.
    pub async fn push_authorization_request(
        &self,
        creds: &ClientCredentials,
        from: IpAddr,
        form: PushedForm,
        now: UnixTime,
    ) -> Result<PushedResponse, OAuthError> {
        let client = self.authenticated_client(creds, from, now).await?;
        let mut params = form.params;
        if params.contains_key("request_uri") {
            return Err(OAuthError::InvalidRequest("request_uri cannot be pushed (RFC 9126 §2.1)".into()));
        }
        if params.contains_key("request") {
            return Err(OAuthError::InvalidRequest("request objects are not supported".into()));
        }
        params.insert("client_id".into(), client.client_id.clone());
        let p = authorize_params(&params)?;
        if let Err(message) = self.client_and_redirect_uri(&p).await? {
            return Err(OAuthError::InvalidRequest(message.into()));
        }
        self.check_response_mode(&p)?;
        self.check_request(&p, &client)?;
        let token = format!("{}{}", random_token(), random_token());
        let pushed = PushedAuthorization {
            client_id: client.client_id,
            params,
            expires: clock::after(now, self.config.par_lifetime_secs),
        };
        self.store.put_pushed_authorization(&SecretHash::of(&token), &pushed).await?;
        Ok(PushedResponse {
            request_uri: format!("{REQUEST_URI_PREFIX}{token}"),
            expires_in: self.config.par_lifetime_secs,
        })
    }

    /// At the authorization endpoint (RFC 9126 §4): a `request_uri` is replaced by the
    /// parameters pushed for it, taken once and only for the `client_id` that pushed them
    /// (other parameters are ignored); `Err` is the message of the error page to show.
    /// Returns the parameters to use and whether they were pushed.
    pub(super) async fn pushed_parameters(
        &self,
        p: &AuthorizeParams,
        now: UnixTime,
    ) -> Result<Result<(AuthorizeParams, bool), &'static str>, OAuthError> {
        let Some(uri) = &p.request_uri else { return Ok(Ok((p.clone(), false))) };
        let Some(client_id) = &p.client_id else {
            return Ok(Err("The request names a request_uri but no client_id."));
        };
        let Some(token) = uri.strip_prefix(REQUEST_URI_PREFIX) else {
            return Ok(Err("This request_uri was not issued here."));
        };
        match self.store.take_pushed_authorization(&SecretHash::of(token), client_id, now).await {
            Ok(pushed) => Ok(Ok((authorize_params(&pushed.params)?, true))),
            Err(StoreError::NotFound) => {
                Ok(Err("This authorization request expired or was already used. Start again from the application."))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `client` may send its authorization requests only through PAR (RFC 9126
    /// §5, §6): `oauth.require_pushed_authorization_requests`, or the client's own.
    pub(super) fn requires_par(&self, client: &Client) -> bool {
        self.config.require_pushed_authorization_requests || client.require_pushed_authorization_requests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn pushed_forms_split_authentication_from_the_request() {
        let f = PushedForm::parse(pairs(&[
            ("client_id", "c1"),
            ("client_secret", "s"),
            ("response_type", "code"),
            ("scope", "openid"),
        ]))
        .unwrap();
        assert_eq!(f.authentication.client_secret.as_deref(), Some("s"));
        assert_eq!(f.authentication.client_id.as_deref(), Some("c1"));
        assert!(!f.params.contains_key("client_secret"));
        let p = authorize_params(&f.params).unwrap();
        assert_eq!((p.response_type.as_deref(), p.scope.as_deref()), (Some("code"), Some("openid")));
        assert!(matches!(
            PushedForm::parse(pairs(&[("scope", "openid"), ("scope", "acme")])),
            Err(OAuthError::InvalidRequest(_))
        ));
    }
}
