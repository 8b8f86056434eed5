//! Space back for a thin pool that ran out: which replica moves off it and
//! where its successor goes.

use std::collections::BTreeMap;

use super::{
    place_additional_replica, ChildHealth, Cluster, Placement, ReplicaInfo, VolumeRequest,
};

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
