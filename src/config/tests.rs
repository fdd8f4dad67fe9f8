use super::*;

#[test]
fn committed_config_parses_to_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    let loaded = Config::load(&path).unwrap();
    assert_eq!(loaded, Config::default());
}

#[test]
fn rejects_unknown_keys_by_name() {
    let err = Config::parse("[server]\nlisten_adress = \"127.0.0.1:1\"\n").unwrap_err();
    assert!(err.to_string().contains("listen_adress"), "{err}");
    let err = Config::parse("[nope]\n").unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn rejects_limits_that_would_refuse_everything_or_overflow() {
    let err = Config::parse("[limits]\nqueued_validations = 0\n").unwrap_err();
    assert!(err.to_string().contains("limits.queued_validations must be at least 1"), "{err}");
    let err = Config::parse("[limits]\nnonce_window = 18446744073709551615\n").unwrap_err();
    assert!(err.to_string().contains("limits.nonce_window"), "{err}");
    assert!(Config::parse("[limits]\nnonce_window = 64\n").is_ok());
}

#[test]
fn redirect_uris_follow_rfc_3986() {
    for good in [
        "https://app.example/cb",
        "https://app.example:8443/cb?x=1&y=%20",
        "https://[2001:db8::1]:443/cb",
        "http://127.0.0.1/callback",
        "http://127.0.0.1:51004/callback",
        "http://[::1]:8080/cb",
        "http://localhost:3000/cb",
        "com.example.app:/oauth2redirect",
        "https://app.example/c!$&'()*+,;=:@b",
    ] {
        assert_eq!(check_redirect_uri(good), Ok(()), "{good}");
    }
    for bad in [
        "https://app.example/c b",
        "https://app.example/cb\r\nSet-Cookie: x=1",
        "https://app.example/\u{e9}",
        "https://app.example/\"",
        "https://app.example/<",
        "https://app.example/>",
        "https://app.example/\\",
        "https://app.example/{",
        "https://app.example/}",
        "https://app.example/|",
        "https://app.example/^",
        "https://app.example/`",
        "https://app.example/\t",
        "https://app.example/\u{7f}",
        "https://app.example/cb#frag",
        "https://app.example:99999/cb",
        "https://app.example:0/cb",
        "https://app.example:/cb",
        "https://app.example:8x/cb",
        "https://user:pw@app.example/cb",
        "https://[not-v6]/cb",
        "https://[::1/cb",
        "https://a[b]/cb",
        "https://app.example/[x]",
        "https://app.example/%zz",
        "https:///cb",
        "http://evil.example/cb",
        "1https://app.example/cb",
        "relative/path",
        "javascript:alert(1)",
    ] {
        assert!(check_redirect_uri(bad).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn rejects_partial_ca_paths() {
    let err = Config::parse("[ca]\nroot_cert = \"r.pem\"\n").unwrap_err();
    assert!(err.to_string().contains("together"), "{err}");
}

#[test]
fn public_url_defaults_to_localhost() {
    let c = Config::default();
    let v4 = || vec!["127.0.0.1".parse().unwrap()];
    assert_eq!(c.public_url_with("127.0.0.1:14000".parse().unwrap(), v4), "https://localhost:14000");
    assert_eq!(c.public_url_with("0.0.0.0:1".parse().unwrap(), v4), "https://localhost:1");
    let mut c = Config::default();
    c.server.public_url = "https://acme.example:8443".into();
    assert_eq!(c.public_url("0.0.0.0:1".parse().unwrap()), "https://acme.example:8443");
}

/// Issue 20: `localhost` only when it resolves to nothing but addresses idca is on.
#[test]
fn public_url_never_names_a_host_resolving_elsewhere() {
    let mut c = Config::default();
    c.server.tls = false;
    let v4 = || vec!["127.0.0.1".parse().unwrap()];
    let both = || vec!["::1".parse().unwrap(), "127.0.0.1".parse().unwrap()];
    let v6 = || vec!["::1".parse().unwrap()];
    let url = |bound: &str, r: fn() -> Vec<IpAddr>| c.public_url_with(bound.parse().unwrap(), r);
    assert_eq!(url("[::1]:14000", v4), "http://[::1]:14000");
    assert_eq!(url("[::1]:14000", both), "http://[::1]:14000");
    assert_eq!(url("[::1]:14000", v6), "http://localhost:14000");
    assert_eq!(url("[::]:5", v4), "http://[::1]:5");
    assert_eq!(url("[::]:5", v6), "http://localhost:5");
    assert_eq!(url("127.0.0.1:7", both), "http://127.0.0.1:7");
    assert_eq!(url("127.0.0.2:7", v4), "http://127.0.0.2:7");
    assert_eq!(url("0.0.0.0:7", both), "http://127.0.0.1:7");
    assert_eq!(url("127.0.0.1:7", Vec::new), "http://127.0.0.1:7");
    assert_eq!(url("10.1.2.3:7", v4), "http://10.1.2.3:7");
    assert_eq!(url("[2001:db8::1]:7", v4), "http://[2001:db8::1]:7");
}

#[test]
fn key_clients_name_one_method_with_usable_keys() {
    let client = |extra: &str| {
        format!("[[oauth.clients]]\nclient_id = \"k\"\nname = \"k\"\nscopes = []\ngrant_types = []\n{extra}\n")
    };
    let jwks = r#"jwks = { keys = [ { kty = "EC", crv = "P-256", x = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" } ] }"#;
    let c = Config::parse(&client(jwks)).unwrap();
    assert_eq!(crate::jose::jwk_set(c.oauth.clients[0].jwks.as_ref().unwrap()).len(), 1);
    assert!(Config::parse(&client("jwks_uri = \"https://k.example/jwks\"")).is_ok());
    assert!(Config::parse(&client(&format!("jwt_secret = \"{}\"", "x".repeat(32)))).is_ok());
    for (bad, says) in [
        (format!("{jwks}\njwt_secret = \"{}\"", "x".repeat(32)), "give one of"),
        ("jwt_secret = \"short\"".to_owned(), "at least 32 bytes"),
        ("jwks = { keys = [ { kty = \"oct\", k = \"AAAA\" } ] }".to_owned(), "no signing key"),
        ("jwks_uri = \"ftp://k.example/jwks\"".to_owned(), "http(s) URL"),
    ] {
        let err = Config::parse(&client(&bad)).unwrap_err();
        assert!(err.to_string().contains(says), "{bad}: {err}");
    }
}

/// Values that would overflow a request's arithmetic or let one login hold a check slot
/// for good are refused at load: a profile's validity over 100 years, a DPoP proof age
/// over a day, argon2 costs above `password::MAX_ARGON2` in a user's or client's hash.
#[test]
fn rejects_validities_ages_and_hash_costs_out_of_bounds() {
    let err = Config::parse("[acme.profiles.default]\ndescription = \"x\"\nvalidity_secs = 9223372036854775808\n")
        .unwrap_err();
    assert!(err.to_string().contains("acme.profiles.default.validity_secs must be 1 to"), "{err}");
    assert!(Config::parse("[acme.profiles.default]\ndescription = \"x\"\nvalidity_secs = 3155760000\n").is_ok());
    let err = Config::parse("[dpop]\nmax_age_secs = 86401\n").unwrap_err();
    assert!(err.to_string().contains("dpop.max_age_secs"), "{err}");
    let user = |hash: &str| format!("[[oauth.users]]\nusername = \"alice\"\npassword_hash = \"{hash}\"\n");
    let phc = |m: u32, t: u32| {
        format!("$argon2id$v=19$m={m},t={t},p=1$c2FsdHNhbHRzYWx0$YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE")
    };
    let err = Config::parse(&user(&phc(4_294_967_295, 1))).unwrap_err();
    assert!(err.to_string().contains("oauth user alice: password_hash: argon2 costs above"), "{err}");
    let err = Config::parse(&user(&phc(19_456, 4_294_967_295))).unwrap_err();
    assert!(err.to_string().contains("argon2 costs above"), "{err}");
    assert!(Config::parse(&user(&phc(19_456, 2))).is_ok());
    let err = Config::parse(&user("not a hash")).unwrap_err();
    assert!(err.to_string().contains("not a PHC hash string"), "{err}");
}
