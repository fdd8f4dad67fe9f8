use super::*;
use crate::jose::Jwk;
use crate::model::*;

fn jwk(seed: u8) -> Jwk {
    // A valid Ed25519 public key is any 32 bytes for parsing purposes.
    Jwk::from_value(&serde_json::json!({"kty":"OKP","crv":"Ed25519","x": crate::jose::b64_encode([seed; 32])})).unwrap()
}

use crate::store::conformance::{account, authz, order};

/// A directory for one test's store, not yet created.
fn scratch_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("idca-store-{}", random_token()))
}

#[tokio::test]
async fn same_key_returns_the_existing_account() {
    let s = SledStore::temporary().unwrap();
    let a = account(1);
    assert_eq!(s.create_account(&a).await.unwrap(), AccountCreation::Created);
    let mut b = account(1);
    b.id = AccountId::random();
    match s.create_account(&b).await.unwrap() {
        AccountCreation::Existing(v) => assert_eq!(v.value, a),
        other => panic!("{other:?}"),
    }
    assert!(matches!(s.account(&b.id).await, Err(StoreError::NotFound)));
    assert_eq!(s.account_by_key(&a.jkt).await.unwrap().value.id, a.id);
}

#[tokio::test]
async fn updates_are_compare_and_swap() {
    let s = SledStore::temporary().unwrap();
    let acct = account(2);
    s.create_account(&acct).await.unwrap();
    let a = authz(&acct.id);
    s.create_order(&order(&acct.id, std::slice::from_ref(&a), 1), std::slice::from_ref(&a), None).await.unwrap();
    let v1 = s.authorization(&a.id).await.unwrap();
    let mut changed = v1.value.clone();
    changed.status = AuthzStatus::Valid;
    let v2 = s.update_authorization(&changed, v1.version).await.unwrap();
    assert_eq!(v2, v1.version.next());
    // A writer that read version 1 loses.
    let mut stale = v1.value.clone();
    stale.status = AuthzStatus::Invalid;
    assert!(matches!(s.update_authorization(&stale, v1.version).await, Err(StoreError::Conflict)));
    assert_eq!(s.authorization(&a.id).await.unwrap().value.status, AuthzStatus::Valid);
}

#[tokio::test]
async fn processing_index_follows_the_challenges() {
    let s = SledStore::temporary().unwrap();
    let acct = account(3);
    let a = authz(&acct.id);
    s.create_order(&order(&acct.id, std::slice::from_ref(&a), 1), std::slice::from_ref(&a), None).await.unwrap();
    let mut p = a.clone();
    p.challenges[0].status = ChallengeStatus::Processing;
    let v = s.update_authorization(&p, Version(1)).await.unwrap();
    assert_eq!(s.authorizations_processing().await.unwrap(), vec![a.id.clone()]);
    p.challenges[0].status = ChallengeStatus::Valid;
    s.update_authorization(&p, v).await.unwrap();
    assert!(s.authorizations_processing().await.unwrap().is_empty());
}

/// The index is a hint kept without a transaction: an entry left behind (a crash between
/// the two writes, or a lost race) is dropped when read, and a clear by an older version
/// never removes the entry a newer processing write made.
#[tokio::test]
async fn stale_processing_hints_are_dropped_and_newer_ones_kept() {
    let s = SledStore::temporary().unwrap();
    let acct = account(4);
    let a = authz(&acct.id);
    s.create_order(&order(&acct.id, std::slice::from_ref(&a), 1), std::slice::from_ref(&a), None).await.unwrap();
    // As if a crash came between the hint and the authorization write.
    s.inner.validating.insert(a.id.0.as_bytes(), &2u64.to_be_bytes()).unwrap();
    assert!(s.authorizations_processing().await.unwrap().is_empty());
    assert!(s.inner.validating.get(a.id.0.as_bytes()).unwrap().is_none(), "the stale hint is gone");
    // Processing at version 2; the clear writes version 3, and a hint set by a later
    // version (4) survives it.
    let mut p = a.clone();
    p.challenges[0].status = ChallengeStatus::Processing;
    let v = s.update_authorization(&p, Version(1)).await.unwrap();
    s.inner.validating.insert(a.id.0.as_bytes(), &(v.0 + 2).to_be_bytes()).unwrap();
    p.challenges[0].status = ChallengeStatus::Valid;
    s.update_authorization(&p, v).await.unwrap();
    assert!(s.inner.validating.get(a.id.0.as_bytes()).unwrap().is_some(), "a newer writer's hint stays");
    // ...until read: the authorization is not processing, so the hint goes.
    assert!(s.authorizations_processing().await.unwrap().is_empty());
    assert!(s.inner.validating.get(a.id.0.as_bytes()).unwrap().is_none());
}

