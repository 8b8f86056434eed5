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

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use openapi::models::LabelledTopology;

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

/// Why nodes and pools were passed over, for error messages. Pools are
/// counted only on nodes that were not passed over themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rejections {
    pub nodes_offline: usize,
    pub nodes_cordoned: usize,
    /// Outside the volume's node topology.
    pub nodes_topology: usize,
    /// Already holding a replica of the volume (rule 2).
    pub nodes_with_replica: usize,
    /// Excluded by the caller (e.g. the node being drained).
    pub nodes_excluded: usize,
    /// Usable, but with no pool at all.
    pub nodes_without_pool: usize,
    pub pools_offline: usize,
    /// Outside the volume's pool topology.
    pub pools_topology: usize,
    /// Not enough free (thick: free and uncommitted) space.
    pub pools_no_space: usize,
    /// A thin replica would take the pool past its commitment limit.
    pub pools_overcommitted: usize,
}

impl fmt::Display for Rejections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items = [
            (self.nodes_offline, "node offline", "nodes offline"),
            (self.nodes_cordoned, "node cordoned", "nodes cordoned"),
            (
                self.nodes_topology,
                "node outside the node topology",
                "nodes outside the node topology",
            ),
            (
                self.nodes_with_replica,
                "node already holds a replica",
                "nodes already hold a replica",
            ),
            (self.nodes_excluded, "node excluded", "nodes excluded"),
            (
                self.nodes_without_pool,
                "node without a pool",
                "nodes without a pool",
            ),
            (self.pools_offline, "pool offline", "pools offline"),
            (
                self.pools_topology,
                "pool outside the pool topology",
                "pools outside the pool topology",
            ),
            (
                self.pools_no_space,
                "pool without enough free space",
                "pools without enough free space",
            ),
            (
                self.pools_overcommitted,
                "pool past its commitment limit",
                "pools past their commitment limit",
            ),
        ];
        let mut first = true;
        for (count, one, many) in items {
            if count == 0 {
                continue;
            }
            f.write_str(if first { "rejected: " } else { ", " })?;
            first = false;
            write!(f, "{count} {}", if count == 1 { one } else { many })?;
        }
        if first {
            f.write_str("no node or pool was rejected")?;
        }
        Ok(())
    }
}

/// Why a placement is impossible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    #[error("volume {volume} asks for 0 replicas; at least 1 is needed")]
    NoReplicas { volume: String },
    #[error(
        "volume {volume} needs {needed} replicas on distinct nodes; only {available} usable \
         nodes have a pool with room ({rejected})"
    )]
    NotEnoughNodes {
        volume: String,
        needed: usize,
        available: usize,
        rejected: Rejections,
    },
    #[error(
        "volume {volume} needs one more replica on a node without one; no usable node has a \
         pool with room ({rejected})"
    )]
    NoNodeForReplica {
        volume: String,
        rejected: Rejections,
    },
    #[error("volume {volume} cannot have its target on node {node}: the node is unknown")]
    TargetNodeUnknown { volume: String, node: String },
    #[error("volume {volume} cannot have its target on node {node}: the node is offline")]
    TargetNodeOffline { volume: String, node: String },
    #[error("volume {volume} cannot have its target on node {node}: the node is cordoned")]
    TargetNodeCordoned { volume: String, node: String },
    #[error(
        "volume {volume} cannot have its target on node {node}: the node is excluded (e.g. \
         being drained)"
    )]
    TargetNodeExcluded { volume: String, node: String },
    #[error("volume {volume} needs a target node; none of {total} nodes is usable ({rejected})")]
    NoTargetNode {
        volume: String,
        total: usize,
        rejected: Rejections,
    },
}

/// Places every replica of a new volume, best first, on distinct nodes
/// (rules 1 and 2), or explains why it cannot.
///
/// Ranking: nodes holding fewer replicas of the volume's affinity group
/// first, then the pool with the most room (thick: free and uncommitted
/// bytes; thin: free bytes), then the pool with fewer replicas, then ids.
pub fn place_new_volume(
    cluster: &Cluster,
    req: &VolumeRequest,
) -> Result<Vec<Placement>, ScheduleError> {
    if req.replicas == 0 {
        return Err(ScheduleError::NoReplicas {
            volume: req.uuid.clone(),
        });
    }
    let needed = usize::from(req.replicas);
    let free_pct = cluster.limits.volume_commitment_initial_pct;
    let (ranked, rejected) = rank_nodes(cluster, req, free_pct, &BTreeSet::new());
    if ranked.len() < needed {
        return Err(ScheduleError::NotEnoughNodes {
            volume: req.uuid.clone(),
            needed,
            available: ranked.len(),
            rejected,
        });
    }
    Ok(ranked
        .into_iter()
        .take(needed)
        .map(Candidate::placement)
        .collect())
}

