//! Read-only helpers over the REST models: states as text, a child's
//! replica, cordon and drain summaries. Missing optional parts (a node
//! without state, a volume without target) read as `Unknown` or `-`, never
//! as a panic.

use openapi::models::{
    Child, ChildState, DrainStatus, Node, NodeStatus, Pool, PoolStatus, ReplicaTopology, Volume,
    VolumeStatus,
};

/// The text shown for an absent value.
pub const NONE: &str = "-";

pub fn node_status(node: &Node) -> NodeStatus {
    node.state
        .as_ref()
        .map(|s| s.status)
        .unwrap_or(NodeStatus::Unknown)
}

pub fn node_status_text(status: NodeStatus) -> &'static str {
    match status {
        NodeStatus::Unknown => "Unknown",
        NodeStatus::Online => "Online",
        NodeStatus::Offline => "Offline",
    }
}

pub fn node_endpoint(node: &Node) -> &str {
    node.state
        .as_ref()
        .map(|s| s.grpc_endpoint.as_str())
        .or_else(|| node.spec.as_ref().map(|s| s.grpc_endpoint.as_str()))
        .unwrap_or(NONE)
}

pub fn node_version(node: &Node) -> &str {
    match node.state.as_ref().map(|s| s.version.as_str()) {
        Some(v) if !v.is_empty() => v,
        _ => NONE,
    }
}

/// Cordon labels of a node.
pub fn cordon_labels(node: &Node) -> &[String] {
    node.spec
        .as_ref()
        .map(|s| s.cordon_drain_state.cordon_labels.as_slice())
        .unwrap_or(&[])
}

/// Drain labels of a node.
pub fn drain_labels(node: &Node) -> &[String] {
    node.spec
        .as_ref()
        .map(|s| s.cordon_drain_state.drain_labels.as_slice())
        .unwrap_or(&[])
}

pub fn drain_status(node: &Node) -> Option<DrainStatus> {
    node.spec
        .as_ref()
        .and_then(|s| s.cordon_drain_state.drain_status)
}

/// `Cordoned (a,b)` or `-`.
pub fn cordon_text(node: &Node) -> String {
    let labels = cordon_labels(node);
    if labels.is_empty() {
        NONE.to_string()
    } else {
        format!("Cordoned ({})", labels.join(","))
    }
}

/// `Draining (a)`, `Drained (a)` or `-`.
pub fn drain_text(node: &Node) -> String {
    let labels = drain_labels(node);
    let status = match drain_status(node) {
        Some(DrainStatus::Draining) => "Draining",
        Some(DrainStatus::Drained) => "Drained",
        None if labels.is_empty() => return NONE.to_string(),
        None => "Drain",
    };
    if labels.is_empty() {
        status.to_string()
    } else {
        format!("{status} ({})", labels.join(","))
    }
}

pub fn pool_status(pool: &Pool) -> PoolStatus {
    pool.state
        .as_ref()
        .map(|s| s.status)
        .unwrap_or(PoolStatus::Unknown)
}

pub fn pool_status_text(status: PoolStatus) -> &'static str {
    match status {
        PoolStatus::Unknown => "Unknown",
        PoolStatus::Online => "Online",
        PoolStatus::Degraded => "Degraded",
        PoolStatus::Faulted => "Faulted",
    }
}

pub fn pool_node(pool: &Pool) -> &str {
    pool.state
        .as_ref()
        .map(|s| s.node.as_str())
        .or_else(|| pool.spec.as_ref().map(|s| s.node.as_str()))
        .unwrap_or(NONE)
}

pub fn pool_disks(pool: &Pool) -> String {
    let disks = pool
        .state
        .as_ref()
        .map(|s| &s.disks)
        .or_else(|| pool.spec.as_ref().map(|s| &s.disks));
    match disks {
        Some(d) if !d.is_empty() => d.join(","),
        _ => NONE.to_string(),
    }
}

pub fn volume_status_text(status: VolumeStatus) -> &'static str {
    match status {
        VolumeStatus::Unknown => "Unknown",
        VolumeStatus::Online => "Online",
        VolumeStatus::Degraded => "Degraded",
        VolumeStatus::Faulted => "Faulted",
        VolumeStatus::Shutdown => "Shutdown",
    }
}

pub fn child_state_text(state: ChildState) -> &'static str {
    match state {
        ChildState::Unknown => "Unknown",
        ChildState::Online => "Online",
        ChildState::Degraded => "Degraded",
        ChildState::Faulted => "Faulted",
    }
}

/// Node of a volume's target: the running nexus, else the spec's target.
pub fn target_node(volume: &Volume) -> Option<&str> {
    volume
        .state
        .target
        .as_ref()
        .map(|n| n.node.as_str())
        .or_else(|| volume.spec.target.as_ref().map(|t| t.node.as_str()))
}

/// The replica (uuid and topology entry) behind a nexus child: the one
/// whose uuid appears in the child's URI.
pub fn child_replica<'a>(
    volume: &'a Volume,
    child: &Child,
) -> Option<(&'a str, &'a ReplicaTopology)> {
    volume
        .state
        .replica_topology
        .iter()
        .find(|(uuid, _)| !uuid.is_empty() && child.uri.contains(uuid.as_str()))
        .map(|(uuid, t)| (uuid.as_str(), t))
}

/// A child's short name: `replica 1a2b3c4d on node-2`, or its URI when the
/// replica is unknown.
pub fn child_name(volume: &Volume, child: &Child) -> String {
    match child_replica(volume, child) {
        Some((uuid, t)) => format!(
            "replica {} on {}",
            crate::format::short_id(uuid),
            t.node.as_deref().unwrap_or(NONE)
        ),
        None => format!("child {}", child.uri),
    }
}

/// The children of a volume's nexus (none when unpublished).
pub fn children(volume: &Volume) -> &[Child] {
    volume
        .state
        .target
        .as_ref()
        .map(|n| n.children.as_slice())
        .unwrap_or(&[])
}
