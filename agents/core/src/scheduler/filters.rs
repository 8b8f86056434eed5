//! Which nodes and pools a volume may use at all: online, uncordoned,
//! inside its label topology; and the affinity group peers of a volume.

use std::collections::{BTreeMap, BTreeSet};

use openapi::models::LabelledTopology;

use super::{Cluster, NodeInfo, PoolInfo, VolumeRequest};

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

/// Why a pool cannot take a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PoolReject {
    Offline,
    Topology,
    NoSpace,
    Overcommitted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NodeReject {
    Offline,
    Cordoned,
    Topology,
}

/// Nodes in id order, each id once (the first entry wins).
pub(super) fn distinct_nodes(cluster: &Cluster) -> impl Iterator<Item = &NodeInfo> {
    let mut seen = BTreeMap::new();
    for n in &cluster.nodes {
        seen.entry(n.id.as_str()).or_insert(n);
    }
    seen.into_values()
}

pub(super) fn node_verdict(node: &NodeInfo, req: &VolumeRequest) -> Result<(), NodeReject> {
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

pub(super) fn pool_verdict(pool: &PoolInfo, req: &VolumeRequest) -> Result<(), PoolReject> {
    if !pool.online {
        Err(PoolReject::Offline)
    } else if !topology_admits(&pool.labels, req.pool_topology.as_ref()) {
        Err(PoolReject::Topology)
    } else {
        Ok(())
    }
}

/// The other volumes of every affinity group `volume` belongs to (or of
/// `group` when given).
pub(super) fn group_peers<'a>(
    cluster: &'a Cluster,
    volume: &str,
    group: Option<&str>,
) -> BTreeSet<&'a str> {
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
