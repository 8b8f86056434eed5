//! The operations behind the REST API, and the views it returns.
//!
//! Every operation that changes something is serialised by one async lock
//! (shared with the reconcilers), records its intent in the store before
//! its first side effect, and on failure undoes what it did before it
//! returns the error. What a crash interrupts is finished or rolled back by
//! the reconcilers from the recorded intent.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use io_engine_api::v1;
use openapi::{models::*, ErrorKind, RestError};
use tracing::{info, warn};
use uuid::Uuid;

use crate::{
    config::Args,
    registry::{EngineClient, EngineNexus, Registry},
    scheduler::{self, ChildHealth, Cluster},
    specs::{SpecStore, VolumeOp, VolumeRecord},
    CoreError,
};

/// NQN prefix of volumes and replicas.
pub const NQN_PREFIX: &str = "nqn.2019-05.io.openebs:";

/// Host NQN of a node's engine (and of a node that mounts volumes).
pub fn node_nqn(node: &str) -> String {
    format!("{NQN_PREFIX}node-name:{node}")
}

/// Controller-ID window of target generation `gen` (16 IDs, within
/// 1..=0xffef): each new target of a volume gets a fresh one.
pub fn cntlid_window(gen: u64) -> (u32, u32) {
    let slots = 0xffef / 16;
    let slot = (gen % slots) as u32;
    (1 + slot * 16, 16 + slot * 16)
}

pub type CoreResult<T> = Result<T, CoreError>;

/// Volume sizes are whole blocks of this many bytes (the smallest block
/// size of a nexus): a volume of any other size could never be published.
pub const VOLUME_SIZE_ALIGN_BYTES: u64 = 512;

fn check_volume_size(size: u64) -> CoreResult<()> {
    if size == 0 {
        return Err(rest(ErrorKind::InvalidArgument, "volume size must be > 0"));
    }
    if !size.is_multiple_of(VOLUME_SIZE_ALIGN_BYTES) {
        return Err(rest(
            ErrorKind::InvalidArgument,
            format!("volume size {size} bytes is not a multiple of {VOLUME_SIZE_ALIGN_BYTES}"),
        ));
    }
    Ok(())
}

/// Most labels a node, a pool or a volume holds; also the most cordon
/// labels and drain labels of a node, and labels in each side of a
/// volume's topology.
pub const MAX_LABELS: usize = 64;

fn check_label_count(what: &str, count: usize) -> CoreResult<()> {
    if count > MAX_LABELS {
        return Err(rest(
            ErrorKind::InvalidArgument,
            format!("{what} would have {count} labels; at most {MAX_LABELS} are allowed"),
        ));
    }
    Ok(())
}

/// The core agent.
pub struct Core {
    pub args: Args,
    pub registry: Registry,
    pub specs: SpecStore,
    /// Serialises changes (API operations and reconcile steps).
    pub op_lock: tokio::sync::Mutex<()>,
    /// When this instance took over (engines re-register within one
    /// heartbeat timeout of it).
    pub started: std::time::Instant,
}

fn rest(kind: ErrorKind, message: impl Into<String>) -> CoreError {
    CoreError::Rest(RestError::new(kind, message))
}

fn engine_err(node: &str) -> impl Fn(tonic::Status) -> CoreError + '_ {
    move |s| CoreError::engine(node, s)
}

impl Core {
    pub fn new(args: Args, specs: SpecStore) -> Arc<Self> {
        Arc::new(Self {
            args,
            registry: Registry::new(),
            specs,
            op_lock: tokio::sync::Mutex::new(()),
            started: std::time::Instant::now(),
        })
    }

    pub(crate) fn client(&self, node: &str) -> CoreResult<EngineClient> {
        self.registry
            .online_client(node)
            .ok_or_else(|| rest(ErrorKind::Unavailable, format!("node {node} is offline")))
    }

    /// Refreshes the observed state of one node.
    pub async fn refresh(&self, node: &str) {
        if let Some(c) = self.registry.online_client(node) {
            match crate::registry::poll(&c).await {
                Ok((p, r, n)) => self.registry.set_observed(node, p, r, n),
                Err(e) => warn!(node, error = %e.message(), "cannot poll the engine"),
            }
        }
    }

    // ----------------------------------------------------------- cluster view

