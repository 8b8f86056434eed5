//! Placement of replicas and volume targets.
//!
//! Pure decisions over a snapshot: the core agent copies what its registry
//! and specs know into a [`Cluster`] and asks where the replicas of a new
//! volume go, where one more replica goes, which replica a scale-down
//! retires and which node hosts a volume's target. No I/O, no async, no
//! locks, no clock; the same snapshot always gives the same answer, whatever
//! the order of its lists (every ranking ends with an id).
//!
//! Rules (DESIGN.md section 4):
//! - rule 1: a new volume is placed whole or not at all;
//! - rule 2: never two replicas of one volume on one node. A replica counts
//!   for as long as the caller lists it, faulted or not, so a replacement
//!   lands on the node of a faulted replica only once that replica is
//!   retired (or the caller leaves it out because it is about to be);
//! - rule 3: a scale-down retires unhealthy replicas before healthy ones and
//!   never the last healthy one;
//! - replicas go only to online, uncordoned nodes and online pools that
//!   match the volume's label topology and have room: a thick replica needs
//!   its size free and uncommitted; a thin one must keep the pool's
//!   commitment within `pool_commitment_pct` of its capacity and find a
//!   share of its size free (`volume_commitment_initial_pct` for a new
//!   volume, `volume_commitment_pct` for an added replica);
//! - affinity groups (one StatefulSet's volumes) spread their replicas and
//!   their targets over distinct nodes when the cluster allows it, and share
//!   nodes when it does not (soft anti-affinity).
//!
//! Sizes are bytes throughout.

mod errors;
mod filters;
mod place;
mod relief;
mod removal;
mod target;

use std::collections::BTreeMap;

use openapi::models::LabelledTopology;

pub use errors::{Rejections, ScheduleError};
pub use filters::{topology_admits, usable_node_count};
pub use place::{place_additional_replica, place_new_volume};
pub use relief::{relieve_pool, Relief};
pub use removal::replica_to_remove;
pub use target::target_node;

/// A node as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub id: String,
    /// Its engine is registered and its heartbeat is current.
    pub online: bool,
    /// Cordoned (or draining): no new replicas or targets.
    pub cordoned: bool,
    pub labels: BTreeMap<String, String>,
}

/// A pool as the scheduler sees it. Sizes are bytes.
#[derive(Debug, Clone)]
pub struct PoolInfo {
    pub id: String,
    /// The node that owns the pool.
    pub node: String,
    pub online: bool,
    pub labels: BTreeMap<String, String>,
    pub capacity: u64,
    /// Bytes allocated on the pool.
    pub used: u64,
    /// Sum of the sizes of the pool's replicas (thin ones at full size).
    pub committed: u64,
}

/// State of a replica as a child of its volume's nexus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildHealth {
    Online,
    /// Being rebuilt; `progress` is a percentage.
    Rebuilding {
        progress: u8,
    },
    Faulted,
}

/// A replica as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct ReplicaInfo {
    pub uuid: String,
    /// The volume that owns the replica, if any.
    pub volume: Option<String>,
    pub node: String,
    pub pool: String,
    /// Bytes.
    pub size: u64,
    /// Bytes its pool has allocated to it (observed; 0 when unknown).
    pub allocated: u64,
    /// The replica exists on its pool (its engine reports it).
    pub online: bool,
    /// Its state in the volume's nexus; `None` when the volume has no
    /// observed nexus or the replica is not one of its children.
    pub child: Option<ChildHealth>,
}

/// A nexus (volume target) as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct NexusInfo {
    pub uuid: String,
    pub volume: Option<String>,
    pub node: String,
}

/// What a volume asks of placement.
#[derive(Debug, Clone)]
pub struct VolumeRequest {
    pub uuid: String,
    /// Bytes.
    pub size: u64,
    pub replicas: u8,
    pub thin: bool,
    /// Labels the replica nodes must (not) have.
    pub node_topology: Option<LabelledTopology>,
    /// Labels the replica pools must (not) have.
    pub pool_topology: Option<LabelledTopology>,
    /// Affinity group id (soft anti-affinity with the group's other volumes).
    pub affinity_group: Option<String>,
}

/// Commitment limits for thin replicas, as percentages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThinLimits {
    /// A pool's committed bytes may reach this share of its capacity.
    pub pool_commitment_pct: u64,
    /// An added thin replica needs this share of its size free on the pool.
    pub volume_commitment_pct: u64,
    /// Each thin replica of a new volume needs this share of its size free.
    pub volume_commitment_initial_pct: u64,
}

impl Default for ThinLimits {
    fn default() -> Self {
        ThinLimits {
            pool_commitment_pct: 250,
            volume_commitment_pct: 40,
            volume_commitment_initial_pct: 40,
        }
    }
}

/// A snapshot of everything placement looks at.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub nodes: Vec<NodeInfo>,
    pub pools: Vec<PoolInfo>,
    pub replicas: Vec<ReplicaInfo>,
    pub nexuses: Vec<NexusInfo>,
    /// Affinity group id -> uuids of the volumes in it.
    pub volumes_in_group: BTreeMap<String, Vec<String>>,
    pub limits: ThinLimits,
}

/// Where one replica goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub node: String,
    pub pool: String,
}

#[cfg(test)]
mod tests;