/// Places one more replica of a volume on a node that holds none of
/// `existing` (rule 2), with the same filters and ranking as
/// [`place_new_volume`]; a thin replica needs `volume_commitment_pct` of its
/// size free.
///
/// `existing` is the volume's replica set as the caller means it: a caller
/// checking whether a faulted replica could be replaced before retiring it
/// leaves that replica out, which frees its node.
pub fn place_additional_replica(
    cluster: &Cluster,
    req: &VolumeRequest,
    existing: &[ReplicaInfo],
) -> Result<Placement, ScheduleError> {
    let taken: BTreeSet<&str> = existing.iter().map(|r| r.node.as_str()).collect();
    let free_pct = cluster.limits.volume_commitment_pct;
    let (ranked, rejected) = rank_nodes(cluster, req, free_pct, &taken);
    ranked
        .into_iter()
        .next()
        .map(Candidate::placement)
        .ok_or_else(|| ScheduleError::NoNodeForReplica {
            volume: req.uuid.clone(),
            rejected,
        })
}

/// How to give space back to a thin pool that ran out: move one replica
/// off it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relief {
    /// The replica that leaves the pool.
    pub replica: String,
    pub volume: String,
    /// Where its successor goes.
    pub to: Placement,
    /// The replica is a faulted child (typically the one that ran out of
    /// space): retire it first, then add its successor. A healthy one
    /// stays until its successor is rebuilt.
    pub faulted: bool,
}

/// The replica to move off `pool`, which ran out of space: the one with the
/// most bytes allocated among the replicas of published volumes that can be
/// placed elsewhere (ties by uuid), so that moving it frees the most space.
///
/// - Only replicas that are children of their volume's nexus are
///   candidates: the successor is rebuilt from the volume's other
///   children, so an unpublished volume's replica never moves.
/// - A faulted candidate needs another Online child as the rebuild source.
/// - The successor follows the usual placement rules (labels, cordon,
///   thin commitment, rule 2 against every replica of the volume, the
///   moving one included) and never lands on `pool`.
///
/// `requests` gives each volume's placement request; a volume missing from
/// it is not moved.
pub fn relieve_pool(
    cluster: &Cluster,
    pool: &str,
    requests: &BTreeMap<String, VolumeRequest>,
) -> Option<Relief> {
    let mut candidates: Vec<&ReplicaInfo> = cluster
        .replicas
        .iter()
        .filter(|r| r.pool == pool && r.volume.is_some() && r.child.is_some())
        .collect();
    candidates.sort_by(|a, b| b.allocated.cmp(&a.allocated).then(a.uuid.cmp(&b.uuid)));
    let mut elsewhere = cluster.clone();
    elsewhere.pools.retain(|p| p.id != pool);
    for r in candidates {
        let Some(volume) = r.volume.as_deref() else {
            continue;
        };
        let Some(req) = requests.get(volume) else {
            continue;
        };
        let siblings: Vec<ReplicaInfo> = cluster
            .replicas
            .iter()
            .filter(|o| o.volume.as_deref() == Some(volume))
            .cloned()
            .collect();
        let faulted = r.child == Some(ChildHealth::Faulted);
        if faulted
            && !siblings
                .iter()
                .any(|o| o.uuid != r.uuid && o.child == Some(ChildHealth::Online))
        {
            continue;
        }
        if let Ok(to) = place_additional_replica(&elsewhere, req, &siblings) {
            return Some(Relief {
                replica: r.uuid.clone(),
                volume: volume.to_owned(),
                to,
                faulted,
            });
        }
    }
    None
}

