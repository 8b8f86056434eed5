//! The tables of each resource, built from the REST models alone (no I/O),
//! so they are tested from fixed models.
//!
//! Default columns are the upstream plugin's; `wide` adds the newer ones.
//! Absent values print as `<none>`.

use std::collections::BTreeMap;

use openapi::models::{
    DrainStatus, Node, NodeStatus, Pool, Protocol, RebuildHistory, Replica, ReplicaTopology, Volume,
};

use crate::table::{human_size, Table, NONE};

/// Snapshots are not taken by this engine yet: the column is always 0.
const NO_SNAPSHOTS: &str = "0";

fn or_none(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => v.to_string(),
        _ => NONE.to_string(),
    }
}

fn debug<T: std::fmt::Debug>(value: &T) -> String {
    format!("{value:?}")
}

/// Replica uuid -> replica, for the wide columns.
pub type ReplicaIndex = BTreeMap<String, Replica>;

/// Indexes replicas by uuid.
pub fn index_replicas(replicas: Vec<Replica>) -> ReplicaIndex {
    replicas.into_iter().map(|r| (r.uuid.clone(), r)).collect()
}

// ----------------------------------------------------------------- volumes

/// `get volumes` / `get volume <id>`. `replicas` is `Some` for `-o wide`.
pub fn volumes(volumes: &[Volume], replicas: Option<&ReplicaIndex>) -> Table {
    let mut header = vec![
        "ID",
        "REPLICAS",
        "TARGET-NODE",
        "ACCESSIBILITY",
        "STATUS",
        "SIZE",
        "THIN-PROVISIONED",
    ];
    if replicas.is_some() {
        header.extend(["ALLOCATED", "SNAPSHOTS"]);
    }
    let mut table = Table::new(&header);
    for volume in volumes {
        let spec = &volume.spec;
        let target_node = volume
            .state
            .target
            .as_ref()
            .map(|nexus| nexus.node.as_str())
            .or(spec.target.as_ref().map(|t| t.node.as_str()));
        let accessibility = match spec.target.as_ref().map(|t| t.protocol) {
            Some(Protocol::Nvmf) => "nvmf".to_string(),
            _ => NONE.to_string(),
        };
        let mut row = vec![
            spec.uuid.clone(),
            spec.num_replicas.to_string(),
            or_none(target_node),
            accessibility,
            debug(&volume.state.status),
            human_size(spec.size),
            spec.thin.to_string(),
        ];
        if let Some(index) = replicas {
            // A volume's usage is that of its fullest replica.
            let allocated = volume
                .state
                .replica_topology
                .keys()
                .filter_map(|uuid| index.get(uuid))
                .map(|r| r.allocated)
                .max();
            row.push(allocated.map_or_else(|| NONE.to_string(), human_size));
            row.push(NO_SNAPSHOTS.to_string());
        }
        table.push(row);
    }
    table
}

// ------------------------------------------------------------------- pools

/// `get pools` / `get pool <id>`.
pub fn pools(pools: &[Pool], wide: bool) -> Table {
    let mut header = vec![
        "ID",
        "TOTAL CAPACITY",
        "USED CAPACITY",
        "DISKS",
        "NODE",
        "STATUS",
        "MANAGED",
    ];
    if wide {
        header.extend(["AVAILABLE", "COMMITTED"]);
    }
    let mut table = Table::new(&header);
    for pool in pools {
        let state = pool.state.as_ref();
        let size = |f: fn(&openapi::models::PoolState) -> u64| {
            state.map_or_else(|| NONE.to_string(), |s| human_size(f(s)))
        };
        let disks = state
            .map(|s| &s.disks)
            .or(pool.spec.as_ref().map(|s| &s.disks))
            .map(|d| d.join(", "));
        let node = state
            .map(|s| s.node.as_str())
            .or(pool.spec.as_ref().map(|s| s.node.as_str()));
        let mut row = vec![
            pool.id.clone(),
            size(|s| s.capacity),
            size(|s| s.used),
            or_none(disks.as_deref()),
            or_none(node),
            state.map_or_else(|| "Unknown".to_string(), |s| debug(&s.status)),
            pool.spec.is_some().to_string(),
        ];
        if wide {
            row.push(size(|s| s.capacity.saturating_sub(s.used)));
            row.push(size(|s| s.committed));
        }
        table.push(row);
    }
    table
}

