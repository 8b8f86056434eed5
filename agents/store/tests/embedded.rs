//! Durability of the embedded store: reopening, snapshots, torn and
//! damaged logs, watchers that fall behind, and a real `mayastor-store`
//! process killed with SIGKILL (and stopped with SIGTERM) while clients
//! write to it.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use store::{
    EmbeddedOptions, EmbeddedStore, ErrorKind, EtcdStore, KeyValue, Op, Store, WatchEvent,
};

fn open(dir: &Path) -> EmbeddedStore {
    EmbeddedStore::open(dir).unwrap()
}

fn logs(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("wal-"))
        })
        .collect();
    logs.sort();
    logs
}

async fn dump(store: &dyn Store) -> Vec<KeyValue> {
    store.list(b"").await.unwrap()
}

#[tokio::test]
async fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (before, revision, lease) = {
        let s = open(dir.path());
        for i in 0..20 {
            s.put(format!("/k/{i:02}").as_bytes(), vec![i as u8; i], None)
                .await
                .unwrap();
        }
        s.put(b"/k/05", b"again".to_vec(), None).await.unwrap();
        s.delete(b"/k/07").await.unwrap();
        s.delete_prefix(b"/k/1").await.unwrap();
        let lease = s.lease_grant(60).await.unwrap();
        s.txn(
            Vec::new(),
            vec![
                Op::put_with_lease("/leased", "v", lease),
                Op::delete("/k/00"),
            ],
            Vec::new(),
        )
        .await
        .unwrap();
        (dump(&s).await, s.revision().await.unwrap(), lease)
    };
    let s = open(dir.path());
    assert_eq!(dump(&s).await, before, "every key with its revisions");
    assert_eq!(s.revision().await.unwrap(), revision);
    // The lease survived and restarted its TTL; its keys are still bound.
    let ttl = s.lease_time_to_live(lease).await.unwrap().unwrap();
    assert!((58..=60).contains(&ttl), "{ttl}");
    s.lease_revoke(lease).await.unwrap();
    assert_eq!(s.get(b"/leased").await.unwrap(), None);
    // Revisions go on from where they were.
    assert_eq!(
        s.put(b"/k/new", b"1".to_vec(), None).await.unwrap(),
        revision + 2
    );
    // The history of the log is there for watchers after a reopen.
    let mut events = s.watch(b"/k/", Some(1)).await.unwrap();
    assert_eq!(events.next().await.unwrap().unwrap().revision(), 1);

    // A second store on the same directory is refused while one is open.
    let err = EmbeddedStore::open(dir.path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

#[tokio::test]
async fn snapshots_compact_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        snapshot_threshold_bytes: 2048,
        ..EmbeddedOptions::default()
    };
    let before = {
        let s = EmbeddedStore::open_with(dir.path(), options.clone()).unwrap();
        let lease = s.lease_grant(60).await.unwrap();
        for i in 0..300 {
            let lease = (i % 10 == 0).then_some(lease);
            s.put(format!("/s/{}", i % 37).as_bytes(), vec![b'x'; 50], lease)
                .await
                .unwrap();
        }
        assert!(dir.path().join("snapshot").exists());
        assert!(logs(dir.path()).len() <= 2, "{:?}", logs(dir.path()));
        dump(&s).await
    };
    let s = EmbeddedStore::open_with(dir.path(), options).unwrap();
    assert_eq!(dump(&s).await, before);
    // Watching from before the snapshot: those events are gone.
    let mut events = s.watch(b"/s/", Some(1)).await.unwrap();
    let err = events.next().await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Compacted, "{err}");
}

#[tokio::test]
async fn a_torn_tail_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let s = open(dir.path());
        for i in 0..10 {
            s.put(format!("/t/{i}").as_bytes(), b"v".to_vec(), None)
                .await
                .unwrap();
        }
        dump(&s).await
    };
    let log = logs(dir.path()).pop().unwrap();
    let clean_len = std::fs::metadata(&log).unwrap().len();

    // A write cut short: a batch header that promises more than is there.
    let mut torn = std::fs::read(&log).unwrap();
    torn.extend_from_slice(b"MSWB");
    torn.extend_from_slice(&100u32.to_le_bytes());
    torn.extend_from_slice(&[7u8; 20]);
    std::fs::write(&log, &torn).unwrap();
    {
        let s = open(dir.path());
        assert_eq!(dump(&s).await, before, "torn batch invisible");
        s.put(b"/t/after", b"1".to_vec(), None).await.unwrap();
    }
    // The tail was cut off, so what was written after it reads back.
    let s = open(dir.path());
    assert_eq!(dump(&s).await.len(), before.len() + 1);
    drop(s);

    // A last batch whose end did not reach the disk intact (checksum
    // mismatch) is a torn tail too: only that write is lost.
    let mut bytes = std::fs::read(&log).unwrap();
    let len = bytes.len();
    bytes[len - 4..].fill(0xee);
    std::fs::write(&log, &bytes).unwrap();
    let s = open(dir.path());
    assert_eq!(dump(&s).await, before);
    assert!(std::fs::metadata(&log).unwrap().len() <= clean_len + 64);
}

