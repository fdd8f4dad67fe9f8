//! The store conformance suite: what every backend must do, written once against the
//! traits. Each check takes a fresh, empty store from the backend's [`Backend`]; a
//! backend's tests run [`run_all`] (sled: `sled_store/tests.rs`; the PostgreSQL backend
//! must pass the same). Single-use things are raced with many tasks released at once:
//! exactly one wins.

use std::sync::Arc;

use async_trait::async_trait;

use super::{AccountCreation, Store, StoreError};
use crate::jose::Jwk;
use crate::model::oauth::{
    AuthorizationCode, CodeRedemption, Grant, PushedAuthorization, RefreshToken, SecretHash, Session,
};
use crate::model::*;
use crate::store::Version;

mod limits;
mod pki;
use limits::*;
use pki::*;

/// What the suite needs of a backend.
#[async_trait]
pub(crate) trait Backend: Sync {
    /// A fresh, empty store that records at most `dpop_jti_max` unexpired DPoP replay
    /// keys (`limits.dpop_jti_max`).
    async fn fresh(&self, dpop_jti_max: u64) -> Arc<dyn Store>;

    /// `store` (the last one `fresh` made) closed and opened again, as after a restart.
    async fn reopen(&self, store: Arc<dyn Store>) -> Arc<dyn Store>;
}

/// The replay-key bound the checks run with unless they test the bound.
const UNBOUNDED: u64 = 1_000_000;

/// Tasks released at once in each race.
const RACERS: usize = 16;

/// A valid account whose key is derived from `seed` (same seed, same key).
pub(crate) fn account(seed: u8) -> Account {
    let key =
        Jwk::from_value(&serde_json::json!({"kty":"OKP","crv":"Ed25519","x": crate::jose::b64_encode([seed; 32])}))
            .expect("a valid Ed25519 JWK");
    Account::new(key, 1)
}

