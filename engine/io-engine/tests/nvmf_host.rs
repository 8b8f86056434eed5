//! Our NVMe/TCP initiator against a replica shared by the real `io-engine`:
//! checksummed data over the wire, the allow-list enforced at Connect,
//! unshare ending a connected host's I/O with errors (not a hang), and
//! acknowledged writes surviving a SIGKILL of the engine and its restart;
//! the same data through an engine that polls (`--poll`).

mod common;

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use blockdev::{BlockDevice, DmaBuf};
use common::{free_port, ok, patterns::verify_blocks, Engine};
use io_engine::stress::fill_pattern;
use nvmf_host::{ConnectOptions, Controller, HostError, Namespace};
use rand::{rngs::StdRng, Rng, SeedableRng};
use uuid::Uuid;

const HOST: &str = "nqn.2019-05.io.openebs:node-name:app-node";

fn opts(uri: &str, hostnqn: &str) -> ConnectOptions {
    let mut o = ConnectOptions::from_uri(uri).expect("replica uri");
    o.hostnqn = hostnqn.to_string();
    o.io_queues = 2;
    o.queue_depth = 32;
    o.reconnect_timeout_ms = 3000;
    o.io_timeout_ms = 5000;
    o
}

async fn connect(uri: &str) -> (Controller, Arc<Namespace>) {
    let c = Controller::connect(opts(uri, HOST))
        .await
        .expect("connect as an allowed host");
    let ns = Arc::new(c.namespace(1).await.expect("namespace 1"));
    (c, ns)
}

/// 16 concurrent writers of checksummed extents at random offsets.
async fn write_random(ns: &Arc<Namespace>, id: &Uuid, seed: u64) -> HashMap<u64, u64> {
    let bs = u64::from(ns.info().block_size);
    let blocks = ns.info().num_blocks;
    let mut tasks = Vec::new();
    for w in 0..16u64 {
        let ns = ns.clone();
        let id = *id;
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed * 100 + w);
            let mut done = Vec::new();
            for _ in 0..24 {
                // Each writer owns its own stripe so the final content is known.
                let len = rng.random_range(1..=40u64);
                let stripe = blocks / 16;
                let off = (w * stripe + rng.random_range(0..stripe - len)) * bs;
                let s: u64 = rng.random();
                let mut buf = DmaBuf::new((len * bs) as usize);
                fill_pattern(&mut buf, bs as usize, &id, off, s);
                ns.write_at(off, &buf).await.expect("write over nvme/tcp");
                done.push((off, len, s));
            }
            done
        }));
    }
    let mut written = HashMap::new();
    for t in tasks {
        for (off, len, s) in t.await.expect("writer") {
            for b in 0..len {
                written.insert(off + b * bs, s);
            }
        }
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polling_engine_serves_checksummed_io() {
    // `--poll`: the engine's runtime threads never sleep; the I/O it
    // serves is the same.
    let ip = "127.0.1.71";
    let nvmf: SocketAddr = format!("{ip}:{}", free_port(ip)).parse().expect("addr");
    let engine = Engine::start(
        ip,
        0,
        "node-poll",
        &["--nvmf-endpoint", &nvmf.to_string(), "--poll"],
    );
    ok(engine.client(&["pool", "create", "ppool", "malloc:///ppool?size_mb=64"]));
    ok(engine.client(&["replica", "create", "ppool", "vol", "--size", "32"]));
    let uri = ok(engine.client(&["replica", "share", "ppool", "vol", "--allowed-host", HOST]));
    let id = Uuid::new_v4();
    let (ctrl, ns) = connect(uri.trim()).await;
    let written = write_random(&ns, &id, 7).await;
    verify_blocks(&*ns, &id, &written).await;
    ctrl.disconnect().await.expect("disconnect");
    assert!(engine.logs().contains("polling"), "{}", engine.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_over_nvme_tcp_keeps_data_refuses_strangers_and_unshares_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("pool.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(128 << 20))
        .expect("disk");
    let ip = "127.0.1.70";
    let nvmf: SocketAddr = format!("{ip}:{}", free_port(ip)).parse().expect("addr");
    let mut engine = Engine::start(ip, 0, "node-nvmf", &["--nvmf-endpoint", &nvmf.to_string()]);
    ok(engine.client(&[
        "pool",
        "create",
        "tpool",
        &format!("aio://{}", disk.display()),
    ]));
    ok(engine.client(&[
        "replica", "create", "tpool", "vol", "--size", "32", "--thin",
    ]));
    let uri = ok(engine.client(&["replica", "share", "tpool", "vol", "--allowed-host", HOST]));
    let uri = uri.trim().to_string();
    let id = Uuid::new_v4();

    // Data over the wire.
    let (ctrl, ns) = connect(&uri).await;
    assert_eq!(ns.info().size_bytes(), 32 << 20);
    verify_blocks(&*ns, &id, &HashMap::new()).await;
    let written = write_random(&ns, &id, 1).await;
    ns.flush().await.expect("flush");
    verify_blocks(&*ns, &id, &written).await;
    let zero_off = 4096 * 3;
    ns.write_zeroes(zero_off, 8192).await.expect("write zeroes");
    let mut z = DmaBuf::new(8192);
    ns.read_at(zero_off, &mut z).await.expect("read zeroes");
    assert!(z.iter().all(|b| *b == 0));
    let mut written = written;
    for b in 0..16 {
        written.remove(&(zero_off + b * 512));
    }

    // A host outside the allow-list is refused at Connect.
    let err = Controller::connect(opts(&uri, "nqn.2019-05.io.openebs:node-name:stranger"))
        .await
        .expect_err("a stranger must be refused");
    let text = err.to_string();
    assert!(matches!(err, HostError::Status { .. }), "{text}");
    assert!(
        text.contains("sct 0x1 sc 0x84"),
        "expected Connect Invalid Host: {text}"
    );

    // Acknowledged writes survive SIGKILL of the engine; the share comes
    // back when the pool is imported again.
    ctrl.disconnect().await.expect("disconnect");
    engine.kill9();
    engine.restart();
    ok(engine.client(&[
        "pool",
        "create",
        "tpool",
        &format!("aio://{}", disk.display()),
    ]));
    let (ctrl, ns) = connect(&uri).await;
    verify_blocks(&*ns, &id, &written).await;

    // Unshare while a host is connected: its I/O ends with errors.
    let reader = {
        let ns = ns.clone();
        tokio::spawn(async move {
            let mut buf = DmaBuf::new(4096);
            loop {
                if let Err(e) = ns.read_at(0, &mut buf).await {
                    return e.to_string();
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    ok(engine.client(&["replica", "unshare", "tpool", "vol"]));
    let err = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("I/O after unshare must fail, not hang")
        .expect("reader task");
    assert!(!err.is_empty());
    drop(ctrl);
    let list = ok(engine.client(&["-o", "wide", "replica", "list"]));
    assert!(list.contains("bdev:///"), "{list}");
    let check = ok(engine.client(&["pool", "check", "tpool"]));
    assert!(check.contains("is clean"), "{check}");
}