    /// The scheduler's view of the cluster.
    pub fn cluster(&self) -> Cluster {
        let specs_nodes = self.specs.nodes.read().clone();
        let nodes = self.registry.nodes();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            pools: Vec::new(),
            replicas: Vec::new(),
            nexuses: Vec::new(),
            volumes_in_group: BTreeMap::new(),
            limits: self.args.limits(),
        };
        for n in &nodes {
            let spec = specs_nodes.get(&n.id);
            cluster.nodes.push(scheduler::NodeInfo {
                id: n.id.clone(),
                online: n.online,
                cordoned: spec.is_some_and(|s| s.cordon_drain_state.is_cordoned()),
                labels: spec.map(|s| s.labels.clone()).unwrap_or_default(),
            });
        }
        let pool_specs = self.specs.pools.read().clone();
        for (node, p) in self.registry.pools() {
            let labels = pool_specs
                .get(&p.name)
                .map(|s| s.labels.clone())
                .unwrap_or_default();
            cluster.pools.push(scheduler::PoolInfo {
                id: p.name.clone(),
                node,
                online: p.state == v1::PoolState::PoolOnline as i32,
                labels,
                capacity: p.capacity,
                used: p.used,
                committed: p.committed,
            });
        }
        let observed: BTreeMap<String, (String, v1::Replica)> = self
            .registry
            .replicas()
            .into_iter()
            .map(|(n, r)| (r.uuid.clone(), (n, r)))
            .collect();
        let nexuses = self.registry.nexuses();
        for spec in self
            .specs
            .replicas
            .read()
            .values()
            .filter(|r| r.status != SpecStatus::Deleting)
        {
            let child = spec.owners.volume.as_ref().and_then(|v| {
                let rec = self.specs.volume(v)?;
                let nexus = rec.nexus?;
                let (_, n) = nexuses.iter().find(|(_, n)| n.uuid == nexus)?;
                child_of(n, &spec.uuid).map(|c| child_health(&c))
            });
            cluster.replicas.push(scheduler::ReplicaInfo {
                uuid: spec.uuid.clone(),
                volume: spec.owners.volume.clone(),
                node: spec.node.clone(),
                pool: spec.pool.clone(),
                size: spec.size,
                allocated: observed.get(&spec.uuid).map_or(0, |(_, r)| r.allocated),
                online: observed.contains_key(&spec.uuid),
                child,
            });
        }
        for spec in self.specs.nexuses.read().values() {
            cluster.nexuses.push(scheduler::NexusInfo {
                uuid: spec.uuid.clone(),
                volume: spec.owner.clone(),
                node: spec.node.clone(),
            });
        }
        for rec in self.specs.volumes.read().values() {
            if let Some(g) = &rec.spec.affinity_group {
                cluster
                    .volumes_in_group
                    .entry(g.id.clone())
                    .or_default()
                    .push(rec.spec.uuid.clone());
            }
        }
        cluster
    }

    pub fn request_for(spec: &VolumeSpec) -> scheduler::VolumeRequest {
        let topo = spec.topology.clone().unwrap_or_default();
        scheduler::VolumeRequest {
            uuid: spec.uuid.clone(),
            size: spec.size,
            replicas: spec.num_replicas,
            thin: spec.thin,
            node_topology: topo.node_topology,
            pool_topology: topo.pool_topology,
            affinity_group: spec.affinity_group.as_ref().map(|g| g.id.clone()),
        }
    }

    // ------------------------------------------------------------------ views

    pub fn node_view(&self, id: &str) -> Option<Node> {
        let spec = self.specs.node(id);
        let state = self.registry.node(id).map(|n| NodeState {
            id: n.id.clone(),
            grpc_endpoint: n.grpc_endpoint.clone(),
            status: if n.online {
                NodeStatus::Online
            } else {
                NodeStatus::Offline
            },
            node_nqn: n.node_nqn.clone(),
            version: n.version.clone(),
        });
        if spec.is_none() && state.is_none() {
            return None;
        }
        Some(Node {
            id: id.to_owned(),
            spec,
            state,
        })
    }

    pub fn nodes_view(&self) -> Vec<Node> {
        let mut ids: Vec<String> = self.specs.nodes.read().keys().cloned().collect();
        for n in self.registry.nodes() {
            if !ids.contains(&n.id) {
                ids.push(n.id);
            }
        }
        ids.sort();
        ids.iter().filter_map(|id| self.node_view(id)).collect()
    }

    pub fn pool_view(&self, id: &str) -> Option<Pool> {
        let spec = self.specs.pools.read().get(id).cloned();
        let state = self
            .registry
            .pools()
            .into_iter()
            .find(|(_, p)| p.name == id)
            .map(|(node, p)| PoolState {
                node,
                id: p.name.clone(),
                disks: p.disks.clone(),
                status: pool_status(p.state),
                capacity: p.capacity,
                used: p.used,
                committed: p.committed,
            });
        if spec.is_none() && state.is_none() {
            return None;
        }
        Some(Pool {
            id: id.to_owned(),
            spec,
            state,
        })
    }

    pub fn pools_view(&self) -> Vec<Pool> {
        let mut ids: Vec<String> = self.specs.pools.read().keys().cloned().collect();
        for (_, p) in self.registry.pools() {
            if !ids.contains(&p.name) {
                ids.push(p.name);
            }
        }
        ids.sort();
        ids.iter().filter_map(|id| self.pool_view(id)).collect()
    }

    pub fn replicas_view(&self) -> Vec<Replica> {
        let mut out: Vec<Replica> = self
            .registry
            .replicas()
            .into_iter()
            .map(|(node, r)| replica_model(&node, &r))
            .collect();
        // Replicas the specs know but no online engine reports.
        for spec in self.specs.replicas.read().values() {
            if !out.iter().any(|r| r.uuid == spec.uuid) {
                out.push(Replica {
                    node: spec.node.clone(),
                    uuid: spec.uuid.clone(),
                    pool: spec.pool.clone(),
                    thin: spec.thin,
                    size: spec.size,
                    allocated: 0,
                    share: spec.share,
                    uri: String::new(),
                    status: ReplicaStatus::Unknown,
                    allowed_hosts: Vec::new(),
                });
            }
        }
        out.sort_by(|a, b| a.uuid.cmp(&b.uuid));
        out
    }

    pub fn nexuses_view(&self) -> Vec<Nexus> {
        let mut out: Vec<Nexus> = self
            .registry
            .nexuses()
            .iter()
            .map(|(node, n)| nexus_model(node, n))
            .collect();
        out.sort_by(|a, b| a.uuid.cmp(&b.uuid));
        out
    }

    pub fn volume_view(&self, id: &str) -> Option<Volume> {
        let rec = self.specs.volume(id)?;
        let nexus = rec.nexus.as_ref().and_then(|uuid| {
            self.registry
                .nexuses()
                .into_iter()
                .find(|(_, n)| &n.uuid == uuid)
        });
        let observed: BTreeMap<String, (String, v1::Replica)> = self
            .registry
            .replicas()
            .into_iter()
            .map(|(n, r)| (r.uuid.clone(), (n, r)))
            .collect();
        let mut topology = BTreeMap::new();
        let replicas: Vec<ReplicaSpec> = self
            .specs
            .volume_replicas(id)
            .into_iter()
            .filter(|r| r.status != SpecStatus::Deleting)
            .collect();
        let mut online = 0;
        for r in &replicas {
            let seen = observed.get(&r.uuid);
            let child = nexus.as_ref().and_then(|(_, n)| child_of(n, &r.uuid));
            let state = if seen.is_some() {
                ReplicaStatus::Online
            } else {
                ReplicaStatus::Unknown
            };
            if seen.is_some() {
                online += 1;
            }
            topology.insert(
                r.uuid.clone(),
                ReplicaTopology {
                    node: Some(r.node.clone()),
                    pool: Some(r.pool.clone()),
                    state,
                    child_status: child.as_ref().map(|c| child_state(c.state)),
                    child_status_reason: child.as_ref().map(|c| reason_name(c.reason).to_owned()),
                    rebuild_progress: child
                        .as_ref()
                        .and_then(|c| u8::try_from(c.rebuild_progress).ok()),
                },
            );
        }
        let status = match &nexus {
            Some((_, n)) => match v1::NexusState::try_from(n.state) {
                Ok(v1::NexusState::NexusOnline) => {
                    if n.children.len() < usize::from(rec.spec.num_replicas) {
                        VolumeStatus::Degraded
                    } else {
                        VolumeStatus::Online
                    }
                }
                Ok(v1::NexusState::NexusDegraded) => VolumeStatus::Degraded,
                Ok(v1::NexusState::NexusFaulted) => VolumeStatus::Faulted,
                Ok(v1::NexusState::NexusShutdown) => VolumeStatus::Shutdown,
                _ => VolumeStatus::Unknown,
            },
            None if rec.spec.target.is_some() => VolumeStatus::Unknown,
            None if online == 0 => VolumeStatus::Faulted,
            None if online < usize::from(rec.spec.num_replicas) => VolumeStatus::Degraded,
            None => VolumeStatus::Online,
        };
        Some(Volume {
            state: VolumeState {
                uuid: id.to_owned(),
                size: rec.spec.size,
                status,
                target: nexus.as_ref().map(|(node, n)| nexus_model(node, n)),
                replica_topology: topology,
            },
            spec: rec.spec,
        })
    }

    pub fn volumes_view(&self) -> Vec<Volume> {
        let ids: Vec<String> = self.specs.volumes.read().keys().cloned().collect();
        ids.iter().filter_map(|id| self.volume_view(id)).collect()
    }

    // ------------------------------------------------------------------ nodes

    /// Creates the node's spec on its first registration.
    pub async fn ensure_node_spec(&self, id: &str) -> CoreResult<()> {
        let Some(n) = self.registry.node(id) else {
            return Ok(());
        };
        match self.specs.node(id) {
            Some(s) if s.grpc_endpoint == n.grpc_endpoint && s.node_nqn == n.node_nqn => Ok(()),
            Some(mut s) => {
                s.grpc_endpoint = n.grpc_endpoint.clone();
                s.node_nqn = n.node_nqn.clone();
                self.specs.put_node(s).await
            }
            None => {
                self.specs
                    .put_node(NodeSpec {
                        id: id.to_owned(),
                        grpc_endpoint: n.grpc_endpoint.clone(),
                        labels: BTreeMap::new(),
                        cordon_drain_state: CordonDrainState::default(),
                        node_nqn: n.node_nqn.clone(),
                    })
                    .await
            }
        }
    }

    fn node_spec(&self, id: &str) -> CoreResult<NodeSpec> {
        self.specs
            .node(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("node {id}"))))
    }

    pub async fn cordon(&self, id: &str, label: &str, on: bool) -> CoreResult<Node> {
        let _g = self.op_lock.lock().await;
        let mut spec = self.node_spec(id)?;
        let labels = &mut spec.cordon_drain_state.cordon_labels;
        if on {
            if !labels.iter().any(|l| l == label) {
                labels.push(label.to_owned());
                check_label_count(&format!("node {id}'s cordon"), labels.len())?;
            }
        } else {
            let had = labels.len();
            labels.retain(|l| l != label);
            let drain = &mut spec.cordon_drain_state.drain_labels;
            let had_drain = drain.len();
            drain.retain(|l| l != label);
            if had == labels.len() && had_drain == drain.len() {
                return Err(rest(
                    ErrorKind::NotFound,
                    format!("node {id} has no cordon label {label:?}"),
                ));
            }
            if spec.cordon_drain_state.drain_labels.is_empty() {
                spec.cordon_drain_state.drain_status = None;
            }
        }
        self.specs.put_node(spec).await?;
        info!(node = id, label, cordon = on, "cordon changed");
        self.node_view(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("node {id}"))))
    }

    pub async fn drain(&self, id: &str, label: &str) -> CoreResult<Node> {
        let _g = self.op_lock.lock().await;
        let mut spec = self.node_spec(id)?;
        let st = &mut spec.cordon_drain_state;
        if !st.drain_labels.iter().any(|l| l == label) {
            st.drain_labels.push(label.to_owned());
            check_label_count(&format!("node {id}'s drain"), st.drain_labels.len())?;
        }
        st.drain_status = Some(DrainStatus::Draining);
        self.specs.put_node(spec).await?;
        info!(node = id, label, "drain started");
        self.node_view(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("node {id}"))))
    }

    pub async fn label_node(&self, id: &str, key: &str, value: Option<&str>) -> CoreResult<Node> {
        let _g = self.op_lock.lock().await;
        let mut spec = self.node_spec(id)?;
        match value {
            Some(v) => {
                spec.labels.insert(key.to_owned(), v.to_owned());
                check_label_count(&format!("node {id}"), spec.labels.len())?;
            }
            None => {
                if spec.labels.remove(key).is_none() {
                    return Err(rest(
                        ErrorKind::NotFound,
                        format!("node {id} has no label {key:?}"),
                    ));
                }
            }
        }
        self.specs.put_node(spec).await?;
        self.node_view(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("node {id}"))))
    }

    // ------------------------------------------------------------------ pools

    pub async fn create_pool(
        &self,
        node: &str,
        id: &str,
        body: CreatePoolBody,
    ) -> CoreResult<Pool> {
        if body.disks.len() != 1 || body.disks[0].trim().is_empty() {
            return Err(rest(
                ErrorKind::InvalidArgument,
                "a pool takes exactly one disk",
            ));
        }
        check_label_count(
            &format!("pool {id}"),
            body.labels.as_ref().map_or(0, |l| l.len()),
        )?;
        let _g = self.op_lock.lock().await;
        if let Some(existing) = self.specs.pools.read().get(id).cloned() {
            if existing.node == node && existing.disks == body.disks {
                drop(_g);
                return self
                    .pool_view(id)
                    .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("pool {id}"))));
            }
            return Err(rest(
                ErrorKind::AlreadyExists,
                format!(
                    "pool {id} exists on node {} with disks {:?}",
                    existing.node, existing.disks
                ),
            ));
        }
        if self.registry.node(node).is_none() {
            return Err(CoreError::Rest(RestError::not_found(format!(
                "node {node}"
            ))));
        }
        let holder = self
            .specs
            .pools
            .read()
            .values()
            .find(|p| p.node == node && p.disks.iter().any(|d| body.disks.contains(d)))
            .map(|p| p.id.clone());
        if let Some(other) = holder {
            return Err(rest(
                ErrorKind::InUse,
                format!(
                    "disk {} of node {node} is already used by pool {other}",
                    body.disks[0]
                ),
            ));
        }
        let client = self.client(node)?;
        let spec = PoolSpec {
            node: node.to_owned(),
            id: id.to_owned(),
            disks: body.disks.clone(),
            labels: body.labels.clone().unwrap_or_default(),
            status: SpecStatus::Creating,
        };
        self.specs.put_pool(spec.clone()).await?;
        let created = client
            .pool
            .clone()
            .create_pool(v1::CreatePoolRequest {
                name: id.to_owned(),
                uuid: None,
                disks: body.disks.clone(),
                cluster_size: None,
            })
            .await;
        if let Err(e) = created {
            self.specs.delete_pool(id).await?;
            return Err(CoreError::engine(node, e));
        }
        self.specs
            .put_pool(PoolSpec {
                status: SpecStatus::Created,
                ..spec
            })
            .await?;
        self.refresh(node).await;
        info!(pool = id, node, "pool created");
        self.pool_view(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("pool {id}"))))
    }

    pub async fn destroy_pool(&self, id: &str, node: Option<&str>) -> CoreResult<()> {
        let _g = self.op_lock.lock().await;
        let Some(spec) = self.specs.pools.read().get(id).cloned() else {
            return Err(CoreError::Rest(RestError::not_found(format!("pool {id}"))));
        };
        if let Some(n) = node {
            if n != spec.node {
                return Err(CoreError::Rest(RestError::not_found(format!(
                    "pool {id} on node {n}"
                ))));
            }
        }
        if self.specs.replicas.read().values().any(|r| r.pool == id) {
            return Err(rest(
                ErrorKind::InUse,
                format!("pool {id} still holds replicas of volumes"),
            ));
        }
        self.specs
            .put_pool(PoolSpec {
                status: SpecStatus::Deleting,
                ..spec.clone()
            })
            .await?;
        let client = self.client(&spec.node)?;
        match client
            .pool
            .clone()
            .destroy_pool(v1::DestroyPoolRequest {
                name: id.to_owned(),
            })
            .await
        {
            Ok(_) => {}
            Err(e) if e.code() == tonic::Code::NotFound => {}
            Err(e) => return Err(CoreError::engine(&spec.node, e)),
        }
        self.specs.delete_pool(id).await?;
        self.refresh(&spec.node).await;
        info!(pool = id, "pool destroyed");
        Ok(())
    }

    pub async fn label_pool(&self, id: &str, key: &str, value: Option<&str>) -> CoreResult<Pool> {
        let _g = self.op_lock.lock().await;
        let Some(mut spec) = self.specs.pools.read().get(id).cloned() else {
            return Err(CoreError::Rest(RestError::not_found(format!("pool {id}"))));
        };
        match value {
            Some(v) => {
                spec.labels.insert(key.to_owned(), v.to_owned());
                check_label_count(&format!("pool {id}"), spec.labels.len())?;
            }
            None => {
                if spec.labels.remove(key).is_none() {
                    return Err(rest(
                        ErrorKind::NotFound,
                        format!("pool {id} has no label {key:?}"),
                    ));
                }
            }
        }
        self.specs.put_pool(spec).await?;
        self.pool_view(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("pool {id}"))))
    }

    // --------------------------------------------------------------- replicas

    /// Creates one replica of a volume on `placement` (spec first).
    pub(crate) async fn create_replica(
        &self,
        volume: &VolumeSpec,
        node: &str,
        pool: &str,
    ) -> CoreResult<ReplicaSpec> {
        let uuid = Uuid::new_v4().to_string();
        let spec = ReplicaSpec {
            uuid: uuid.clone(),
            size: volume.size,
            pool: pool.to_owned(),
            node: node.to_owned(),
            thin: volume.thin,
            share: Protocol::None,
            owners: ReplicaOwners {
                volume: Some(volume.uuid.clone()),
            },
            status: SpecStatus::Creating,
        };
        self.specs.put_replica(spec.clone()).await?;
        let client = self.client(node)?;
        let created = client
            .replica
            .clone()
            .create_replica(v1::CreateReplicaRequest {
                name: uuid.clone(),
                uuid: uuid.clone(),
                pool: pool.to_owned(),
                size: volume.size,
                thin: volume.thin,
                share: v1::ShareProtocol::None as i32,
                allowed_hosts: vec![],
            })
            .await;
        if let Err(e) = created {
            self.specs.delete_replica(&uuid).await?;
            return Err(CoreError::engine(node, e));
        }
        let spec = ReplicaSpec {
            status: SpecStatus::Created,
            ..spec
        };
        self.specs.put_replica(spec.clone()).await?;
        info!(replica = %uuid, volume = %volume.uuid, node, pool, "replica created");
        Ok(spec)
    }

    /// Destroys a replica (engine, then spec). An offline node keeps the
    /// spec in `Deleting` for the garbage collector.
    pub(crate) async fn destroy_replica(&self, spec: &ReplicaSpec) -> CoreResult<()> {
        match self.registry.online_client(&spec.node) {
            Some(client) => {
                match client
                    .replica
                    .clone()
                    .destroy_replica(v1::DestroyReplicaRequest {
                        replica: Some(v1::destroy_replica_request::Replica::Uuid(
                            spec.uuid.clone(),
                        )),
                    })
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.code() == tonic::Code::NotFound => {}
                    Err(e) => return Err(CoreError::engine(&spec.node, e)),
                }
                self.specs.delete_replica(&spec.uuid).await?;
            }
            None => {
                let mut s = spec.clone();
                s.status = SpecStatus::Deleting;
                self.specs.put_replica(s).await?;
            }
        }
        Ok(())
    }

    /// The URI a nexus on `target` uses for `replica`: local, or shared
    /// over NVMe/TCP with the target node allowed.
    pub(crate) async fn child_uri(
        &self,
        replica: &ReplicaSpec,
        target: &str,
    ) -> CoreResult<String> {
        if replica.node == target {
            return Ok(format!("bdev:///{0}?uuid={0}", replica.uuid));
        }
        let client = self.client(&replica.node)?;
        let observed = self.registry.replica(&replica.uuid).map(|(_, r)| r);
        let mut hosts = observed.map(|r| r.allowed_hosts).unwrap_or_default();
        let nqn = node_nqn(target);
        if !hosts.contains(&nqn) {
            hosts.push(nqn);
        }
        let shared = client
            .replica
            .clone()
            .share_replica(v1::ShareReplicaRequest {
                replica: Some(v1::share_replica_request::Replica::Uuid(
                    replica.uuid.clone(),
                )),
                protocol: v1::ShareProtocol::Nvmf as i32,
                allowed_hosts: hosts,
            })
            .await
            .map_err(engine_err(&replica.node))?
            .into_inner();
        if replica.share != Protocol::Nvmf {
            let mut s = replica.clone();
            s.share = Protocol::Nvmf;
            self.specs.put_replica(s).await?;
        }
        Ok(shared.uri)
    }

    // ---------------------------------------------------------------- volumes

    fn volume_record(&self, id: &str) -> CoreResult<VolumeRecord> {
        self.specs
            .volume(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("volume {id}"))))
    }

    fn check_replica_count(&self, spec: &VolumeSpec, count: u8) -> CoreResult<()> {
        if count == 0 {
            return Err(rest(
                ErrorKind::InvalidArgument,
                "replica count must be at least 1",
            ));
        }
        let mut req = Self::request_for(spec);
        req.replicas = count;
        let usable = scheduler::usable_node_count(&self.cluster(), &req);
        // Right after a takeover, nodes the specs know may not have
        // registered yet: that is a wait, not a bad request.
        let registering = self.started.elapsed() < self.args.heartbeat_timeout
            && self
                .specs
                .nodes
                .read()
                .keys()
                .any(|id| self.registry.node(id).is_none());
        if usize::from(count) > usable && registering {
            return Err(rest(
                ErrorKind::Unavailable,
                format!(
                    "the core agent just started and nodes are still registering; retry in {} s",
                    self.args.heartbeat_timeout.as_secs().max(1)
                ),
            ));
        }
        if usize::from(count) > usable {
            return Err(rest(
                ErrorKind::InvalidArgument,
                format!(
                    "replica count {count} exceeds the {usable} nodes that can hold a replica of volume {}",
                    spec.uuid
                ),
            ));
        }
        Ok(())
    }

    pub async fn create_volume(&self, id: &str, body: CreateVolumeBody) -> CoreResult<Volume> {
        check_volume_size(body.size)?;
        check_label_count(
            &format!("volume {id}"),
            body.labels.as_ref().map_or(0, |l| l.len()),
        )?;
        if let Some(t) = &body.topology {
            for (side, lt) in [("node", &t.node_topology), ("pool", &t.pool_topology)] {
                if let Some(lt) = lt {
                    check_label_count(
                        &format!("volume {id}'s {side} topology inclusion"),
                        lt.inclusion.len(),
                    )?;
                    check_label_count(
                        &format!("volume {id}'s {side} topology exclusion"),
                        lt.exclusion.len(),
                    )?;
                }
            }
        }
        let _g = self.op_lock.lock().await;
        if let Some(rec) = self.specs.volume(id) {
            let same = rec.spec.size == body.size
                && rec.spec.num_replicas == body.replicas
                && rec.spec.thin == body.thin;
            if same && rec.spec.status == SpecStatus::Created {
                drop(_g);
                return self
                    .volume_view(id)
                    .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("volume {id}"))));
            }
            return Err(rest(
                ErrorKind::AlreadyExists,
                format!("volume {id} already exists"),
            ));
        }
        let spec = VolumeSpec {
            uuid: id.to_owned(),
            size: body.size,
            num_replicas: body.replicas,
            status: SpecStatus::Creating,
            target: None,
            policy: body.policy.clone(),
            topology: body.topology.clone(),
            labels: body.labels.clone(),
            thin: body.thin,
            affinity_group: body.affinity_group.clone(),
        };
        self.check_replica_count(&spec, body.replicas)?;
        let placements = scheduler::place_new_volume(&self.cluster(), &Self::request_for(&spec))
            .map_err(|e| rest(ErrorKind::ResourceExhausted, e.to_string()))?;
        // Intent first: a crash from here on is rolled back on restart.
        self.specs
            .put_volume(VolumeRecord {
                spec: spec.clone(),
                target_gen: 0,
                nexus: None,
                op: Some(VolumeOp::Create),
            })
            .await?;
        let mut made = Vec::new();
        for p in &placements {
            match self.create_replica(&spec, &p.node, &p.pool).await {
                Ok(r) => made.push(r),
                Err(e) => {
                    warn!(volume = id, error = %e, "volume create failed; rolling back");
                    for r in &made {
                        if let Err(e) = self.destroy_replica(r).await {
                            warn!(replica = %r.uuid, error = %e, "rollback: cannot destroy replica");
                        }
                    }
                    self.specs.delete_volume(id).await?;
                    return Err(e);
                }
            }
        }
        self.specs
            .put_volume(VolumeRecord {
                spec: VolumeSpec {
                    status: SpecStatus::Created,
                    ..spec
                },
                target_gen: 0,
                nexus: None,
                op: None,
            })
            .await?;
        for p in &placements {
            self.refresh(&p.node).await;
        }
        info!(
            volume = id,
            replicas = body.replicas,
            size = body.size,
            "volume created"
        );
        self.volume_view(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("volume {id}"))))
    }

    pub async fn destroy_volume(&self, id: &str) -> CoreResult<()> {
        let _g = self.op_lock.lock().await;
        let mut rec = self.volume_record(id)?;
        rec.spec.status = SpecStatus::Deleting;
        rec.op = Some(VolumeOp::Destroy);
        self.specs.put_volume(rec.clone()).await?;
        self.finish_destroy(rec).await
    }

    /// Destroys a volume whose record says `Destroy` (also used after a
    /// crash).
    pub(crate) async fn finish_destroy(&self, rec: VolumeRecord) -> CoreResult<()> {
        let id = rec.spec.uuid.clone();
        self.remove_target(&rec, true).await?;
        for r in self.specs.volume_replicas(&id) {
            self.destroy_replica(&r).await?;
        }
        self.specs.delete_volume(&id).await?;
        info!(volume = %id, "volume destroyed");
        Ok(())
    }

    /// Destroys a volume's nexus (if any) and forgets it.
    async fn remove_target(&self, rec: &VolumeRecord, force: bool) -> CoreResult<()> {
        let nexus_specs: Vec<NexusSpec> = self
            .specs
            .nexuses
            .read()
            .values()
            .filter(|n| n.owner.as_deref() == Some(rec.spec.uuid.as_str()))
            .cloned()
            .collect();
        for n in nexus_specs {
            match self.registry.online_client(&n.node) {
                Some(client) => {
                    client
                        .nexus
                        .clone()
                        .destroy_nexus(v1::DestroyNexusRequest {
                            uuid: n.uuid.clone(),
                        })
                        .await
                        .map_err(engine_err(&n.node))?;
                    self.specs.delete_nexus(&n.uuid).await?;
                    self.refresh(&n.node).await;
                }
                None if force => {
                    // The garbage collector destroys it when the node returns.
                    let mut s = n.clone();
                    s.status = SpecStatus::Deleting;
                    self.specs.put_nexus(s).await?;
                }
                None => {
                    return Err(rest(
                        ErrorKind::Unavailable,
                        format!("the target's node {} is offline (use force)", n.node),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Publishes a volume: a nexus on the chosen node with a fresh
    /// controller-ID window and a reservation that preempts the previous
    /// target's.
    pub async fn publish_volume(&self, id: &str, body: PublishVolumeBody) -> CoreResult<Volume> {
        if body.protocol != Protocol::Nvmf {
            return Err(rest(
                ErrorKind::InvalidArgument,
                "only the nvmf protocol can be published",
            ));
        }
        let _g = self.op_lock.lock().await;
        let mut rec = self.volume_record(id)?;
        if let Some(VolumeOp::Resize { size }) = rec.op {
            // A grow that stopped half way ends before a target of the
            // old size is made.
            self.finish_resize(&mut rec, size).await?;
        }
        if rec.spec.status != SpecStatus::Created {
            return Err(rest(
                ErrorKind::FailedPrecondition,
                format!("volume {id} is {:?}", rec.spec.status),
            ));
        }
        if let Some(t) = &rec.spec.target {
            if body.node.as_ref().is_none_or(|n| n == &t.node) {
                drop(_g);
                return self
                    .volume_view(id)
                    .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("volume {id}"))));
            }
            return Err(rest(
                ErrorKind::AlreadyPublished,
                format!("volume {id} is published on node {}", t.node),
            ));
        }
        self.publish_locked(
            rec,
            body.node.as_deref(),
            body.frontend_node.as_deref(),
            &[],
        )
        .await?;
        drop(_g);
        self.volume_view(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("volume {id}"))))
    }

    pub(crate) async fn publish_locked(
        &self,
        mut rec: VolumeRecord,
        node: Option<&str>,
        frontend: Option<&str>,
        exclude: &[String],
    ) -> CoreResult<()> {
        let id = rec.spec.uuid.clone();
        let replicas = self.specs.volume_replicas(&id);
        let replica_nodes: Vec<String> = replicas.iter().map(|r| r.node.clone()).collect();
        let target = scheduler::target_node(&self.cluster(), &id, node, &replica_nodes, exclude)
            .map_err(|e| rest(ErrorKind::FailedPrecondition, e.to_string()))?;
        let nexus = Uuid::new_v4().to_string();
        let prev_gen = rec.target_gen;
        rec.target_gen += 1;
        rec.op = Some(VolumeOp::Publish {
            nexus: nexus.clone(),
            node: target.clone(),
        });
        self.specs.put_volume(rec.clone()).await?;
        let mut allowed: Vec<String> = match frontend {
            Some(f) => vec![node_nqn(f)],
            None => self
                .registry
                .nodes()
                .iter()
                .map(|n| n.node_nqn.clone())
                .collect(),
        };
        allowed.dedup();
        let spec = NexusSpec {
            uuid: nexus.clone(),
            node: target.clone(),
            size: rec.spec.size,
            children: replicas.iter().map(|r| r.uuid.clone()).collect(),
            owner: Some(id.clone()),
            share: Protocol::Nvmf,
            allowed_hosts: allowed.clone(),
            status: SpecStatus::Creating,
        };
        self.specs.put_nexus(spec.clone()).await?;
        let result = self.start_nexus(&rec, &spec, prev_gen, &replicas).await;
        match result {
            Ok(()) => {
                rec.nexus = Some(nexus.clone());
                rec.spec.target = Some(VolumeTarget {
                    node: target.clone(),
                    protocol: Protocol::Nvmf,
                    frontend_nodes: frontend.map(|f| vec![f.to_owned()]).unwrap_or_default(),
                });
                rec.op = None;
                self.specs
                    .put_nexus(NexusSpec {
                        status: SpecStatus::Created,
                        ..spec
                    })
                    .await?;
                self.specs.put_volume(rec).await?;
                info!(volume = %id, node = %target, nexus = %nexus, "volume published");
                Ok(())
            }
            Err(e) => {
                warn!(volume = %id, error = %e, "publish failed; rolling back");
                self.rollback_publish(&mut rec, &spec).await;
                Err(e)
            }
        }
    }

    /// Creates and publishes the nexus of `spec` on its node.
    pub(crate) async fn start_nexus(
        &self,
        rec: &VolumeRecord,
        spec: &NexusSpec,
        prev_gen: u64,
        replicas: &[ReplicaSpec],
    ) -> CoreResult<()> {
        let client = self.client(&spec.node)?;
        let mut children = Vec::new();
        for r in replicas {
            if self.registry.node(&r.node).is_some_and(|n| n.online) {
                match self.child_uri(r, &spec.node).await {
                    Ok(u) => children.push(u),
                    Err(e) => {
                        warn!(replica = %r.uuid, error = %e, "replica left out of the target")
                    }
                }
            }
        }
        if children.is_empty() {
            return Err(rest(
                ErrorKind::FailedPrecondition,
                format!("no replica of volume {} is reachable", rec.spec.uuid),
            ));
        }
        let key = self.specs.keys().nexus_info(&rec.spec.uuid, &spec.uuid);
        client
            .nexus
            .clone()
            .create_nexus(v1::CreateNexusRequest {
                uuid: spec.uuid.clone(),
                name: rec.spec.uuid.clone(),
                size: rec.spec.size,
                children,
                resv_key: rec.target_gen,
                preempt_key: prev_gen,
                resv_type: v1::NvmeReservation::ExclusiveAccess as i32,
                nexus_info_key: Some(key),
            })
            .await
            .map_err(engine_err(&spec.node))?;
        let (min, max) = cntlid_window(rec.target_gen);
        client
            .nexus
            .clone()
            .publish_nexus(v1::PublishNexusRequest {
                uuid: spec.uuid.clone(),
                allowed_hosts: spec.allowed_hosts.clone(),
                min_cntlid: Some(min),
                max_cntlid: Some(max),
                resv_key: None,
                resv_type: None,
                preempt_key: None,
            })
            .await
            .map_err(engine_err(&spec.node))?;
        self.refresh(&spec.node).await;
        Ok(())
    }

    pub(crate) async fn rollback_publish(&self, rec: &mut VolumeRecord, spec: &NexusSpec) {
        if let Some(client) = self.registry.online_client(&spec.node) {
            let _ = client
                .nexus
                .clone()
                .destroy_nexus(v1::DestroyNexusRequest {
                    uuid: spec.uuid.clone(),
                })
                .await;
        }
        if let Err(e) = self.specs.delete_nexus(&spec.uuid).await {
            warn!(nexus = %spec.uuid, error = %e, "rollback: cannot delete the nexus spec");
        }
        rec.op = None;
        rec.nexus = None;
        rec.spec.target = None;
        if let Err(e) = self.specs.put_volume(rec.clone()).await {
            warn!(volume = %rec.spec.uuid, error = %e, "rollback: cannot clear the publish");
        }
        self.refresh(&spec.node).await;
    }

    pub async fn unpublish_volume(&self, id: &str, force: bool) -> CoreResult<Volume> {
        let _g = self.op_lock.lock().await;
        let mut rec = self.volume_record(id)?;
        if rec.spec.target.is_none() && rec.nexus.is_none() {
            drop(_g);
            return self
                .volume_view(id)
                .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("volume {id}"))));
        }
        rec.op = Some(VolumeOp::Unpublish);
        self.specs.put_volume(rec.clone()).await?;
        self.remove_target(&rec, force).await?;
        rec.op = None;
        rec.nexus = None;
        rec.spec.target = None;
        self.specs.put_volume(rec).await?;
        info!(volume = id, "volume unpublished");
        drop(_g);
        self.volume_view(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("volume {id}"))))
    }

    /// Removes a volume's target (forcing past offline nodes) with the
    /// intent recorded first.
    pub(crate) async fn unpublish_locked(&self, rec: &mut VolumeRecord) -> CoreResult<()> {
        rec.op = Some(VolumeOp::Unpublish);
        self.specs.put_volume(rec.clone()).await?;
        self.remove_target(rec, true).await?;
        rec.op = None;
        rec.nexus = None;
        rec.spec.target = None;
        self.specs.put_volume(rec.clone()).await
    }

    /// The observed nexus of a published volume.
    pub(crate) fn observed_nexus(&self, rec: &VolumeRecord) -> Option<(String, EngineNexus)> {
        let uuid = rec.nexus.as_ref()?;
        self.registry
            .nexuses()
            .into_iter()
            .find(|(_, n)| &n.uuid == uuid)
    }

    /// Adds one replica to a volume (and to its nexus, which rebuilds it).
    pub(crate) async fn add_replica(&self, rec: &VolumeRecord) -> CoreResult<ReplicaSpec> {
        let existing: Vec<scheduler::ReplicaInfo> = self
            .cluster()
            .replicas
            .into_iter()
            .filter(|r| r.volume.as_deref() == Some(rec.spec.uuid.as_str()))
            .collect();
        let place = scheduler::place_additional_replica(
            &self.cluster(),
            &Self::request_for(&rec.spec),
            &existing,
        )
        .map_err(|e| rest(ErrorKind::ResourceExhausted, e.to_string()))?;
        self.add_replica_on(rec, &place).await
    }

    /// Adds one replica of a volume on `place` (and to its nexus, which
    /// rebuilds it).
    pub(crate) async fn add_replica_on(
        &self,
        rec: &VolumeRecord,
        place: &scheduler::Placement,
    ) -> CoreResult<ReplicaSpec> {
        let replica = self
            .create_replica(&rec.spec, &place.node, &place.pool)
            .await?;
        if let Some(t) = &rec.spec.target {
            if let Some(nexus) = &rec.nexus {
                let uri = self.child_uri(&replica, &t.node).await?;
                let client = self.client(&t.node)?;
                client
                    .nexus
                    .clone()
                    .add_child_nexus(v1::AddChildNexusRequest {
                        uuid: nexus.clone(),
                        uri,
                        norebuild: false,
                    })
                    .await
                    .map_err(engine_err(&t.node))?;
                self.update_nexus_children(nexus).await?;
                self.refresh(&t.node).await;
            }
        }
        self.refresh(&place.node).await;
        Ok(replica)
    }

    /// Removes one replica from a volume (rule 3 picks which).
    pub(crate) async fn remove_replica(&self, rec: &VolumeRecord, uuid: &str) -> CoreResult<()> {
        let Some(spec) = self.specs.replicas.read().get(uuid).cloned() else {
            return Ok(());
        };
        if let (Some(t), Some(nexus)) = (&rec.spec.target, &rec.nexus) {
            if let Some((_, n)) = self.observed_nexus(rec) {
                if let Some(child) = child_of(&n, uuid) {
                    let client = self.client(&t.node)?;
                    client
                        .nexus
                        .clone()
                        .remove_child_nexus(v1::RemoveChildNexusRequest {
                            uuid: nexus.clone(),
                            uri: child.uri.clone(),
                        })
                        .await
                        .map_err(engine_err(&t.node))?;
                }
            }
            let nexus = nexus.clone();
            self.destroy_replica(&spec).await?;
            self.update_nexus_children(&nexus).await?;
            self.refresh(&t.node).await;
        } else {
            self.destroy_replica(&spec).await?;
        }
        self.refresh(&spec.node).await;
        info!(volume = %rec.spec.uuid, replica = uuid, "replica removed");
        Ok(())
    }

    async fn update_nexus_children(&self, nexus: &str) -> CoreResult<()> {
        let Some(mut spec) = self.specs.nexuses.read().get(nexus).cloned() else {
            return Ok(());
        };
        if let Some(owner) = &spec.owner {
            spec.children = self
                .specs
                .volume_replicas(owner)
                .into_iter()
                .filter(|r| r.status != SpecStatus::Deleting)
                .map(|r| r.uuid)
                .collect();
        }
        self.specs.put_nexus(spec).await
    }

    pub async fn set_replica_count(&self, id: &str, count: u8) -> CoreResult<Volume> {
        let _g = self.op_lock.lock().await;
        let mut rec = self.volume_record(id)?;
        self.check_replica_count(&rec.spec, count)?;
        // The new count is the desired state: should this call stop half
        // way, the replica-count reconciler finishes it.
        rec.spec.num_replicas = count;
        self.specs.put_volume(rec.clone()).await?;
        loop {
            let current: Vec<ReplicaSpec> = self
                .specs
                .volume_replicas(id)
                .into_iter()
                .filter(|r| r.status != SpecStatus::Deleting)
                .collect();
            if current.len() < usize::from(count) {
                self.add_replica(&rec).await?;
            } else if current.len() > usize::from(count) {
                let victim = scheduler::replica_to_remove(&self.cluster(), id).ok_or_else(|| {
                    rest(
                        ErrorKind::FailedPrecondition,
                        format!("volume {id}: no replica can be removed without losing the last healthy one"),
                    )
                })?;
                self.remove_replica(&rec, &victim).await?;
            } else {
                break;
            }
        }
        info!(volume = id, count, "volume scaled");
        drop(_g);
        self.volume_view(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("volume {id}"))))
    }

    pub async fn resize_volume(&self, id: &str, size: u64) -> CoreResult<Volume> {
        check_volume_size(size)?;
        let _g = self.op_lock.lock().await;
        let mut rec = self.volume_record(id)?;
        if size < rec.spec.size {
            return Err(rest(
                ErrorKind::InvalidArgument,
                format!(
                    "volume {id} cannot shrink from {} to {size} bytes",
                    rec.spec.size
                ),
            ));
        }
        if size == rec.spec.size {
            drop(_g);
            return self
                .volume_view(id)
                .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("volume {id}"))));
        }
        // Every replica must be reachable before any grows: a replica that
        // cannot be asked would leave the volume half grown.
        for r in self.specs.volume_replicas(id) {
            self.client(&r.node)?;
        }
        // The intent first: should a grow fail or the agent die half way,
        // the operations reconciler finishes it.
        rec.op = Some(VolumeOp::Resize { size });
        self.specs.put_volume(rec.clone()).await?;
        self.finish_resize(&mut rec, size).await?;
        if let Some(t) = rec.spec.target.clone() {
            // A nexus does not grow: its target is made again, on the same
            // node and at the new size (as a drain moves one). Hosts
            // reconnect to the same NQN and see the new capacity.
            info!(volume = id, node = %t.node, size, "recreating the target at the new size");
            let frontend = t.frontend_nodes.first().cloned();
            self.unpublish_locked(&mut rec).await?;
            self.publish_locked(rec, Some(&t.node), frontend.as_deref(), &[])
                .await?;
        }
        drop(_g);
        self.volume_view(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("volume {id}"))))
    }

    /// Grows every replica of a volume not yet at `size`, then records the
    /// size in the spec and clears the operation.
    pub(crate) async fn finish_resize(&self, rec: &mut VolumeRecord, size: u64) -> CoreResult<()> {
        let id = rec.spec.uuid.clone();
        for r in self.specs.volume_replicas(&id) {
            if r.size >= size {
                continue;
            }
            let client = self.client(&r.node)?;
            client
                .replica
                .clone()
                .resize_replica(v1::ResizeReplicaRequest {
                    uuid: r.uuid.clone(),
                    requested_size: size,
                })
                .await
                .map_err(engine_err(&r.node))?;
            let mut s = r.clone();
            s.size = size;
            self.specs.put_replica(s).await?;
            self.refresh(&r.node).await;
        }
        rec.spec.size = size;
        rec.op = None;
        self.specs.put_volume(rec.clone()).await?;
        info!(volume = %id, size, "volume grown");
        Ok(())
    }

    /// The rebuild history of a volume's current target.
    pub async fn rebuild_history(&self, id: &str) -> CoreResult<RebuildHistory> {
        let rec = self.volume_record(id)?;
        let mut records = Vec::new();
        if let (Some(t), Some(nexus)) = (&rec.spec.target, &rec.nexus) {
            let client = self.client(&t.node)?;
            let h = client
                .rebuild
                .clone()
                .get_rebuild_history(v1::RebuildHistoryRequest {
                    nexus_uuid: nexus.clone(),
                })
                .await
                .map_err(engine_err(&t.node))?
                .into_inner();
            for r in h.records {
                records.push(RebuildRecord {
                    child_uri: r.uri,
                    src_uri: r.src_uri,
                    rebuild_job_state: job_state(r.state).to_owned(),
                    blocks_total: r.blocks_total,
                    blocks_recovered: r.blocks_recovered,
                    blocks_transferred: r.blocks_transferred,
                    blocks_remaining: r.blocks_total.saturating_sub(r.blocks_recovered),
                    block_size: r.block_size,
                    is_partial: r.is_partial,
                    start_time: rfc3339(r.start_time_ms),
                    end_time: rfc3339(r.end_time_ms),
                });
            }
        }
        Ok(RebuildHistory {
            target_uuid: id.to_owned(),
            records,
        })
    }

    pub fn specs_view(&self) -> Specs {
        Specs {
            nodes: self.specs.nodes.read().values().cloned().collect(),
            pools: self.specs.pools.read().values().cloned().collect(),
            replicas: self.specs.replicas.read().values().cloned().collect(),
            volumes: self
                .specs
                .volumes
                .read()
                .values()
                .map(|r| r.spec.clone())
                .collect(),
            nexuses: self.specs.nexuses.read().values().cloned().collect(),
        }
    }

    /// How long the engine calls may take.
    pub fn engine_timeout(&self) -> Duration {
        self.args.engine_timeout
    }
}

