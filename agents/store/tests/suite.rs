//! The store test suite: one set of test bodies, each run against
//!
//! - `etcd`: a real etcd 3.4 process (Debian's `etcd-server`),
//! - `embedded`: the embedded store in this process,
//! - `served`: the embedded store behind `serve_embedded`, reached through
//!   `EtcdStore` over gRPC.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::Backend;
use futures::StreamExt;
use store::{
    Compare, CompareOp, CompareTarget, ErrorKind, Expect, LeaseLock, LockOptions, Op, SharedStore,
    StoreError, WatchEvent, WatchStream,
};

/// Generates one `#[tokio::test]` per backend for each body.
macro_rules! suite {
    ($($body:ident),* $(,)?) => {
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $body() {
                    let backend = crate::common::EtcdBackend::start().await;
                    crate::$body(&backend).await;
                }
            )*
        }
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $body() {
                    let backend = crate::common::EmbeddedBackend::open();
                    crate::$body(&backend).await;
                }
            )*
        }
        mod served {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $body() {
                    let backend = crate::common::ServedBackend::start().await;
                    crate::$body(&backend).await;
                }
            )*
        }
    };
}

suite!(
    get_put_delete,
    list_and_delete_by_prefix,
    revisions_follow_etcd,
    watch_delivers_in_revision_order,
    watch_from_a_compacted_revision_fails_clearly,
    concurrent_compare_and_swap_loses_no_update,
    txn_branches_and_compares,
    lease_expiry_deletes_keys,
    keep_alive_keeps_keys,
    lease_revoke_deletes_keys,
    lease_lock_moves_on_revoke,
    lease_lock_moves_on_expiry,
    lease_lock_is_never_held_twice,
);

const WAIT: Duration = Duration::from_secs(10);

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// The next event, or a panic after [`WAIT`].
async fn next_event(events: &mut WatchStream) -> Result<WatchEvent, StoreError> {
    tokio::time::timeout(WAIT, events.next())
        .await
        .expect("a watch event within the deadline")
        .expect("the watch stream to go on")
}

/// Polls `check` until true or [`WAIT`] runs out.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < WAIT, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get_put_delete(backend: &dyn Backend) {
    let s = backend.client().await;
    assert_eq!(s.get(b"/t/a").await.unwrap(), None);
    s.put(b"/t/a", b("1"), None).await.unwrap();
    let kv = s.get(b"/t/a").await.unwrap().unwrap();
    assert_eq!(
        (kv.key.as_slice(), kv.value.as_slice()),
        (&b"/t/a"[..], &b"1"[..])
    );
    assert_eq!(kv.lease, None);
    s.put(b"/t/a", b("2"), None).await.unwrap();
    assert_eq!(s.get(b"/t/a").await.unwrap().unwrap().value, b("2"));
    // Binary values and an empty value are kept as they are.
    s.put(b"/t/bin", vec![0, 255, 1], None).await.unwrap();
    assert_eq!(
        s.get(b"/t/bin").await.unwrap().unwrap().value,
        vec![0, 255, 1]
    );
    s.put(b"/t/empty", Vec::new(), None).await.unwrap();
    assert_eq!(
        s.get(b"/t/empty").await.unwrap().unwrap().value,
        Vec::<u8>::new()
    );

    assert!(s.delete(b"/t/a").await.unwrap());
    assert!(!s.delete(b"/t/a").await.unwrap());
    assert_eq!(s.get(b"/t/a").await.unwrap(), None);

    // Bad input is a clear error and changes nothing.
    let err = s.put(b"", b("x"), None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let err = s.get(b"").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");

    // Another client sees the same data.
    let other = backend.client().await;
    assert_eq!(
        other.get(b"/t/bin").await.unwrap().unwrap().value,
        vec![0, 255, 1]
    );
}