// ------------------------------------------------------------------- nodes

fn node_status(node: &Node) -> String {
    debug(
        &node
            .state
            .as_ref()
            .map_or(NodeStatus::Unknown, |s| s.status),
    )
}

/// `Draining`, `Drained`, `Cordoned` or nothing.
fn cordon_drain_word(node: &Node) -> Option<&'static str> {
    let state = &node.spec.as_ref()?.cordon_drain_state;
    match state.drain_status {
        Some(DrainStatus::Draining) => Some("Draining"),
        Some(DrainStatus::Drained) => Some("Drained"),
        None if state.is_cordoned() => Some("Cordoned"),
        None => None,
    }
}

fn grpc_endpoint(node: &Node) -> String {
    let endpoint = node
        .state
        .as_ref()
        .map(|s| s.grpc_endpoint.as_str())
        .or(node.spec.as_ref().map(|s| s.grpc_endpoint.as_str()));
    or_none(endpoint)
}

/// `get nodes` / `get node <id>`: the status carries the cordon or drain
/// state as kubectl shows `Ready,SchedulingDisabled` (`Online,Cordoned`).
pub fn nodes(nodes: &[Node], wide: bool) -> Table {
    let mut header = vec!["ID", "GRPC ENDPOINT", "STATUS"];
    if wide {
        header.push("VERSION");
    }
    let mut table = Table::new(&header);
    for node in nodes {
        let mut status = node_status(node);
        if let Some(word) = cordon_drain_word(node) {
            status = format!("{status},{word}");
        }
        let mut row = vec![node.id.clone(), grpc_endpoint(node), status];
        if wide {
            row.push(or_none(node.state.as_ref().map(|s| s.version.as_str())));
        }
        table.push(row);
    }
    table
}

/// Whether a node is cordoned (by a cordon or a drain label).
pub fn is_cordoned(node: &Node) -> bool {
    node.spec
        .as_ref()
        .is_some_and(|s| s.cordon_drain_state.is_cordoned())
}

/// Whether a node is draining or drained.
pub fn is_draining_or_drained(node: &Node) -> bool {
    node.spec.as_ref().is_some_and(|s| {
        s.cordon_drain_state.drain_status.is_some() || !s.cordon_drain_state.drain_labels.is_empty()
    })
}

/// `get cordon nodes` / `get cordon node <id>`.
pub fn cordon_nodes(nodes: &[Node]) -> Table {
    let mut table = Table::new(&["ID", "GRPC ENDPOINT", "STATUS", "CORDONED", "CORDON LABELS"]);
    for node in nodes {
        let labels = node
            .spec
            .as_ref()
            .map(|s| s.cordon_drain_state.cordon_labels.join(", "))
            .unwrap_or_default();
        table.push(vec![
            node.id.clone(),
            grpc_endpoint(node),
            node_status(node),
            is_cordoned(node).to_string(),
            labels,
        ]);
    }
    table
}

/// `get drain nodes` / `get drain node <id>`.
pub fn drain_nodes(nodes: &[Node]) -> Table {
    let mut table = Table::new(&[
        "ID",
        "GRPC ENDPOINT",
        "STATUS",
        "CORDONED",
        "DRAIN STATE",
        "DRAIN LABELS",
    ]);
    for node in nodes {
        let state = node.spec.as_ref().map(|s| &s.cordon_drain_state);
        let drain_state = match state.and_then(|s| s.drain_status) {
            Some(DrainStatus::Draining) => "Draining",
            Some(DrainStatus::Drained) => "Drained",
            None => "Not draining",
        };
        table.push(vec![
            node.id.clone(),
            grpc_endpoint(node),
            node_status(node),
            is_cordoned(node).to_string(),
            drain_state.to_string(),
            state.map(|s| s.drain_labels.join(", ")).unwrap_or_default(),
        ]);
    }
    table
}

// -------------------------------------------------------- replica topology

