//! The node of a volume's target (nexus): the requested one if usable,
//! else spread over affinity groups, local to a replica, least loaded.

use std::collections::BTreeMap;

use super::{
    filters::{distinct_nodes, group_peers},
    Cluster, Rejections, ScheduleError,
};

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