#[tokio::test]
async fn damage_before_acknowledged_data_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        for i in 0..10 {
            s.put(format!("/d/{i}").as_bytes(), b"value".to_vec(), None)
                .await
                .unwrap();
        }
    }
    let log = logs(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&log).unwrap();
    // Flip a byte inside the first batch: later batches are valid, so this
    // is not a torn write and must not be cut off silently.
    bytes[20] ^= 0xff;
    std::fs::write(&log, &bytes).unwrap();
    let err = EmbeddedStore::open(dir.path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("offset 0"), "{err}");
    // Nothing was truncated.
    assert_eq!(std::fs::read(&log).unwrap(), bytes);

    // A damaged snapshot refuses the open as well.
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        snapshot_threshold_bytes: 256,
        ..EmbeddedOptions::default()
    };
    {
        let s = EmbeddedStore::open_with(dir.path(), options).unwrap();
        for i in 0..10 {
            s.put(format!("/d/{i}").as_bytes(), b"value".to_vec(), None)
                .await
                .unwrap();
        }
    }
    let snapshot = dir.path().join("snapshot");
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&snapshot, &bytes).unwrap();
    let err = EmbeddedStore::open(dir.path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
}

#[tokio::test]
async fn a_watcher_that_falls_behind_catches_up_or_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        history_events: 100,
        watch_channel_batches: 4,
        ..EmbeddedOptions::default()
    };
    let s = EmbeddedStore::open_with(dir.path(), options).unwrap();
    let mut slow = s.watch(b"/f/", None).await.unwrap();
    let mut slower = s.watch(b"/f/", None).await.unwrap();
    let first = s.put(b"/f/k", b"0".to_vec(), None).await.unwrap();
    for i in 1..50 {
        s.put(b"/f/k", i.to_string().into_bytes(), None)
            .await
            .unwrap();
    }
    // 50 changes behind a channel of 4: caught up from the history, in
    // order, nothing missing.
    for i in 0..50 {
        let event = slow.next().await.unwrap().unwrap();
        assert_eq!(event.revision(), first + i);
    }
    // 150 more: beyond the history for a watcher that has not read yet.
    for i in 0..150 {
        s.put(b"/f/k", i.to_string().into_bytes(), None)
            .await
            .unwrap();
    }
    let mut got = 0;
    let err = loop {
        match slower.next().await.unwrap() {
            Ok(_) => got += 1,
            Err(e) => break e,
        }
    };
    assert!(got < 200);
    assert_eq!(err.kind(), ErrorKind::Compacted, "{err}");
    assert!(slower.next().await.is_none());

    // Closing the store ends the watchers.
    let mut open_watch = s.watch(b"/f/", None).await.unwrap();
    drop(slow);
    drop(s);
    let err = open_watch.next().await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