#[tokio::test]
async fn key_change_moves_the_index_and_refuses_taken_keys() {
    let s = SledStore::temporary().unwrap();
    let a = account(4);
    let b = account(5);
    s.create_account(&a).await.unwrap();
    s.create_account(&b).await.unwrap();
    let mut moved = a.clone();
    moved.key = jwk(6);
    moved.jkt = moved.key.thumbprint();
    s.update_account(&moved, Version(1)).await.unwrap();
    assert!(matches!(s.account_by_key(&a.jkt).await, Err(StoreError::NotFound)));
    assert_eq!(s.account_by_key(&moved.jkt).await.unwrap().value.id, a.id);
    let mut clash = moved.clone();
    clash.key = b.key.clone();
    clash.jkt = b.jkt.clone();
    assert!(matches!(s.update_account(&clash, Version(2)).await, Err(StoreError::AlreadyExists)));
    assert_eq!(s.account_by_key(&b.jkt).await.unwrap().value.id, b.id);
}

#[tokio::test]
async fn certificates_issued_outside_acme_are_stored_once_and_listed() {
    let s = SledStore::temporary().unwrap();
    let (serial, _) = Serial::random();
    let cert = IssuedCertificate {
        account: None,
        order: None,
        ..crate::store::conformance::certificate(&serial, &AccountId::random(), &OrderId::random())
    };
    s.create_certificate(&cert).await.unwrap();
    assert!(matches!(s.create_certificate(&cert).await, Err(StoreError::AlreadyExists)));
    let (other, _) = Serial::random();
    s.create_certificate(&IssuedCertificate { serial: other.clone(), ..cert.clone() }).await.unwrap();
    let listed: Vec<Serial> = s.certificates().await.unwrap().into_iter().map(|c| c.value.serial).collect();
    let mut expected = vec![serial.clone(), other];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(listed, expected);
    assert_eq!(s.certificate(&serial).await.unwrap().value, cert);
}

