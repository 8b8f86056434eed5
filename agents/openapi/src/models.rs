//! Resources and request bodies of the REST API. Field names are
//! snake_case on the wire; sizes are bytes; ids are strings (uuids for
//! volumes, replicas and nexuses; names for nodes and pools).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Lifecycle of a spec (desired state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
pub enum SpecStatus {
    #[default]
    Creating,
    Created,
    Deleting,
    Deleted,
}

/// Share / publish protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    None,
    Nvmf,
}

// ------------------------------------------------------------------ nodes --

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum NodeStatus {
    Unknown,
    Online,
    Offline,
}

/// Drain progress of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum DrainStatus {
    Draining,
    Drained,
}

/// Cordon and drain labels of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
pub struct CordonDrainState {
    /// Cordon labels: the node takes no new replicas or targets while any
    /// is present.
    #[serde(default)]
    pub cordon_labels: Vec<String>,
    /// Drain labels (a draining node is cordoned too).
    #[serde(default)]
    pub drain_labels: Vec<String>,
    /// Set while a drain runs or after it finished.
    pub drain_status: Option<DrainStatus>,
}

impl CordonDrainState {
    /// Whether new replicas and targets must avoid the node.
    pub fn is_cordoned(&self) -> bool {
        !self.cordon_labels.is_empty() || !self.drain_labels.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeSpec {
    pub id: String,
    pub grpc_endpoint: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub cordon_drain_state: CordonDrainState,
    /// The engine's host NQN.
    pub node_nqn: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeState {
    pub id: String,
    pub grpc_endpoint: String,
    pub status: NodeStatus,
    pub node_nqn: String,
    /// Engine version.
    #[serde(default)]
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Node {
    pub id: String,
    pub spec: Option<NodeSpec>,
    pub state: Option<NodeState>,
}

// ------------------------------------------------------------------ pools --

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum PoolStatus {
    Unknown,
    Online,
    Degraded,
    Faulted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolSpec {
    pub node: String,
    pub id: String,
    pub disks: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub status: SpecStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolState {
    pub node: String,
    pub id: String,
    pub disks: Vec<String>,
    pub status: PoolStatus,
    /// Bytes usable by replicas.
    pub capacity: u64,
    /// Bytes allocated to replicas.
    pub used: u64,
    /// Sum of the sizes of the pool's replicas (thin ones in full).
    pub committed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Pool {
    pub id: String,
    pub spec: Option<PoolSpec>,
    pub state: Option<PoolState>,
}

/// Body of `PUT /nodes/{node}/pools/{pool}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePoolBody {
    /// Exactly one disk URI.
    pub disks: Vec<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

// ------------------------------------------------------- replicas, nexus --

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ReplicaStatus {
    Unknown,
    Online,
    Degraded,
    Faulted,
}

/// Who a replica belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
pub struct ReplicaOwners {
    pub volume: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReplicaSpec {
    pub uuid: String,
    pub size: u64,
    pub pool: String,
    pub node: String,
    pub thin: bool,
    pub share: Protocol,
    #[serde(default)]
    pub owners: ReplicaOwners,
    pub status: SpecStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Replica {
    pub node: String,
    pub uuid: String,
    pub pool: String,
    pub thin: bool,
    pub size: u64,
    /// Bytes allocated.
    pub allocated: u64,
    pub share: Protocol,
    pub uri: String,
    pub status: ReplicaStatus,
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum NexusStatus {
    Unknown,
    Online,
    Degraded,
    Faulted,
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ChildState {
    Unknown,
    Online,
    Degraded,
    Faulted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Child {
    pub uri: String,
    pub state: ChildState,
    /// Why it is not online (`io_failure`, `out_of_sync`, ...), or `none`.
    pub state_reason: String,
    /// Percent, while rebuilding.
    pub rebuild_progress: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NexusSpec {
    pub uuid: String,
    pub node: String,
    pub size: u64,
    /// Replica uuids of the children.
    pub children: Vec<String>,
    pub owner: Option<String>,
    pub share: Protocol,
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    pub status: SpecStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Nexus {
    pub node: String,
    pub uuid: String,
    pub size: u64,
    pub status: NexusStatus,
    pub children: Vec<Child>,
    /// `nvmf://...` when published, else empty.
    pub device_uri: String,
    pub rebuilds: u32,
    pub protocol: Protocol,
}

// ---------------------------------------------------------------- volumes --

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum VolumeStatus {
    Unknown,
    Online,
    Degraded,
    Faulted,
    Shutdown,
}

/// Labels a node or pool must have (inclusion) or must not have
/// (exclusion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct LabelledTopology {
    #[serde(default)]
    pub inclusion: BTreeMap<String, String>,
    #[serde(default)]
    pub exclusion: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub node_topology: Option<LabelledTopology>,
    pub pool_topology: Option<LabelledTopology>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumePolicy {
    /// Replace faulted replicas automatically.
    #[serde(default = "yes")]
    pub self_heal: bool,
}

impl Default for VolumePolicy {
    /// Self-healing is on unless asked otherwise (absent policy or absent
    /// field alike).
    fn default() -> Self {
        Self { self_heal: true }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AffinityGroup {
    /// Volumes of one group (e.g. one StatefulSet) spread their replicas
    /// and targets over different nodes where possible.
    pub id: String,
}

/// Where a volume is published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VolumeTarget {
    /// Node of the nexus.
    pub node: String,
    pub protocol: Protocol,
    /// Nodes allowed to connect.
    #[serde(default)]
    pub frontend_nodes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VolumeSpec {
    pub uuid: String,
    pub size: u64,
    pub num_replicas: u8,
    pub status: SpecStatus,
    pub target: Option<VolumeTarget>,
    #[serde(default)]
    pub policy: VolumePolicy,
    pub topology: Option<Topology>,
    pub labels: Option<BTreeMap<String, String>>,
    pub thin: bool,
    pub affinity_group: Option<AffinityGroup>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReplicaTopology {
    pub node: Option<String>,
    pub pool: Option<String>,
    pub state: ReplicaStatus,
    /// The replica's state as a child of the volume's nexus.
    pub child_status: Option<ChildState>,
    pub child_status_reason: Option<String>,
    pub rebuild_progress: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VolumeState {
    pub uuid: String,
    pub size: u64,
    pub status: VolumeStatus,
    pub target: Option<Nexus>,
    /// Replica uuid -> where it lives and how it is.
    pub replica_topology: BTreeMap<String, ReplicaTopology>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Volume {
    pub spec: VolumeSpec,
    pub state: VolumeState,
}

/// One page of `GET /volumes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Volumes {
    pub entries: Vec<Volume>,
    /// Token of the next page; absent on the last one.
    pub next_token: Option<u64>,
}

/// Body of `PUT /volumes/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVolumeBody {
    /// Bytes, > 0.
    pub size: u64,
    /// 1 up to the number of usable nodes.
    pub replicas: u8,
    #[serde(default)]
    pub thin: bool,
    #[serde(default)]
    pub policy: VolumePolicy,
    pub topology: Option<Topology>,
    pub labels: Option<BTreeMap<String, String>>,
    pub affinity_group: Option<AffinityGroup>,
}

impl CreateVolumeBody {
    /// A thick, self-healing volume of `size` bytes and `replicas`
    /// replicas, without topology, labels or affinity group: what the API
    /// assumes for the fields a body leaves out.
    pub fn new(size: u64, replicas: u8) -> Self {
        Self {
            size,
            replicas,
            thin: false,
            policy: VolumePolicy::default(),
            topology: None,
            labels: None,
            affinity_group: None,
        }
    }
}

/// Body of `PUT /volumes/{id}/size`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResizeVolumeBody {
    /// New size in bytes (grow only).
    pub size: u64,
}

/// Body of `PUT /volumes/{id}/target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishVolumeBody {
    /// Node of the target; the least loaded usable node when absent.
    pub node: Option<String>,
    /// Node that will connect (its host NQN is allowed).
    pub frontend_node: Option<String>,
    pub protocol: Protocol,
}

impl PublishVolumeBody {
    /// An NVMe/TCP target on `node` (the scheduler's choice when `None`)
    /// for the host of `frontend_node` (any host when `None`).
    pub fn nvmf(node: Option<&str>, frontend_node: Option<&str>) -> Self {
        Self {
            node: node.map(str::to_owned),
            frontend_node: frontend_node.map(str::to_owned),
            protocol: Protocol::Nvmf,
        }
    }
}

/// Body of `PUT /volumes/{id}/target/republish`: moves a published
/// volume's target to another node (a new nexus with a fresh controller-ID
/// window whose reservation preempts the old target's), for a switch-over.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RepublishVolumeBody {
    /// Node of the new target; the least loaded usable node other than the
    /// current target's when absent.
    #[serde(default)]
    pub node: Option<String>,
    /// Node that will connect; the current target's frontend when absent.
    #[serde(default)]
    pub frontend_node: Option<String>,
    /// Make before break (a drain's switch-over): the old target is not
    /// destroyed but set ANA inaccessible (its hosts' I/O waits for, or
    /// goes to, another path; none fails) and stays published, so a host
    /// keeps a path until its new one is live; `DELETE
    /// /volumes/{id}/target/retired` destroys it afterwards. When its node
    /// cannot be reached the old target is retired as without this flag.
    #[serde(default)]
    pub make_before_break: bool,
}

// ---------------------------------------------------------------- rebuild --

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RebuildRecord {
    pub child_uri: String,
    pub src_uri: String,
    /// `completed`, `stopped`, `failed`.
    pub rebuild_job_state: String,
    pub blocks_total: u64,
    pub blocks_recovered: u64,
    pub blocks_transferred: u64,
    pub blocks_remaining: u64,
    pub block_size: u64,
    pub is_partial: bool,
    /// RFC 3339 UTC.
    pub start_time: String,
    pub end_time: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RebuildHistory {
    /// The volume.
    pub target_uuid: String,
    pub records: Vec<RebuildRecord>,
}

// ------------------------------------------------------------------ specs --

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
pub struct Specs {
    pub nodes: Vec<NodeSpec>,
    pub pools: Vec<PoolSpec>,
    pub replicas: Vec<ReplicaSpec>,
    pub volumes: Vec<VolumeSpec>,
    pub nexuses: Vec<NexusSpec>,
}

// ---------------------------------------------------------------- upgrade --

mod upgrade;
pub use upgrade::*;

// ------------------------------------------------------------------ stats --

mod stats;
pub use stats::*;