async fn list_and_delete_by_prefix(backend: &dyn Backend) {
    let s = backend.client().await;
    let keys = ["/p/b", "/p/a", "/p/c/d", "/p/c", "/pa", "/o", "/p0"];
    for (i, key) in keys.iter().enumerate() {
        s.put(key.as_bytes(), format!("v{i}").into_bytes(), None)
            .await
            .unwrap();
    }
    let listed: Vec<String> = s
        .list(b"/p/")
        .await
        .unwrap()
        .iter()
        .map(|kv| kv.key_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, ["/p/a", "/p/b", "/p/c", "/p/c/d"]);
    let all = s.list(b"").await.unwrap();
    assert_eq!(all.len(), keys.len());
    assert!(all.windows(2).all(|w| w[0].key < w[1].key), "sorted by key");
    let listing = s.list_with_revision(b"/p").await.unwrap();
    assert_eq!(listing.kvs.len(), 6);
    assert!(listing.revision >= listing.kvs.iter().map(|kv| kv.mod_revision).max().unwrap());

    assert_eq!(s.delete_prefix(b"/p/").await.unwrap(), 4);
    assert_eq!(s.delete_prefix(b"/p/").await.unwrap(), 0);
    assert!(s.list(b"/p/").await.unwrap().is_empty());
    let rest: Vec<String> = s
        .list(b"/")
        .await
        .unwrap()
        .iter()
        .map(|kv| kv.key_str().unwrap().to_string())
        .collect();
    assert_eq!(rest, ["/o", "/p0", "/pa"]);
    // Prefixes ending in 0xff bytes are ranges too.
    s.put(b"\xff\xff/x", b("1"), None).await.unwrap();
    s.put(b"\xff\xfe", b("1"), None).await.unwrap();
    assert_eq!(s.list(b"\xff\xff").await.unwrap().len(), 1);
}

async fn revisions_follow_etcd(backend: &dyn Backend) {
    let s = backend.client().await;
    let r1 = s.put(b"/r/a", b("1"), None).await.unwrap();
    let r2 = s.put(b"/r/b", b("1"), None).await.unwrap();
    let r3 = s.put(b"/r/a", b("2"), None).await.unwrap();
    assert!(r1 < r2 && r2 < r3, "{r1} {r2} {r3}");
    let a = s.get(b"/r/a").await.unwrap().unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (r1, r3, 2));
    let b_ = s.get(b"/r/b").await.unwrap().unwrap();
    assert_eq!(
        (b_.create_revision, b_.mod_revision, b_.version),
        (r2, r2, 1)
    );

    // A delete is a change; deleting nothing is not.
    assert!(s.delete(b"/r/a").await.unwrap());
    let after_delete = s.list_with_revision(b"/r/").await.unwrap().revision;
    assert_eq!(after_delete, r3 + 1);
    assert!(!s.delete(b"/r/a").await.unwrap());
    assert_eq!(
        s.list_with_revision(b"/r/").await.unwrap().revision,
        after_delete
    );

    // Re-creating starts a new life: version 1, new create revision.
    let r5 = s.put(b"/r/a", b("3"), None).await.unwrap();
    assert_eq!(r5, after_delete + 1);
    let a = s.get(b"/r/a").await.unwrap().unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (r5, r5, 1));

    // A transaction is one revision however many keys it writes.
    let t = s
        .txn(
            Vec::new(),
            vec![
                Op::put("/r/x", "1"),
                Op::put("/r/y", "1"),
                Op::delete("/r/b"),
            ],
            Vec::new(),
        )
        .await
        .unwrap();
    assert!(t.succeeded);
    assert_eq!(t.revision, r5 + 1);
    for key in ["/r/x", "/r/y"] {
        assert_eq!(
            s.get(key.as_bytes()).await.unwrap().unwrap().mod_revision,
            t.revision
        );
    }
}

