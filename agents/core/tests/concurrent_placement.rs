//! Capacity under concurrent placement, with real engines, real etcd and
//! the real core agent: many clients creating thick volumes at once on
//! pools too small for all of them never take a pool past its capacity.
//! Placements are decided one at a time, each seeing the room the earlier
//! ones reserved or took (replica specs not yet polled, replicas recorded
//! from the engines' answers), so every volume that is refused is refused
//! by placement (507, no room), never by an engine that ran out, and the
//! pools end exactly full.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{eventually, nodes_online, pool_on_every_node, Cluster, Timers};
use openapi::{models::*, CoreApi, ErrorKind};
use uuid::Uuid;

const MIB: u64 = 1 << 20;
/// Each volume: one thick replica of this size.
const VOL: u64 = 8 * MIB;
/// Volumes asked for at once: about half again what the pools hold.
const CLIENTS: usize = 48;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_never_overcommit_a_pool() {
    let c = Cluster::start("127.0.82", 2, Timers::default());
    let api = c.rest();
    nodes_online(&api, 2).await;
    pool_on_every_node(&c, &api, "p", 128 * MIB).await;
    // How many volumes each pool holds, from its own figures.
    let mut fits = 0;
    for p in api.get_pools().await.unwrap() {
        let s = p.state.unwrap();
        assert_eq!(s.committed, 0, "pool {} starts empty", s.id);
        fits += s.capacity / VOL;
    }
    assert!(
        (fits as usize) < CLIENTS,
        "{fits} volumes fit: the test must ask for more"
    );

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let api = api.clone();
        tasks.spawn(async move {
            let id = Uuid::new_v4().to_string();
            let r = api.put_volume(&id, CreateVolumeBody::new(VOL, 1)).await;
            (id, r)
        });
    }
    let mut made = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (id, r) = done.unwrap();
        match r {
            Ok(v) => made.push((id, v)),
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::ResourceExhausted, "{e}");
                assert!(
                    !e.message.contains("engine on node"),
                    "refused by an engine, not by placement: {e}"
                );
            }
        }
    }
    // Never more than fits (the safety property), and no room refused
    // while it is free: the pools end exactly full.
    let made_n = made.len() as u64;
    assert_eq!(made_n, fits, "{made_n} volumes made where {fits} fit");

    // Every volume made is whole, and each pool's own figures (polled
    // from its engine) add up to the volumes placed on it.
    let mut per_pool: BTreeMap<String, u64> = BTreeMap::new();
    for (id, v) in &made {
        assert_eq!(v.state.replica_topology.len(), 1, "volume {id}");
        for r in v.state.replica_topology.values() {
            assert_eq!(r.state, ReplicaStatus::Online, "volume {id}");
            *per_pool.entry(r.pool.clone().unwrap()).or_default() += VOL;
        }
    }
    eventually("pools polled", 20, || async {
        for p in api.get_pools().await.map_err(|e| e.to_string())? {
            let s = p.state.ok_or_else(|| "no pool state".to_owned())?;
            let placed = per_pool.get(&s.id).copied().unwrap_or(0);
            if s.committed != placed {
                return Err(format!(
                    "pool {}: {} bytes committed, {placed} placed",
                    s.id, s.committed
                ));
            }
            assert!(s.committed <= s.capacity, "pool {} overcommitted", s.id);
        }
        Ok(())
    })
    .await;
}
