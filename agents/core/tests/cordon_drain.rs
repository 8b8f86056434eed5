//! Cordon and drain with real engines, etcd and the core agent.
//!
//! - A cordoned node takes no new replica and no new target; uncordoned it
//!   does again.
//! - Draining the node of a published volume's target moves the target to
//!   another node while a verifying writer keeps writing. The writer does
//!   what a node's HA agent does: when its path fails it asks the REST API
//!   for the volume's target and reconnects there, then retries the write.
//!   Every acknowledged block reads back from the new target.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use blockdev::{dynamic::SharedDevice, DmaBuf};
use common::{eventually, pool_on_every_node, Cluster, Timers};
use nvmf_host::{ConnectOptions, Controller};
use openapi::{
    client::{RestClient, RestClientOptions},
    models::*,
    CoreApi,
};
use parking_lot::Mutex;
use uuid::Uuid;

const MIB: u64 = 1 << 20;
const VOL: u64 = 32 * MIB;
const BLOCKS: u64 = 2048;

fn rest(c: &Cluster) -> RestClient {
    RestClient::new(
        &c.rest_url(),
        RestClientOptions {
            timeout: Duration::from_secs(60),
            ..Default::default()
        },
    )
    .unwrap()
}

async fn setup(prefix: &str) -> (Cluster, RestClient) {
    let c = Cluster::start(prefix, 3, Timers::default());
    let api = rest(&c);
    eventually("3 nodes online", 30, || async {
        let n = api.get_nodes().await.map_err(|e| e.to_string())?;
        let on = n
            .iter()
            .filter(|n| {
                n.state
                    .as_ref()
                    .is_some_and(|s| s.status == NodeStatus::Online)
            })
            .count();
        (on == 3).then_some(()).ok_or(format!("{on} online"))
    })
    .await;
    pool_on_every_node(&c, &api, "p", 256 * MIB).await;
    (c, api)
}

fn body(replicas: u8) -> CreateVolumeBody {
    CreateVolumeBody::new(VOL, replicas)
}