/// Runs `racers` copies of `f` released together; returns their results.
async fn race<T: Send + 'static, F>(store: &Arc<dyn Store>, f: impl Fn(Arc<dyn Store>, usize) -> F) -> Vec<T>
where
    F: Future<Output = T> + Send + 'static,
{
    let gate = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|n| {
            let (gate, fut) = (gate.clone(), f(store.clone(), n));
            tokio::spawn(async move {
                gate.wait().await;
                fut.await
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("a racer panicked"));
    }
    out
}

/// One account per key (RFC 8555 §7.3.1), also when many create it at once.
pub(crate) async fn one_account_per_key(store: Arc<dyn Store>) {
    let first = account(1);
    assert_eq!(store.create_account(&first).await.unwrap(), AccountCreation::Created);
    match store.create_account(&account(1)).await.unwrap() {
        AccountCreation::Existing(a) => assert_eq!(a.value.id, first.id),
        AccountCreation::Created => panic!("a second account for one key"),
    }
    let results = race(&store, |s, _| async move { s.create_account(&account(2)).await.unwrap() }).await;
    let created = results.iter().filter(|r| matches!(r, AccountCreation::Created)).count();
    assert_eq!(created, 1, "{created} accounts created for one key");
    let winner = store.account_by_key(&account(2).jkt).await.unwrap().value.id;
    for r in results {
        if let AccountCreation::Existing(a) = r {
            assert_eq!(a.value.id, winner);
        }
    }
}

/// Updates are compare-and-swap on the version read: a stale write is `Conflict` and
/// changes nothing.
pub(crate) async fn updates_are_compare_and_swap(store: Arc<dyn Store>) {
    let a = account(3);
    store.create_account(&a).await.unwrap();
    let read = store.account(&a.id).await.unwrap();
    let mut changed = read.value.clone();
    changed.contact = vec!["mailto:one@example.test".into()];
    let v2 = store.update_account(&changed, read.version).await.unwrap();
    assert_ne!(v2, read.version);
    let mut stale = read.value.clone();
    stale.contact = vec!["mailto:two@example.test".into()];
    assert!(matches!(store.update_account(&stale, read.version).await, Err(StoreError::Conflict)));
    let now = store.account(&a.id).await.unwrap();
    assert_eq!((now.value.contact, now.version), (changed.contact, v2));
}

/// A DPoP proof's replay key is accepted once, however many present it at once.
pub(crate) async fn replay_keys_are_single_use(store: Arc<dyn Store>) {
    let results = race(&store, |s, _| async move { s.remember_dpop_jti("jti-1", 1_000, 10).await.unwrap() }).await;
    assert_eq!(results.iter().filter(|fresh| **fresh).count(), 1);
    assert!(!store.remember_dpop_jti("jti-1", 1_000, 20).await.unwrap());
    assert!(store.remember_dpop_jti("jti-2", 1_000, 20).await.unwrap());
}

/// A shared ACME nonce is accepted once, however many instances present it at once; the
/// shared secret is the first writer's for everyone.
pub(crate) async fn acme_nonces_and_shared_secrets_have_one_winner(store: Arc<dyn Store>) {
    let results = race(&store, |s, _| async move { s.consume_acme_nonce("nonce-1", 1_000).await.unwrap() }).await;
    assert_eq!(results.iter().filter(|fresh| **fresh).count(), 1);
    assert!(store.consume_acme_nonce("nonce-2", 1_000).await.unwrap());
    let secrets = race(&store, |s, n| async move { s.shared_secret("k", &[n as u8; 32]).await.unwrap() }).await;
    assert!(secrets.iter().all(|s| *s == secrets[0]), "every instance gets the same secret");
    assert_eq!(store.shared_secret("k", &[99; 32]).await.unwrap(), secrets[0]);
    // A shared value swapped: each start sees what the one before stored.
    assert_eq!(store.swap_shared_value("fingerprint", b"one").await.unwrap(), None);
    assert_eq!(store.swap_shared_value("fingerprint", b"two").await.unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(store.swap_shared_value("fingerprint", b"two").await.unwrap().as_deref(), Some(&b"two"[..]));
}

/// A device's backend nonce is taken once.
pub(crate) async fn device_nonces_are_taken_once(store: Arc<dyn Store>) {
    store.put_device_nonce("device-1", "nonce-1", 1_000).await.unwrap();
    let results = race(&store, |s, _| async move { s.take_device_nonce("device-1").await }).await;
    let taken: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(taken, [&("nonce-1".to_owned(), 1_000)]);
    assert!(results.iter().all(|r| r.is_ok() || matches!(r, Err(StoreError::NotFound))));
}

/// A pushed authorization request is taken once, by its client, before it expires.
pub(crate) async fn pushed_requests_are_taken_once_by_their_client(store: Arc<dyn Store>) {
    let p = PushedAuthorization {
        client_id: "c1".into(),
        params: [("scope".into(), "openid".into())].into(),
        expires: 100,
    };
    let hash = SecretHash::of("request-uri");
    store.put_pushed_authorization(&hash, &p).await.unwrap();
    assert!(matches!(store.take_pushed_authorization(&hash, "c2", 50).await, Err(StoreError::NotFound)));
    let results =
        race(&store, |s, _| async move { s.take_pushed_authorization(&SecretHash::of("request-uri"), "c1", 50).await })
            .await;
    let taken: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(taken, [&p]);
    assert!(results.iter().all(|r| r.is_ok() || matches!(r, Err(StoreError::NotFound))));
    let late = SecretHash::of("late");
    store.put_pushed_authorization(&late, &p).await.unwrap();
    assert!(matches!(store.take_pushed_authorization(&late, "c1", 101).await, Err(StoreError::NotFound)));
    assert!(store.purge_expired_oauth(101, 100).await.unwrap() >= 1);
    assert!(matches!(store.take_pushed_authorization(&late, "c1", 100).await, Err(StoreError::NotFound)));
}

/// A user's live grants, sessions and devices are listed (revoked, ended and other
/// users' are not); a device is deleted once.
pub(crate) async fn a_users_grants_sessions_and_devices_are_listed(store: Arc<dyn Store>) {
    let grant = |id: &str, sub: &str, created| Grant {
        id: id.into(),
        client_id: "c1".into(),
        sub: sub.into(),
        scope: vec!["openid".into()],
        auth_time: Some(1),
        created,
        revoked: false,
    };
    for g in [grant("g2", "alice", 20), grant("g1", "alice", 10), grant("g3", "bob", 5), grant("g4", "alice", 30)] {
        store.create_grant(&g, None).await.unwrap();
    }
    store.revoke_grant("g4").await.unwrap();
    let ids: Vec<String> = store.user_grants("alice").await.unwrap().into_iter().map(|g| g.id).collect();
    assert_eq!(ids, ["g1", "g2"]);
    assert!(store.user_grants("nobody").await.unwrap().is_empty());
    let session = |sub: &str, auth_time, expires| Session { sub: sub.into(), auth_time, expires };
    store.put_session(&SecretHash::of("s1"), &session("alice", 2, 100)).await.unwrap();
    store.put_session(&SecretHash::of("s2"), &session("alice", 1, 100)).await.unwrap();
    store.put_session(&SecretHash::of("s3"), &session("alice", 3, 10)).await.unwrap();
    store.put_session(&SecretHash::of("s4"), &session("bob", 1, 100)).await.unwrap();
    let live = store.user_sessions("alice", 50).await.unwrap();
    assert_eq!(
        live,
        [(SecretHash::of("s2"), session("alice", 1, 100)), (SecretHash::of("s1"), session("alice", 2, 100))]
    );
    let device = |id: &str, user: &str, created| oauth::Device {
        id: id.into(),
        user: user.into(),
        client_id: format!("wireapp://u!{id}@d"),
        label: String::new(),
        created,
    };
    for d in [device("d2", "alice", 2), device("d1", "alice", 1), device("d3", "bob", 1)] {
        store.create_device(&d).await.unwrap();
    }
    let ids: Vec<String> = store.user_devices("alice").await.unwrap().into_iter().map(|d| d.id).collect();
    assert_eq!(ids, ["d1", "d2"]);
    store.delete_device("d1").await.unwrap();
    assert!(matches!(store.delete_device("d1").await, Err(StoreError::NotFound)));
    assert!(matches!(store.device("d1").await, Err(StoreError::NotFound)));
    assert_eq!(store.user_devices("alice").await.unwrap().len(), 1);
}

/// Issuance chains are stored by one winner of many instances starting together.
pub(crate) async fn ca_chains_have_one_winner(store: Arc<dyn Store>) {
    let chains = |n: usize| CaChains {
        intermediate_cert: vec![1],
        chain_length: 1,
        chains: vec![IssuerChain { intermediates: vec![Der(vec![n as u8])], root: Der(vec![9]) }],
    };
    let results =
        race(&store, move |s, n| async move { s.swap_ca_chains(None, &chains(n)).await.is_ok().then_some(n) }).await;
    let winners: Vec<usize> = results.into_iter().flatten().collect();
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(store.ca_chains().await.unwrap(), Some(chains(winners[0])));
}

pub(crate) fn grant(id: &str) -> Grant {
    Grant {
        id: id.to_owned(),
        client_id: "client".into(),
        sub: "alice".into(),
        scope: vec!["openid".into()],
        auth_time: Some(1),
        created: 1,
        revoked: false,
    }
}

pub(crate) fn refresh_token(grant: &str) -> RefreshToken {
    RefreshToken { grant: grant.to_owned(), client_id: "client".into(), expires: 1_000, used: false, jkt: None }
}

pub(crate) fn code() -> AuthorizationCode {
    AuthorizationCode {
        client_id: "client".into(),
        redirect_uri: "https://client.test/cb".into(),
        redirect_uri_sent: true,
        code_challenge: Some("challenge".into()),
        scope: vec!["openid".into()],
        nonce: None,
        id_token_claims: Default::default(),
        dpop_jkt: None,
        sub: "alice".into(),
        auth_time: 1,
        expires: 1_000,
        redeemed: None,
    }
}

/// An authorization code is redeemed once (RFC 6749 §4.1.2), however many present it at
/// once: one grant is stored with its refresh token; every later redemption names that
/// grant and revokes it.
pub(crate) async fn codes_are_redeemed_once(store: Arc<dyn Store>) {
    let hash = SecretHash::of("code-1");
    store.put_code(&hash, &code()).await.unwrap();
    let results = race(&store, |s, n| async move {
        let (g, r) = (grant(&format!("grant-{n}")), SecretHash::of(&format!("refresh-{n}")));
        s.redeem_code(&SecretHash::of("code-1"), &g, Some((&r, &refresh_token(&g.id)))).await.unwrap()
    })
    .await;
    let winners: Vec<_> = results
        .iter()
        .filter_map(|r| match r {
            CodeRedemption::Redeemed(c) => c.redeemed.clone(),
            CodeRedemption::Replayed { .. } => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "{winners:?}");
    let winner = &winners[0];
    for r in &results {
        if let CodeRedemption::Replayed { grant } = r {
            assert_eq!(grant, winner);
        }
    }
    // The losers' grants were never stored; the winner's was, and reuse revoked it.
    let n: usize = winner.trim_start_matches("grant-").parse().unwrap();
    assert!(store.grant(winner).await.unwrap().revoked, "reuse must revoke the grant");
    assert!(!store.refresh_token(&SecretHash::of(&format!("refresh-{n}"))).await.unwrap().value.used);
    for other in (0..RACERS).filter(|m| *m != n) {
        assert!(matches!(store.grant(&format!("grant-{other}")).await, Err(StoreError::NotFound)));
    }
    assert!(matches!(
        store.redeem_code(&SecretHash::of("no-such-code"), &grant("g"), None).await,
        Err(StoreError::NotFound)
    ));
}

/// A refresh token rotates once: of many rotations at once from the version read, one
/// stores its successor, the others are `Conflict` and store nothing; the old token is
/// then marked used.
pub(crate) async fn refresh_tokens_rotate_once(store: Arc<dyn Store>) {
    let old = SecretHash::of("refresh-old");
    store.create_grant(&grant("grant-r"), Some((&old, &refresh_token("grant-r")))).await.unwrap();
    let seen = store.refresh_token(&old).await.unwrap().version;
    let results = race(&store, move |s, n| async move {
        let new = SecretHash::of(&format!("refresh-new-{n}"));
        s.rotate_refresh_token(&SecretHash::of("refresh-old"), seen, (&new, &refresh_token("grant-r")))
            .await
            .map(|()| n)
    })
    .await;
    let winners: Vec<usize> = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert!(results.iter().all(|r| r.is_ok() || matches!(r, Err(StoreError::Conflict))));
    assert!(store.refresh_token(&old).await.unwrap().value.used);
    for n in 0..RACERS {
        let stored = store.refresh_token(&SecretHash::of(&format!("refresh-new-{n}"))).await;
        assert_eq!(stored.is_ok(), n == winners[0], "successor {n}");
    }
    let used = store.refresh_token(&old).await.unwrap().version;
    let again = SecretHash::of("refresh-again");
    assert!(matches!(
        store.rotate_refresh_token(&old, used, (&again, &refresh_token("grant-r"))).await,
        Err(StoreError::Conflict)
    ));
}

/// The replay store holds at most its bound of unexpired keys: past it, `Full` (the
/// caller refuses the proof, never forgets a key); expired keys make room.
pub(crate) async fn replay_keys_are_bounded(store: Arc<dyn Store>) {
    assert!(store.remember_dpop_jti("a", 100, 0).await.unwrap());
    assert!(store.remember_dpop_jti("b", 200, 0).await.unwrap());
    assert!(!store.remember_dpop_jti("a", 100, 0).await.unwrap(), "a replay");
    assert!(matches!(store.remember_dpop_jti("c", 100, 0).await, Err(StoreError::Full(_))));
    assert!(store.remember_dpop_jti("c", 300, 150).await.unwrap(), "`a` expired and made room");
    assert!(matches!(store.remember_dpop_jti("d", 300, 150).await, Err(StoreError::Full(_))));
    assert!(!store.remember_dpop_jti("b", 200, 150).await.unwrap(), "`b` is still remembered");
}

/// What a store acknowledged is there after it is closed and opened again: accounts,
/// a redeemed code, a rotated refresh token, a replay key, the chains.
pub(crate) async fn acknowledged_writes_survive_a_reopen(backend: &dyn Backend) {
    let store = backend.fresh(UNBOUNDED).await;
    let a = account(20);
    store.create_account(&a).await.unwrap();
    store.put_code(&SecretHash::of("code-d"), &code()).await.unwrap();
    let first = SecretHash::of("refresh-d1");
    let redeemed = store
        .redeem_code(&SecretHash::of("code-d"), &grant("grant-d"), Some((&first, &refresh_token("grant-d"))))
        .await
        .unwrap();
    assert!(matches!(redeemed, CodeRedemption::Redeemed(_)));
    let seen = store.refresh_token(&first).await.unwrap().version;
    let second = SecretHash::of("refresh-d2");
    store.rotate_refresh_token(&first, seen, (&second, &refresh_token("grant-d"))).await.unwrap();
    assert!(store.remember_dpop_jti("jti-d", i64::MAX, 0).await.unwrap());
    let store = backend.reopen(store).await;
    assert_eq!(store.account(&a.id).await.unwrap().value, a);
    assert_eq!(store.account_by_key(&a.jkt).await.unwrap().value.id, a.id);
    assert!(matches!(
        store.redeem_code(&SecretHash::of("code-d"), &grant("grant-x"), None).await.unwrap(),
        CodeRedemption::Replayed { grant } if grant == "grant-d"
    ));
    assert!(store.refresh_token(&first).await.unwrap().value.used);
    assert!(!store.refresh_token(&second).await.unwrap().value.used);
    assert!(!store.remember_dpop_jti("jti-d", i64::MAX, 1).await.unwrap(), "a replay key was forgotten");
}

/// Short-lived records go once expired, in batches, and live ones stay: under a steady
/// load of records that each live a few seconds, the store holds only the live ones.
pub(crate) async fn expired_records_are_purged(store: Arc<dyn Store>) {
    let drain = |store: Arc<dyn Store>, now: i64| async move {
        let mut total = 0;
        loop {
            let n =
                store.purge_expired_oauth(now, 3).await.unwrap() + store.purge_expired_replay(now, 3).await.unwrap();
            if n == 0 {
                return total;
            }
            total += n;
        }
    };
    // Ten rounds of a steady load: each round's records expire two rounds later.
    for round in 0..10i64 {
        let now = round * 10;
        for n in 0..4 {
            let id = format!("{round}-{n}");
            let expires = now + 15;
            store.put_code(&SecretHash::of(&id), &AuthorizationCode { expires, ..code() }).await.unwrap();
            let session = Session { sub: "alice".into(), auth_time: now, expires };
            store.put_session(&SecretHash::of(&id), &session).await.unwrap();
            store.put_device_nonce(&id, "nonce", expires).await.unwrap();
            assert!(store.remember_dpop_jti(&id, expires, now).await.unwrap());
        }
        let purged = drain(store.clone(), now).await;
        // From round 2 on, the 4 records of each of the 4 kinds from two rounds back go.
        assert_eq!(purged, if round >= 2 { 16 } else { 0 }, "round {round}");
    }
    // What is left is the last two rounds' records.
    for round in 0..10 {
        let id = format!("{round}-0");
        let kept = store.code(&SecretHash::of(&id)).await.is_ok();
        assert_eq!(kept, round >= 8, "code of round {round}");
        assert_eq!(store.session(&SecretHash::of(&id)).await.is_ok(), round >= 8, "session of round {round}");
    }
    assert!(!store.remember_dpop_jti("9-0", 1_000, 95).await.unwrap(), "a live replay key was purged");
}

pub(crate) fn authz(account: &AccountId) -> Authorization {
    Authorization {
        id: AuthzId::random(),
        account: account.clone(),
        identifier: Identifier { kind: IdentifierKind::Dns, value: "a.example".into() },
        status: AuthzStatus::Pending,
        expires: 100,
        wildcard: false,
        challenges: vec![Challenge {
            id: ChallengeId::random(),
            kind: ChallengeType::Http01,
            token: "t".into(),
            status: ChallengeStatus::Pending,
            validated: None,
            error: None,
            target: None,
        }],
    }
}

pub(crate) fn order(account: &AccountId, authzs: &[Authorization], created: i64) -> Order {
    Order {
        id: OrderId::random(),
        account: account.clone(),
        identifiers: vec![],
        authorizations: authzs.iter().map(|a| a.id.clone()).collect(),
        expires: 100,
        not_before: None,
        not_after: None,
        phase: OrderPhase::Open,
        created,
        replaces: None,
        replaces_cert_id: None,
        profile: None,
    }
}

/// A certificate with `serial` issued for the account's order.
pub(crate) fn certificate(serial: &Serial, account: &AccountId, order: &OrderId) -> IssuedCertificate {
    IssuedCertificate {
        serial: serial.clone(),
        account: Some(account.clone()),
        order: Some(order.clone()),
        chain_pem: "pem".into(),
        not_before: 0,
        not_after: 1,
        issued: 0,
        revoked: None,
        replaced_by: None,
        renewal_info: None,
    }
}

/// An order whose writes cannot all be made (an authorization id taken) writes nothing.
pub(crate) async fn a_failed_order_creation_writes_nothing(s: Arc<dyn Store>) {
    let acct = account(7);
    let a = authz(&acct.id);
    let first = order(&acct.id, std::slice::from_ref(&a), 1);
    s.create_order(&first, std::slice::from_ref(&a), None).await.unwrap();
    // A second order reusing an existing authorization id aborts as a whole.
    let fresh = authz(&acct.id);
    let second = order(&acct.id, &[fresh.clone(), a.clone()], 2);
    assert!(matches!(s.create_order(&second, &[fresh.clone(), a.clone()], None).await, Err(StoreError::AlreadyExists)));
    assert!(matches!(s.order(&second.id).await, Err(StoreError::NotFound)));
    assert!(matches!(s.authorization(&fresh.id).await, Err(StoreError::NotFound)));
    let (ids, next) = s.account_orders(&acct.id, None, 10).await.unwrap();
    assert_eq!((ids, next), (vec![first.id], None));
}

/// Finalizing is a compare-and-swap on the order: a second finalize from the same read
/// loses and stores no second certificate.
pub(crate) async fn finalize_is_compare_and_swap(s: Arc<dyn Store>) {
    let acct = account(8);
    let o = order(&acct.id, &[], 1);
    s.create_order(&o, &[], None).await.unwrap();
    let (serial, _) = Serial::random();
    let cert = certificate(&serial, &acct.id, &o.id);
    let mut done = o.clone();
    done.phase = OrderPhase::Valid { certificate: serial.clone() };
    s.finalize_order(&done, Version(1), &cert).await.unwrap();
    assert_eq!(s.certificate(&serial).await.unwrap().value, cert);
    // A second finalize from the same read loses and stores no second certificate.
    let (other, _) = Serial::random();
    let cert2 = IssuedCertificate { serial: other.clone(), ..cert.clone() };
    assert!(matches!(s.finalize_order(&done, Version(1), &cert2).await, Err(StoreError::Conflict)));
    assert!(matches!(s.certificate(&other).await, Err(StoreError::NotFound)));
}

/// A validation has one owner at a time: many instances claiming at once get it once;
/// the holder renews; an expired lease is taken over, by one; a finished one by none.
pub(crate) async fn validation_leases_have_one_owner(s: Arc<dyn Store>) {
    let acct = account(9);
    let a = authz(&acct.id);
    s.create_order(&order(&acct.id, std::slice::from_ref(&a), 1), std::slice::from_ref(&a), None).await.unwrap();
    assert!(!s.claim_validation(&a.id, "A", 10, 40).await.unwrap(), "not processing yet");
    let mut processing = a.clone();
    processing.challenges[0].status = ChallengeStatus::Processing;
    let v = s.update_authorization(&processing, Version(1)).await.unwrap();
    let id = a.id.clone();
    let won = race(&s, |s, n| {
        let id = id.clone();
        async move { s.claim_validation(&id, &format!("i{n}"), 10, 40).await.unwrap() }
    })
    .await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1);
    let owner = format!("i{}", won.iter().position(|w| *w).unwrap());
    assert!(s.claim_validation(&a.id, &owner, 30, 60).await.unwrap(), "the holder renews");
    assert!(s.claim_expired_validations("B", 50, 80, 8).await.unwrap().is_empty(), "a live lease is kept");
    let taken =
        race(&s, |s, n| async move { s.claim_expired_validations(&format!("j{n}"), 61, 90, 8).await.unwrap() }).await;
    assert_eq!(taken.iter().map(Vec::len).sum::<usize>(), 1, "{taken:?}");
    assert!(!s.claim_validation(&a.id, &owner, 62, 90).await.unwrap(), "the old holder lost it");
    let mut done = processing.clone();
    done.challenges[0].status = ChallengeStatus::Valid;
    s.update_authorization(&done, v).await.unwrap();
    assert!(s.claim_expired_validations("C", 1000, 1030, 8).await.unwrap().is_empty());
    assert!(!s.claim_validation(&a.id, "C", 1000, 1030).await.unwrap());
}

/// Open orders: listed until finalized or expired, per account.
pub(crate) async fn open_orders_are_listed_until_finalized_or_expired(s: Arc<dyn Store>) {
    let acct = account(10);
    let (o1, o2) = (order(&acct.id, &[], 1), order(&acct.id, &[], 2));
    s.create_order(&o1, &[], None).await.unwrap();
    s.create_order(&o2, &[], None).await.unwrap();
    s.create_order(&order(&account(11).id, &[], 1), &[], None).await.unwrap();
    let mut open = s.open_orders(&acct.id, 50, 10).await.unwrap();
    open.sort_by(|a, b| a.0.cmp(&b.0));
    let mut both = vec![o1.id.clone(), o2.id.clone()];
    both.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(open, both);
    assert_eq!(s.open_orders(&acct.id, 50, 1).await.unwrap().len(), 1, "at most max");
    let (serial, _) = Serial::random();
    let cert = certificate(&serial, &acct.id, &o1.id);
    let done = Order { phase: OrderPhase::Valid { certificate: serial }, ..o1.clone() };
    s.finalize_order(&done, Version(1), &cert).await.unwrap();
    assert_eq!(s.open_orders(&acct.id, 50, 10).await.unwrap(), vec![o2.id.clone()]);
    assert!(s.open_orders(&acct.id, 100, 10).await.unwrap().is_empty(), "expired at 100");
}

/// Every check, each on a fresh store from `backend`.
pub(crate) async fn run_all(backend: &dyn Backend) {
    one_account_per_key(backend.fresh(UNBOUNDED).await).await;
    updates_are_compare_and_swap(backend.fresh(UNBOUNDED).await).await;
    replay_keys_are_single_use(backend.fresh(UNBOUNDED).await).await;
    replay_keys_are_bounded(backend.fresh(2).await).await;
    device_nonces_are_taken_once(backend.fresh(UNBOUNDED).await).await;
    pushed_requests_are_taken_once_by_their_client(backend.fresh(UNBOUNDED).await).await;
    a_users_grants_sessions_and_devices_are_listed(backend.fresh(UNBOUNDED).await).await;
    acme_nonces_and_shared_secrets_have_one_winner(backend.fresh(UNBOUNDED).await).await;
    ca_chains_have_one_winner(backend.fresh(UNBOUNDED).await).await;
    codes_are_redeemed_once(backend.fresh(UNBOUNDED).await).await;
    refresh_tokens_rotate_once(backend.fresh(UNBOUNDED).await).await;
    expired_records_are_purged(backend.fresh(UNBOUNDED).await).await;
    a_failed_order_creation_writes_nothing(backend.fresh(UNBOUNDED).await).await;
    finalize_is_compare_and_swap(backend.fresh(UNBOUNDED).await).await;
    lockouts_stop_a_burst_at_the_limit(backend.fresh(UNBOUNDED).await).await;
    rates_stop_a_burst_at_the_limit(backend.fresh(UNBOUNDED).await).await;
    the_quota_refuses_new_objects_while_past_it(backend.fresh(UNBOUNDED).await).await;
    validation_leases_have_one_owner(backend.fresh(UNBOUNDED).await).await;
    open_orders_are_listed_until_finalized_or_expired(backend.fresh(UNBOUNDED).await).await;
    orders_page_from_a_position(backend.fresh(UNBOUNDED).await).await;
    revocations_move_the_epoch(backend.fresh(UNBOUNDED).await).await;
    a_nul_character_is_kept_or_refused_as_unstorable(backend.fresh(UNBOUNDED).await).await;
    acknowledged_writes_survive_a_reopen(backend).await;
}

/// A NUL character (a client's `%00` or `\u0000`) in an id looked up or a value
/// written: kept as any other character (sled) or refused as `Unstorable` with nothing
/// written (PostgreSQL), never a backend failure the server would answer with a 500.
async fn a_nul_character_is_kept_or_refused_as_unstorable(store: Arc<dyn Store>) {
    let looked_up = store.order(&OrderId("a\0b".into())).await;
    assert!(matches!(looked_up, Err(StoreError::NotFound | StoreError::Unstorable(_))), "{looked_up:?}");
    let looked_up = store.account(&AccountId("a\0b".into())).await;
    assert!(matches!(looked_up, Err(StoreError::NotFound | StoreError::Unstorable(_))), "{looked_up:?}");
    let mut a = account(77);
    a.contact = vec!["mailto:a\0@b.test".into()];
    match store.create_account(&a).await {
        Ok(AccountCreation::Created) => assert_eq!(store.account(&a.id).await.unwrap().value.contact, a.contact),
        Err(StoreError::Unstorable(_)) => {
            assert!(matches!(store.account_by_key(&a.jkt).await, Err(StoreError::NotFound)), "nothing was written")
        }
        other => panic!("{other:?}"),
    }
}
