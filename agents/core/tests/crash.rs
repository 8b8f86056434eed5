//! Crash consistency of the core agent: random volume operations through
//! the REST API, each cut short by a SIGKILL of `agent-core` after a random
//! delay (0-300 ms, so kills land before, during and after the operation),
//! then a restart. Real etcd, three real engines with a pool each.
//!
//! After every restart, once the recovery had its chance:
//! - every volume is either fully created (spec Created, no operation in
//!   flight in its store record, its replica count of replicas online on
//!   the engines, its target present exactly when the spec says so) or
//!   absent;
//! - no spec in the store is unreadable or left Creating/Deleting.
//!
//! Every tenth iteration, and at the end, the engines are asked directly
//! (gRPC) and, after one GC period, must hold exactly what the specs say:
//! every replica and nexus belongs to a spec on the same node, and every
//! replica and nexus spec exists on its engine.
//!
//! `CRASH_SEED` replays a run; `CRASH_ITERATIONS` changes its length.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use agent_core::{
    registry::{poll, EngineClient},
    specs::VolumeRecord,
};
use common::{eventually, pool_on_every_node, Cluster, Timers};
use openapi::{
    client::{RestClient, RestClientOptions},
    models::*,
    CoreApi, ErrorKind, RestError,
};
use store::{
    keys::{Kind, StoreKeys},
    EtcdStore, Store,
};
use uuid::Uuid;

const MIB: u64 = 1 << 20;
const VOL: u64 = 8 * MIB;
const MAX_VOLUMES: usize = 6;
const NODES: usize = 3;
const TEST_HOST: &str = "test-host";

fn client(c: &Cluster, timeout: Duration) -> RestClient {
    RestClient::new(
        &c.rest_url(),
        RestClientOptions {
            timeout,
            ..Default::default()
        },
    )
    .unwrap()
}

/// xorshift64*: enough randomness for picking operations, replayable
/// from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

#[derive(Debug, Clone)]
enum Op {
    Create { id: String, replicas: u8 },
    Destroy { id: String },
    Scale { id: String, count: u8 },
    Publish { id: String, node: String },
    Unpublish { id: String },
    Resize { id: String, size: u64 },
}

impl Op {
    fn kind(&self) -> &'static str {
        match self {
            Op::Create { .. } => "create",
            Op::Destroy { .. } => "destroy",
            Op::Scale { .. } => "scale",
            Op::Publish { .. } => "publish",
            Op::Unpublish { .. } => "unpublish",
            Op::Resize { .. } => "resize",
        }
    }
}

/// A random operation that makes sense for the volumes there are.
fn pick_op(rng: &mut Rng, volumes: &[Volume], nodes: &[String]) -> Op {
    let published: Vec<&Volume> = volumes.iter().filter(|v| v.spec.target.is_some()).collect();
    let unpublished: Vec<&Volume> = volumes.iter().filter(|v| v.spec.target.is_none()).collect();
    let mut kinds = Vec::new();
    if volumes.len() < MAX_VOLUMES {
        kinds.extend(["create"; 3]);
    }
    if !volumes.is_empty() {
        kinds.extend(["destroy", "scale", "scale"]);
    }
    if !unpublished.is_empty() {
        kinds.extend(["publish", "publish", "resize"]);
    }
    if !published.is_empty() {
        kinds.extend(["unpublish", "unpublish"]);
    }
    match *rng.pick(&kinds) {
        "create" => Op::Create {
            id: Uuid::new_v4().to_string(),
            replicas: 1 + rng.below(3) as u8,
        },
        "destroy" => Op::Destroy {
            id: rng.pick(volumes).spec.uuid.clone(),
        },
        "scale" => {
            let v = rng.pick(volumes);
            let mut count = 1 + rng.below(3) as u8;
            if count == v.spec.num_replicas {
                count = 1 + count % 3;
            }
            Op::Scale {
                id: v.spec.uuid.clone(),
                count,
            }
        }
        "resize" => {
            let v = rng.pick(&unpublished);
            Op::Resize {
                id: v.spec.uuid.clone(),
                size: v.spec.size + (1 + rng.below(4)) * MIB,
            }
        }
        "publish" => Op::Publish {
            id: rng.pick(&unpublished).spec.uuid.clone(),
            node: rng.pick(nodes).clone(),
        },
        _ => Op::Unpublish {
            id: rng.pick(&published).spec.uuid.clone(),
        },
    }
}