// ---------------------------------------------------------------- helpers

/// The child of an observed nexus that is replica `uuid`.
pub fn child_of(n: &EngineNexus, uuid: &str) -> Option<v1::Child> {
    n.children.iter().find(|c| c.uuid == uuid).cloned()
}

pub fn child_health(c: &v1::Child) -> ChildHealth {
    match v1::ChildState::try_from(c.state) {
        Ok(v1::ChildState::ChildOnline) => ChildHealth::Online,
        Ok(v1::ChildState::ChildDegraded) => ChildHealth::Rebuilding {
            progress: u8::try_from(c.rebuild_progress.max(0)).unwrap_or(0),
        },
        _ => ChildHealth::Faulted,
    }
}

fn child_state(s: i32) -> ChildState {
    match v1::ChildState::try_from(s) {
        Ok(v1::ChildState::ChildOnline) => ChildState::Online,
        Ok(v1::ChildState::ChildDegraded) => ChildState::Degraded,
        Ok(v1::ChildState::ChildFaulted) => ChildState::Faulted,
        _ => ChildState::Unknown,
    }
}

pub fn reason_name(r: i32) -> &'static str {
    match v1::ChildStateReason::try_from(r) {
        Ok(v1::ChildStateReason::ChildReasonIoFailure) => "io_failure",
        Ok(v1::ChildStateReason::ChildReasonTimedOut) => "timed_out",
        Ok(v1::ChildStateReason::ChildReasonCannotOpen) => "cannot_open",
        Ok(v1::ChildStateReason::ChildReasonRebuildFailed) => "rebuild_failed",
        Ok(v1::ChildStateReason::ChildReasonNoSpace) => "no_space",
        Ok(v1::ChildStateReason::ChildReasonByClient) => "by_client",
        Ok(v1::ChildStateReason::ChildReasonOutOfSync) => "out_of_sync",
        _ => "none",
    }
}

