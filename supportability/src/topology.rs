//! The cluster's objects from the REST API, and which of them a dump of
//! one resource concerns.
//!
//! Bundle files: `topology/<kind>/<id>-topology.json` for `node`, `pool`,
//! `volume` (the REST objects as they are: spec and state), `replica` and
//! `nexus` (`{"spec": <spec from GET /specs or null>, "state": <object
//! from GET /replicas|/nexuses or null>}`), and
//! `topology/volume/<id>-rebuild-history.json`.

use std::collections::{BTreeMap, BTreeSet};

use openapi::models::*;
use openapi::CoreApi;
use serde::Serialize;

use crate::DumpError;

/// Volumes read per `GET /volumes` page.
const VOLUME_PAGE: u64 = 500;

/// What to dump (`dump <resource>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    System,
    Volumes,
    Volume(String),
    Pools,
    Pool(String),
    Nodes,
    Node(String),
    /// The store only.
    Etcd,
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resource::System => write!(f, "system"),
            Resource::Volumes => write!(f, "volumes"),
            Resource::Volume(id) => write!(f, "volume {id}"),
            Resource::Pools => write!(f, "pools"),
            Resource::Pool(id) => write!(f, "pool {id}"),
            Resource::Nodes => write!(f, "nodes"),
            Resource::Node(id) => write!(f, "node {id}"),
            Resource::Etcd => write!(f, "etcd"),
        }
    }
}

/// Everything the REST API tells about the cluster.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub pools: Vec<Pool>,
    pub volumes: Vec<Volume>,
    pub replicas: Vec<Replica>,
    pub nexuses: Vec<Nexus>,
    pub specs: Specs,
}

fn rest(what: &str, e: openapi::RestError) -> DumpError {
    DumpError::Rest {
        what: what.to_string(),
        error: e,
    }
}

impl Cluster {
    /// Reads every object (volumes page by page).
    pub async fn read(api: &dyn CoreApi) -> Result<Cluster, DumpError> {
        let nodes = api.get_nodes().await.map_err(|e| rest("nodes", e))?;
        let pools = api.get_pools().await.map_err(|e| rest("pools", e))?;
        let volumes = api
            .all_volumes(VOLUME_PAGE)
            .await
            .map_err(|e| rest("volumes", e))?;
        let replicas = api.get_replicas().await.map_err(|e| rest("replicas", e))?;
        let nexuses = api.get_nexuses().await.map_err(|e| rest("nexuses", e))?;
        let specs = api.get_specs().await.map_err(|e| rest("specs", e))?;
        Ok(Cluster {
            nodes,
            pools,
            volumes,
            replicas,
            nexuses,
            specs,
        })
    }
}

/// The ids a dump concerns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub nodes: BTreeSet<String>,
    pub pools: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
    pub replicas: BTreeSet<String>,
    pub nexuses: BTreeSet<String>,
    /// Whether this is the whole cluster (no filtering of shared logs and
    /// store keys).
    pub everything: bool,
}

impl Selection {
    /// Strings that mark a log line or store entry as concerning this
    /// selection (None: keep everything). Uuids always; node and pool
    /// names only when a node or pool was asked for.
    pub fn markers(&self, resource: &Resource) -> Option<Vec<String>> {
        if self.everything {
            return None;
        }
        let mut markers: Vec<String> = self
            .volumes
            .iter()
            .chain(&self.replicas)
            .chain(&self.nexuses)
            .cloned()
            .collect();
        if matches!(
            resource,
            Resource::Pool(_) | Resource::Pools | Resource::Node(_) | Resource::Nodes
        ) {
            markers.extend(self.pools.iter().cloned());
            markers.extend(self.nodes.iter().cloned());
        }
        Some(markers)
    }
}