#[tokio::test]
async fn state_survives_reopen_and_a_second_open_is_refused() {
    let dir = scratch_dir();
    let a = account(10);
    {
        let s = SledStore::open(&dir, 8).unwrap();
        s.create_account(&a).await.unwrap();
        let err = SledStore::open(&dir, 8).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
    }
    // sled releases its lock when the last handle drops; give the flusher thread a moment.
    let mut reopened = None;
    for _ in 0..50 {
        match SledStore::open(&dir, 8) {
            Ok(s) => {
                reopened = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let s = reopened.unwrap();
    assert_eq!(s.account(&a.id).await.unwrap().value, a);
    drop(s);
    let _ = std::fs::remove_dir_all(dir);
}

/// Group commit, deterministically: waiters queued while the flusher is busy are all
/// answered by one flush.
#[test]
fn queued_waiters_share_one_flush() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let (tx, rx) = mpsc::channel();
    let mut answers = Vec::new();
    for _ in 0..64 {
        let (w, r) = oneshot::channel();
        tx.send(w).unwrap();
        answers.push(r);
    }
    drop(tx);
    let flushes = Arc::new(AtomicU64::new(0));
    group_commit(db, rx, flushes.clone(), Arc::new(AtomicU64::new(0)), None);
    assert_eq!(flushes.load(Ordering::Relaxed), 1);
    for mut r in answers {
        assert_eq!(r.try_recv().unwrap(), Ok(()));
    }
}

/// The requests in progress are counted for the whole process: the tests that hold them
/// while waiting for a delayed flush take turns.
static IN_PROGRESS_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// With a commit delay, a write made while another request is in progress waits for
/// that request's write, and one flush covers both (the second write ends the wait: the
/// delay is far longer than the test).
#[tokio::test]
async fn a_commit_delay_gathers_the_writes_of_requests_in_progress() {
    let _turn = IN_PROGRESS_TESTS.lock().await;
    let s = SledStore::temporary().unwrap();
    s.set_commit_delay(Duration::from_secs(30));
    let before = s.flush_count();
    let (first, second) = (serving_request(), serving_request());
    let early = tokio::spawn({
        let s = s.clone();
        async move {
            let _request = first;
            s.create_account(&account(1)).await.unwrap()
        }
    });
    // Once its record is there, the first write is queued, and it waits: the second
    // request is still in progress.
    while s.account_by_key(&account(1).jkt).await.is_err() {
        tokio::task::yield_now().await;
    }
    assert!(!early.is_finished(), "the first write was acknowledged before the second request wrote");
    assert_eq!(s.create_account(&account(2)).await.unwrap(), AccountCreation::Created);
    assert_eq!(early.await.unwrap(), AccountCreation::Created);
    drop(second);
    assert_eq!(s.flush_count(), before + 1, "one flush for both requests' writes");
}

/// A write with no other request in progress is flushed at once, whatever the delay.
#[tokio::test]
async fn a_lone_write_is_not_delayed() {
    let _turn = IN_PROGRESS_TESTS.lock().await;
    let s = SledStore::temporary().unwrap();
    s.set_commit_delay(Duration::from_secs(3600));
    let _request = serving_request();
    let before = s.flush_count();
    let a = account(1);
    let write = s.create_account(&a);
    // An hour's delay would hold it; another test's request in progress may hold it
    // for the moment that request takes.
    let done = tokio::time::timeout(Duration::from_secs(60), write).await;
    assert_eq!(done.expect("a lone write waited for the commit delay").unwrap(), AccountCreation::Created);
    assert_eq!(s.flush_count(), before + 1);
}

/// Every acknowledged write was flushed; how many flushes concurrent writers share
/// depends on timing (the deterministic check is above).
#[tokio::test]
async fn concurrent_writers_are_flushed() {
    let s = SledStore::temporary().unwrap();
    let before = s.flush_count();
    let writers = 64;
    let tasks: Vec<_> = (0..writers)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.create_account(&account(100 + i as u8)).await.unwrap() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), AccountCreation::Created);
    }
    let flushes = s.flush_count() - before;
    assert!(flushes >= 1, "acknowledged without a flush");
    assert!(flushes <= writers, "{flushes} flushes for {writers} writers");
}

/// Inside `one_flush` a request's writes share the one flush at its end, done before it
/// returns; a part that writes nothing flushes nothing; outside it each write flushes.
#[tokio::test]
async fn one_flush_makes_a_requests_writes_durable_with_one_flush_at_its_end() {
    let s = SledStore::temporary().unwrap();
    let before = s.flush_count();
    let (created, flushed) = one_flush(async {
        for seed in 1..=3 {
            assert_eq!(s.create_account(&account(seed)).await.unwrap(), AccountCreation::Created);
        }
        assert!(s.remember_dpop_jti("jti-1", 100, 0).await.unwrap());
        assert_eq!(s.flush_count(), before, "no write waited for its own flush");
        "made"
    })
    .await;
    assert_eq!((created, flushed.unwrap()), ("made", ()));
    assert_eq!(s.flush_count(), before + 1, "one flush, before one_flush returned");

    let ((), flushed) = one_flush(async { s.account_by_key(&account(1).jkt).await.map(drop).unwrap() }).await;
    flushed.unwrap();
    assert_eq!(s.flush_count(), before + 1, "a request that only reads flushes nothing");

    for seed in 4..=5 {
        s.create_account(&account(seed)).await.unwrap();
    }
    assert_eq!(s.flush_count(), before + 3, "outside one_flush each write flushes");
}

