//! Nodes and what their engines report (observed state).
//!
//! An engine registers on start and then every heartbeat; a node whose
//! engine has not registered within the heartbeat timeout (10 s by default)
//! is Offline. The observed pools, replicas and nexuses of online nodes are
//! polled from their engines' gRPC APIs every poll period; between polls,
//! what the core changes is recorded from the engines' answers (a created
//! replica, a published nexus), so views and placement see it at once. A
//! poll whose snapshot may predate such a change gets it applied again on
//! top (tickets order polls and changes), so a slow poll never hides it.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use io_engine_api::v1::{
    nexus_rpc_client::NexusRpcClient, pool_rpc_client::PoolRpcClient,
    rebuild_rpc_client::RebuildRpcClient, replica_rpc_client::ReplicaRpcClient,
    stats_rpc_client::StatsRpcClient,
};
use parking_lot::RwLock;
use tonic::transport::{Channel, Endpoint};

pub use io_engine_api::v1::{Nexus as EngineNexus, Pool as EnginePool, Replica as EngineReplica};

/// gRPC clients of one engine.
#[derive(Clone)]
pub struct EngineClient {
    pub endpoint: String,
    pub pool: PoolRpcClient<Channel>,
    pub replica: ReplicaRpcClient<Channel>,
    pub nexus: NexusRpcClient<Channel>,
    pub rebuild: RebuildRpcClient<Channel>,
    pub stats: StatsRpcClient<Channel>,
}

impl EngineClient {
    pub fn new(endpoint: &str, timeout: Duration) -> Result<Self, String> {
        let url = if endpoint.contains("://") {
            endpoint.to_owned()
        } else {
            format!("http://{endpoint}")
        };
        let ch = Endpoint::from_shared(url)
            .map_err(|e| format!("invalid engine endpoint {endpoint:?}: {e}"))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(timeout)
            .connect_lazy();
        Ok(Self {
            endpoint: endpoint.to_owned(),
            pool: PoolRpcClient::new(ch.clone()),
            replica: ReplicaRpcClient::new(ch.clone()),
            nexus: NexusRpcClient::new(ch.clone()),
            rebuild: RebuildRpcClient::new(ch.clone()),
            stats: StatsRpcClient::new(ch),
        })
    }
}

/// One registered node (what its registration says; what its engine
/// reports is kept beside it, see [`Registry`]).
#[derive(Clone)]
pub struct NodeEntry {
    pub id: String,
    pub grpc_endpoint: String,
    pub instance_uuid: String,
    pub node_nqn: String,
    pub version: String,
    pub last_seen: Instant,
    pub online: bool,
    pub client: EngineClient,
    /// Instance whose pools/nexuses were last restored.
    pub restored_instance: Option<String>,
}

/// A change the core made on an engine and recorded from the engine's
/// answer, before any poll saw it.
#[derive(Clone)]
enum Change {
    /// A replica was created (`created`: its pool's commitment grows by its
    /// size) or changed (shared, unshared).
    Replica {
        replica: EngineReplica,
        created: bool,
    },
    /// A replica was destroyed.
    ReplicaGone(String),
    Nexus(EngineNexus),
    /// A nexus was destroyed.
    NexusGone(String),
}

/// What one node's engine reports, by name or uuid.
#[derive(Default)]
struct Observed {
    pools: Vec<EnginePool>,
    replicas: BTreeMap<String, EngineReplica>,
    nexuses: BTreeMap<String, EngineNexus>,
    /// Changes recorded since the oldest poll that may still be applied,
    /// with their tickets.
    recent: Vec<(u64, Change)>,
}

impl Observed {
    fn apply(&mut self, change: &Change, in_snapshot: bool) {
        match change {
            Change::Replica { replica, created } => {
                let known = self.replicas.contains_key(&replica.uuid);
                // A created replica's clusters count in its pool's `used`,
                // unless the pool was listed with the replica in it
                // already (polls list replicas before pools). The pool's
                // commitment is recounted from the replicas instead (see
                // `recount`), so it is never counted twice.
                if *created && !(in_snapshot && known) {
                    if let Some(p) = self.pools.iter_mut().find(|p| p.name == replica.pool_name) {
                        p.used = p.used.saturating_add(replica.allocated);
                    }
                }
                self.replicas.insert(replica.uuid.clone(), replica.clone());
            }
            Change::Nexus(n) => {
                self.nexuses.insert(n.uuid.clone(), n.clone());
            }
            // Recorded once its engine destroyed it: its room is free.
            Change::ReplicaGone(uuid) => {
                self.replicas.remove(uuid);
            }
            Change::NexusGone(uuid) => {
                self.nexuses.remove(uuid);
            }
        }
    }

