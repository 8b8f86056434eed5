//! Reconcilers one by one, with real engines, etcd and the core agent.
//!
//! - Thin pool out of space: a thin pool fills up; the reconciler moves the
//!   pool's largest replica (a healthy one, of another volume) to a pool
//!   with room, then onlines the child that ran out of space, which catches
//!   up with a partial rebuild. No acknowledged write is lost.
//! - Own periods: with the garbage collector on a 1 s period and the pool
//!   reconciler on an hour, an orphan replica goes while a restarted
//!   engine's pool stays missing; after a takeover by a core agent with
//!   the periods the other way round, the pool comes back while a new
//!   orphan stays.

#![allow(clippy::unwrap_used)]

mod common;

use std::{sync::Arc, time::Duration};

use agent_core::registry::EngineClient;
use blockdev::{dynamic::SharedDevice, DmaBuf};
use common::{bin, core_args, eventually, nodes_online, wait_port, Cluster, Proc, Timers};
use io_engine_api::v1;
use nvmf_host::{ConnectOptions, Controller};
use openapi::{client::RestClient, models::*, CoreApi};
use uuid::Uuid;

const MIB: u64 = 1 << 20;
const TEST_HOST: &str = "test-host";
const CHUNK: u64 = 128 * 1024;

async fn pool(c: &Cluster, api: &RestClient, node: &str, id: &str, size: u64) {
    api.put_node_pool(
        node,
        id,
        CreatePoolBody {
            disks: vec![c.disk(id, size)],
            labels: None,
        },
    )
    .await
    .unwrap();
}

async fn thin_volume(api: &RestClient, size: u64) -> String {
    let id = Uuid::new_v4().to_string();
    api.put_volume(
        &id,
        CreateVolumeBody {
            thin: true,
            ..CreateVolumeBody::new(size, 2)
        },
    )
    .await
    .unwrap();
    id
}

async fn publish(api: &RestClient, id: &str, node: &str) -> (Controller, SharedDevice) {
    let v = api
        .put_volume_target(id, PublishVolumeBody::nvmf(Some(node), Some(TEST_HOST)))
        .await
        .unwrap();
    let uri = &v.state.target.as_ref().unwrap().device_uri;
    let mut opts = ConnectOptions::from_uri(uri).unwrap();
    opts.hostnqn = io_engine_api::names::host_nqn(TEST_HOST);
    opts.io_timeout_ms = 60_000;
    opts.reconnect_timeout_ms = 30_000;
    let ctrl = Controller::connect(opts).await.unwrap();
    let ns = ctrl.namespace(1).await.unwrap();
    (ctrl, Arc::new(ns))
}

/// The pattern of volume `seed` at byte `pos`: every 8-byte word names its
/// volume and offset, so a misplaced or stale block cannot pass.
fn chunk(seed: u64, off: u64) -> DmaBuf {
    let mut b = DmaBuf::new(CHUNK as usize);
    for (i, w) in b.chunks_mut(8).enumerate() {
        let pos = off + 8 * i as u64;
        let v = (seed << 56) ^ pos.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        w.copy_from_slice(&v.to_le_bytes());
    }
    b
}

async fn write_range(dev: &SharedDevice, seed: u64, len: u64) {
    for off in (0..len).step_by(CHUNK as usize) {
        dev.write_at(off, &chunk(seed, off))
            .await
            .unwrap_or_else(|e| panic!("write at {off}: {e}"));
    }
}

async fn verify_range(dev: &SharedDevice, seed: u64, len: u64) {
    let mut buf = DmaBuf::new(CHUNK as usize);
    // Twice: reads are spread over the children.
    for _ in 0..2 {
        for off in (0..len).step_by(CHUNK as usize) {
            dev.read_at(off, &mut buf).await.unwrap();
            assert!(
                buf[..] == chunk(seed, off)[..],
                "volume {seed}: data at {off} differs"
            );
        }
    }
}

