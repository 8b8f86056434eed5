//! Where replicas go: every replica of a new volume (rules 1 and 2), or
//! one more replica of a volume; candidates ranked by affinity group,
//! room, crowding and ids.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    filters::{distinct_nodes, group_peers, node_verdict, pool_verdict, NodeReject, PoolReject},
    Cluster, Placement, PoolInfo, Rejections, ReplicaInfo, ScheduleError, ThinLimits,
    VolumeRequest,
};

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

// ------------------------------------------------------------- internals --

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
