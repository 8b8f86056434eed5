//! Growing a published volume with real engines, etcd and the core agent:
//! the replicas grow, the target is made again on the same node at the new
//! size, the data written before is intact and the new range is usable.

#![allow(clippy::unwrap_used)]

mod common;

use std::{sync::Arc, time::Duration};

use blockdev::{dynamic::SharedDevice, DmaBuf};
use common::{eventually, pool_on_every_node, Cluster, Timers};
use nvmf_host::{ConnectOptions, Controller};
use openapi::{
    client::{RestClient, RestClientOptions},
    models::*,
    CoreApi,
};
use uuid::Uuid;

const MIB: u64 = 1 << 20;
const TEST_HOST: &str = "test-host";
const CHUNK: u64 = 256 * 1024;

async fn connect(uri: &str) -> (Controller, SharedDevice) {
    let mut opts = ConnectOptions::from_uri(uri).unwrap();
    opts.hostnqn = io_engine_api::names::host_nqn(TEST_HOST);
    opts.io_timeout_ms = 30_000;
    opts.reconnect_timeout_ms = 10_000;
    let ctrl = Controller::connect(opts).await.unwrap();
    let ns = ctrl.namespace(1).await.unwrap();
    (ctrl, Arc::new(ns))
}

/// Every 8-byte word names its generation and offset.
fn chunk(gen: u64, off: u64) -> DmaBuf {
    let mut b = DmaBuf::new(CHUNK as usize);
    for (i, w) in b.chunks_mut(8).enumerate() {
        let v = (gen << 56) ^ (off + 8 * i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        w.copy_from_slice(&v.to_le_bytes());
    }
    b
}

async fn write(dev: &SharedDevice, gen: u64, from: u64, to: u64) {
    for off in (from..to).step_by(CHUNK as usize) {
        dev.write_at(off, &chunk(gen, off)).await.unwrap();
    }
}

async fn verify(dev: &SharedDevice, gen: u64, from: u64, to: u64) {
    let mut buf = DmaBuf::new(CHUNK as usize);
    for _ in 0..2 {
        for off in (from..to).step_by(CHUNK as usize) {
            dev.read_at(off, &mut buf).await.unwrap();
            assert!(buf[..] == chunk(gen, off)[..], "data at {off} differs");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_volume_grows_and_keeps_its_data() {
    let c = Cluster::start("127.0.13", 2, Timers::default());
    let api = RestClient::new(
        &c.rest_url(),
        RestClientOptions {
            timeout: Duration::from_secs(60),
            ..Default::default()
        },
    )
    .unwrap();
    eventually("nodes online", 30, || async {
        let n = api.get_nodes().await.map_err(|e| e.to_string())?;
        if n.iter()
            .filter(|n| {
                n.state
                    .as_ref()
                    .is_some_and(|s| s.status == NodeStatus::Online)
            })
            .count()
            == 2
        {
            Ok(())
        } else {
            Err(format!("{n:?}"))
        }
    })
    .await;
    pool_on_every_node(&c, &api, "pool-", 128 * MIB).await;
    let id = Uuid::new_v4().to_string();
    api.put_volume(&id, CreateVolumeBody::new(32 * MIB, 2))
        .await
        .unwrap();
    let v = api
        .put_volume_target(
            &id,
            PublishVolumeBody::nvmf(Some("node-1"), Some(TEST_HOST)),
        )
        .await
        .unwrap();
    let uri = v.state.target.unwrap().device_uri;
    let (ctrl, dev) = connect(&uri).await;
    write(&dev, 1, 0, 32 * MIB).await;
    ctrl.disconnect().await.unwrap();

    // Shrinking stays refused; growing works while published.
    let e = api
        .put_volume_size(&id, ResizeVolumeBody { size: 16 * MIB })
        .await
        .unwrap_err();
    assert_eq!(e.kind, openapi::ErrorKind::InvalidArgument, "{e:?}");
    let v = api
        .put_volume_size(&id, ResizeVolumeBody { size: 48 * MIB })
        .await
        .unwrap();
    assert_eq!(v.spec.size, 48 * MIB);
    let t = v.spec.target.as_ref().unwrap();
    assert_eq!(t.node, "node-1", "the target stays on its node");
    let specs = api.get_specs().await.unwrap();
    assert!(specs
        .replicas
        .iter()
        .filter(|r| r.owners.volume.as_deref() == Some(id.as_str()))
        .all(|r| r.size == 48 * MIB));
    eventually("the new target online at the new size", 30, || async {
        let v = api.get_volume(&id).await.map_err(|e| e.to_string())?;
        match &v.state.target {
            Some(n)
                if n.size == 48 * MIB
                    && n.status == NexusStatus::Online
                    && n.children.len() == 2
                    && n.children.iter().all(|c| c.state == ChildState::Online) =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // The children were in sync: the new target needed no rebuild.
    let history = api.get_rebuild_history(&id).await.unwrap();
    assert!(history.records.is_empty(), "{history:?}");

    // The host sees the new capacity on the same NQN; old data intact, the
    // new range usable.
    let uri = api
        .get_volume(&id)
        .await
        .unwrap()
        .state
        .target
        .unwrap()
        .device_uri;
    let (ctrl, dev) = connect(&uri).await;
    assert_eq!(dev.info().size_bytes(), 48 * MIB);
    verify(&dev, 1, 0, 32 * MIB).await;
    write(&dev, 2, 32 * MIB, 48 * MIB).await;
    verify(&dev, 2, 32 * MIB, 48 * MIB).await;
    verify(&dev, 1, 0, 32 * MIB).await;
    ctrl.disconnect().await.unwrap();
}