/// The replica a scale-down of `volume` retires (rule 3), or `None` when
/// every candidate is the volume's last healthy replica or its only one.
///
/// Order: faulted children; replicas that are unreachable (node offline or
/// unknown, or the replica missing from its pool); replicas that are not
/// children of the volume's observed nexus; rebuilding ones, least progress
/// first; healthy ones on the node with the most replicas, then on the pool
/// with the least free space. Ties by uuid.
pub fn replica_to_remove(cluster: &Cluster, volume: &str) -> Option<String> {
    let replicas: Vec<&ReplicaInfo> = cluster
        .replicas
        .iter()
        .filter(|r| r.volume.as_deref() == Some(volume))
        .collect();
    if replicas.len() < 2 {
        return None;
    }
    // Without any child state the volume has no observed nexus, and health
    // rests on reachability alone.
    let nexus_seen = replicas.iter().any(|r| r.child.is_some());
    let online_nodes: BTreeSet<&str> = cluster
        .nodes
        .iter()
        .filter(|n| n.online)
        .map(|n| n.id.as_str())
        .collect();
    let condition = |r: &ReplicaInfo| -> Condition {
        if r.child == Some(ChildHealth::Faulted) {
            Condition::Faulted
        } else if !r.online || !online_nodes.contains(r.node.as_str()) {
            Condition::Unreachable
        } else {
            match r.child {
                None if nexus_seen => Condition::NotChild,
                Some(ChildHealth::Rebuilding { progress }) => Condition::Rebuilding(progress),
                _ => Condition::Healthy,
            }
        }
    };
    let healthy = replicas
        .iter()
        .filter(|r| condition(r) == Condition::Healthy)
        .count();
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &cluster.replicas {
        *per_node.entry(r.node.as_str()).or_default() += 1;
    }
    let pool_free = |r: &ReplicaInfo| {
        cluster
            .pools
            .iter()
            .find(|p| p.id == r.pool)
            .map_or(0, |p| p.capacity.saturating_sub(p.used))
    };
    replicas
        .into_iter()
        .filter(|r| condition(r) != Condition::Healthy || healthy > 1)
        .min_by(|a, b| {
            let key = |r: &ReplicaInfo| {
                let crowd = per_node.get(r.node.as_str()).copied().unwrap_or(0);
                (condition(r), std::cmp::Reverse(crowd), pool_free(r))
            };
            key(a).cmp(&key(b)).then_with(|| a.uuid.cmp(&b.uuid))
        })
        .map(|r| r.uuid.clone())
}

/// The node for `volume`'s target (nexus).
///
/// A `requested` node is taken as is if it is known, online, uncordoned
/// and not in `exclude`; otherwise the error says which it is not. Without
/// one: among online, uncordoned nodes outside `exclude`, prefer nodes
/// hosting fewer targets of the volume's affinity group, then nodes in
/// `replica_nodes` (a local child), then nodes with fewer nexuses (the
/// volume's own not counted), then ids.
pub fn target_node(
    cluster: &Cluster,
    volume: &str,
    requested: Option<&str>,
    replica_nodes: &[String],
    exclude: &[String],
) -> Result<String, ScheduleError> {
    let excluded = |id: &str| exclude.iter().any(|e| e == id);
    if let Some(id) = requested {
        let (volume, node) = (volume.to_owned(), id.to_owned());
        return match cluster.nodes.iter().find(|n| n.id == id) {
            None => Err(ScheduleError::TargetNodeUnknown { volume, node }),
            Some(n) if !n.online => Err(ScheduleError::TargetNodeOffline { volume, node }),
            Some(n) if n.cordoned => Err(ScheduleError::TargetNodeCordoned { volume, node }),
            Some(_) if excluded(id) => Err(ScheduleError::TargetNodeExcluded { volume, node }),
            Some(_) => Ok(node),
        };
    }
    let peers = group_peers(cluster, volume, None);
    let mut load: BTreeMap<&str, usize> = BTreeMap::new();
    let mut group_targets: BTreeMap<&str, usize> = BTreeMap::new();
    for nexus in &cluster.nexuses {
        let owner = nexus.volume.as_deref();
        if owner == Some(volume) {
            continue;
        }
        *load.entry(nexus.node.as_str()).or_default() += 1;
        if owner.is_some_and(|v| peers.contains(v)) {
            *group_targets.entry(nexus.node.as_str()).or_default() += 1;
        }
    }
    let mut rejected = Rejections::default();
    let mut best: Option<(usize, bool, usize, &str)> = None;
    for node in distinct_nodes(cluster) {
        if !node.online {
            rejected.nodes_offline += 1;
        } else if node.cordoned {
            rejected.nodes_cordoned += 1;
        } else if excluded(&node.id) {
            rejected.nodes_excluded += 1;
        } else {
            let id = node.id.as_str();
            let key = (
                group_targets.get(id).copied().unwrap_or(0),
                !replica_nodes.iter().any(|r| r == id),
                load.get(id).copied().unwrap_or(0),
                id,
            );
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
        }
    }
    best.map(|(.., id)| id.to_owned())
        .ok_or_else(|| ScheduleError::NoTargetNode {
            volume: volume.to_owned(),
            total: distinct_nodes(cluster).count(),
            rejected,
        })
}

