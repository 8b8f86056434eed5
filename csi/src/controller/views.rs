//! How REST resources look through CSI: a REST volume as a CSI volume with
//! its status (published nodes, condition), the CSI labels kept on a
//! volume, the capabilities we serve, and the free capacity a new volume
//! could take.

use std::collections::{BTreeMap, HashMap};

use openapi::models::{LabelledTopology, Node, NodeStatus, Pool, PoolStatus, Volume, VolumeStatus};

use crate::v1::{
    volume_capability::{access_mode::Mode, AccessType},
    VolumeCapability, VolumeCondition,
};

/// Label marking the volumes this driver created (the garbage collector
/// touches only these).
pub const CREATED_BY: (&str, &str) = ("openebs.io/created-by", "csi-controller");
/// Prefix of the labels holding a volume's CSI context.
pub const CONTEXT_LABEL_PREFIX: &str = "csi.openebs.io/";

/// The REST labels of a new volume: the creator mark and its context.
pub fn volume_labels(context: &HashMap<String, String>) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = context
        .iter()
        .map(|(k, v)| (format!("{CONTEXT_LABEL_PREFIX}{k}"), v.clone()))
        .collect();
    labels.insert(CREATED_BY.0.to_owned(), CREATED_BY.1.to_owned());
    labels
}

/// The CSI context kept in a volume's labels (empty for a volume made
/// outside CSI).
pub fn volume_context(volume: &Volume) -> HashMap<String, String> {
    volume
        .spec
        .labels
        .iter()
        .flatten()
        .filter_map(|(k, v)| {
            k.strip_prefix(CONTEXT_LABEL_PREFIX)
                .map(|k| (k.to_owned(), v.clone()))
        })
        .collect()
}

/// A REST volume as a CSI volume.
pub fn csi_volume(volume: &Volume) -> crate::v1::Volume {
    crate::v1::Volume {
        capacity_bytes: i64::try_from(volume.spec.size).unwrap_or(i64::MAX),
        volume_id: volume.spec.uuid.clone(),
        volume_context: volume_context(volume),
        content_source: None,
        accessible_topology: Vec::new(),
    }
}

/// The nodes the volume is published to.
pub fn published_nodes(volume: &Volume) -> Vec<String> {
    volume
        .spec
        .target
        .as_ref()
        .map(|t| t.frontend_nodes.clone())
        .unwrap_or_default()
}

/// Abnormal while the volume is Degraded or Faulted.
pub fn condition(volume: &Volume) -> VolumeCondition {
    let status = volume.state.status;
    match status {
        VolumeStatus::Degraded | VolumeStatus::Faulted => {
            let unhealthy: Vec<&str> = volume
                .state
                .replica_topology
                .iter()
                .filter(|(_, r)| {
                    r.child_status
                        .is_some_and(|c| c != openapi::models::ChildState::Online)
                })
                .map(|(id, _)| id.as_str())
                .collect();
            VolumeCondition {
                abnormal: true,
                message: if unhealthy.is_empty() {
                    format!("volume is {status:?}")
                } else {
                    format!(
                        "volume is {status:?}; replicas not online: {}",
                        unhealthy.join(", ")
                    )
                },
            }
        }
        _ => VolumeCondition {
            abnormal: false,
            message: format!("volume is {status:?}"),
        },
    }
}

/// Why a capability cannot be served, or `None`: single-node access modes,
/// raw block or a mount with ext4 or xfs.
pub fn unsupported(cap: &VolumeCapability) -> Option<String> {
    let mode = cap
        .access_mode
        .as_ref()
        .map(|m| Mode::try_from(m.mode).unwrap_or(Mode::Unknown));
    match mode {
        Some(Mode::SingleNodeWriter | Mode::SingleNodeReaderOnly) => {}
        Some(other) => {
            return Some(format!(
                "access mode {} is not supported",
                other.as_str_name()
            ))
        }
        None => return Some("the access mode is missing".to_owned()),
    }
    match &cap.access_type {
        Some(AccessType::Block(_)) => None,
        Some(AccessType::Mount(m)) => match m.fs_type.as_str() {
            "" | "ext4" | "xfs" => None,
            other => Some(format!("filesystem {other:?} is not supported (ext4, xfs)")),
        },
        None => Some("the access type (block or mount) is missing".to_owned()),
    }
}

/// Whether the capability asks for a raw block device.
pub fn is_block(cap: Option<&VolumeCapability>) -> bool {
    matches!(
        cap.and_then(|c| c.access_type.as_ref()),
        Some(AccessType::Block(_))
    )
}

/// Whether `labels` satisfy `topology` (the placement rule of the REST
/// API: every inclusion key present with that value, an empty value
/// accepting any; no exclusion key with that value).
fn admits(labels: &BTreeMap<String, String>, topology: Option<&LabelledTopology>) -> bool {
    let Some(t) = topology else { return true };
    let has = |key: &String, want: &String| {
        labels
            .get(key)
            .is_some_and(|have| want.is_empty() || have == want)
    };
    t.inclusion.iter().all(|(k, v)| has(k, v)) && !t.exclusion.iter().any(|(k, v)| has(k, v))
}

/// The largest volume of `replicas` replicas that could be placed now:
/// each replica on its own online, uncordoned node inside the node
/// topology, on an online pool inside the pool topology; thick replicas
/// need free and uncommitted bytes, thin ones free bytes.
pub fn free_capacity(
    nodes: &[Node],
    pools: &[Pool],
    replicas: u8,
    thin: bool,
    topology: Option<&openapi::models::Topology>,
) -> u64 {
    let node_topology = topology.and_then(|t| t.node_topology.as_ref());
    let pool_topology = topology.and_then(|t| t.pool_topology.as_ref());
    let usable_node = |id: &str| {
        nodes.iter().any(|n| {
            n.id == id
                && n.state
                    .as_ref()
                    .is_some_and(|s| s.status == NodeStatus::Online)
                && n.spec.as_ref().is_some_and(|s| {
                    !s.cordon_drain_state.is_cordoned() && admits(&s.labels, node_topology)
                })
        })
    };
    let mut best_per_node: BTreeMap<&str, u64> = BTreeMap::new();
    for pool in pools {
        let (Some(spec), Some(state)) = (&pool.spec, &pool.state) else {
            continue;
        };
        if state.status != PoolStatus::Online
            || !admits(&spec.labels, pool_topology)
            || !usable_node(&state.node)
        {
            continue;
        }
        let room = if thin {
            state.capacity.saturating_sub(state.used)
        } else {
            state
                .capacity
                .saturating_sub(state.used.max(state.committed))
        };
        let best = best_per_node.entry(state.node.as_str()).or_default();
        *best = (*best).max(room);
    }
    let mut rooms: Vec<u64> = best_per_node.into_values().collect();
    rooms.sort_unstable_by(|a, b| b.cmp(a));
    let room = rooms
        .get(usize::from(replicas.max(1)) - 1)
        .copied()
        .unwrap_or(0);
    room / crate::controller::errors::SIZE_ALIGN_BYTES * crate::controller::errors::SIZE_ALIGN_BYTES
}
