//! Scheduler cases: the seed placement scenarios, each rule and filter,
//! determinism, and invariants checked over generated clusters.

use super::*;

mod affinity;
mod filters;
mod generated;
mod relief;
mod removal;
mod seeds;
mod target;

const GIB: u64 = 1 << 30;

fn node(id: &str) -> NodeInfo {
    NodeInfo {
        id: id.to_owned(),
        online: true,
        cordoned: false,
        labels: BTreeMap::new(),
    }
}

fn pool(id: &str, node: &str, capacity: u64) -> PoolInfo {
    PoolInfo {
        id: id.to_owned(),
        node: node.to_owned(),
        online: true,
        labels: BTreeMap::new(),
        capacity,
        used: 0,
        committed: 0,
    }
}

fn replica(uuid: &str, volume: &str, pool: &PoolInfo) -> ReplicaInfo {
    ReplicaInfo {
        uuid: uuid.to_owned(),
        volume: Some(volume.to_owned()),
        node: pool.node.clone(),
        pool: pool.id.clone(),
        size: GIB,
        allocated: 0,
        online: true,
        child: None,
    }
}

fn nexus(uuid: &str, volume: &str, node: &str) -> NexusInfo {
    NexusInfo {
        uuid: uuid.to_owned(),
        volume: Some(volume.to_owned()),
        node: node.to_owned(),
    }
}

fn request(uuid: &str, replicas: u8) -> VolumeRequest {
    VolumeRequest {
        uuid: uuid.to_owned(),
        size: GIB,
        replicas,
        thin: false,
        node_topology: None,
        pool_topology: None,
        affinity_group: None,
    }
}

fn cluster(nodes: Vec<NodeInfo>, pools: Vec<PoolInfo>) -> Cluster {
    Cluster {
        nodes,
        pools,
        replicas: Vec::new(),
        nexuses: Vec::new(),
        volumes_in_group: BTreeMap::new(),
        limits: ThinLimits::default(),
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn topology(inclusion: &[(&str, &str)], exclusion: &[(&str, &str)]) -> LabelledTopology {
    LabelledTopology {
        inclusion: labels(inclusion),
        exclusion: labels(exclusion),
    }
}

fn at(node: &str, pool: &str) -> Placement {
    Placement {
        node: node.to_owned(),
        pool: pool.to_owned(),
    }
}

fn of_volume(cluster: &Cluster, volume: &str) -> Vec<ReplicaInfo> {
    cluster
        .replicas
        .iter()
        .filter(|r| r.volume.as_deref() == Some(volume))
        .cloned()
        .collect()
}

fn nodes_of(placements: &[Placement]) -> Vec<&str> {
    placements.iter().map(|p| p.node.as_str()).collect()
}

fn group_cluster(nodes: &[&str]) -> Cluster {
    let pools = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let size = if i < 2 { 100 * GIB } else { 10 * GIB };
            pool(&format!("p{n}"), n, size)
        })
        .collect();
    let mut c = cluster(nodes.iter().map(|n| node(n)).collect(), pools);
    c.volumes_in_group
        .insert("sts".to_owned(), vec!["v1".to_owned(), "v2".to_owned()]);
    c
}