/// How many nodes could hold a replica of the volume, capacity aside:
/// online, uncordoned, inside the node topology, with at least one online
/// pool inside the pool topology.
pub fn usable_node_count(cluster: &Cluster, req: &VolumeRequest) -> usize {
    distinct_nodes(cluster)
        .filter(|n| node_verdict(n, req).is_ok())
        .filter(|n| {
            cluster
                .pools
                .iter()
                .any(|p| p.node == n.id && pool_verdict(p, req).is_ok())
        })
        .count()
}

/// Whether `labels` satisfy `topology`: every inclusion key present with
/// that value (an empty value accepts any value), and no exclusion key with
/// that value (an empty value excludes the key altogether).
pub fn topology_admits(
    labels: &BTreeMap<String, String>,
    topology: Option<&LabelledTopology>,
) -> bool {
    let Some(topology) = topology else {
        return true;
    };
    let included = topology.inclusion.iter().all(|(key, want)| {
        labels
            .get(key)
            .is_some_and(|have| want.is_empty() || have == want)
    });
    let excluded = topology.exclusion.iter().any(|(key, avoid)| {
        labels
            .get(key)
            .is_some_and(|have| avoid.is_empty() || have == avoid)
    });
    included && !excluded
}

// ------------------------------------------------------------- internals --

/// Health classes of a replica for scale-down, first retired first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Condition {
    Faulted,
    Unreachable,
    NotChild,
    Rebuilding(u8),
    Healthy,
}

/// Why a pool cannot take a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PoolReject {
    Offline,
    Topology,
    NoSpace,
    Overcommitted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeReject {
    Offline,
    Cordoned,
    Topology,
}

/// The best pool of one node, with its ranking key.
struct Candidate<'a> {
    pool: &'a PoolInfo,
    /// Replicas of the volume's affinity group already on the node.
    group_replicas: usize,
    /// Room for this kind of replica, bytes.
    room: u64,
    /// Replicas already on the pool.
    pool_replicas: usize,
}

impl Candidate<'_> {
    fn key(&self) -> (usize, std::cmp::Reverse<u64>, usize, &str, &str) {
        (
            self.group_replicas,
            std::cmp::Reverse(self.room),
            self.pool_replicas,
            self.pool.id.as_str(),
            self.pool.node.as_str(),
        )
    }

    fn placement(self) -> Placement {
        Placement {
            node: self.pool.node.clone(),
            pool: self.pool.id.clone(),
        }
    }
}

/// Nodes in id order, each id once (the first entry wins).
fn distinct_nodes(cluster: &Cluster) -> impl Iterator<Item = &NodeInfo> {
    let mut seen = BTreeMap::new();
    for n in &cluster.nodes {
        seen.entry(n.id.as_str()).or_insert(n);
    }
    seen.into_values()
}

fn node_verdict(node: &NodeInfo, req: &VolumeRequest) -> Result<(), NodeReject> {
    if !node.online {
        Err(NodeReject::Offline)
    } else if node.cordoned {
        Err(NodeReject::Cordoned)
    } else if !topology_admits(&node.labels, req.node_topology.as_ref()) {
        Err(NodeReject::Topology)
    } else {
        Ok(())
    }
}

fn pool_verdict(pool: &PoolInfo, req: &VolumeRequest) -> Result<(), PoolReject> {
    if !pool.online {
        Err(PoolReject::Offline)
    } else if !topology_admits(&pool.labels, req.pool_topology.as_ref()) {
        Err(PoolReject::Topology)
    } else {
        Ok(())
    }
}