fn pools_of(v: &Volume) -> Vec<String> {
    let mut p: Vec<String> = v
        .state
        .replica_topology
        .values()
        .filter_map(|r| r.pool.clone())
        .collect();
    p.sort();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_thin_pool_moves_its_largest_replica_and_the_child_that_ran_out_catches_up() {
    let c = Cluster::start(
        "127.0.11",
        3,
        Timers {
            // The out-of-space child must come back through the space
            // reconciler, not be replaced after the wait.
            faulted_child_wait: "300s",
            gc_period: "3s",
            core_extra: &["--space-reconcile-period", "1s"],
        },
    );
    let api = c.rest();
    nodes_online(&api, 3).await;
    // node-1's pool is small; only nodes 1 and 2 have pools at first, so
    // both volumes get a replica on it.
    pool(&c, &api, "node-1", "small", 100 * MIB).await;
    pool(&c, &api, "node-2", "big2", 400 * MIB).await;
    let big = thin_volume(&api, 64 * MIB).await;
    let small = thin_volume(&api, 64 * MIB).await;
    for id in [&big, &small] {
        let v = api.get_volume(id).await.unwrap();
        assert_eq!(pools_of(&v), ["big2", "small"]);
    }
    let (_c1, dev_big) = publish(&api, &big, "node-2").await;
    let (_c2, dev_small) = publish(&api, &small, "node-2").await;

    // 60 MiB into the first volume: its replica becomes the largest on the
    // small pool.
    write_range(&dev_big, 1, 60 * MIB).await;
    eventually("60 MiB allocated on the small pool", 10, || async {
        let p = api.get_pool("small").await.map_err(|e| e.to_string())?;
        match p.state {
            Some(s) if s.used >= 60 * MIB => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // Somewhere to move to.
    pool(&c, &api, "node-3", "big3", 400 * MIB).await;

    // 60 MiB into the second: the small pool runs out part way. The
    // writer sees no error (the other child takes the writes).
    write_range(&dev_small, 2, 60 * MIB).await;

    // The largest replica on the full pool (the first volume's, healthy)
    // moves to node-3...
    eventually(
        "the largest replica to move off the full pool",
        90,
        || async {
            let v = api.get_volume(&big).await.map_err(|e| e.to_string())?;
            if pools_of(&v) == ["big2", "big3"] && v.state.status == VolumeStatus::Online {
                Ok(())
            } else {
                Err(format!(
                    "{:?} {:?}",
                    v.state.status, v.state.replica_topology
                ))
            }
        },
    )
    .await;
    // ...and the child that ran out of space stays on the small pool and
    // catches up.
    eventually("the out-of-space child to catch up", 90, || async {
        let v = api.get_volume(&small).await.map_err(|e| e.to_string())?;
        let online = v
            .state
            .replica_topology
            .values()
            .all(|r| r.child_status == Some(ChildState::Online));
        if pools_of(&v) == ["big2", "small"] && online && v.state.status == VolumeStatus::Online {
            Ok(())
        } else {
            Err(format!(
                "{:?} {:?}",
                v.state.status, v.state.replica_topology
            ))
        }
    })
    .await;
    let on_small = api
        .get_volume(&small)
        .await
        .unwrap()
        .state
        .replica_topology
        .into_iter()
        .find(|(_, t)| t.pool.as_deref() == Some("small"))
        .unwrap()
        .0;
    let history = api.get_rebuild_history(&small).await.unwrap();
    assert!(
        history.records.iter().any(|r| r.is_partial
            && r.rebuild_job_state == "completed"
            && r.child_uri.contains(&on_small)),
        "the child on the small pool was rebuilt partially: {history:?}"
    );
    let moved = api.get_rebuild_history(&big).await.unwrap();
    assert!(
        moved
            .records
            .iter()
            .any(|r| !r.is_partial && r.rebuild_job_state == "completed"),
        "the moved replica was rebuilt in full: {moved:?}"
    );
    verify_range(&dev_big, 1, 60 * MIB).await;
    verify_range(&dev_small, 2, 60 * MIB).await;
    let log = c.core.logs();
    assert!(log.contains("thin pool out of space: moving its largest replica"));
    assert!(log.contains("replica moved off the full pool"));
    assert!(log.contains("pool has room again: child onlined for a rebuild"));
}

/// An orphan replica (named by its uuid, as the core names replicas, but in
/// no spec) on `node`'s pool `pool`.
async fn orphan(engine: &EngineClient, pool: &str) -> String {
    let uuid = Uuid::new_v4().to_string();
    engine
        .replica
        .clone()
        .create_replica(v1::CreateReplicaRequest {
            name: uuid.clone(),
            uuid: uuid.clone(),
            pool: pool.to_owned(),
            size: 8 * MIB,
            thin: true,
            share: v1::ShareProtocol::None as i32,
            allowed_hosts: vec![],
        })
        .await
        .unwrap();
    uuid
}

async fn has_replica(engine: &EngineClient, uuid: &str) -> bool {
    engine
        .replica
        .clone()
        .list_replicas(v1::ListReplicasRequest::default())
        .await
        .unwrap()
        .into_inner()
        .replicas
        .iter()
        .any(|r| r.uuid == uuid)
}

/// Whether engine `i` of the cluster has pool `id` (asked directly: a
/// restarted engine has no pool until one is imported).
async fn engine_has_pool(c: &Cluster, i: usize, id: &str) -> bool {
    let Ok(engine) = EngineClient::new(&c.engine_endpoint(i), Duration::from_secs(5)) else {
        return false;
    };
    engine
        .pool
        .clone()
        .list_pools(v1::ListPoolsRequest::default())
        .await
        .is_ok_and(|r| r.into_inner().pools.iter().any(|p| p.name == id))
}

fn restart_engine(c: &mut Cluster, i: usize) {
    c.engines[i].kill9();
    c.engines[i].start();
    wait_port(&c.engine_endpoint(i), "io-engine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_reconciler_runs_on_its_own_period() {
    const PREFIX: &str = "127.0.12";
    let mut c = Cluster::start(
        PREFIX,
        2,
        Timers {
            faulted_child_wait: "300s",
            gc_period: "1s",
            core_extra: &["--reconcile-period", "1h", "--gc-reconcile-period", "1s"],
        },
    );
    let api = c.rest();
    nodes_online(&api, 2).await;
    pool(&c, &api, "node-1", "pool-1", 64 * MIB).await;
    pool(&c, &api, "node-2", "pool-2", 64 * MIB).await;
    let e1 = EngineClient::new(&c.engine_endpoint(0), Duration::from_secs(10)).unwrap();

    // The garbage collector, on its 1 s period, removes an orphan.
    let first = orphan(&e1, "pool-1").await;
    eventually("the orphan to be collected", 30, || async {
        if has_replica(&e1, &first).await {
            Err("still there".into())
        } else {
            Ok(())
        }
    })
    .await;
    // The pool reconciler, on its hour, leaves a restarted engine's pool
    // missing.
    restart_engine(&mut c, 1);
    nodes_online(&api, 2).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        !engine_has_pool(&c, 1, "pool-2").await,
        "the pool reconciler ran although its period is an hour"
    );

    // Takeover by a core agent with the periods the other way round.
    c.core.kill9();
    let args: Vec<String> = core_args(
        PREFIX,
        &c.etcd_ep,
        &c.core_ep,
        &Timers {
            faulted_child_wait: "300s",
            gc_period: "2s",
            core_extra: &[],
        },
    )
    .into_iter()
    .map(|a| if a == "1s" { "1h".to_owned() } else { a })
    .chain(["--pool-reconcile-period".to_owned(), "1s".to_owned()])
    .collect();
    c.core = Proc::spawn("agent-core-2", bin("agent-core", "agent-core"), args);
    wait_port(&c.core_ep, "agent-core");
    eventually("the restarted engine's pool to be imported", 60, || async {
        if engine_has_pool(&c, 1, "pool-2").await {
            Ok(())
        } else {
            Err("pool-2 not online".into())
        }
    })
    .await;
    // Again, now that only the pool reconciler's own loop can do it.
    restart_engine(&mut c, 1);
    eventually("the pool to be imported again", 60, || async {
        if engine_has_pool(&c, 1, "pool-2").await {
            Ok(())
        } else {
            Err("pool-2 not online".into())
        }
    })
    .await;
    let second = orphan(&e1, "pool-1").await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        has_replica(&e1, &second).await,
        "the garbage collector ran although its period is an hour"
    );
}