/// Which objects `resource` concerns; an unknown id is an error.
pub fn select(cluster: &Cluster, resource: &Resource) -> Result<Selection, DumpError> {
    let mut sel = Selection::default();
    let add_volume = |sel: &mut Selection, v: &Volume| {
        sel.volumes.insert(v.spec.uuid.clone());
        for (replica, topo) in &v.state.replica_topology {
            sel.replicas.insert(replica.clone());
            sel.nodes.extend(topo.node.clone());
            sel.pools.extend(topo.pool.clone());
        }
        for spec in &cluster.specs.replicas {
            if spec.owners.volume.as_deref() == Some(v.spec.uuid.as_str()) {
                sel.replicas.insert(spec.uuid.clone());
                sel.nodes.insert(spec.node.clone());
                sel.pools.insert(spec.pool.clone());
            }
        }
        if let Some(target) = &v.state.target {
            sel.nexuses.insert(target.uuid.clone());
            sel.nodes.insert(target.node.clone());
        }
        if let Some(target) = &v.spec.target {
            sel.nodes.insert(target.node.clone());
        }
        for nexus in &cluster.specs.nexuses {
            if nexus.owner.as_deref() == Some(v.spec.uuid.as_str()) {
                sel.nexuses.insert(nexus.uuid.clone());
                sel.nodes.insert(nexus.node.clone());
            }
        }
    };
    let add_pool = |sel: &mut Selection, pool: &str, node: Option<&str>| {
        sel.pools.insert(pool.to_string());
        sel.nodes.extend(node.map(str::to_string));
        for r in &cluster.replicas {
            if r.pool == pool {
                sel.replicas.insert(r.uuid.clone());
            }
        }
        for r in &cluster.specs.replicas {
            if r.pool == pool {
                sel.replicas.insert(r.uuid.clone());
            }
        }
    };
    let pool_node = |p: &Pool| -> Option<String> {
        p.spec
            .as_ref()
            .map(|s| s.node.clone())
            .or_else(|| p.state.as_ref().map(|s| s.node.clone()))
    };
    match resource {
        Resource::System | Resource::Etcd => {
            sel.everything = true;
            sel.nodes.extend(cluster.nodes.iter().map(|n| n.id.clone()));
            sel.pools.extend(cluster.pools.iter().map(|p| p.id.clone()));
            sel.volumes
                .extend(cluster.volumes.iter().map(|v| v.spec.uuid.clone()));
            sel.replicas
                .extend(cluster.replicas.iter().map(|r| r.uuid.clone()));
            sel.replicas
                .extend(cluster.specs.replicas.iter().map(|r| r.uuid.clone()));
            sel.nexuses
                .extend(cluster.nexuses.iter().map(|n| n.uuid.clone()));
            sel.nexuses
                .extend(cluster.specs.nexuses.iter().map(|n| n.uuid.clone()));
        }
        Resource::Volumes => cluster.volumes.iter().for_each(|v| add_volume(&mut sel, v)),
        Resource::Volume(id) => {
            let volume = cluster
                .volumes
                .iter()
                .find(|v| v.spec.uuid == *id)
                .ok_or_else(|| DumpError::NotFound(format!("volume {id}")))?;
            add_volume(&mut sel, volume);
        }
        Resource::Pools => {
            for p in &cluster.pools {
                add_pool(&mut sel, &p.id, pool_node(p).as_deref());
            }
        }
        Resource::Pool(id) => {
            let pool = cluster
                .pools
                .iter()
                .find(|p| p.id == *id)
                .ok_or_else(|| DumpError::NotFound(format!("pool {id}")))?;
            add_pool(&mut sel, &pool.id, pool_node(pool).as_deref());
        }
        Resource::Nodes | Resource::Node(_) => {
            let wanted: Vec<&Node> = match resource {
                Resource::Node(id) => vec![cluster
                    .nodes
                    .iter()
                    .find(|n| n.id == *id)
                    .ok_or_else(|| DumpError::NotFound(format!("node {id}")))?],
                _ => cluster.nodes.iter().collect(),
            };
            for node in wanted {
                sel.nodes.insert(node.id.clone());
                for p in cluster
                    .pools
                    .iter()
                    .filter(|p| pool_node(p).as_deref() == Some(&node.id))
                {
                    add_pool(&mut sel, &p.id, Some(&node.id));
                }
                for n in cluster.nexuses.iter().filter(|n| n.node == node.id) {
                    sel.nexuses.insert(n.uuid.clone());
                }
            }
        }
    }
    Ok(sel)
}

/// A bundle file: its path and JSON text.
pub struct TopologyFile {
    pub path: String,
    pub json: String,
}

fn safe(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

fn file(kind: &str, id: &str, value: &impl Serialize) -> Result<TopologyFile, DumpError> {
    let json =
        serde_json::to_string_pretty(value).map_err(|e| DumpError::Internal(e.to_string()))?;
    Ok(TopologyFile {
        path: format!("topology/{kind}/{}-topology.json", safe(id)),
        json: json + "\n",
    })
}

#[derive(Serialize)]
struct SpecAndState<'a, S: Serialize, T: Serialize> {
    spec: Option<&'a S>,
    state: Option<&'a T>,
}

/// The topology files of the selected objects, in kind then id order.
pub fn files(cluster: &Cluster, sel: &Selection) -> Result<Vec<TopologyFile>, DumpError> {
    let mut out = Vec::new();
    for n in cluster.nodes.iter().filter(|n| sel.nodes.contains(&n.id)) {
        out.push(file("node", &n.id, n)?);
    }
    for p in cluster.pools.iter().filter(|p| sel.pools.contains(&p.id)) {
        out.push(file("pool", &p.id, p)?);
    }
    for v in cluster
        .volumes
        .iter()
        .filter(|v| sel.volumes.contains(&v.spec.uuid))
    {
        out.push(file("volume", &v.spec.uuid, v)?);
    }
    let replica_specs: BTreeMap<&str, &ReplicaSpec> = cluster
        .specs
        .replicas
        .iter()
        .map(|s| (s.uuid.as_str(), s))
        .collect();
    let replica_states: BTreeMap<&str, &Replica> = cluster
        .replicas
        .iter()
        .map(|r| (r.uuid.as_str(), r))
        .collect();
    for id in &sel.replicas {
        let both = SpecAndState {
            spec: replica_specs.get(id.as_str()).copied(),
            state: replica_states.get(id.as_str()).copied(),
        };
        if both.spec.is_some() || both.state.is_some() {
            out.push(file("replica", id, &both)?);
        }
    }
    let nexus_specs: BTreeMap<&str, &NexusSpec> = cluster
        .specs
        .nexuses
        .iter()
        .map(|s| (s.uuid.as_str(), s))
        .collect();
    let nexus_states: BTreeMap<&str, &Nexus> = cluster
        .nexuses
        .iter()
        .map(|n| (n.uuid.as_str(), n))
        .collect();
    for id in &sel.nexuses {
        let both = SpecAndState {
            spec: nexus_specs.get(id.as_str()).copied(),
            state: nexus_states.get(id.as_str()).copied(),
        };
        if both.spec.is_some() || both.state.is_some() {
            out.push(file("nexus", id, &both)?);
        }
    }
    Ok(out)
}

/// The rebuild-history file of a volume.
pub fn rebuild_history_file(history: &RebuildHistory) -> Result<TopologyFile, DumpError> {
    let json =
        serde_json::to_string_pretty(history).map_err(|e| DumpError::Internal(e.to_string()))?;
    Ok(TopologyFile {
        path: format!(
            "topology/volume/{}-rebuild-history.json",
            safe(&history.target_uuid)
        ),
        json: json + "\n",
    })
}
