//! Conformance checks of the order list's paging and the revocation epoch.

use std::sync::Arc;

use super::{account, certificate, order};
use crate::model::*;
use crate::store::{Store, Version};

/// An account's orders page from a position: every order once, oldest first, the same
/// sequence whatever the page size, orders created in the same second included, and no
/// other account's.
pub(crate) async fn orders_page_from_a_position(s: Arc<dyn Store>) {
    let acct = account(21);
    let mut created = Vec::new();
    for t in [100, 101, 101, 101, 102, 105, 105] {
        let o = order(&acct.id, &[], t);
        s.create_order(&o, &[], None).await.unwrap();
        created.push(o);
    }
    let other = order(&account(22).id, &[], 101);
    s.create_order(&other, &[], None).await.unwrap();
    let (all, next) = s.account_orders(&acct.id, None, 100).await.unwrap();
    assert_eq!((all.len(), next), (created.len(), None));
    let times: Vec<_> = all.iter().map(|id| created.iter().find(|o| &o.id == id).unwrap().created).collect();
    assert!(times.is_sorted(), "oldest first: {times:?}");
    for per_page in [1, 2, 3, 7] {
        let (mut seen, mut from) = (Vec::new(), None::<OrderId>);
        loop {
            let position = from.as_ref().map(|id| (created.iter().find(|o| &o.id == id).unwrap().created, id));
            let (ids, next) = s.account_orders(&acct.id, position, per_page).await.unwrap();
            assert!(ids.len() <= per_page && !ids.is_empty());
            seen.extend(ids);
            match next {
                Some(n) => from = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, all, "pages of {per_page}");
    }
    assert_eq!(s.account_orders(&AccountId::random(), None, 2).await.unwrap(), (vec![], None));
}

/// The revocation epoch moves when a certificate is revoked and when a revocation is
/// withdrawn, so a CRL kept from before is never served after.
pub(crate) async fn revocations_move_the_epoch(s: Arc<dyn Store>) {
    let acct = account(23);
    let o = order(&acct.id, &[], 1);
    s.create_order(&o, &[], None).await.unwrap();
    let (serial, _) = Serial::random();
    let mut cert = certificate(&serial, &acct.id, &o.id);
    s.create_certificate(&cert).await.unwrap();
    let before = s.revocation_epoch().await.unwrap();
    cert.revoked = Some(Revocation { at: 5, reason: 1 });
    let v = s.update_certificate(&cert, Version(1)).await.unwrap();
    let revoked = s.revocation_epoch().await.unwrap();
    assert_ne!(revoked, before);
    assert_eq!(s.revoked_certificates().await.unwrap().len(), 1);
    cert.revoked = None;
    s.update_certificate(&cert, v).await.unwrap();
    assert_ne!(s.revocation_epoch().await.unwrap(), revoked);
    assert!(s.revoked_certificates().await.unwrap().is_empty());
}