fn job_state(s: i32) -> &'static str {
    match v1::RebuildJobState::try_from(s) {
        Ok(v1::RebuildJobState::RebuildCompleted) => "completed",
        Ok(v1::RebuildJobState::RebuildStopped) => "stopped",
        Ok(v1::RebuildJobState::RebuildFailed) => "failed",
        Ok(v1::RebuildJobState::RebuildRunning) => "running",
        Ok(v1::RebuildJobState::RebuildPaused) => "paused",
        _ => "unknown",
    }
}

fn pool_status(s: i32) -> PoolStatus {
    match v1::PoolState::try_from(s) {
        Ok(v1::PoolState::PoolOnline) => PoolStatus::Online,
        Ok(v1::PoolState::PoolDegraded) => PoolStatus::Degraded,
        Ok(v1::PoolState::PoolFaulted) => PoolStatus::Faulted,
        _ => PoolStatus::Unknown,
    }
}

fn replica_model(node: &str, r: &v1::Replica) -> Replica {
    Replica {
        node: node.to_owned(),
        uuid: r.uuid.clone(),
        pool: r.pool_name.clone(),
        thin: r.thin,
        size: r.size,
        allocated: r.allocated,
        share: if r.share == v1::ShareProtocol::Nvmf as i32 {
            Protocol::Nvmf
        } else {
            Protocol::None
        },
        uri: r.uri.clone(),
        status: ReplicaStatus::Online,
        allowed_hosts: r.allowed_hosts.clone(),
    }
}