/// Checks that a replica of `size` bytes fits on `pool` and returns the
/// pool's room for ranking. Thick: free and uncommitted bytes must cover the
/// size. Thin: committed plus size within `pool_commitment_pct` of the
/// capacity, and `free_pct` of the size free. Exact integer arithmetic.
fn room_for(
    pool: &PoolInfo,
    size: u64,
    thin: bool,
    free_pct: u64,
    limits: &ThinLimits,
) -> Result<u64, PoolReject> {
    if !thin {
        let room = pool.capacity.saturating_sub(pool.used.max(pool.committed));
        return if room >= size {
            Ok(room)
        } else {
            Err(PoolReject::NoSpace)
        };
    }
    let committed = u128::from(pool.committed) + u128::from(size);
    if committed * 100 > u128::from(pool.capacity) * u128::from(limits.pool_commitment_pct) {
        return Err(PoolReject::Overcommitted);
    }
    let free = pool.capacity.saturating_sub(pool.used);
    if u128::from(free) * 100 < u128::from(size) * u128::from(free_pct) {
        return Err(PoolReject::NoSpace);
    }
    Ok(free)
}

/// The other volumes of every affinity group `volume` belongs to (or of
/// `group` when given).
fn group_peers<'a>(cluster: &'a Cluster, volume: &str, group: Option<&str>) -> BTreeSet<&'a str> {
    cluster
        .volumes_in_group
        .iter()
        .filter(|(id, members)| match group {
            Some(g) => id.as_str() == g,
            None => members.iter().any(|m| m == volume),
        })
        .flat_map(|(_, members)| members.iter().map(String::as_str))
        .filter(|m| *m != volume)
        .collect()
}

/// One candidate per usable node that is not `taken`, best first, and the
/// reasons the others were passed over.
fn rank_nodes<'a>(
    cluster: &'a Cluster,
    req: &VolumeRequest,
    free_pct: u64,
    taken: &BTreeSet<&str>,
) -> (Vec<Candidate<'a>>, Rejections) {
    let mut rejected = Rejections::default();
    let mut usable = BTreeSet::new();
    for node in distinct_nodes(cluster) {
        match node_verdict(node, req) {
            Err(NodeReject::Offline) => rejected.nodes_offline += 1,
            Err(NodeReject::Cordoned) => rejected.nodes_cordoned += 1,
            Err(NodeReject::Topology) => rejected.nodes_topology += 1,
            Ok(()) if taken.contains(node.id.as_str()) => rejected.nodes_with_replica += 1,
            Ok(()) => {
                usable.insert(node.id.as_str());
            }
        }
    }

    let peers = match &req.affinity_group {
        Some(group) => group_peers(cluster, &req.uuid, Some(group)),
        None => BTreeSet::new(),
    };
    let mut group_replicas: BTreeMap<&str, usize> = BTreeMap::new();
    let mut pool_replicas: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &cluster.replicas {
        *pool_replicas.entry(r.pool.as_str()).or_default() += 1;
        if r.volume.as_deref().is_some_and(|v| peers.contains(v)) {
            *group_replicas.entry(r.node.as_str()).or_default() += 1;
        }
    }

    let mut pooled = BTreeSet::new();
    let mut candidates = Vec::new();
    let mut seen_pools = BTreeSet::new();
    let mut pools: Vec<&PoolInfo> = cluster.pools.iter().collect();
    pools.sort_by(|a, b| (&a.id, &a.node).cmp(&(&b.id, &b.node)));
    for pool in pools {
        if !usable.contains(pool.node.as_str()) || !seen_pools.insert(pool.id.as_str()) {
            continue;
        }
        pooled.insert(pool.node.as_str());
        let verdict = pool_verdict(pool, req)
            .and_then(|()| room_for(pool, req.size, req.thin, free_pct, &cluster.limits));
        match verdict {
            Err(PoolReject::Offline) => rejected.pools_offline += 1,
            Err(PoolReject::Topology) => rejected.pools_topology += 1,
            Err(PoolReject::NoSpace) => rejected.pools_no_space += 1,
            Err(PoolReject::Overcommitted) => rejected.pools_overcommitted += 1,
            Ok(room) => candidates.push(Candidate {
                pool,
                group_replicas: group_replicas.get(pool.node.as_str()).copied().unwrap_or(0),
                room,
                pool_replicas: pool_replicas.get(pool.id.as_str()).copied().unwrap_or(0),
            }),
        }
    }
    rejected.nodes_without_pool = usable.difference(&pooled).count();

    candidates.sort_by(|a, b| a.key().cmp(&b.key()));
    let mut placed_nodes = BTreeSet::new();
    candidates.retain(|c| placed_nodes.insert(c.pool.node.as_str()));
    (candidates, rejected)
}

#[cfg(test)]
mod tests;