    /// Each pool's commitment as its engine defines it (the sum of the
    /// sizes of its replicas), from the replicas known here: the poll's
    /// snapshot plus the changes recorded since. A pool listed after a
    /// replica was made holds it in its own figure while the replica list
    /// taken just before may not; counting from one list counts every
    /// replica exactly once, so placement never refuses room that is free.
    fn recount(&mut self) {
        for p in &mut self.pools {
            p.committed = self
                .replicas
                .values()
                .filter(|r| r.pool_name == p.name)
                .map(|r| r.size)
                .fold(0u64, u64::saturating_add);
        }
    }
}

struct Node {
    entry: NodeEntry,
    observed: Observed,
}

/// Every known node, and what its engine reports: from the last poll,
/// plus the changes the core made since (recorded from the engines'
/// answers, so a view right after an operation shows it without a poll).
#[derive(Default)]
pub struct Registry {
    nodes: RwLock<BTreeMap<String, Node>>,
    /// Orders polls and recorded changes (see [`Registry::ticket`]).
    tickets: AtomicU64,
}

impl Registry {
    pub fn new() -> Self {
        Self {
            nodes: RwLock::default(),
            tickets: AtomicU64::new(1),
        }
    }

    /// A fresh ticket. A poll takes one before it asks the engine; a
    /// change recorded with a later ticket may be missing from that poll's
    /// snapshot, so it is applied again on top of it.
    pub fn ticket(&self) -> u64 {
        self.tickets.fetch_add(1, Ordering::SeqCst)
    }

    /// Records a registration; returns true when the node (or a new
    /// instance of its engine) appeared.
    pub fn register(
        &self,
        id: &str,
        grpc_endpoint: &str,
        instance_uuid: &str,
        node_nqn: &str,
        version: &str,
        timeout: Duration,
    ) -> Result<bool, String> {
        let mut nodes = self.nodes.write();
        if let Some(Node { entry: n, .. }) = nodes.get_mut(id) {
            let new_instance = n.instance_uuid != instance_uuid || !n.online;
            if n.grpc_endpoint != grpc_endpoint {
                n.client = EngineClient::new(grpc_endpoint, timeout)?;
                n.grpc_endpoint = grpc_endpoint.to_owned();
            }
            n.instance_uuid = instance_uuid.to_owned();
            n.node_nqn = node_nqn.to_owned();
            n.version = version.to_owned();
            n.last_seen = Instant::now();
            n.online = true;
            return Ok(new_instance);
        }
        nodes.insert(
            id.to_owned(),
            Node {
                entry: NodeEntry {
                    id: id.to_owned(),
                    grpc_endpoint: grpc_endpoint.to_owned(),
                    instance_uuid: instance_uuid.to_owned(),
                    node_nqn: node_nqn.to_owned(),
                    version: version.to_owned(),
                    last_seen: Instant::now(),
                    online: true,
                    client: EngineClient::new(grpc_endpoint, timeout)?,
                    restored_instance: None,
                },
                observed: Observed::default(),
            },
        );
        Ok(true)
    }

    /// Marks a node offline at once (clean engine stop).
    pub fn deregister(&self, id: &str, instance_uuid: &str) {
        if let Some(n) = self.nodes.write().get_mut(id) {
            if n.entry.instance_uuid == instance_uuid {
                n.entry.online = false;
            }
        }
    }

    /// Marks nodes without a heartbeat for `timeout` offline; returns them.
    pub fn expire(&self, timeout: Duration) -> Vec<String> {
        let mut gone = Vec::new();
        for n in self.nodes.write().values_mut() {
            let n = &mut n.entry;
            if n.online && n.last_seen.elapsed() > timeout {
                n.online = false;
                gone.push(n.id.clone());
            }
        }
        gone
    }

    pub fn nodes(&self) -> Vec<NodeEntry> {
        self.nodes
            .read()
            .values()
            .map(|n| n.entry.clone())
            .collect()
    }

    pub fn node(&self, id: &str) -> Option<NodeEntry> {
        self.nodes.read().get(id).map(|n| n.entry.clone())
    }

    /// Whether the node is registered and online.
    pub fn is_online(&self, id: &str) -> bool {
        self.nodes.read().get(id).is_some_and(|n| n.entry.online)
    }