pub fn nexus_model(node: &str, n: &EngineNexus) -> Nexus {
    Nexus {
        node: node.to_owned(),
        uuid: n.uuid.clone(),
        size: n.size,
        status: match v1::NexusState::try_from(n.state) {
            Ok(v1::NexusState::NexusOnline) => NexusStatus::Online,
            Ok(v1::NexusState::NexusDegraded) => NexusStatus::Degraded,
            Ok(v1::NexusState::NexusFaulted) => NexusStatus::Faulted,
            Ok(v1::NexusState::NexusShutdown) => NexusStatus::Shutdown,
            _ => NexusStatus::Unknown,
        },
        children: n
            .children
            .iter()
            .map(|c| Child {
                uri: c.uri.clone(),
                state: child_state(c.state),
                state_reason: reason_name(c.reason).to_owned(),
                rebuild_progress: u8::try_from(c.rebuild_progress).ok(),
            })
            .collect(),
        device_uri: n.device_uri.clone(),
        rebuilds: n.rebuilds,
        protocol: if n.device_uri.is_empty() {
            Protocol::None
        } else {
            Protocol::Nvmf
        },
    }
}

/// Unix milliseconds as RFC 3339 UTC (empty for 0).
pub fn rfc3339(ms: i64) -> String {
    if ms <= 0 {
        return String::new();
    }
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_fresh_and_valid() {
        let (a, b) = cntlid_window(1);
        let (c, d) = cntlid_window(2);
        assert!(a >= 1 && b <= 0xffef && b - a == 15);
        assert!(c > b && d <= 0xffef);
        let (x, y) = cntlid_window(u64::MAX);
        assert!(x >= 1 && y <= 0xffef);
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "");
        assert_eq!(rfc3339(1_000), "1970-01-01T00:00:01.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
