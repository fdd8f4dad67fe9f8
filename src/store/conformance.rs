//! The store conformance suite: what every backend must do, written once against the
//! traits. Each check takes a fresh, empty store; a backend's tests run
//! [`run_all`] (sled: `sled_store/tests.rs`; the PostgreSQL backend must pass the same).
//! Single-use things are raced with many tasks released at once: exactly one wins.

use std::sync::Arc;

use super::{AccountCreation, Store, StoreError};
use crate::jose::Jwk;
use crate::model::{Account, AccountId, AccountStatus, CaChains, Der, IssuerChain};

/// Tasks released at once in each race.
const RACERS: usize = 16;

/// A valid account whose key is derived from `seed` (same seed, same key).
pub(crate) fn account(seed: u8) -> Account {
    let key =
        Jwk::from_value(&serde_json::json!({"kty":"OKP","crv":"Ed25519","x": crate::jose::b64_encode([seed; 32])}))
            .expect("a valid Ed25519 JWK");
    Account {
        id: AccountId::random(),
        status: AccountStatus::Valid,
        jkt: key.thumbprint(),
        key,
        contact: vec![],
        terms_of_service_agreed: true,
        created: 1,
        eab_kid: None,
        subject: None,
    }
}

/// Runs `racers` copies of `f` released together; returns their results.
async fn race<T: Send + 'static, F>(store: &Arc<dyn Store>, f: impl Fn(Arc<dyn Store>, usize) -> F) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
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
pub async fn one_account_per_key(store: Arc<dyn Store>) {
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
pub async fn updates_are_compare_and_swap(store: Arc<dyn Store>) {
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
pub async fn replay_keys_are_single_use(store: Arc<dyn Store>) {
    let results = race(&store, |s, _| async move { s.remember_dpop_jti("jti-1", 1_000, 10).await.unwrap() }).await;
    assert_eq!(results.iter().filter(|fresh| **fresh).count(), 1);
    assert!(!store.remember_dpop_jti("jti-1", 1_000, 20).await.unwrap());
    assert!(store.remember_dpop_jti("jti-2", 1_000, 20).await.unwrap());
}

/// A device's backend nonce is taken once.
pub async fn device_nonces_are_taken_once(store: Arc<dyn Store>) {
    store.put_device_nonce("device-1", "nonce-1", 1_000).await.unwrap();
    let results = race(&store, |s, _| async move { s.take_device_nonce("device-1").await }).await;
    let taken: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(taken, [&("nonce-1".to_owned(), 1_000)]);
    assert!(results.iter().all(|r| r.is_ok() || matches!(r, Err(StoreError::NotFound))));
}

/// Issuance chains are stored by one winner of many instances starting together.
pub async fn ca_chains_have_one_winner(store: Arc<dyn Store>) {
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

/// Every check, each on a fresh store from `fresh`.
pub async fn run_all(fresh: impl Fn() -> Arc<dyn Store>) {
    one_account_per_key(fresh()).await;
    updates_are_compare_and_swap(fresh()).await;
    replay_keys_are_single_use(fresh()).await;
    device_nonces_are_taken_once(fresh()).await;
    ca_chains_have_one_winner(fresh()).await;
}