async fn watch_delivers_in_revision_order(backend: &dyn Backend) {
    let s = backend.client().await;
    let watcher = backend.client().await;
    let mut live = watcher.watch(b"/w/", None).await.unwrap();

    let r1 = s.put(b"/w/a", b("1"), None).await.unwrap();
    s.put(b"/other", b("x"), None).await.unwrap();
    let r2 = s.put(b"/w/b", b("1"), None).await.unwrap();
    let r3 = s.put(b"/w/a", b("2"), None).await.unwrap();
    assert!(s.delete(b"/w/b").await.unwrap());
    let t = s
        .txn(
            Vec::new(),
            vec![Op::put("/w/c", "1"), Op::put("/w/d", "1")],
            Vec::new(),
        )
        .await
        .unwrap();
    let expected = |events: &[WatchEvent]| {
        let summary: Vec<(String, i64, bool)> = events
            .iter()
            .map(|e| {
                (
                    String::from_utf8_lossy(e.key()).into_owned(),
                    e.revision(),
                    matches!(e, WatchEvent::Put(_)),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("/w/a".to_string(), r1, true),
                ("/w/b".to_string(), r2, true),
                ("/w/a".to_string(), r3, true),
                ("/w/b".to_string(), r3 + 1, false),
                ("/w/c".to_string(), t.revision, true),
                ("/w/d".to_string(), t.revision, true),
            ]
        );
    };

    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(next_event(&mut live).await.unwrap());
    }
    expected(&seen);
    match &seen[2] {
        WatchEvent::Put(kv) => {
            assert_eq!(
                (kv.value.as_slice(), kv.version, kv.create_revision),
                (&b"2"[..], 2, r1)
            );
        }
        other => panic!("expected a put, got {other:?}"),
    }

    // The same history, replayed from a start revision.
    let mut replay = watcher.watch(b"/w/", Some(r1)).await.unwrap();
    let mut replayed = Vec::new();
    for _ in 0..6 {
        replayed.push(next_event(&mut replay).await.unwrap());
    }
    assert_eq!(replayed, seen);

    // A later start revision skips what came before it; then live events
    // follow with no gap.
    let mut from_r3 = watcher.watch(b"/w/a", Some(r3)).await.unwrap();
    assert_eq!(next_event(&mut from_r3).await.unwrap().revision(), r3);
    let r_last = s.put(b"/w/a", b("3"), None).await.unwrap();
    assert_eq!(next_event(&mut from_r3).await.unwrap().revision(), r_last);
    assert_eq!(next_event(&mut live).await.unwrap().revision(), r_last);

    let err = watcher.watch(b"/w/", Some(0)).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

async fn watch_from_a_compacted_revision_fails_clearly(backend: &dyn Backend) {
    let s = backend.client().await;
    let r1 = s.put(b"/c/a", b("1"), None).await.unwrap();
    s.put(b"/c/a", b("2"), None).await.unwrap();
    let r3 = s.put(b"/c/a", b("3"), None).await.unwrap();
    s.compact(r3).await.unwrap();

    let mut events = s.watch(b"/c/", Some(r1)).await.unwrap();
    let err = next_event(&mut events).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Compacted, "{err}");
    match err {
        StoreError::Compacted {
            requested,
            compact_revision,
        } => {
            assert_eq!(requested, r1);
            assert!(compact_revision >= r3, "{compact_revision}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        tokio::time::timeout(WAIT, events.next())
            .await
            .unwrap()
            .is_none(),
        "the stream ends after the error"
    );

    // From the compaction revision on, history is still there.
    let mut events = s.watch(b"/c/", Some(r3)).await.unwrap();
    assert_eq!(next_event(&mut events).await.unwrap().revision(), r3);

    // Compacting again below the compaction point, or in the future, fails.
    let err = s.compact(r1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Compacted, "{err}");
    let err = s.compact(r3 + 100).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FutureRevision, "{err}");
}

async fn concurrent_compare_and_swap_loses_no_update(backend: &dyn Backend) {
    const TASKS: usize = 8;
    const INCREMENTS: usize = 50;
    let key: &[u8] = b"/cas/counter";
    let s = backend.client().await;
    assert!(s
        .compare_and_swap(key, Expect::Absent, Some(b("0")))
        .await
        .unwrap());
    assert!(!s
        .compare_and_swap(key, Expect::Absent, Some(b("0")))
        .await
        .unwrap());

    let conflicts = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = backend.client().await;
        let conflicts = conflicts.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..INCREMENTS {
                loop {
                    let kv = store.get(key).await.unwrap().unwrap();
                    let n: u64 = kv.value_str().unwrap().parse().unwrap();
                    // Alternate the two ways of expecting a state.
                    let expected = if task % 2 == 0 {
                        Expect::ModRevision(kv.mod_revision)
                    } else {
                        Expect::Value(kv.value.clone())
                    };
                    let next = (n + 1).to_string().into_bytes();
                    if store
                        .compare_and_swap(key, expected, Some(next))
                        .await
                        .unwrap()
                    {
                        break;
                    }
                    conflicts.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let kv = s.get(key).await.unwrap().unwrap();
    assert_eq!(
        kv.value_str(),
        Some((TASKS * INCREMENTS).to_string().as_str())
    );
    assert_eq!(kv.version as usize, TASKS * INCREMENTS + 1);
    eprintln!(
        "{} increments, {} conflicts",
        TASKS * INCREMENTS,
        conflicts.load(Ordering::Relaxed)
    );

    // Swapping to None deletes, only when the expectation holds.
    assert!(!s
        .compare_and_swap(key, Expect::Value(b("0")), None)
        .await
        .unwrap());
    assert!(s
        .compare_and_swap(key, Expect::ModRevision(kv.mod_revision), None)
        .await
        .unwrap());
    assert_eq!(s.get(key).await.unwrap(), None);
}

async fn txn_branches_and_compares(backend: &dyn Backend) {
    let s = backend.client().await;
    let r1 = s.put(b"/x/a", b("10"), None).await.unwrap();

    // Success branch.
    let t = s
        .txn(
            vec![
                Compare::value_equals("/x/a", "10"),
                Compare::create_revision_equals("/x/a", r1),
                Compare::mod_revision_equals("/x/a", r1),
                Compare::version_equals("/x/a", 1),
                Compare::absent("/x/b"),
            ],
            vec![Op::put("/x/b", "ok"), Op::delete("/x/a")],
            vec![Op::put("/x/fail", "1")],
        )
        .await
        .unwrap();
    assert!(t.succeeded);
    assert_eq!(t.revision, r1 + 1);
    assert_eq!(s.get(b"/x/b").await.unwrap().unwrap().value, b("ok"));
    assert_eq!(s.get(b"/x/a").await.unwrap(), None);
    assert_eq!(s.get(b"/x/fail").await.unwrap(), None);

    // Failure branch: one false compare is enough.
    let t = s
        .txn(
            vec![Compare::exists("/x/b"), Compare::value_equals("/x/a", "10")],
            vec![Op::put("/x/success", "1")],
            vec![Op::put("/x/fail", "1")],
        )
        .await
        .unwrap();
    assert!(!t.succeeded);
    assert_eq!(
        s.get(b"/x/fail").await.unwrap().unwrap().mod_revision,
        t.revision
    );
    assert_eq!(s.get(b"/x/success").await.unwrap(), None);

    // An empty failure branch changes nothing, not even the revision.
    let before = s.list_with_revision(b"/x/").await.unwrap().revision;
    let t = s
        .txn(
            vec![Compare::exists("/x/none")],
            vec![Op::put("/x/n", "1")],
            Vec::new(),
        )
        .await
        .unwrap();
    assert!(!t.succeeded);
    assert_eq!(t.revision, before);

    // Ordering compares.
    let vb = s.get(b"/x/b").await.unwrap().unwrap();
    let holds = |c: Compare| {
        let s = s.clone();
        async move {
            s.txn(vec![c], Vec::new(), Vec::new())
                .await
                .unwrap()
                .succeeded
        }
    };
    assert!(
        holds(Compare::new(
            "/x/b",
            CompareOp::Greater,
            CompareTarget::ModRevision(vb.mod_revision - 1)
        ))
        .await
    );
    assert!(
        holds(Compare::new(
            "/x/b",
            CompareOp::Less,
            CompareTarget::ModRevision(vb.mod_revision + 1)
        ))
        .await
    );
    assert!(
        holds(Compare::new(
            "/x/b",
            CompareOp::NotEqual,
            CompareTarget::Value(b("no"))
        ))
        .await
    );
    assert!(
        holds(Compare::new(
            "/x/b",
            CompareOp::Greater,
            CompareTarget::Value(b("ab"))
        ))
        .await
    );
    assert!(
        holds(Compare::new(
            "/x/b",
            CompareOp::Equal,
            CompareTarget::Lease(None)
        ))
        .await
    );
    // A value compare on an absent key is always false, even NotEqual.
    assert!(
        !holds(Compare::new(
            "/x/zz",
            CompareOp::NotEqual,
            CompareTarget::Value(b("no"))
        ))
        .await
    );
    assert!(holds(Compare::version_equals("/x/zz", 0)).await);

    // Writing one key twice in a branch is refused.
    let err = s
        .txn(
            Vec::new(),
            vec![Op::put("/x/d", "1"), Op::put("/x/d", "2")],
            Vec::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert_eq!(s.get(b"/x/d").await.unwrap(), None);
}

async fn lease_expiry_deletes_keys(backend: &dyn Backend) {
    let s = backend.client().await;
    let watcher = backend.client().await;
    let granted = Instant::now();
    let lease = s.lease_grant(1).await.unwrap();
    let ttl = s.lease_time_to_live(lease).await.unwrap();
    assert!(matches!(ttl, Some(0..=2)), "{ttl:?}");
    let r = s.put(b"/l/a", b("1"), Some(lease)).await.unwrap();
    s.put(b"/l/b", b("1"), Some(lease)).await.unwrap();
    s.put(b"/l/keep", b("1"), None).await.unwrap();
    assert_eq!(s.get(b"/l/a").await.unwrap().unwrap().lease, Some(lease));
    let mut events = watcher.watch(b"/l/", Some(r)).await.unwrap();

    eventually("the leased keys are gone", || {
        let s = s.clone();
        async move { s.list(b"/l/").await.unwrap().len() == 1 }
    })
    .await;
    assert!(
        granted.elapsed() >= Duration::from_millis(900),
        "expired too early"
    );
    assert!(s.get(b"/l/keep").await.unwrap().is_some());

    // The expiry shows in the watch as deletes at one revision.
    let mut deletes = Vec::new();
    while deletes.len() < 2 {
        match next_event(&mut events).await.unwrap() {
            WatchEvent::Delete { key, revision } => deletes.push((key, revision)),
            WatchEvent::Put(_) => {}
        }
    }
    assert_eq!(deletes[0].1, deletes[1].1);

    assert_eq!(s.lease_time_to_live(lease).await.unwrap(), None);
    let err = s.lease_keep_alive(lease).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseNotFound, "{err}");
    let err = s.put(b"/l/late", b("1"), Some(lease)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseNotFound, "{err}");
}

async fn keep_alive_keeps_keys(backend: &dyn Backend) {
    let s = backend.client().await;
    let lease = s.lease_grant(2).await.unwrap();
    s.put(b"/k/a", b("1"), Some(lease)).await.unwrap();
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let ttl = s.lease_keep_alive(lease).await.unwrap();
        assert!(ttl >= 2, "{ttl}");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(s.get(b"/k/a").await.unwrap().is_some(), "key kept alive");
    }
    // Once keep-alives stop, the lease runs out.
    eventually("the key expires", || {
        let s = s.clone();
        async move { s.get(b"/k/a").await.unwrap().is_none() }
    })
    .await;
}

async fn lease_revoke_deletes_keys(backend: &dyn Backend) {
    let s = backend.client().await;
    let lease = s.lease_grant(60).await.unwrap();
    s.put(b"/v/a", b("1"), Some(lease)).await.unwrap();
    s.txn(
        Vec::new(),
        vec![Op::put_with_lease("/v/b", "1", lease)],
        Vec::new(),
    )
    .await
    .unwrap();
    // Moving a key to no lease detaches it.
    s.put(b"/v/c", b("1"), Some(lease)).await.unwrap();
    s.put(b"/v/c", b("2"), None).await.unwrap();
    let before = s.list_with_revision(b"/v/").await.unwrap().revision;
    s.lease_revoke(lease).await.unwrap();
    let after = s.list_with_revision(b"/v/").await.unwrap();
    let keys: Vec<&str> = after.kvs.iter().map(|kv| kv.key_str().unwrap()).collect();
    assert_eq!(keys, ["/v/c"]);
    assert_eq!(after.revision, before + 1, "one revision for the revoke");
    let err = s.lease_revoke(lease).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseNotFound, "{err}");
    let err = s
        .txn(
            Vec::new(),
            vec![Op::put_with_lease("/v/d", "1", lease)],
            Vec::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseNotFound, "{err}");
}

const LOCK_KEY: &str =
    "/openebs.io/mayastor/apis/v0/clusters/test/namespaces/test/StoreLeaseLock/core-agent";

fn lock_options(ttl_secs: i64) -> LockOptions {
    LockOptions {
        ttl_secs,
        retry_delay: Duration::from_millis(100),
    }
}

async fn lease_lock_moves_on_revoke(backend: &dyn Backend) {
    let a_store = backend.client().await;
    let b_store = backend.client().await;
    let admin = backend.client().await;
    let a = LeaseLock::acquire(a_store, LOCK_KEY, "agent-a", lock_options(30))
        .await
        .unwrap();
    assert!(a.is_held());
    assert_eq!(
        LeaseLock::current_owner(admin.as_ref(), LOCK_KEY.as_bytes())
            .await
            .unwrap()
            .as_deref(),
        Some("agent-a")
    );
    assert!(
        LeaseLock::try_acquire(b_store.clone(), LOCK_KEY, "agent-b", lock_options(30))
            .await
            .unwrap()
            .is_none()
    );
    let contender = tokio::spawn(LeaseLock::acquire(
        b_store,
        LOCK_KEY,
        "agent-b",
        lock_options(30),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!contender.is_finished(), "the lock is taken");
    assert!(a.is_held());

    // Someone revokes the holder's lease: it notices at once, and the
    // contender takes over.
    admin.lease_revoke(a.lease()).await.unwrap();
    tokio::time::timeout(WAIT, a.lost())
        .await
        .expect("the holder notices the loss");
    assert!(!a.is_held());
    let b = tokio::time::timeout(WAIT, contender)
        .await
        .expect("the contender acquires")
        .unwrap()
        .unwrap();
    assert!(b.is_held());
    assert!(
        b.revision() > a.revision(),
        "a new holder has a larger revision"
    );
    assert_eq!(
        LeaseLock::current_owner(admin.as_ref(), LOCK_KEY.as_bytes())
            .await
            .unwrap()
            .as_deref(),
        Some("agent-b")
    );
    b.release().await.unwrap();
    assert_eq!(admin.get(LOCK_KEY.as_bytes()).await.unwrap(), None);
}

async fn lease_lock_moves_on_expiry(backend: &dyn Backend) {
    let a_store = backend.client().await;
    let b_store = backend.client().await;
    let a = LeaseLock::acquire(a_store, LOCK_KEY, "agent-a", lock_options(2))
        .await
        .unwrap();
    // The keep-alive holds it well past the TTL.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(a.is_held());
    let contender = tokio::spawn(LeaseLock::acquire(
        b_store,
        LOCK_KEY,
        "agent-b",
        lock_options(2),
    ));
    // The holder stops without releasing (as if it died): the lease
    // expires and only then does the contender get in.
    let stopped = Instant::now();
    drop(a);
    let b = tokio::time::timeout(WAIT, contender)
        .await
        .expect("the contender acquires after the expiry")
        .unwrap()
        .unwrap();
    assert!(
        stopped.elapsed() >= Duration::from_millis(900),
        "acquired {:?} after the holder stopped, before its lease could expire",
        stopped.elapsed()
    );
    assert!(b.is_held());
    b.release().await.unwrap();
}

async fn lease_lock_is_never_held_twice(backend: &dyn Backend) {
    const CONTENDERS: usize = 3;
    const ROUNDS: usize = 3;
    let holders = Arc::new(AtomicUsize::new(0));
    let revisions = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let mut tasks = Vec::new();
    for c in 0..CONTENDERS {
        let store: SharedStore = backend.client().await;
        let holders = holders.clone();
        let revisions = revisions.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                let lock =
                    LeaseLock::acquire(store.clone(), LOCK_KEY, format!("c{c}"), lock_options(2))
                        .await
                        .unwrap();
                assert_eq!(
                    holders.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two holders at once"
                );
                revisions.lock().unwrap().insert(lock.revision(), c);
                // Work while holding; a holder that learns of a loss stops
                // at once.
                let work = Duration::from_millis(50 + rand::random::<u64>() % 150);
                tokio::select! {
                    _ = tokio::time::sleep(work) => {}
                    _ = lock.lost() => {}
                }
                holders.fetch_sub(1, Ordering::SeqCst);
                if round % 2 == 0 {
                    lock.release().await.unwrap();
                } else {
                    // Stop without releasing: the next holder waits for
                    // the expiry.
                    drop(lock);
                }
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("every contender gets its turns")
            .unwrap();
    }
    assert_eq!(revisions.lock().unwrap().len(), CONTENDERS * ROUNDS);
}