/// Writes in a task the request spawns, and writes to a second store, do not wait for
/// the request's end: they flush on their own before they return.
#[tokio::test]
async fn one_flush_leaves_spawned_tasks_and_other_stores_to_flush_on_their_own() {
    let (s, other) = (SledStore::temporary().unwrap(), SledStore::temporary().unwrap());
    let (before, other_before) = (s.flush_count(), other.flush_count());
    let ((), flushed) = one_flush(async {
        s.create_account(&account(1)).await.unwrap();
        other.create_account(&account(2)).await.unwrap();
        assert_eq!(other.flush_count(), other_before + 1, "the second store flushed at once");
        let spawned = s.clone();
        tokio::spawn(async move { spawned.create_account(&account(3)).await.unwrap() }).await.unwrap();
        assert_eq!(s.flush_count(), before + 1, "the spawned task's write flushed before it returned");
    })
    .await;
    flushed.unwrap();
    assert_eq!(s.flush_count(), before + 2);
}

/// When the flush at the end fails, `one_flush` says so (nothing may be acknowledged).
#[tokio::test]
async fn one_flush_reports_a_failed_flush() {
    let s = SledStore::without_flusher();
    let ((), flushed) = one_flush(async { s.create_account(&account(1)).await.map(drop).unwrap() }).await;
    assert!(matches!(flushed, Err(StoreError::Backend(_))), "{flushed:?}");
    assert!(s.create_account(&account(2)).await.is_err(), "outside one_flush the write itself fails");
}

