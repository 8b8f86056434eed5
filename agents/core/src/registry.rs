//! Nodes and what their engines report (observed state).
//!
//! An engine registers on start and then every heartbeat; a node whose
//! engine has not registered within the heartbeat timeout (10 s by default)
//! is Offline. The observed pools, replicas and nexuses of online nodes are
//! polled from their engines' gRPC APIs every poll period and refreshed
//! after every operation on that node.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use io_engine_api::v1::{
    nexus_rpc_client::NexusRpcClient, pool_rpc_client::PoolRpcClient,
    rebuild_rpc_client::RebuildRpcClient, replica_rpc_client::ReplicaRpcClient,
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
            rebuild: RebuildRpcClient::new(ch),
        })
    }
}

/// One registered node.
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
    /// Observed state, from the last successful poll.
    pub pools: Vec<EnginePool>,
    pub replicas: Vec<EngineReplica>,
    pub nexuses: Vec<EngineNexus>,
    /// Instance whose pools/nexuses were last restored.
    pub restored_instance: Option<String>,
}

/// Every known node.
#[derive(Default)]
pub struct Registry {
    nodes: RwLock<BTreeMap<String, NodeEntry>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
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
        if let Some(n) = nodes.get_mut(id) {
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
            NodeEntry {
                id: id.to_owned(),
                grpc_endpoint: grpc_endpoint.to_owned(),
                instance_uuid: instance_uuid.to_owned(),
                node_nqn: node_nqn.to_owned(),
                version: version.to_owned(),
                last_seen: Instant::now(),
                online: true,
                client: EngineClient::new(grpc_endpoint, timeout)?,
                pools: Vec::new(),
                replicas: Vec::new(),
                nexuses: Vec::new(),
                restored_instance: None,
            },
        );
        Ok(true)
    }

    /// Marks a node offline at once (clean engine stop).
    pub fn deregister(&self, id: &str, instance_uuid: &str) {
        if let Some(n) = self.nodes.write().get_mut(id) {
            if n.instance_uuid == instance_uuid {
                n.online = false;
            }
        }
    }

    /// Marks nodes without a heartbeat for `timeout` offline; returns them.
    pub fn expire(&self, timeout: Duration) -> Vec<String> {
        let mut gone = Vec::new();
        for n in self.nodes.write().values_mut() {
            if n.online && n.last_seen.elapsed() > timeout {
                n.online = false;
                gone.push(n.id.clone());
            }
        }
        gone
    }

    pub fn nodes(&self) -> Vec<NodeEntry> {
        self.nodes.read().values().cloned().collect()
    }

    pub fn node(&self, id: &str) -> Option<NodeEntry> {
        self.nodes.read().get(id).cloned()
    }

    pub fn online_client(&self, id: &str) -> Option<EngineClient> {
        self.nodes
            .read()
            .get(id)
            .filter(|n| n.online)
            .map(|n| n.client.clone())
    }

    pub fn set_observed(
        &self,
        id: &str,
        pools: Vec<EnginePool>,
        replicas: Vec<EngineReplica>,
        nexuses: Vec<EngineNexus>,
    ) {
        if let Some(n) = self.nodes.write().get_mut(id) {
            n.pools = pools;
            n.replicas = replicas;
            n.nexuses = nexuses;
        }
    }

    pub fn set_restored(&self, id: &str, instance: &str) {
        if let Some(n) = self.nodes.write().get_mut(id) {
            n.restored_instance = Some(instance.to_owned());
        }
    }

    /// Every observed replica with its node.
    pub fn replicas(&self) -> Vec<(String, EngineReplica)> {
        self.nodes
            .read()
            .values()
            .filter(|n| n.online)
            .flat_map(|n| n.replicas.iter().map(|r| (n.id.clone(), r.clone())))
            .collect()
    }

    /// One observed replica with its node (nothing else is copied).
    pub fn replica(&self, uuid: &str) -> Option<(String, EngineReplica)> {
        self.nodes
            .read()
            .values()
            .filter(|n| n.online)
            .find_map(|n| {
                n.replicas
                    .iter()
                    .find(|r| r.uuid == uuid)
                    .map(|r| (n.id.clone(), r.clone()))
            })
    }

    /// One observed nexus with its node (nothing else is copied).
    pub fn nexus(&self, uuid: &str) -> Option<(String, EngineNexus)> {
        self.nodes
            .read()
            .values()
            .filter(|n| n.online)
            .find_map(|n| {
                n.nexuses
                    .iter()
                    .find(|x| x.uuid == uuid)
                    .map(|x| (n.id.clone(), x.clone()))
            })
    }

    /// Bytes allocated to each observed replica, by uuid.
    pub fn replica_allocations(&self) -> std::collections::HashMap<String, u64> {
        self.nodes
            .read()
            .values()
            .filter(|n| n.online)
            .flat_map(|n| n.replicas.iter().map(|r| (r.uuid.clone(), r.allocated)))
            .collect()
    }

    /// Every observed nexus with its node.
    pub fn nexuses(&self) -> Vec<(String, EngineNexus)> {
        self.nodes
            .read()
            .values()
            .filter(|n| n.online)
            .flat_map(|n| n.nexuses.iter().map(|x| (n.id.clone(), x.clone())))
            .collect()
    }

    /// Every observed pool with its node.
    pub fn pools(&self) -> Vec<(String, EnginePool)> {
        self.nodes
            .read()
            .values()
            .filter(|n| n.online)
            .flat_map(|n| n.pools.iter().map(|p| (n.id.clone(), p.clone())))
            .collect()
    }
}

/// Polls one node's engine.
pub async fn poll(
    client: &EngineClient,
) -> Result<(Vec<EnginePool>, Vec<EngineReplica>, Vec<EngineNexus>), tonic::Status> {
    let mut c = client.clone();
    let pools = c
        .pool
        .list_pools(io_engine_api::v1::ListPoolsRequest::default())
        .await?
        .into_inner()
        .pools;
    let replicas = c
        .replica
        .list_replicas(io_engine_api::v1::ListReplicasRequest::default())
        .await?
        .into_inner()
        .replicas;
    let nexuses = c
        .nexus
        .list_nexus(io_engine_api::v1::ListNexusRequest::default())
        .await?
        .into_inner()
        .nexus_list;
    Ok((pools, replicas, nexuses))
}
