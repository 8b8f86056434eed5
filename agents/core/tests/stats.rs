//! I/O statistics through REST with real engines, etcd and the core agent:
//! after our initiator writes and reads a published 2-replica volume,
//! `GET /v0/volumes/{id}/stats` shows exactly the bytes and ops the host
//! did (the target's counters), each replica got every write and the reads
//! between them add up, the pools (one replica each) agree, the per-node
//! pool route answers the same, and unknown or unpublished volumes get
//! clear JSON errors (404 NotFound, 412 NotPublished).
//!
//! Addresses: 127.0.141.*.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use blockdev::{dynamic::SharedDevice, DmaBuf};
use common::{nodes_online, pool_on_every_node, Cluster, Timers};
use nvmf_host::{ConnectOptions, Controller};
use openapi::{models::*, CoreApi, ErrorKind};
use serde_json::Value;
use uuid::Uuid;

const MIB: u64 = 1 << 20;
const TEST_HOST: &str = "stats-host";
const BIG: u64 = 64 * 1024;
const SMALL: u64 = 4096;

fn pattern(off: u64, len: u64) -> DmaBuf {
    let mut b = DmaBuf::new(len as usize);
    for (i, w) in b.chunks_mut(8).enumerate() {
        let v = (off + 8 * i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        w.copy_from_slice(&v.to_le_bytes());
    }
    b
}

/// `[reads, bytes read, writes, bytes written]`.
fn counts(s: &IoStats) -> [u64; 4] {
    [
        s.num_read_ops,
        s.bytes_read,
        s.num_write_ops,
        s.bytes_written,
    ]
}

fn delta(after: &IoStats, before: &IoStats) -> [u64; 4] {
    let (a, b) = (counts(after), counts(before));
    [a[0] - b[0], a[1] - b[1], a[2] - b[2], a[3] - b[3]]
}

/// Status and JSON body of a raw `GET`.
async fn get_raw(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_and_pool_stats_count_what_the_host_did() {
    let c = Cluster::start("127.0.141", 2, Timers::default());
    let api = c.rest();
    nodes_online(&api, 2).await;
    pool_on_every_node(&c, &api, "pool-", 96 * MIB).await;
    let id = Uuid::new_v4().to_string();
    api.put_volume(&id, CreateVolumeBody::new(16 * MIB, 2))
        .await
        .unwrap();

    // Not published: no target, no statistics (412, JSON, stable kind).
    let (status, body) = get_raw(&format!("{}/v0/volumes/{id}/stats", c.rest_url())).await;
    assert_eq!(status, 412, "{body}");
    assert_eq!(body["kind"], "NotPublished", "{body}");
    // Unknown ids: 404 with a JSON error.
    let missing = Uuid::new_v4();
    let (status, body) = get_raw(&format!("{}/v0/volumes/{missing}/stats", c.rest_url())).await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (404, Some("NotFound")),
        "{body}"
    );
    let (status, body) = get_raw(&format!("{}/v0/pools/no-such-pool/stats", c.rest_url())).await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (404, Some("NotFound")),
        "{body}"
    );

    let v = api
        .put_volume_target(
            &id,
            PublishVolumeBody::nvmf(Some("node-1"), Some(TEST_HOST)),
        )
        .await
        .unwrap();
    let before = api.get_volume_stats(&id).await.unwrap();
    assert_eq!(before.volume_uuid, id);
    assert_eq!(before.node, "node-1");
    assert_eq!(counts(&before.stats), [0; 4], "a new target starts at zero");
    assert_eq!(before.replicas.len(), 2);
    let pools_before = [
        api.get_pool_stats(None, "pool-1").await.unwrap(),
        api.get_pool_stats(None, "pool-2").await.unwrap(),
    ];

    // The host: 16 writes of 64 KiB and 10 of 4 KiB, then every 64 KiB
    // block read back and checked.
    let mut opts = ConnectOptions::from_uri(&v.state.target.unwrap().device_uri).unwrap();
    opts.hostnqn = io_engine_api::names::host_nqn(TEST_HOST);
    let ctrl = Controller::connect(opts).await.unwrap();
    let dev: SharedDevice = Arc::new(ctrl.namespace(1).await.unwrap());
    let mut written = 0;
    for i in 0..16 {
        dev.write_at(i * BIG, &pattern(i * BIG, BIG)).await.unwrap();
        written += BIG;
    }
    for i in 0..10 {
        let off = 4 * MIB + i * SMALL;
        dev.write_at(off, &pattern(off, SMALL)).await.unwrap();
        written += SMALL;
    }
    let mut buf = DmaBuf::new(BIG as usize);
    for i in 0..16 {
        dev.read_at(i * BIG, &mut buf).await.unwrap();
        assert!(buf[..] == pattern(i * BIG, BIG)[..], "data at {}", i * BIG);
    }
    ctrl.disconnect().await.unwrap();
    assert_eq!(written, 16 * BIG + 10 * SMALL);

    let after = api.get_volume_stats(&id).await.unwrap();
    assert_eq!(
        counts(&after.stats),
        [16, 16 * BIG, 26, written],
        "{after:?}"
    );
    assert!(after.stats.write_latency_us > 0 && after.stats.read_latency_us > 0);
    assert!(after.stats.tick_us > before.stats.tick_us);
    assert_eq!(after.nexus_uuid, before.nexus_uuid);

    // Every write reached both replicas; the reads were shared out.
    let mut reads = [0u64; 2];
    for r in &after.replicas {
        let was = before.replicas.iter().find(|b| b.uuid == r.uuid).unwrap();
        let d = delta(r.stats.as_ref().unwrap(), was.stats.as_ref().unwrap());
        assert_eq!(d[2..], [26, written], "replica {} on {}", r.uuid, r.node);
        assert_eq!(d[1], d[0] * BIG, "replica {} read whole blocks", r.uuid);
        reads[0] += d[0];
        reads[1] += d[1];
        // One replica per pool: the pool counted the same I/O.
        let i = if r.pool == "pool-1" { 0 } else { 1 };
        let pool = api.get_pool_stats(None, &r.pool).await.unwrap();
        assert_eq!(pool.node, r.node);
        assert_eq!(
            delta(&pool.stats, &pools_before[i].stats),
            d,
            "pool {}",
            r.pool
        );
    }
    assert_eq!(reads, [16, 16 * BIG]);

    // The per-node route answers for the pool's own node only.
    let on_node = api.get_pool_stats(Some("node-2"), "pool-2").await.unwrap();
    assert_eq!(
        (on_node.id.as_str(), on_node.node.as_str()),
        ("pool-2", "node-2")
    );
    let e = api
        .get_pool_stats(Some("node-1"), "pool-2")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e:?}");

    // Unpublished again: 412 NotPublished.
    api.del_volume_target(&id, false).await.unwrap();
    let e = api.get_volume_stats(&id).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotPublished, "{e:?}");
}
