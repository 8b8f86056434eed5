//! The core agent's state and its operations, one file per resource:
//! [`nodes`], [`pools`], [`replicas`], [`volumes`] and their [`targets`],
//! and the REST [`views`] of all of them.
//!
//! Every operation that changes something holds the lock of the resource
//! it changes (a volume, a pool or a node, see [`crate::locks`]) for its
//! whole run: operations on one volume are ordered, operations on
//! different volumes run at once. Placement decisions are taken one at a
//! time under a short lock that covers the decision and the store writes
//! reserving it, so two volumes never take the same room. Each operation
//! records its intent in the store before its first side effect, and on
//! failure undoes what it did before it returns the error. What a crash
//! interrupts is finished or rolled back by the reconcilers from the
//! recorded intent.

mod nodes;
mod pools;
mod replicas;
mod stats;
mod targets;
mod views;
mod volumes;

pub use views::{child_health, child_of, nexus_model, reason_name, rfc3339};

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use io_engine_api::{names::host_nqn, v1};
use openapi::{models::*, ErrorKind, RestError};
use tracing::{info, warn};
use uuid::Uuid;

use crate::{
    config::Args,
    locks::{Resource, ResourceGuard, ResourceLocks},
    registry::{EngineClient, EngineNexus, Registry},
    scheduler::{self, ChildHealth, Cluster},
    specs::{SpecStore, SpecWrite, VolumeOp, VolumeRecord},
    CoreError,
};

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
    /// Per-volume, per-pool and per-node serialisation of operations.
    pub locks: ResourceLocks,
    /// Placement decisions, one at a time: held around the scheduler's
    /// choice and the store writes that reserve it (replica and nexus specs
    /// written `Creating`), never across an engine call.
    pub placement: tokio::sync::Mutex<()>,
    /// Keeps reconcile passes one at a time (they reason over the whole
    /// cluster); API operations never take it.
    pub reconcile_lock: tokio::sync::Mutex<()>,
    /// Per node: the ticket of the last refresh that completed.
    refreshes: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<u64>>>>,
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
            locks: ResourceLocks::default(),
            placement: tokio::sync::Mutex::new(()),
            reconcile_lock: tokio::sync::Mutex::new(()),
            refreshes: parking_lot::Mutex::new(HashMap::new()),
            started: std::time::Instant::now(),
        })
    }

    pub(crate) fn client(&self, node: &str) -> CoreResult<EngineClient> {
        self.registry
            .online_client(node)
            .ok_or_else(|| rest(ErrorKind::Unavailable, format!("node {node} is offline")))
    }

    /// Waits for the lock of one resource (see [`crate::locks`]).
    pub async fn lock(&self, kind: Resource, id: &str) -> ResourceGuard {
        self.locks.lock(kind, id).await
    }

    /// Refreshes the observed state of one node: on return, the observed
    /// state was polled after this call began (by this call or by one that
    /// started later), unless the engine could not be polled.
    pub async fn refresh(&self, node: &str) {
        let asked = self.registry.ticket();
        let slot = self
            .refreshes
            .lock()
            .entry(node.to_owned())
            .or_default()
            .clone();
        // Held across the engine's list calls: refreshes of one node apply
        // in the order they started, so an older snapshot never overwrites
        // a newer one, and a caller covered by a refresh that started after
        // it asked does not poll again. Only this node's refreshes wait.
        let mut last_done = slot.lock().await;
        if *last_done > asked {
            return;
        }
        let started = self.registry.ticket();
        if let Some(c) = self.registry.online_client(node) {
            match crate::registry::poll(&c).await {
                Ok((p, r, n)) => {
                    self.registry.set_observed(node, started, p, r, n);
                    *last_done = started;
                }
                Err(e) => warn!(node, error = %e.message(), "cannot poll the engine"),
            }
        }
    }

    // ----------------------------------------------------------- cluster view

    /// The scheduler's view of the cluster for choosing a target node:
    /// nodes, targets and affinity groups (no pools, no replicas).
    pub fn target_cluster(&self) -> Cluster {
        let mut cluster = Cluster {
            nodes: self.node_infos(),
            pools: Vec::new(),
            replicas: Vec::new(),
            nexuses: Vec::new(),
            volumes_in_group: BTreeMap::new(),
            limits: self.args.limits(),
        };
        self.add_targets_and_groups(&mut cluster);
        cluster
    }

    fn node_infos(&self) -> Vec<scheduler::NodeInfo> {
        let specs_nodes = self.specs.nodes.read();
        self.registry
            .nodes()
            .into_iter()
            .map(|n| {
                let spec = specs_nodes.get(&n.id);
                scheduler::NodeInfo {
                    cordoned: spec.is_some_and(|s| s.cordon_drain_state.is_cordoned()),
                    labels: spec.map(|s| s.labels.clone()).unwrap_or_default(),
                    id: n.id,
                    online: n.online,
                }
            })
            .collect()
    }

    fn add_targets_and_groups(&self, cluster: &mut Cluster) {
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
    }

    /// The scheduler's view of the cluster.
    pub fn cluster(&self) -> Cluster {
        let mut cluster = Cluster {
            nodes: self.node_infos(),
            pools: Vec::new(),
            replicas: Vec::new(),
            nexuses: Vec::new(),
            volumes_in_group: BTreeMap::new(),
            limits: self.args.limits(),
        };
        // The replicas the specs know (those being deleted aside), then
        // which of them an engine reports and with how many bytes.
        let volume_nexus: HashMap<String, String> = self
            .specs
            .volumes
            .read()
            .values()
            .filter_map(|r| Some((r.spec.uuid.clone(), r.nexus.clone()?)))
            .collect();
        let mut replicas: Vec<scheduler::ReplicaInfo> = self
            .specs
            .replicas
            .read()
            .values()
            .filter(|r| r.status != SpecStatus::Deleting)
            .map(|spec| scheduler::ReplicaInfo {
                uuid: spec.uuid.clone(),
                volume: spec.owners.volume.clone(),
                node: spec.node.clone(),
                pool: spec.pool.clone(),
                size: spec.size,
                allocated: 0,
                online: false,
                child: None,
            })
            .collect();
        let allocations = self
            .registry
            .replica_allocations(replicas.iter().map(|r| r.uuid.as_str()));
        // Replicas reserved or made but not yet seen on their engine count
        // against their pool's commitment: placements do not wait for the
        // next poll to see the room taken.
        let mut unobserved: HashMap<&str, u64> = HashMap::new();
        for (r, allocated) in replicas.iter_mut().zip(allocations) {
            match allocated {
                Some(a) => {
                    r.online = true;
                    r.allocated = a;
                }
                None => *unobserved.entry(r.pool.as_str()).or_default() += r.size,
            }
        }
        let pool_specs = self.specs.pools.read();
        for (node, p) in self.registry.pools() {
            let spec = pool_specs.get(&p.name);
            let deleting = spec.is_some_and(|s| s.status == SpecStatus::Deleting);
            cluster.pools.push(scheduler::PoolInfo {
                online: p.state == v1::PoolState::PoolOnline as i32 && !deleting,
                labels: spec.map(|s| s.labels.clone()).unwrap_or_default(),
                capacity: p.capacity,
                used: p.used,
                committed: p
                    .committed
                    .saturating_add(unobserved.get(p.name.as_str()).copied().unwrap_or(0)),
                id: p.name,
                node,
            });
        }
        drop(pool_specs);
        // Child states, read in place from the observed nexuses.
        for r in &mut replicas {
            let Some(nexus) = r.volume.as_ref().and_then(|v| volume_nexus.get(v)) else {
                continue;
            };
            r.child = self
                .registry
                .with_nexus(nexus, |n| {
                    n.children
                        .iter()
                        .find(|c| c.uuid == r.uuid)
                        .map(child_health)
                })
                .flatten();
        }
        cluster.replicas = replicas;
        self.add_targets_and_groups(&mut cluster);
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

    /// How long the engine calls may take.
    pub fn engine_timeout(&self) -> Duration {
        self.args.engine_timeout
    }
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
}