async fn run_op(api: RestClient, op: Op) -> Result<(), RestError> {
    match op {
        Op::Create { id, replicas } => api
            .put_volume(&id, CreateVolumeBody::new(VOL, replicas))
            .await
            .map(drop),
        Op::Destroy { id } => api.del_volume(&id).await,
        Op::Scale { id, count } => api.put_volume_replica_count(&id, count).await.map(drop),
        Op::Publish { id, node } => api
            .put_volume_target(&id, PublishVolumeBody::nvmf(Some(&node), Some(TEST_HOST)))
            .await
            .map(drop),
        Op::Unpublish { id } => api.del_volume_target(&id, false).await.map(drop),
        Op::Resize { id, size } => api
            .put_volume_size(&id, ResizeVolumeBody { size })
            .await
            .map(drop),
    }
}

/// Where the kill landed, as seen from the operation's HTTP call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Landed {
    /// No connection: the operation never reached the agent.
    Before,
    /// The request was sent and the connection died before the answer:
    /// the agent had received it, and may or may not have started it
    /// (the agent's log tells which operations recovery had to settle).
    During,
    /// The agent answered (success or a refusal) before it died.
    After,
}

fn landed(result: &Result<(), RestError>) -> Landed {
    match result {
        Err(e) if e.kind == ErrorKind::Unavailable && e.message.starts_with("cannot connect") => {
            Landed::Before
        }
        Err(e) if e.kind == ErrorKind::Unavailable && e.message.contains("before an answer") => {
            Landed::During
        }
        Err(e) if e.kind == ErrorKind::Timeout => Landed::During,
        _ => Landed::After,
    }
}