#[tokio::test]
async fn ca_rotation_retires_the_current_ca_once() {
    let s = SledStore::temporary().unwrap();
    let ca = |n: u8| CaMaterial {
        root_cert: vec![n],
        root_key: vec![],
        intermediate_cert: vec![n, 1],
        intermediate_key: vec![n, 2],
    };
    assert!(matches!(s.rotate_ca_material(&ca(1), &ca(2)).await, Err(StoreError::NotFound)));
    s.init_ca_material(&ca(1)).await.unwrap();
    assert!(s.retired_ca_material().await.unwrap().is_empty());
    s.rotate_ca_material(&ca(1), &ca(2)).await.unwrap();
    // A rotation from a stale read loses and changes nothing.
    assert!(matches!(s.rotate_ca_material(&ca(1), &ca(3)).await, Err(StoreError::Conflict)));
    assert_eq!(s.ca_material().await.unwrap(), Some(ca(2)));
    s.rotate_ca_material(&ca(2), &ca(3)).await.unwrap();
    assert_eq!(s.retired_ca_material().await.unwrap(), vec![ca(1), ca(2)]);
    assert_eq!(s.ca_material().await.unwrap(), Some(ca(3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ca_chains_are_swapped_by_one_winner() {
    let s = SledStore::temporary().unwrap();
    let chains = |n: u8| CaChains {
        intermediate_cert: vec![1],
        chain_length: 1,
        chains: vec![IssuerChain { intermediates: vec![Der(vec![n])], root: Der(vec![n, n]) }],
    };
    assert_eq!(s.ca_chains().await.unwrap(), None);
    // Many instances starting at once: exactly one stores its chains.
    let tasks: Vec<_> = (0..16u8)
        .map(|n| {
            let s = s.clone();
            tokio::spawn(async move { s.swap_ca_chains(None, &chains(n)).await.is_ok().then_some(n) })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        winners.extend(t.await.unwrap());
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(s.ca_chains().await.unwrap(), Some(chains(winners[0])));
    // A swap from a stale read loses and changes nothing; from the current one wins.
    let stale = chains(winners[0].wrapping_add(1));
    assert!(matches!(s.swap_ca_chains(Some(&stale), &chains(99)).await, Err(StoreError::Conflict)));
    assert!(matches!(s.swap_ca_chains(None, &chains(99)).await, Err(StoreError::Conflict)));
    s.swap_ca_chains(Some(&chains(winners[0])), &chains(99)).await.unwrap();
    assert_eq!(s.ca_chains().await.unwrap(), Some(chains(99)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_creations_with_one_key_store_one_account() {
    let s = SledStore::temporary().unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                let a = account(9);
                (a.id.clone(), s.create_account(&a).await.unwrap())
            })
        })
        .collect();
    let mut created = Vec::new();
    let mut existing = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (id, AccountCreation::Created) => created.push(id),
            (_, AccountCreation::Existing(v)) => existing.push(v.value.id),
        }
    }
    assert_eq!(created.len(), 1);
    assert!(existing.iter().all(|id| *id == created[0]));
    assert_eq!(s.inner.accounts.len(), 1, "the losers' records are removed");
}

/// A process that ended before its first flush leaves an empty generation file: the
/// next open is not refused, and the file holds a number from then on.
#[tokio::test]
async fn an_empty_generation_file_is_not_damage() {
    let dir = scratch_dir();
    let mut name = dir.as_os_str().to_owned();
    name.push(".generation");
    std::fs::write(&name, "").unwrap();
    let s = SledStore::open(&dir, 8).unwrap();
    assert_eq!(std::fs::read_to_string(&name).unwrap().trim().parse::<u64>().unwrap(), 0);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
    for suffix in [".generation", ".lock", ".clean"] {
        let mut f = dir.as_os_str().to_owned();
        f.push(suffix);
        let _ = std::fs::remove_file(f);
    }
}

/// sled for the conformance suite: each store in its own directory under one temporary
/// directory, removed at the end.
struct SledBackend {
    root: tempfile::TempDir,
    last: std::sync::Mutex<Option<std::path::PathBuf>>,
}

#[async_trait::async_trait]
impl crate::store::conformance::Backend for SledBackend {
    async fn fresh(&self, dpop_jti_max: u64) -> Arc<dyn crate::store::Store> {
        let dir = self.root.path().join(random_token());
        let s = SledStore::open(&dir, 8).unwrap();
        s.limit_dpop_jti(dpop_jti_max);
        *self.last.lock().unwrap() = Some(dir);
        Arc::new(s)
    }

    async fn reopen(&self, store: Arc<dyn crate::store::Store>) -> Arc<dyn crate::store::Store> {
        assert_eq!(Arc::strong_count(&store), 1, "the suite holds the only handle");
        drop(store);
        let dir = self.last.lock().unwrap().clone().unwrap();
        // sled lets go of its lock once its flusher thread has: retry for a moment.
        for _ in 0..100 {
            if let Ok(s) = SledStore::open(&dir, 8) {
                return Arc::new(s);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{} cannot be opened again", dir.display());
    }
}

/// The store conformance suite (`store::conformance`), on sled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sled_passes_the_conformance_suite() {
    let backend = SledBackend { root: tempfile::tempdir().unwrap(), last: Default::default() };
    crate::store::conformance::run_all(&backend).await;
}

#[tokio::test]
async fn an_unclean_store_that_cannot_be_copied_for_its_check_is_refused_unless_told() {
    let dir = scratch_dir();
    let a = account(11);
    {
        let s = SledStore::open(&dir, 8).unwrap();
        s.create_account(&a).await.unwrap();
    }
    // As after a crash: no clean-close record. And the copy's place is taken by a file.
    let mut clean = dir.as_os_str().to_owned();
    clean.push(".clean");
    let mut check = dir.as_os_str().to_owned();
    check.push(".check");
    let open = || {
        let mut last = None;
        for _ in 0..50 {
            let _ = std::fs::remove_file(&clean);
            match SledStore::open(&dir, 8) {
                Err(e) if e.to_string().contains("in use") => std::thread::sleep(Duration::from_millis(20)),
                other => {
                    last = Some(other);
                    break;
                }
            }
        }
        last.unwrap()
    };
    std::fs::write(&check, b"in the way").unwrap();
    let err = open().unwrap_err();
    assert!(err.to_string().contains("storage.open_unchecked"), "{err}");
    let _ = std::fs::remove_file(&clean);
    let s = SledStore::open_with(&dir, 8, true).unwrap();
    assert_eq!(s.account(&a.id).await.unwrap().value, a);
    drop(s);
    let _ = std::fs::remove_file(&check);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The live bytes the quota measures grow with what is stored and fall when it is
/// removed (the file's size would not).
#[tokio::test]
async fn live_bytes_follow_what_is_stored() {
    use crate::model::oauth::{SecretHash, Session};
    let s = SledStore::temporary().unwrap();
    let empty = s.live_bytes().await.unwrap();
    for i in 0..500 {
        let session = Session { sub: format!("user-{i:0>200}"), auth_time: 1, expires: 10 };
        s.put_session(&SecretHash::of(&i.to_string()), &session).await.unwrap();
    }
    let full = s.live_bytes().await.unwrap();
    assert!(full > empty + 100_000, "{empty} → {full}");
    while s.purge_expired_oauth(100, 1000).await.unwrap() > 0 {}
    s.inner.db.flush().unwrap();
    let purged = s.live_bytes().await.unwrap();
    assert!(purged < empty + (full - empty) / 4, "{empty} → {full} → {purged}");
}

/// A clean close records the contents of what the start-up check reads (sled's
/// configuration, its snapshot, the log's segment headers and what recovery replays):
/// a change that keeps such a file's size and modification time (a flipped bit, a
/// restore over it) sends the next open through the check on a copy, which here cannot
/// be made, so the open is refused; the untouched store opens directly even then. A
/// flipped byte elsewhere in the log is found when the record it is in is read (sled's
/// CRC-32 on every message): never read back as other data.
#[tokio::test]
async fn a_same_size_change_after_a_clean_close_is_found() {
    let dir = scratch_dir();
    let mut check = dir.as_os_str().to_owned();
    check.push(".check");
    let open = || {
        for _ in 0..50 {
            match SledStore::open(&dir, 8) {
                Err(e) if e.to_string().contains("in use") => std::thread::sleep(Duration::from_millis(20)),
                other => return other,
            }
        }
        panic!("{} stays in use", dir.display());
    };
    let acct = account(12);
    {
        let s = SledStore::open(&dir, 8).unwrap();
        s.create_account(&acct).await.unwrap();
    }
    // The copy's place is taken: only a store that needs its check is refused.
    std::fs::write(&check, b"in the way").unwrap();
    drop(open().unwrap());
    let flip = |path: &Path, at: &dyn Fn(&[u8]) -> Vec<usize>| {
        let modified = std::fs::metadata(path).unwrap().modified().unwrap();
        let mut bytes = std::fs::read(path).unwrap();
        let places = at(&bytes);
        assert!(!places.is_empty(), "nothing to flip in {}", path.display());
        for i in places {
            bytes[i] ^= 0x01;
        }
        std::fs::write(path, &bytes).unwrap();
        std::fs::File::options().write(true).open(path).unwrap().set_modified(modified).unwrap();
    };
    let refused = |what: &str| {
        let err = open().unwrap_err();
        assert!(err.to_string().contains("not closed cleanly"), "{what}: {err}");
    };
    // The log's last byte (the newest segment, which recovery replays).
    let log = dir.join("db");
    flip(&log, &|b: &[u8]| vec![b.len() - 1]);
    refused("the log's tail");
    flip(&log, &|b: &[u8]| vec![b.len() - 1]);
    drop(open().unwrap());
    // The account's record, wherever the log holds a copy of it: refused at the open, or
    // refused when read.
    let needle = acct.id.0.as_bytes();
    flip(&log, &|b: &[u8]| b.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i).collect());
    if let Ok(s) = open() {
        let read = s.account(&acct.id).await;
        assert!(matches!(read, Err(ref e) if !matches!(e, StoreError::NotFound)), "{read:?}");
        drop(s);
    }
    flip(&log, &|b: &[u8]| {
        b.windows(needle.len())
            .enumerate()
            .filter(|(_, w)| w[0] ^ needle[0] == 1 && w[1..] == needle[1..])
            .map(|(i, _)| i)
            .collect()
    });
    drop(open().unwrap());
    let snapshot = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("snap."));
    flip(&snapshot.expect("a clean close leaves a snapshot"), &|b: &[u8]| vec![b.len() / 2]);
    refused("the snapshot");
    let _ = std::fs::remove_file(&check);
    let _ = std::fs::remove_dir_all(&dir);
    for suffix in [".generation", ".lock", ".clean"] {
        let mut f = dir.as_os_str().to_owned();
        f.push(suffix);
        let _ = std::fs::remove_file(f);
    }
}

/// Leaves of small entries split by their size, leaves of large ones at 16 entries
/// (vendor/sled/PATCHES.md, 8): both kinds split many times here, some entries go again,
/// and every one left is read back, in order, before and after a reopen.
#[test]
fn many_small_and_large_entries_split_and_read_back_in_order_after_a_reopen() {
    let dir = scratch_dir();
    let small = |i: u32| format!("account-{}/order-{i:08}", i % 7).into_bytes();
    let large = |i: u32| vec![(i % 251) as u8; 1800];
    let mut want_small: Vec<Vec<u8>> = (0..20_000).filter(|i| i % 3 != 0).map(small).collect();
    want_small.sort();
    let check = |db: &sled::Db| {
        let index = db.open_tree("index").unwrap();
        let keys: Vec<Vec<u8>> = index.iter().map(|kv| kv.unwrap().0.to_vec()).collect();
        assert_eq!(keys, want_small);
        let certs = db.open_tree("certs").unwrap();
        let values: Vec<(u32, Vec<u8>)> = certs
            .iter()
            .map(|kv| kv.unwrap())
            .map(|(k, v)| (u32::from_be_bytes(k.as_ref().try_into().unwrap()), v.to_vec()))
            .collect();
        assert_eq!(values, (0..2_000).map(|i| (i, large(i))).collect::<Vec<_>>());
    };
    {
        let db = sled::Config::new().path(&dir).open().unwrap();
        let (index, certs) = (db.open_tree("index").unwrap(), db.open_tree("certs").unwrap());
        for i in 0..20_000 {
            index.insert(small(i), &[]).unwrap();
        }
        for i in 0..2_000u32 {
            certs.insert(i.to_be_bytes(), large(i)).unwrap();
        }
        for i in (0..20_000).step_by(3) {
            index.remove(small(i)).unwrap();
        }
        db.flush().unwrap();
        check(&db);
    }
    let db = sled::Config::new().path(&dir).open().unwrap();
    check(&db);
    drop(db);
    let _ = std::fs::remove_dir_all(dir);
}

/// The page cache keeps entries only for the pages it holds (vendor/sled/PATCHES.md, 9):
/// with a cache far smaller than the data, pages are evicted and read back again and
/// again, in a scattered order, and every value read, updated and removed is right,
/// before and after a reopen.
#[test]
fn a_small_page_cache_evicts_and_reads_back_every_page_right() {
    let dir = scratch_dir();
    let value = |i: u32, round: u32| vec![(i.wrapping_mul(31).wrapping_add(round) % 251) as u8; 1500];
    // A fixed permutation of 0..12_000 (7919 is prime to it): scattered, reproducible.
    let scattered = |n: u32| (0..n).map(move |i| (i * 7919) % n);
    let check = |db: &sled::Db| {
        let t = db.open_tree("certs").unwrap();
        for i in scattered(12_000) {
            let got = t.get(i.to_be_bytes()).unwrap();
            match i % 5 {
                0 => assert_eq!(got, None, "{i} was removed"),
                1 => assert_eq!(got.as_deref(), Some(&value(i, 1)[..]), "{i} was updated"),
                _ => assert_eq!(got.as_deref(), Some(&value(i, 0)[..]), "{i}"),
            }
        }
    };
    {
        let db = sled::Config::new().path(&dir).cache_capacity(256 * 1024).open().unwrap();
        let t = db.open_tree("certs").unwrap();
        for i in scattered(12_000) {
            t.insert(i.to_be_bytes(), value(i, 0)).unwrap();
        }
        for i in scattered(12_000) {
            match i % 5 {
                0 => assert!(t.remove(i.to_be_bytes()).unwrap().is_some()),
                1 => assert_eq!(t.insert(i.to_be_bytes(), value(i, 1)).unwrap().as_deref(), Some(&value(i, 0)[..])),
                _ => {}
            }
        }
        db.flush().unwrap();
        check(&db);
    }
    let db = sled::Config::new().path(&dir).cache_capacity(256 * 1024).open().unwrap();
    check(&db);
    drop(db);
    let _ = std::fs::remove_dir_all(dir);
}

/// sled patch 10: a flush writes the buffer it seals on the calling thread and, once a
/// stabilization has run since the open, the segment accountant's part too; the first
/// after an open goes to an IO thread. Values flushed one at a time across many 512 KiB
/// segments, all replaced round after round so that segments drain and are reused, read
/// back after two reopens (the rounds after the first reopen start while the first
/// stabilization after an open runs), and the log stays as small as reuse keeps it.
#[test]
fn values_flushed_one_by_one_across_segments_read_back_after_reopens() {
    let dir = scratch_dir();
    let value = |i: u32, round: u32| vec![(i.wrapping_mul(17).wrapping_add(round) % 253) as u8; 3000];
    let open = || sled::Config::new().path(&dir).cache_capacity(256 * 1024).flush_every_ms(None).open().unwrap();
    let write_round = |db: &sled::Db, round: u32| {
        let t = db.open_tree("certs").unwrap();
        for i in 0..1_500u32 {
            t.insert(i.to_be_bytes(), value(i, round)).unwrap();
            db.flush().unwrap();
        }
    };
    let check = |db: &sled::Db, round: u32| {
        let t = db.open_tree("certs").unwrap();
        for i in 0..1_500u32 {
            assert_eq!(t.get(i.to_be_bytes()).unwrap().as_deref(), Some(&value(i, round)[..]), "{i}");
        }
    };
    {
        let db = open();
        write_round(&db, 0);
        write_round(&db, 1);
        check(&db, 1);
    }
    {
        let db = open();
        check(&db, 1);
        for round in 2..8 {
            write_round(&db, round);
        }
        check(&db, 7);
        // Replaced values free their segments for reuse only once the segment accountant
        // has stabilized them: 10 MiB of log here, 67 MiB when flushes skip that part.
        let log = std::fs::metadata(dir.join("db")).unwrap().len();
        assert!(log < 24 << 20, "the log grew to {log} bytes for 4.5 MB of live values");
    }
    let db = open();
    check(&db, 7);
    drop(db);
    let _ = std::fs::remove_dir_all(dir);
}

/// The start-up check reads sled's `conf` for the segment size before anything
/// verifies it: a damaged one that keeps the file's size and time, naming a segment size
/// sled would refuse (here 2^60 bytes, which the check allocated: the process aborted),
/// is refused as damaged, as any other change there, and left as it was.
#[tokio::test]
async fn a_damaged_segment_size_in_sleds_conf_is_refused() {
    let dir = scratch_dir();
    {
        let s = SledStore::open(&dir, 8).unwrap();
        s.create_account(&account(14)).await.unwrap();
    }
    drop(SledStore::open(&dir, 8).unwrap());
    let snapshot =
        std::fs::read_dir(&dir).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with("snap."));
    assert!(snapshot, "a snapshot, so that the check reads the log by segments");
    let conf = dir.join("conf");
    let modified = std::fs::metadata(&conf).unwrap().modified().unwrap();
    let bytes = std::fs::read(&conf).unwrap();
    let from = b"segment_size: 524288\nuse_compression: false\n".as_slice();
    let to = b"segment_size: 1152921504606846976\nx: 123456\n".as_slice();
    assert_eq!(from.len(), to.len());
    let at = bytes.windows(from.len()).position(|w| w == from).expect("sled's conf as written by 0.34");
    let mut damaged = bytes.clone();
    damaged[at..at + from.len()].copy_from_slice(to);
    std::fs::write(&conf, &damaged).unwrap();
    std::fs::File::options().write(true).open(&conf).unwrap().set_modified(modified).unwrap();
    let err = SledStore::open(&dir, 8).unwrap_err();
    assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
    assert_eq!(std::fs::read(&conf).unwrap(), damaged, "nothing was changed");
    let _ = std::fs::remove_dir_all(&dir);
    for suffix in [".generation", ".lock", ".clean", ".check"] {
        let mut f = dir.as_os_str().to_owned();
        f.push(suffix);
        let _ = std::fs::remove_file(&f);
        let _ = std::fs::remove_dir_all(f);
    }
}
