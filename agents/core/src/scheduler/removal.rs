//! Scale-down (rule 3): which replica of a volume is retired first, never
//! the last healthy one.

use std::collections::{BTreeMap, BTreeSet};

use super::{ChildHealth, Cluster, ReplicaInfo};

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

/// Health classes of a replica for scale-down, first retired first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Condition {
    Faulted,
    Unreachable,
    NotChild,
    Rebuilding(u8),
    Healthy,
}