/// Waits until the restarted agent answers REST calls (it binds its port
/// first and serves only once it holds the lease).
async fn wait_serving(c: &Cluster) -> Duration {
    let start = Instant::now();
    let probe = client(c, Duration::from_millis(500));
    loop {
        if probe.get_specs().await.is_ok() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "agent-core did not serve again within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn parses<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<(), serde_json::Error> {
    serde_json::from_slice::<T>(bytes).map(drop)
}

/// Every spec key in the store parses; volume records carry no operation.
async fn check_store(store: &EtcdStore, keys: &StoreKeys) -> Result<(), String> {
    let prefix = format!("{}/", keys.namespace_prefix());
    let kvs = store
        .list(prefix.as_bytes())
        .await
        .map_err(|e| format!("store list: {e}"))?;
    for kv in kvs {
        let key = String::from_utf8_lossy(&kv.key).into_owned();
        let Some((kind, id)) = keys.parse(&key) else {
            // Nexus info written by the engines.
            if key.ends_with("/info") {
                serde_json::from_slice::<serde_json::Value>(&kv.value)
                    .map_err(|e| format!("unreadable nexus info {key}: {e}"))?;
            }
            continue;
        };
        let bad = |e: serde_json::Error| format!("unreadable {kind} {id}: {e}");
        match kind {
            Kind::VolumeSpec => {
                let rec: VolumeRecord = serde_json::from_slice(&kv.value).map_err(bad)?;
                if rec.op.is_some() {
                    return Err(format!("volume {id} still has {:?} in flight", rec.op));
                }
                if rec.nexus.is_some() != rec.spec.target.is_some() {
                    return Err(format!(
                        "volume {id}: nexus {:?} but target {:?}",
                        rec.nexus, rec.spec.target
                    ));
                }
            }
            Kind::ReplicaSpec => parses::<ReplicaSpec>(&kv.value).map_err(bad)?,
            Kind::NexusSpec => parses::<NexusSpec>(&kv.value).map_err(bad)?,
            Kind::PoolSpec => parses::<PoolSpec>(&kv.value).map_err(bad)?,
            Kind::NodeSpec => parses::<NodeSpec>(&kv.value).map_err(bad)?,
            _ => {}
        }
    }
    Ok(())
}

/// The invariants that hold once the recovery ran (REST and store only).
async fn check_settled(
    api: &RestClient,
    store: &EtcdStore,
    keys: &StoreKeys,
) -> Result<(), String> {
    let specs = api.get_specs().await.map_err(|e| e.to_string())?;
    let volumes = api
        .get_volumes(0, None)
        .await
        .map_err(|e| e.to_string())?
        .entries;
    let spec_ids: BTreeSet<&str> = specs.volumes.iter().map(|v| v.uuid.as_str()).collect();
    let view_ids: BTreeSet<&str> = volumes.iter().map(|v| v.spec.uuid.as_str()).collect();
    if spec_ids != view_ids {
        return Err(format!(
            "volume specs {spec_ids:?} but volumes {view_ids:?}"
        ));
    }
    for v in &specs.volumes {
        if v.status != SpecStatus::Created {
            return Err(format!("volume {} is {:?}", v.uuid, v.status));
        }
    }
    for r in &specs.replicas {
        if r.status != SpecStatus::Created {
            return Err(format!("replica {} is {:?}", r.uuid, r.status));
        }
        match r.owners.volume.as_deref() {
            Some(v) if spec_ids.contains(v) => {}
            other => {
                return Err(format!(
                    "replica {} belongs to no volume ({other:?})",
                    r.uuid
                ))
            }
        }
    }
    for n in &specs.nexuses {
        if n.status != SpecStatus::Created {
            return Err(format!("nexus {} is {:?}", n.uuid, n.status));
        }
        let owner = n.owner.as_deref().unwrap_or_default();
        let target = specs
            .volumes
            .iter()
            .find(|v| v.uuid == owner)
            .and_then(|v| v.target.as_ref());
        if target.is_none_or(|t| t.node != n.node) {
            return Err(format!(
                "nexus {} on {} is not the target of its volume {owner:?}",
                n.uuid, n.node
            ));
        }
    }
    for p in &specs.pools {
        if p.status != SpecStatus::Created {
            return Err(format!("pool {} is {:?}", p.id, p.status));
        }
    }
    // The restarted agent knows the engines again (otherwise the next
    // operation would be refused for lack of nodes, not tested).
    let pools = api.get_pools().await.map_err(|e| e.to_string())?;
    let online = pools
        .iter()
        .filter(|p| {
            p.state
                .as_ref()
                .is_some_and(|s| s.status == PoolStatus::Online)
        })
        .count();
    if online != NODES {
        return Err(format!("{online} of {NODES} pools online"));
    }
    for v in &volumes {
        let id = &v.spec.uuid;
        let want = usize::from(v.spec.num_replicas);
        let have = specs
            .replicas
            .iter()
            .filter(|r| r.owners.volume.as_deref() == Some(id.as_str()))
            .count();
        if have != want {
            return Err(format!("volume {id}: {have} replica specs, want {want}"));
        }
        // A resize is all or nothing: every replica has the volume's size.
        if let Some(r) = specs
            .replicas
            .iter()
            .find(|r| r.owners.volume.as_deref() == Some(id.as_str()) && r.size != v.spec.size)
        {
            return Err(format!(
                "volume {id} is {} bytes but its replica {} is {}",
                v.spec.size, r.uuid, r.size
            ));
        }
        let online = v
            .state
            .replica_topology
            .values()
            .filter(|r| r.state == ReplicaStatus::Online)
            .count();
        if online != want {
            return Err(format!(
                "volume {id}: {online} of {want} replicas online: {:?}",
                v.state.replica_topology
            ));
        }
        let nexuses = specs
            .nexuses
            .iter()
            .filter(|n| n.owner.as_deref() == Some(id.as_str()))
            .count();
        match &v.spec.target {
            Some(t) => {
                if nexuses != 1 {
                    return Err(format!("published volume {id} has {nexuses} nexus specs"));
                }
                if v.state.target.as_ref().is_none_or(|n| n.node != t.node) {
                    return Err(format!(
                        "volume {id} is published on {} but its target is {:?}",
                        t.node, v.state.target
                    ));
                }
            }
            None if nexuses != 0 => {
                return Err(format!("unpublished volume {id} has {nexuses} nexus specs"))
            }
            None => {}
        }
    }
    check_store(store, keys).await
}

/// The engines hold exactly what the specs say (asked over gRPC).
async fn check_engines(api: &RestClient, engines: &[(String, EngineClient)]) -> Result<(), String> {
    let specs = api.get_specs().await.map_err(|e| e.to_string())?;
    let mut replicas: BTreeMap<String, String> = BTreeMap::new();
    let mut nexuses: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for (node, c) in engines {
        let (_, rs, ns) = poll(c)
            .await
            .map_err(|e| format!("engine {node}: {}", e.message()))?;
        for r in rs {
            replicas.insert(r.uuid, node.clone());
        }
        for n in ns {
            nexuses.insert(n.uuid, (node.clone(), n.children.len()));
        }
    }
    for (uuid, node) in &replicas {
        if !specs
            .replicas
            .iter()
            .any(|r| &r.uuid == uuid && &r.node == node)
        {
            return Err(format!("orphan replica {uuid} on {node}"));
        }
    }
    for r in &specs.replicas {
        if replicas.get(&r.uuid) != Some(&r.node) {
            return Err(format!(
                "replica spec {} is not on its engine {}",
                r.uuid, r.node
            ));
        }
    }
    for (uuid, (node, _)) in &nexuses {
        if !specs
            .nexuses
            .iter()
            .any(|n| &n.uuid == uuid && &n.node == node)
        {
            return Err(format!("orphan nexus {uuid} on {node}"));
        }
    }
    for n in &specs.nexuses {
        let Some((node, children)) = nexuses.get(&n.uuid) else {
            return Err(format!(
                "nexus spec {} is not on its engine {}",
                n.uuid, n.node
            ));
        };
        if node != &n.node {
            return Err(format!(
                "nexus {} is on {node}, its spec says {}",
                n.uuid, n.node
            ));
        }
        let want = specs
            .volumes
            .iter()
            .find(|v| Some(&v.uuid) == n.owner.as_ref())
            .map_or(0, |v| usize::from(v.num_replicas));
        if *children != want {
            return Err(format!(
                "nexus {} has {children} children, want {want}",
                n.uuid
            ));
        }
    }
    Ok(())
}

#[derive(Default)]
struct Stats {
    ops: BTreeMap<&'static str, usize>,
    landed: BTreeMap<Landed, usize>,
    refused: usize,
    mid_ops: BTreeMap<&'static str, usize>,
    restart_max: Duration,
    restart_sum: Duration,
    settle_max: Duration,
    gc_max: Duration,
    full_checks: usize,
    setup_publishes: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_agent_killed_mid_operation_leaves_whole_volumes_and_no_orphans() {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let iterations: usize = std::env::var("CRASH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    println!("crash: seed {seed} ({iterations} iterations)");
    let mut rng = Rng(seed);
    let started = Instant::now();

    let mut c = Cluster::start("127.0.7", NODES, Timers::default());
    let api = client(&c, Duration::from_secs(60));
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
        (on == NODES).then_some(()).ok_or(format!("{on} online"))
    })
    .await;
    pool_on_every_node(&c, &api, "p", 256 * MIB).await;
    let engines: Vec<(String, EngineClient)> = (0..NODES)
        .map(|i| {
            (
                c.nodes[i].clone(),
                EngineClient::new(&c.engine_endpoint(i), Duration::from_secs(10)).unwrap(),
            )
        })
        .collect();
    let store = EtcdStore::connect(&[c.etcd_ep.clone()], Duration::from_secs(5))
        .await
        .unwrap();
    let keys = StoreKeys::new("default", "mayastor");

    let mut stats = Stats::default();
    for i in 0..iterations {
        // A fresh client each time: no pooled connection to a dead agent.
        let api = client(&c, Duration::from_secs(60));
        let mut volumes = api.get_volumes(0, None).await.unwrap().entries;
        // Interrupted publishes roll back, so published volumes are rare:
        // now and then publish one without a kill, so that unpublish and
        // the other operations on published volumes get their turn.
        if !volumes.is_empty()
            && volumes.iter().all(|v| v.spec.target.is_none())
            && rng.below(2) == 0
        {
            let setup = Op::Publish {
                id: rng.pick(&volumes).spec.uuid.clone(),
                node: rng.pick(&c.nodes).clone(),
            };
            run_op(api.clone(), setup).await.unwrap();
            stats.setup_publishes += 1;
            volumes = api.get_volumes(0, None).await.unwrap().entries;
        }
        let op = pick_op(&mut rng, &volumes, &c.nodes);
        let delay = Duration::from_millis(rng.below(301));
        let task = tokio::spawn(run_op(api.clone(), op.clone()));
        tokio::time::sleep(delay).await;
        c.core.kill9();
        let result = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the operation's call returns once the agent is dead")
            .unwrap();
        let at = landed(&result);
        *stats.ops.entry(op.kind()).or_default() += 1;
        *stats.landed.entry(at).or_default() += 1;
        if at == Landed::During {
            *stats.mid_ops.entry(op.kind()).or_default() += 1;
        }
        if at == Landed::After && result.is_err() {
            stats.refused += 1;
        }
        println!(
            "crash: #{i} {op:?} killed after {} ms: {at:?} {}",
            delay.as_millis(),
            result.err().map(|e| e.to_string()).unwrap_or_default()
        );

        c.core.start();
        let restart = wait_serving(&c).await;
        stats.restart_max = stats.restart_max.max(restart);
        stats.restart_sum += restart;
        let settle = Instant::now();
        eventually(&format!("iteration {i}: recovery settled"), 30, || {
            check_settled(&api, &store, &keys)
        })
        .await;
        stats.settle_max = stats.settle_max.max(settle.elapsed());

        if (i + 1) % 10 == 0 || i + 1 == iterations {
            // Orphans live at most one GC period (counted from the restart).
            let gc = Instant::now();
            eventually(
                &format!("iteration {i}: engines match the specs"),
                30,
                || check_engines(&api, &engines),
            )
            .await;
            check_settled(&api, &store, &keys).await.unwrap();
            stats.gc_max = stats.gc_max.max(gc.elapsed());
            stats.full_checks += 1;
        }
    }

    // Without kills, everything goes away cleanly.
    let api = client(&c, Duration::from_secs(60));
    for v in api.get_volumes(0, None).await.unwrap().entries {
        api.del_volume(&v.spec.uuid).await.unwrap();
    }
    eventually("engines empty", 30, || async {
        check_engines(&api, &engines).await?;
        let s = api.get_specs().await.map_err(|e| e.to_string())?;
        if s.volumes.is_empty() && s.replicas.is_empty() && s.nexuses.is_empty() {
            Ok(())
        } else {
            Err(format!("specs left: {s:?}"))
        }
    })
    .await;

    // What the restarted agents had to do, from their log.
    let log = c.core.logs();
    let recovered: BTreeMap<&str, usize> = [
        ("create rolled back", "rolling back an interrupted create"),
        ("destroy finished", "finishing an interrupted destroy"),
        ("publish rolled back", "rolling back an interrupted publish"),
        ("unpublish finished", "finishing an interrupted unpublish"),
        ("resize finished", "finishing an interrupted resize"),
        (
            "creating replica removed",
            "replica creation was interrupted",
        ),
        ("replica added by the reconciler", "replica added volume="),
        (
            "replica added back to target",
            "replica added back to the target",
        ),
        ("orphan destroyed", "gc: destroying an orphan"),
    ]
    .into_iter()
    .map(|(what, needle)| (what, log.matches(needle).count()))
    .collect();
    let mid: usize = stats.mid_ops.values().sum();
    println!(
        "crash: {iterations} iterations in {:.0?} (seed {seed}); operations {:?}; kills landed {:?} \
         ({mid} mid-operation: {:?}; {} operations refused by the agent); restart to serving avg {:.0?} max {:.0?}; \
         recovery settled within {:.0?}; {} full checks, engines matched the specs within {:.0?}; \
         {} volumes published without a kill first; agent log: {recovered:?}",
        started.elapsed(),
        stats.ops,
        stats.landed,
        stats.mid_ops,
        stats.refused,
        stats.restart_sum / iterations.max(1) as u32,
        stats.restart_max,
        stats.settle_max,
        stats.full_checks,
        stats.gc_max,
        stats.setup_publishes,
    );
    assert!(mid > 0, "no kill landed mid-operation: {:?}", stats.landed);
}