fn nodes_of(v: &Volume) -> Vec<String> {
    v.state
        .replica_topology
        .values()
        .filter_map(|r| r.node.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cordoned_nodes_take_no_new_replicas_or_targets() {
    let (_c, api) = setup("127.0.9").await;
    let n = api.put_node_cordon("node-3", "maintenance").await.unwrap();
    assert_eq!(
        n.spec.unwrap().cordon_drain_state.cordon_labels,
        vec!["maintenance".to_string()]
    );
    for _ in 0..3 {
        let id = Uuid::new_v4().to_string();
        let v = api.put_volume(&id, body(2)).await.unwrap();
        assert!(!nodes_of(&v).contains(&"node-3".to_string()), "{v:?}");
        let v = api
            .put_volume_target(&id, PublishVolumeBody::nvmf(None, None))
            .await
            .unwrap();
        assert_ne!(v.spec.target.unwrap().node, "node-3");
    }
    // Three replicas cannot fit on two usable nodes: a clear 4xx.
    let err = api
        .put_volume(&Uuid::new_v4().to_string(), body(3))
        .await
        .unwrap_err();
    assert_eq!(err.kind, openapi::ErrorKind::InvalidArgument, "{err:?}");
    // An explicit target on the cordoned node is refused.
    let id = Uuid::new_v4().to_string();
    api.put_volume(&id, body(1)).await.unwrap();
    let err = api
        .put_volume_target(&id, PublishVolumeBody::nvmf(Some("node-3"), None))
        .await
        .unwrap_err();
    assert!(err.message.contains("cordon"), "{err:?}");
    // Uncordoned, it is used again.
    api.del_node_cordon("node-3", "maintenance").await.unwrap();
    let id = Uuid::new_v4().to_string();
    let v = api.put_volume(&id, body(3)).await.unwrap();
    assert_eq!(nodes_of(&v).len(), 3);
    assert!(api.del_node_cordon("node-3", "maintenance").await.is_err());
}

/// A path to the volume that follows its target.
struct FailoverPath {
    api: RestClient,
    volume: String,
    current: Mutex<(String, Option<(Controller, SharedDevice)>)>,
    switches: AtomicU64,
}

impl FailoverPath {
    async fn connect(uri: &str) -> Result<(Controller, SharedDevice), String> {
        let mut opts = ConnectOptions::from_uri(uri).map_err(|e| e.to_string())?;
        opts.hostnqn = io_engine_api::names::host_nqn("test-host");
        opts.io_timeout_ms = 5_000;
        opts.reconnect_timeout_ms = 1_500;
        let ctrl = Controller::connect(opts).await.map_err(|e| e.to_string())?;
        let ns = ctrl.namespace(1).await.map_err(|e| e.to_string())?;
        Ok((ctrl, Arc::new(ns)))
    }

    fn device(&self) -> Option<SharedDevice> {
        self.current.lock().1.as_ref().map(|(_, d)| d.clone())
    }

    /// After a failure: find the volume's target and connect there.
    async fn failover(&self, failed_uri: &str) {
        for _ in 0..150 {
            if self.current.lock().0 != failed_uri {
                return; // another task switched already
            }
            if let Ok(v) = self.api.get_volume(&self.volume).await {
                if let Some(t) = v.state.target {
                    if !t.device_uri.is_empty() && t.device_uri != failed_uri {
                        if let Ok(path) = Self::connect(&t.device_uri).await {
                            let mut cur = self.current.lock();
                            if cur.0 == failed_uri {
                                *cur = (t.device_uri.clone(), Some(path));
                                self.switches.fetch_add(1, Ordering::SeqCst);
                            }
                            return;
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the volume's target did not come back");
    }

    async fn write(&self, off: u64, buf: &[u8]) {
        loop {
            let (uri, dev) = {
                let cur = self.current.lock();
                (cur.0.clone(), cur.1.as_ref().map(|(_, d)| d.clone()))
            };
            if let Some(dev) = dev {
                if dev.write_at(off, buf).await.is_ok() {
                    return;
                }
            }
            self.failover(&uri).await;
        }
    }
}

/// Block `block` at generation `gen`: the workspace's checksummed pattern.
fn pattern(block: u64, gen: u64) -> DmaBuf {
    let mut b = DmaBuf::new(4096);
    mayastor_common::pattern::fill(block, gen, &mut b[..]);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_moves_the_target_under_a_verifying_writer() {
    let (_c, api) = setup("127.0.10").await;
    let id = Uuid::new_v4().to_string();
    api.put_volume(&id, body(2)).await.unwrap();
    let v = api
        .put_volume_target(
            &id,
            PublishVolumeBody::nvmf(Some("node-1"), Some("test-host")),
        )
        .await
        .unwrap();
    let uri = v.state.target.as_ref().unwrap().device_uri.clone();
    let path = Arc::new(FailoverPath {
        api: api.clone(),
        volume: id.clone(),
        current: Mutex::new((
            uri.clone(),
            Some(FailoverPath::connect(&uri).await.unwrap()),
        )),
        switches: AtomicU64::new(0),
    });
    let gens: Arc<Vec<AtomicU64>> = Arc::new((0..BLOCKS).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let depth = 8u64;
    let mut tasks = Vec::new();
    for t in 0..depth {
        let (path, gens, stop) = (path.clone(), gens.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            let mut acked = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let block = ((i * 7919 + t * 31) % (BLOCKS / depth)) * depth + t;
                let gen = gens[block as usize].load(Ordering::Relaxed) + 1;
                path.write(block * 4096, &pattern(block, gen)).await;
                gens[block as usize].store(gen, Ordering::Relaxed);
                acked += 1;
                i += 1;
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let n = api.put_node_drain("node-1", "upgrade").await.unwrap();
    assert_eq!(
        n.spec.unwrap().cordon_drain_state.drain_status,
        Some(DrainStatus::Draining)
    );
    eventually("node-1 drained", 60, || async {
        let n = api.get_node("node-1").await.map_err(|e| e.to_string())?;
        match n.spec.map(|s| s.cordon_drain_state.drain_status) {
            Some(Some(DrainStatus::Drained)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let v = api.get_volume(&id).await.unwrap();
    let target = v.spec.target.clone().unwrap();
    assert_ne!(target.node, "node-1", "{v:?}");
    // The writer follows and keeps going on the new target.
    eventually("the writer on the new target", 60, || async {
        (path.switches.load(Ordering::SeqCst) >= 1)
            .then_some(())
            .ok_or("no switch yet".to_string())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let mut acked = 0;
    for t in tasks {
        acked += t.await.unwrap();
    }
    assert!(acked > 100, "only {acked} writes");
    // Every acknowledged block reads back from the new target.
    let dev = path.device().unwrap();
    let mut buf = DmaBuf::new(4096);
    let mut bad = HashMap::new();
    for block in 0..BLOCKS {
        let gen = gens[block as usize].load(Ordering::Relaxed);
        dev.read_at(block * 4096, &mut buf).await.unwrap();
        let want = if gen == 0 {
            DmaBuf::new(4096)
        } else {
            pattern(block, gen)
        };
        let want_zero = gen == 0 && buf.iter().all(|b| *b == 0);
        if !want_zero && buf[..] != want[..] {
            bad.insert(block, gen);
        }
    }
    assert!(
        bad.is_empty(),
        "{} blocks wrong: {:?}",
        bad.len(),
        bad.iter().take(5).collect::<Vec<_>>()
    );
    println!(
        "drain: {acked} writes acknowledged, {} path switch(es), target now on {}",
        path.switches.load(Ordering::SeqCst),
        target.node
    );
    // The drained node takes no new target.
    let id2 = Uuid::new_v4().to_string();
    api.put_volume(&id2, body(1)).await.unwrap();
    let v2 = api
        .put_volume_target(&id2, PublishVolumeBody::nvmf(None, None))
        .await
        .unwrap();
    assert_ne!(v2.spec.target.unwrap().node, "node-1");
}