/// The value every writer puts under `key`: checkable from the key alone.
fn value_for(key: &str) -> Vec<u8> {
    format!("value-of:{key}:{}", key.len() * 7919).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_write() {
    const ROUNDS: usize = 6;
    const WRITERS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Small snapshots, so kills also land during compaction.
    let extra = ["--snapshot-threshold-bytes", "8192"];
    let acked: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Arc::default();
    let mut counter = 0u64;

    for round in 0..ROUNDS {
        let mut process = common::StoreProcess::start(&data, &extra).await;
        let client = common::connect_retrying(&process.endpoint, Duration::from_secs(5)).await;
        // Everything acknowledged before is there, with its exact value,
        // and nothing else is.
        let so_far = acked.lock().unwrap().clone();
        check_acknowledged(&client, &so_far, counter).await;
        let n = client
            .get(b"/crash/counter")
            .await
            .unwrap()
            .map(|kv| String::from_utf8(kv.value).unwrap().parse::<u64>().unwrap())
            .unwrap_or(0);
        assert!(n >= counter, "counter went back from {counter} to {n}");
        counter = n;

        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let client = client.clone();
            let acked = acked.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("/crash/{round}/{w}/{i}");
                    let value = value_for(&key);
                    // Transactions and counters too, not only puts.
                    let result = if i % 3 == 0 {
                        client
                            .txn(
                                Vec::new(),
                                vec![Op::put(key.clone(), value.clone())],
                                Vec::new(),
                            )
                            .await
                            .map(|_| ())
                    } else {
                        client
                            .put(key.as_bytes(), value.clone(), None)
                            .await
                            .map(|_| ())
                    };
                    match result {
                        Ok(()) => {
                            acked.lock().unwrap().insert(key, value);
                        }
                        Err(_) => return,
                    }
                }
            }));
        }
        let counting = {
            let client = client.clone();
            tokio::spawn(async move {
                let mut acked_count = counter;
                loop {
                    let ok = client
                        .compare_and_swap(
                            b"/crash/counter",
                            if acked_count == 0 {
                                store::Expect::Absent
                            } else {
                                store::Expect::Value(acked_count.to_string().into_bytes())
                            },
                            Some((acked_count + 1).to_string().into_bytes()),
                        )
                        .await;
                    match ok {
                        Ok(true) => acked_count += 1,
                        _ => return acked_count,
                    }
                }
            })
        };
        let delay = Duration::from_millis(150 + rand::random::<u64>() % 350);
        tokio::time::sleep(delay).await;
        process.kill();
        for task in tasks {
            task.await.unwrap();
        }
        counter = counting.await.unwrap();
        assert!(
            acked.lock().unwrap().len() > round * 10,
            "writers made progress:\n{}",
            process.log_tail()
        );
    }
    let process = common::StoreProcess::start(&data, &extra).await;
    let client = common::connect_retrying(&process.endpoint, Duration::from_secs(5)).await;
    let so_far = acked.lock().unwrap().clone();
    check_acknowledged(&client, &so_far, counter).await;
    eprintln!(
        "{} acknowledged writes and {counter} counter increments survived {ROUNDS} SIGKILLs",
        acked.lock().unwrap().len()
    );
}

async fn check_acknowledged(client: &EtcdStore, acked: &BTreeMap<String, Vec<u8>>, counter: u64) {
    let present = client.list(b"/crash/").await.unwrap();
    let by_key: BTreeMap<String, Vec<u8>> = present
        .into_iter()
        .map(|kv| (kv.key_str().unwrap().to_string(), kv.value))
        .collect();
    for (key, value) in acked {
        assert_eq!(by_key.get(key), Some(value), "acknowledged {key} lost");
    }
    for (key, value) in &by_key {
        if key == "/crash/counter" {
            let n: u64 = String::from_utf8(value.clone()).unwrap().parse().unwrap();
            // The increment in flight at the kill may or may not be there.
            assert!(
                n == counter || n == counter + 1,
                "counter {n}, acknowledged {counter}"
            );
        } else {
            // Unacknowledged writes may have landed, but whole and correct.
            assert_eq!(value, &value_for(key), "{key} holds a torn value");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_with_open_watches() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut process = common::StoreProcess::start(&data, &[]).await;
    let client = common::connect_retrying(&process.endpoint, Duration::from_secs(5)).await;
    client.put(b"/term/a", b"1".to_vec(), None).await.unwrap();
    let mut events = client.watch(b"/term/", None).await.unwrap();
    let lease = client.lease_grant(30).await.unwrap();
    client
        .put(b"/term/leased", b"1".to_vec(), Some(lease))
        .await
        .unwrap();
    assert!(matches!(events.next().await, Some(Ok(WatchEvent::Put(_)))));

    process.proc.signal("TERM");
    let started = std::time::Instant::now();
    let exit = loop {
        if let Ok(exit) = process.proc.wait_exit(Duration::ZERO) {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "mayastor-store did not stop on SIGTERM:\n{}",
            process.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(exit, Some(0), "exit {exit:?}:\n{}", process.log_tail());
    // The open watch ends with an error rather than hanging.
    let end = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .unwrap();
    assert!(matches!(end, None | Some(Err(_))), "{end:?}");
    assert!(process.log_tail().contains("mayastor-store stopped"));

    let process = common::StoreProcess::start(&data, &[]).await;
    let client = common::connect_retrying(&process.endpoint, Duration::from_secs(5)).await;
    assert_eq!(client.list(b"/term/").await.unwrap().len(), 2);
    assert!(client.lease_time_to_live(lease).await.unwrap().is_some());
}

#[tokio::test]
async fn a_busy_address_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mayastor-store"))
        .arg("--listen")
        .arg(taken.local_addr().unwrap().to_string())
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot listen on"), "{stderr}");
}
