//! Conformance checks of the limits: lockouts, rates and the store quota.

use std::sync::Arc;

use super::{account, certificate, code, grant, order, race};
use crate::model::oauth::{Device, PushedAuthorization, SecretHash, Session};
use crate::model::*;
use crate::store::{AccountCreation, Attempt, AttemptRule, Store, StoreError};

/// Lockouts: a burst of attempts at once passes only up to the limit (attempts in
/// flight count), failures lock the key out until the lockout ends, a success clears.
pub(crate) async fn lockouts_stop_a_burst_at_the_limit(s: Arc<dyn Store>) {
    let rule = AttemptRule { max: 5, lockout_secs: 300 };
    let begun = race(&s, |s, _| async move { s.begin_attempt("login:alice|10.0.0.1", rule, 100).await.unwrap() }).await;
    assert_eq!(begun.iter().filter(|r| r.is_ok()).count(), 5, "{begun:?}");
    for _ in 0..5 {
        s.end_attempt("login:alice|10.0.0.1", rule, Attempt::Failed, 110).await.unwrap();
    }
    assert_eq!(s.begin_attempt("login:alice|10.0.0.1", rule, 120).await.unwrap(), Err(290));
    assert!(s.begin_attempt("login:bob|10.0.0.1", rule, 120).await.unwrap().is_ok(), "keys are apart");
    let free = s.begin_attempt("login:alice|10.0.0.1", rule, 410).await.unwrap();
    assert!(free.is_ok(), "the lockout ends");
    s.end_attempt("login:alice|10.0.0.1", rule, Attempt::Failed, 410).await.unwrap();
    s.begin_attempt("login:alice|10.0.0.1", rule, 411).await.unwrap().unwrap();
    s.end_attempt("login:alice|10.0.0.1", rule, Attempt::Succeeded, 411).await.unwrap();
    for _ in 0..5 {
        s.begin_attempt("login:alice|10.0.0.1", rule, 412).await.unwrap().unwrap();
        s.end_attempt("login:alice|10.0.0.1", rule, Attempt::Abandoned, 412).await.unwrap();
    }
    assert!(s.begin_attempt("login:alice|10.0.0.1", rule, 412).await.unwrap().is_ok(), "a success cleared them");
    assert!(s.purge_expired_limits(10_000, 1000).await.unwrap() <= 2);
}

/// Rates: a burst at once gets exactly the burst; then one a step (GCRA).
pub(crate) async fn rates_stop_a_burst_at_the_limit(s: Arc<dyn Store>) {
    let ms = 1_000_000;
    let taken = race(&s, |s, _| async move { s.take_rate("new-order:a", 3, ms).await.unwrap() }).await;
    assert_eq!(taken.iter().filter(|r| r.is_ok()).count(), 3, "{taken:?}");
    assert!(taken.iter().all(|r| r.is_ok() || *r == Err(20)), "{taken:?}");
    assert!(s.take_rate("new-order:b", 3, ms).await.unwrap().is_ok(), "keys are apart");
    assert!(s.take_rate("new-order:a", 3, ms + 19_000).await.unwrap().is_err());
    assert!(s.take_rate("new-order:a", 3, ms + 20_000).await.unwrap().is_ok(), "one more after a step");
    assert!(s.take_rate("new-order:a", 3, ms + 20_000).await.unwrap().is_err());
    assert!(s.purge_expired_limits(10_000, 1000).await.unwrap() >= 2, "full buckets are dropped");
    assert!(s.take_rate("new-order:a", 3, 10_000_000).await.unwrap().is_ok());
}

/// While the live data last measured is past the quota, each operation that creates an
/// object is refused with `OverQuota` and writes nothing; reads, updates and purges go
/// on; below it again, creations work.
pub(crate) async fn the_quota_refuses_new_objects_while_past_it(s: Arc<dyn Store>) {
    let before = account(40);
    assert_eq!(s.create_account(&before).await.unwrap(), AccountCreation::Created);
    s.quota().set_limit(1000);
    s.quota().record(1001);
    fn over<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
        matches!(r, Err(StoreError::OverQuota { used: 1001, limit: 1000 }))
    }
    let acct = account(41);
    assert!(over(s.create_account(&acct).await));
    assert!(matches!(s.account_by_key(&acct.jkt).await, Err(StoreError::NotFound)), "nothing was written");
    let o = order(&before.id, &[], 1);
    assert!(over(s.create_order(&o, &[], None).await));
    assert!(matches!(s.order(&o.id).await, Err(StoreError::NotFound)));
    let (serial, _) = Serial::random();
    assert!(over(s.create_certificate(&certificate(&serial, &before.id, &o.id)).await));
    let session = Session { sub: "alice".into(), auth_time: 1, expires: 100 };
    assert!(over(s.put_session(&SecretHash::of("q"), &session).await));
    assert!(over(s.put_code(&SecretHash::of("q"), &code()).await));
    assert!(over(s.create_grant(&grant("q"), None).await));
    let device = Device {
        id: "q".into(),
        user: "alice".into(),
        client_id: "wireapp://u!q@d".into(),
        label: String::new(),
        created: 1,
    };
    assert!(over(s.create_device(&device).await));
    let pushed = PushedAuthorization { client_id: "c".into(), params: Default::default(), expires: 100 };
    assert!(over(s.put_pushed_authorization(&SecretHash::of("q"), &pushed).await));
    // What exists is read and changed as before.
    let stored = s.account_by_key(&before.jkt).await.unwrap();
    let deactivated = Account { status: AccountStatus::Deactivated, ..stored.value.clone() };
    s.update_account(&deactivated, stored.version).await.unwrap();
    s.purge_expired_oauth(1_000, 1000).await.unwrap();
    s.quota().record(10);
    assert_eq!(s.create_account(&acct).await.unwrap(), AccountCreation::Created);
    s.create_order(&o, &[], None).await.unwrap();
    s.put_session(&SecretHash::of("q"), &session).await.unwrap();
    s.quota().set_limit(u64::MAX);
    assert!(!s.measure_quota().await.unwrap(), "a measurement replaces the last");
}
