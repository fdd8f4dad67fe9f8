//! The OIDC `claims` request parameter (OpenID Connect Core §5.5).
//!
//! A client may *ask* for claims; it may not *set* them. Everything idca signs in an
//! id_token or answers at userinfo comes from its own records (the user's profile, the
//! session's `auth_time`, how the user logged in), except the claims a protocol here
//! defines as echoed from the request: [`ECHOED_CLAIMS`].

use std::collections::BTreeMap;

use serde_json::Value;

use super::OAuthError;

/// The only claims whose values a request supplies: Wire's `wire-oidc-01` binds the
/// id_token to an ACME challenge with `keyauth` (the key authorization) and `acme_aud`
/// (the challenge URL). `nonce` has its own parameter (Core §3.1.2.1).
pub(super) const ECHOED_CLAIMS: [&str; 2] = ["keyauth", "acme_aud"];

/// How idca authenticated the user (RFC 8176 §2): always a password today.
pub(super) const AMR: [&str; 1] = ["pwd"];

/// Reads the `claims` parameter and keeps the [`ECHOED_CLAIMS`] asked for in `id_token`
/// with a string `value`. Requests for any other claim are not errors (Core §5.5.1: a
/// requested value is a request, not a command) and change nothing, with two
/// exceptions that must not get a positive answer:
/// - `sub` with a value (Core §3.1.2.2: only for that very user): refused;
/// - an essential `acr` with `value` or `values` (Core §5.5.1.1): idca supports no
///   authentication context classes, so the outcome is a failed authentication,
///   `unmet_authentication_requirements`.
pub(super) fn requested_claims(json: &str) -> Result<BTreeMap<String, Value>, OAuthError> {
    let bad = |m: &str| OAuthError::InvalidRequest(format!("claims: {m}"));
    if json.len() > 8 * 1024 {
        return Err(bad("too large"));
    }
    let v: Value = serde_json::from_str(json).map_err(|_| bad("not a JSON object"))?;
    let Some(obj) = v.as_object() else { return Err(bad("not a JSON object")) };
    let mut out = BTreeMap::new();
    for (member, requests) in obj {
        let Some(requests) = requests.as_object() else {
            if requests.is_null() {
                continue;
            }
            return Err(bad("`id_token` and `userinfo` must be objects"));
        };
        for (name, spec) in requests {
            let spec = match spec {
                Value::Null => continue,
                Value::Object(s) => s,
                _ => return Err(bad("each requested claim must be null or an object")),
            };
            let asks_values = spec.contains_key("value") || spec.contains_key("values");
            let essential = spec.get("essential").and_then(Value::as_bool).unwrap_or(false);
            match name.as_str() {
                "sub" if asks_values => return Err(bad("`sub` cannot be requested with a value")),
                "acr" if asks_values && essential => {
                    return Err(OAuthError::UnmetAuthenticationRequirements(
                        "this server supports no acr values; the essential acr cannot be satisfied".into(),
                    ));
                }
                claim if member == "id_token" && ECHOED_CLAIMS.contains(&claim) => {
                    let Some(value) = spec.get("value") else { continue };
                    let Some(value) = value.as_str() else {
                        return Err(bad(&format!("the value of `{claim}` must be a string")));
                    };
                    if value.len() > 1024 {
                        return Err(bad("too large a value"));
                    }
                    out.insert(claim.to_owned(), Value::String(value.to_owned()));
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

/// The echoed claim `name` of a stored request, if it is one idca echoes: records
/// written before the allow-list may hold others, and those are never signed.
pub(super) fn echoed(requested: &BTreeMap<String, Value>, name: &str) -> Option<String> {
    ECHOED_CLAIMS.contains(&name).then(|| requested.get(name)?.as_str().map(str::to_owned)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ask(v: Value) -> Result<BTreeMap<String, Value>, OAuthError> {
        requested_claims(&v.to_string())
    }

    #[test]
    fn only_keyauth_and_acme_aud_are_echoed() {
        let mut req = serde_json::Map::new();
        for name in ["acr", "amr", "cnf", "email_verified", "phone_number_verified", "sid", "nbf", "jti", "groups"] {
            req.insert(name.into(), json!({"value": "forged"}));
        }
        req.insert("invented".into(), json!({"essential": true, "value": "forged"}));
        req.insert("email".into(), json!({"values": ["root@example.com"]}));
        req.insert("keyauth".into(), json!({"essential": true, "value": "tok.thumb"}));
        req.insert("acme_aud".into(), json!({"value": "https://acme.test/chall/1"}));
        req.insert("name".into(), Value::Null);
        let got = ask(json!({"id_token": req, "userinfo": {"groups": {"value": ["admin"]}}})).unwrap();
        assert_eq!(got.keys().collect::<Vec<_>>(), ["acme_aud", "keyauth"]);
        assert_eq!(echoed(&got, "keyauth").as_deref(), Some("tok.thumb"));
    }

    #[test]
    fn refuses_what_cannot_be_answered_positively() {
        assert!(matches!(ask(json!({"id_token": {"sub": {"value": "root"}}})), Err(OAuthError::InvalidRequest(_))));
        assert!(matches!(
            ask(json!({"id_token": {"acr": {"essential": true, "values": ["urn:mace:incommon:iap:silver"]}}})),
            Err(OAuthError::UnmetAuthenticationRequirements(_))
        ));
        // A voluntary acr is simply not answered.
        assert!(ask(json!({"id_token": {"acr": {"values": ["x"]}}})).unwrap().is_empty());
        assert!(matches!(ask(json!({"id_token": {"keyauth": {"value": 7}}})), Err(OAuthError::InvalidRequest(_))));
        assert!(matches!(ask(json!(["id_token"])), Err(OAuthError::InvalidRequest(_))));
        assert!(matches!(ask(json!({"id_token": {"keyauth": true}})), Err(OAuthError::InvalidRequest(_))));
    }

    #[test]
    fn stored_records_with_other_claims_sign_none_of_them() {
        let stored: BTreeMap<String, Value> = [("acr".to_owned(), json!("gold"))].into();
        assert_eq!(echoed(&stored, "acr"), None);
    }
}