    pub fn online_client(&self, id: &str) -> Option<EngineClient> {
        self.nodes
            .read()
            .get(id)
            .filter(|n| n.entry.online)
            .map(|n| n.entry.client.clone())
    }

    /// Host NQNs of every registered node.
    pub fn node_nqns(&self) -> Vec<String> {
        self.nodes
            .read()
            .values()
            .map(|n| n.entry.node_nqn.clone())
            .collect()
    }

    /// Replaces what a node's engine reports with a poll's snapshot, taken
    /// by a poll that got ticket `ticket` before it asked. Changes recorded
    /// after that ticket are applied again on top (the snapshot may predate
    /// them); older ones are in the snapshot and are forgotten.
    pub fn set_observed(
        &self,
        id: &str,
        ticket: u64,
        pools: Vec<EnginePool>,
        replicas: Vec<EngineReplica>,
        nexuses: Vec<EngineNexus>,
    ) {
        if let Some(n) = self.nodes.write().get_mut(id) {
            let o = &mut n.observed;
            o.pools = pools;
            o.replicas = replicas.into_iter().map(|r| (r.uuid.clone(), r)).collect();
            o.nexuses = nexuses.into_iter().map(|x| (x.uuid.clone(), x)).collect();
            o.recent.retain(|(t, _)| *t > ticket);
            let recent = std::mem::take(&mut o.recent);
            for (_, change) in &recent {
                o.apply(change, true);
            }
            o.recent = recent;
            o.recount();
        }
    }

    fn record(&self, node: &str, change: Change) {
        let mut nodes = self.nodes.write();
        // Taken under the lock, so a poll's snapshot applied later with an
        // older ticket re-applies this change.
        let ticket = self.ticket();
        if let Some(n) = nodes.get_mut(node) {
            n.observed.apply(&change, false);
            n.observed.recount();
            n.observed.recent.push((ticket, change));
        }
    }

    /// Records a replica the core just created on `node` (from the
    /// engine's answer): its pool's commitment grows by its size.
    pub fn replica_created(&self, node: &str, replica: EngineReplica) {
        self.record(
            node,
            Change::Replica {
                replica,
                created: true,
            },
        );
    }

    /// Records a replica the core just changed on `node` (shared,
    /// unshared), from the engine's answer.
    pub fn replica_changed(&self, node: &str, replica: EngineReplica) {
        self.record(
            node,
            Change::Replica {
                replica,
                created: false,
            },
        );
    }

    /// Records a nexus the core just created or changed on `node`, from
    /// the engine's answer.
    pub fn nexus_changed(&self, node: &str, nexus: EngineNexus) {
        self.record(node, Change::Nexus(nexus));
    }

    /// Records a replica the core just destroyed on `node`.
    pub fn replica_destroyed(&self, node: &str, uuid: &str) {
        self.record(node, Change::ReplicaGone(uuid.to_owned()));
    }

    /// Records a nexus the core just destroyed on `node`.
    pub fn nexus_destroyed(&self, node: &str, uuid: &str) {
        self.record(node, Change::NexusGone(uuid.to_owned()));
    }

    pub fn set_restored(&self, id: &str, instance: &str) {
        if let Some(n) = self.nodes.write().get_mut(id) {
            n.entry.restored_instance = Some(instance.to_owned());
        }
    }

    /// Every observed replica with its node.
    pub fn replicas(&self) -> Vec<(String, EngineReplica)> {
        self.nodes
            .read()
            .values()
            .filter(|n| n.entry.online)
            .flat_map(|n| {
                n.observed
                    .replicas
                    .values()
                    .map(|r| (n.entry.id.clone(), r.clone()))
            })
            .collect()
    }

    /// One observed replica with its node (nothing else is copied).
    pub fn replica(&self, uuid: &str) -> Option<(String, EngineReplica)> {
        self.nodes
            .read()
            .values()
            .filter(|n| n.entry.online)
            .find_map(|n| {
                n.observed
                    .replicas
                    .get(uuid)
                    .map(|r| (n.entry.id.clone(), r.clone()))
            })
    }

