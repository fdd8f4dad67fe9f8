#![allow(clippy::unwrap_used)]
use super::*;

#[test]
fn names_are_sorted_by_form_and_checked() {
    let n =
        parse_names(&["MyApp.Test".into(), "127.0.0.1".into(), "*.myapp.test".into(), "::1".into()], false).unwrap();
    assert_eq!(n.dns, vec!["myapp.test", "*.myapp.test"]);
    assert_eq!(n.ips.len(), 2);
    let c = parse_names(&["a@Example.TEST".into(), "spiffe://x.test/a".into()], true).unwrap();
    assert_eq!((c.emails, c.uris), (vec!["a@example.test".to_owned()], vec!["spiffe://x.test/a".to_owned()]));
    for (bad, client) in [("a@b.test", false), ("spiffe://x", false), ("a..b", true), ("@x.test", true)] {
        assert!(parse_names(&[bad.into()], client).is_err(), "{bad}");
    }
    assert!(parse_names(&[], false).is_err());
}

#[test]
fn file_stems_follow_mkcert() {
    assert_eq!(file_stem(&["myapp.test".into()]), "myapp.test");
    assert_eq!(file_stem(&["*.myapp.test".into(), "localhost".into()]), "_wildcard.myapp.test+1");
    assert_eq!(file_stem(&["::1".into()]), "__1");
    assert_eq!(file_stem(&["spiffe://x/a".into()]), "spiffe___x_a");
}

#[test]
fn summaries_tell_origin_and_status() {
    let cert = IssuedCertificate {
        serial: Serial("01".into()),
        account: Some(crate::model::AccountId("acct1".into())),
        order: None,
        chain_pem: String::new(),
        not_before: 0,
        not_after: 100,
        issued: 0,
        revoked: None,
        replaced_by: None,
        renewal_info: None,
    };
    let s = summarize(&cert, 50);
    assert_eq!((s.status, s.via.as_str()), ("valid", "acme acct1"));
    assert_eq!(summarize(&cert, 100).status, "expired");
    let revoked = IssuedCertificate { revoked: Some(Revocation { reason: 0, at: 1 }), account: None, ..cert };
    let s = summarize(&revoked, 50);
    assert_eq!((s.status, s.via.as_str()), ("revoked", "cli"));
}