const TOPOLOGY_WIDE: [&str; 6] = [
    "CAPACITY",
    "ALLOCATED",
    "SNAPSHOTS",
    "CHILD-STATUS",
    "REASON",
    "REBUILD",
];

fn topology_row(
    uuid: &str,
    topology: &ReplicaTopology,
    replicas: Option<&ReplicaIndex>,
) -> Vec<String> {
    let mut row = vec![
        uuid.to_string(),
        or_none(topology.node.as_deref()),
        or_none(topology.pool.as_deref()),
        debug(&topology.state),
    ];
    if let Some(index) = replicas {
        let replica = index.get(uuid);
        row.push(replica.map_or_else(|| NONE.to_string(), |r| human_size(r.size)));
        row.push(replica.map_or_else(|| NONE.to_string(), |r| human_size(r.allocated)));
        row.push(NO_SNAPSHOTS.to_string());
        row.push(
            topology
                .child_status
                .map_or_else(|| NONE.to_string(), |s| debug(&s)),
        );
        let reason = topology
            .child_status_reason
            .as_deref()
            .filter(|r| *r != "none");
        row.push(or_none(reason));
        row.push(
            topology
                .rebuild_progress
                .map_or_else(|| NONE.to_string(), |p| format!("{p}%")),
        );
    }
    row
}

/// `get volume-replica-topology <id>`. `replicas` is `Some` for `-o wide`.
pub fn replica_topology(volume: &Volume, replicas: Option<&ReplicaIndex>) -> Table {
    let mut header = vec!["ID", "NODE", "POOL", "STATUS"];
    if replicas.is_some() {
        header.extend(TOPOLOGY_WIDE);
    }
    let mut table = Table::new(&header);
    for (uuid, topology) in &volume.state.replica_topology {
        table.push(topology_row(uuid, topology, replicas));
    }
    table
}

/// `get volume-replica-topologies`: the volume id on the first row of each
/// volume's replicas.
pub fn replica_topologies(volumes: &[Volume], replicas: Option<&ReplicaIndex>) -> Table {
    let mut header = vec!["VOLUME-ID", "ID", "NODE", "POOL", "STATUS"];
    if replicas.is_some() {
        header.extend(TOPOLOGY_WIDE);
    }
    let mut table = Table::new(&header);
    for volume in volumes {
        for (index, (uuid, topology)) in volume.state.replica_topology.iter().enumerate() {
            let mut row = vec![if index == 0 {
                volume.spec.uuid.clone()
            } else {
                String::new()
            }];
            row.extend(topology_row(uuid, topology, replicas));
            table.push(row);
        }
    }
    table
}

// ----------------------------------------------------------------- rebuild

/// The replica uuid of a child URI (its `uuid=` parameter), else the URI.
fn child_id(uri: &str) -> String {
    uri.split_once('?')
        .and_then(|(_, query)| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("uuid="))
                .map(str::to_string)
        })
        .unwrap_or_else(|| uri.to_string())
}

/// `get rebuild-history <id>`.
pub fn rebuild_history(history: &RebuildHistory) -> Table {
    let mut table = Table::new(&[
        "DST",
        "SRC",
        "STATE",
        "TOTAL",
        "RECOVERED",
        "TRANSFERRED",
        "IS-PARTIAL",
        "START-TIME",
        "END-TIME",
    ]);
    for record in &history.records {
        let bytes = |blocks: u64| human_size(blocks.saturating_mul(record.block_size));
        let mut state = record.rebuild_job_state.clone();
        if let Some(first) = state.get(0..1) {
            state = first.to_uppercase() + &state[1..];
        }
        table.push(vec![
            child_id(&record.child_uri),
            child_id(&record.src_uri),
            state,
            bytes(record.blocks_total),
            bytes(record.blocks_recovered),
            bytes(record.blocks_transferred),
            record.is_partial.to_string(),
            record.start_time.clone(),
            record.end_time.clone(),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_ids() {
        assert_eq!(
            child_id("nvmf://127.0.1.2:8420/nqn.2019-05.io.openebs:r1?uuid=r1&hostnqn=h"),
            "r1"
        );
        assert_eq!(child_id("bdev:///r2?uuid=r2"), "r2");
        assert_eq!(child_id("bdev:///r3"), "bdev:///r3");
    }
}