    /// Bytes allocated to each replica in `uuids` that an online engine
    /// reports (`None` for the others), in the same order.
    pub fn replica_allocations<'a>(
        &self,
        uuids: impl IntoIterator<Item = &'a str>,
    ) -> Vec<Option<u64>> {
        let nodes = self.nodes.read();
        let online: Vec<&Observed> = nodes
            .values()
            .filter(|n| n.entry.online)
            .map(|n| &n.observed)
            .collect();
        uuids
            .into_iter()
            .map(|u| {
                online
                    .iter()
                    .find_map(|o| o.replicas.get(u).map(|r| r.allocated))
            })
            .collect()
    }

    /// One observed nexus with its node (nothing else is copied).
    pub fn nexus(&self, uuid: &str) -> Option<(String, EngineNexus)> {
        self.nodes
            .read()
            .values()
            .filter(|n| n.entry.online)
            .find_map(|n| {
                n.observed
                    .nexuses
                    .get(uuid)
                    .map(|x| (n.entry.id.clone(), x.clone()))
            })
    }

    /// Runs `f` on an observed nexus in place (nothing is copied).
    pub fn with_nexus<R>(&self, uuid: &str, f: impl FnOnce(&EngineNexus) -> R) -> Option<R> {
        let nodes = self.nodes.read();
        let n = nodes
            .values()
            .filter(|n| n.entry.online)
            .find_map(|n| n.observed.nexuses.get(uuid))?;
        Some(f(n))
    }

    /// Whether `node`'s engine reports the nexus.
    pub fn has_nexus(&self, node: &str, uuid: &str) -> bool {
        self.nodes
            .read()
            .get(node)
            .is_some_and(|n| n.observed.nexuses.contains_key(uuid))
    }

    /// Whether `node`'s engine reports the pool.
    pub fn has_pool(&self, node: &str, name: &str) -> bool {
        self.nodes
            .read()
            .get(node)
            .is_some_and(|n| n.observed.pools.iter().any(|p| p.name == name))
    }

    /// Every observed nexus with its node.
    pub fn nexuses(&self) -> Vec<(String, EngineNexus)> {
        self.nodes
            .read()
            .values()
            .filter(|n| n.entry.online)
            .flat_map(|n| {
                n.observed
                    .nexuses
                    .values()
                    .map(|x| (n.entry.id.clone(), x.clone()))
            })
            .collect()
    }

    /// Every observed pool with its node.
    pub fn pools(&self) -> Vec<(String, EnginePool)> {
        self.nodes
            .read()
            .values()
            .filter(|n| n.entry.online)
            .flat_map(|n| {
                n.observed
                    .pools
                    .iter()
                    .map(|p| (n.entry.id.clone(), p.clone()))
            })
            .collect()
    }
}

/// Polls one node's engine: replicas first, then pools (so that a replica
/// in the snapshot is also in its pool's figures), then nexuses.
pub async fn poll(
    client: &EngineClient,
) -> Result<(Vec<EnginePool>, Vec<EngineReplica>, Vec<EngineNexus>), tonic::Status> {
    let mut c = client.clone();
    let replicas = c
        .replica
        .list_replicas(io_engine_api::v1::ListReplicasRequest::default())
        .await?
        .into_inner()
        .replicas;
    let pools = c
        .pool
        .list_pools(io_engine_api::v1::ListPoolsRequest::default())
        .await?
        .into_inner()
        .pools;
    let nexuses = c
        .nexus
        .list_nexus(io_engine_api::v1::ListNexusRequest::default())
        .await?
        .into_inner()
        .nexus_list;
    Ok((pools, replicas, nexuses))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(uuid: &str, size: u64) -> EngineReplica {
        EngineReplica {
            uuid: uuid.into(),
            pool_name: "p".into(),
            size,
            ..Default::default()
        }
    }

    fn pool(committed: u64) -> EnginePool {
        EnginePool {
            name: "p".into(),
            capacity: 100,
            committed,
            ..Default::default()
        }
    }

    /// A replica made between the poll's replica list and its pool list is
    /// in the pool's figure but not in the list; recorded from the
    /// engine's answer, it is counted once, not twice.
    #[test]
    fn a_replica_made_during_a_poll_is_committed_once() {
        let mut o = Observed::default();
        let made = Change::Replica {
            replica: replica("b", 10),
            created: true,
        };
        o.apply(&made, false);
        o.recent.push((5, made));
        // The snapshot (ticket 4): replica list without "b", pool figure with it.
        o.pools = vec![pool(30)];
        o.replicas = [("a".to_owned(), replica("a", 20))].into();
        o.recent.retain(|(t, _)| *t > 4);
        let recent = std::mem::take(&mut o.recent);
        for (_, c) in &recent {
            o.apply(c, true);
        }
        o.recount();
        assert_eq!(o.pools[0].committed, 30);
        // Destroyed: its room is free at once.
        o.apply(&Change::ReplicaGone("b".into()), false);
        o.recount();
        assert_eq!(o.pools[0].committed, 20);
    }
}
