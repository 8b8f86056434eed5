//! The routing test double: an in-memory [`CoreApi`] holding a few
//! resources, so the HTTP layer (router, client, binary) can be exercised
//! on its own. It is not a model of the core agent: it keeps tables, obeys
//! the obvious not-found / already-exists rules, and records every call so
//! tests can prove that a refused request reached nothing.

use std::collections::BTreeMap;
use std::sync::Mutex;

use openapi::models::*;
use openapi::{CoreApi, ErrorKind, RestError, Result};

pub const VOLUME_1: &str = "11111111-1111-4111-8111-111111111111";
pub const VOLUME_2: &str = "22222222-2222-4222-8222-222222222222";
pub const VOLUME_3: &str = "33333333-3333-4333-8333-333333333333";
pub const REPLICA_1: &str = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";
pub const NEXUS_1: &str = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb";
pub const MISSING: &str = "99999999-9999-4999-8999-999999999999";

#[derive(Default)]
struct Tables {
    volumes: BTreeMap<String, Volume>,
    pools: BTreeMap<String, Pool>,
    replicas: BTreeMap<String, Replica>,
    nexuses: BTreeMap<String, Nexus>,
    nodes: BTreeMap<String, Node>,
    upgrade: Option<UpgradeStatus>,
}

/// See the module header.
pub struct RoutingDouble {
    tables: Mutex<Tables>,
    calls: Mutex<Vec<String>>,
}

impl RoutingDouble {
    /// Three nodes, a pool on each, three volumes (the first published),
    /// one replica and one nexus.
    pub fn seeded() -> Self {
        let mut t = Tables::default();
        for n in 1..=3 {
            let id = format!("node-{n}");
            t.nodes.insert(id.clone(), node(&id));
            let pool_id = format!("pool-{n}");
            t.pools.insert(
                pool_id.clone(),
                pool(&id, &pool_id, vec![format!("aio:///dev/disk{n}")], None),
            );
        }
        for (uuid, size) in [
            (VOLUME_1, 1 << 30),
            (VOLUME_2, 2 << 30),
            (VOLUME_3, 3 << 30),
        ] {
            t.volumes.insert(
                uuid.to_string(),
                volume(uuid, &CreateVolumeBody::new(size, 1)),
            );
        }
        if let Some(v) = t.volumes.get_mut(VOLUME_1) {
            v.spec.target = Some(VolumeTarget {
                node: "node-1".into(),
                protocol: Protocol::Nvmf,
                frontend_nodes: vec!["node-2".into()],
            });
        }
        t.replicas.insert(
            REPLICA_1.into(),
            Replica {
                node: "node-1".into(),
                uuid: REPLICA_1.into(),
                pool: "pool-1".into(),
                thin: false,
                size: 1 << 30,
                allocated: 1 << 30,
                share: Protocol::None,
                uri: format!("bdev:///{REPLICA_1}?uuid={REPLICA_1}"),
                status: ReplicaStatus::Online,
                allowed_hosts: vec![],
            },
        );
        t.nexuses.insert(
            NEXUS_1.into(),
            Nexus {
                node: "node-1".into(),
                uuid: NEXUS_1.into(),
                size: 1 << 30,
                status: NexusStatus::Online,
                children: vec![Child {
                    uri: format!("bdev:///{REPLICA_1}?uuid={REPLICA_1}"),
                    state: ChildState::Online,
                    state_reason: "none".into(),
                    rebuild_progress: None,
                }],
                device_uri: format!("nvmf://127.0.0.1:8420/nqn.2019-05.io.openebs:{VOLUME_1}"),
                rebuilds: 0,
                protocol: Protocol::Nvmf,
            },
        );
        Self {
            tables: Mutex::new(t),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Every call so far, as `method(args)`.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("calls lock").clone()
    }

    fn record(&self, call: String) {
        self.calls.lock().expect("calls lock").push(call);
    }

    fn with<T>(&self, f: impl FnOnce(&mut Tables) -> Result<T>) -> Result<T> {
        f(&mut self.tables.lock().expect("tables lock"))
    }
}

fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        spec: Some(NodeSpec {
            id: id.into(),
            grpc_endpoint: "127.0.0.1:10124".into(),
            labels: BTreeMap::new(),
            cordon_drain_state: CordonDrainState::default(),
            node_nqn: format!("nqn.2019-05.io.openebs:node-name:{id}"),
        }),
        state: Some(NodeState {
            id: id.into(),
            grpc_endpoint: "127.0.0.1:10124".into(),
            status: NodeStatus::Online,
            node_nqn: format!("nqn.2019-05.io.openebs:node-name:{id}"),
            version: "0.1.0".into(),
        }),
    }
}

fn pool(
    node: &str,
    id: &str,
    disks: Vec<String>,
    labels: Option<BTreeMap<String, String>>,
) -> Pool {
    Pool {
        id: id.into(),
        spec: Some(PoolSpec {
            node: node.into(),
            id: id.into(),
            disks: disks.clone(),
            labels: labels.unwrap_or_default(),
            status: SpecStatus::Created,
        }),
        state: Some(PoolState {
            node: node.into(),
            id: id.into(),
            disks,
            status: PoolStatus::Online,
            capacity: 100 << 30,
            used: 0,
            committed: 0,
        }),
    }
}

fn volume(uuid: &str, body: &CreateVolumeBody) -> Volume {
    Volume {
        spec: VolumeSpec {
            uuid: uuid.into(),
            size: body.size,
            num_replicas: body.replicas,
            status: SpecStatus::Created,
            target: None,
            policy: body.policy.clone(),
            topology: body.topology.clone(),
            labels: body.labels.clone(),
            thin: body.thin,
            affinity_group: body.affinity_group.clone(),
        },
        state: VolumeState {
            uuid: uuid.into(),
            size: body.size,
            status: VolumeStatus::Online,
            target: None,
            replica_topology: BTreeMap::new(),
        },
    }
}

/// Counters of `n` 4 KiB reads and writes.
fn io_stats(n: u64) -> IoStats {
    IoStats {
        num_read_ops: n,
        bytes_read: n * 4096,
        num_write_ops: n,
        bytes_written: n * 4096,
        read_latency_us: n * 10,
        write_latency_us: n * 20,
        tick_us: 1_000_000,
    }
}

fn missing(what: &str, id: &str) -> RestError {
    RestError::not_found(format!("{what} {id}"))
}

#[async_trait::async_trait]
impl CoreApi for RoutingDouble {
    async fn get_volumes(&self, max_entries: u64, starting_token: Option<u64>) -> Result<Volumes> {
        self.record(format!("get_volumes({max_entries}, {starting_token:?})"));
        self.with(|t| {
            let start = usize::try_from(starting_token.unwrap_or(0)).unwrap_or(usize::MAX);
            let rest: Vec<Volume> = t.volumes.values().skip(start).cloned().collect();
            let take = if max_entries == 0 {
                rest.len()
            } else {
                usize::try_from(max_entries)
                    .unwrap_or(usize::MAX)
                    .min(rest.len())
            };
            let next_token = (take < rest.len()).then(|| (start + take) as u64);
            Ok(Volumes {
                entries: rest.into_iter().take(take).collect(),
                next_token,
            })
        })
    }

    async fn get_volume(&self, id: &str) -> Result<Volume> {
        self.record(format!("get_volume({id})"));
        self.with(|t| {
            t.volumes
                .get(id)
                .cloned()
                .ok_or_else(|| missing("volume", id))
        })
    }

    async fn put_volume(&self, id: &str, body: CreateVolumeBody) -> Result<Volume> {
        self.record(format!("put_volume({id})"));
        self.with(|t| {
            if t.volumes.contains_key(id) {
                return Err(RestError::new(
                    ErrorKind::AlreadyExists,
                    format!("volume {id} already exists"),
                ));
            }
            let v = volume(id, &body);
            t.volumes.insert(id.into(), v.clone());
            Ok(v)
        })
    }

    async fn del_volume(&self, id: &str) -> Result<()> {
        self.record(format!("del_volume({id})"));
        self.with(|t| {
            t.volumes
                .remove(id)
                .map(|_| ())
                .ok_or_else(|| missing("volume", id))
        })
    }

    async fn put_volume_replica_count(&self, id: &str, count: u8) -> Result<Volume> {
        self.record(format!("put_volume_replica_count({id}, {count})"));
        self.with(|t| {
            let v = t.volumes.get_mut(id).ok_or_else(|| missing("volume", id))?;
            v.spec.num_replicas = count;
            Ok(v.clone())
        })
    }

    async fn put_volume_size(&self, id: &str, body: ResizeVolumeBody) -> Result<Volume> {
        self.record(format!("put_volume_size({id}, {})", body.size));
        self.with(|t| {
            let v = t.volumes.get_mut(id).ok_or_else(|| missing("volume", id))?;
            if body.size < v.spec.size {
                return Err(RestError::invalid("a volume only grows"));
            }
            v.spec.size = body.size;
            v.state.size = body.size;
            Ok(v.clone())
        })
    }

    async fn put_volume_target(&self, id: &str, body: PublishVolumeBody) -> Result<Volume> {
        self.record(format!("put_volume_target({id})"));
        self.with(|t| {
            let v = t.volumes.get_mut(id).ok_or_else(|| missing("volume", id))?;
            if v.spec.target.is_some() {
                return Err(RestError::new(
                    ErrorKind::AlreadyPublished,
                    format!("volume {id} is already published"),
                ));
            }
            v.spec.target = Some(VolumeTarget {
                node: body.node.unwrap_or_else(|| "node-1".into()),
                protocol: body.protocol,
                frontend_nodes: body.frontend_node.into_iter().collect(),
            });
            Ok(v.clone())
        })
    }

    async fn del_volume_target(&self, id: &str, force: bool) -> Result<Volume> {
        self.record(format!("del_volume_target({id}, {force})"));
        self.with(|t| {
            let v = t.volumes.get_mut(id).ok_or_else(|| missing("volume", id))?;
            if v.spec.target.take().is_none() && !force {
                return Err(RestError::new(
                    ErrorKind::NotPublished,
                    format!("volume {id} is not published"),
                ));
            }
            Ok(v.clone())
        })
    }

    async fn get_rebuild_history(&self, id: &str) -> Result<RebuildHistory> {
        self.record(format!("get_rebuild_history({id})"));
        self.with(|t| {
            t.volumes.get(id).ok_or_else(|| missing("volume", id))?;
            Ok(RebuildHistory {
                target_uuid: id.into(),
                records: vec![RebuildRecord {
                    child_uri: format!("bdev:///{REPLICA_1}"),
                    src_uri: "nvmf://127.0.0.1:8420/x".into(),
                    rebuild_job_state: "completed".into(),
                    blocks_total: 100,
                    blocks_recovered: 100,
                    blocks_transferred: 100,
                    blocks_remaining: 0,
                    block_size: 512,
                    is_partial: false,
                    start_time: "2024-01-01T00:00:00Z".into(),
                    end_time: "2024-01-01T00:00:01Z".into(),
                }],
            })
        })
    }

    async fn get_pools(&self) -> Result<Vec<Pool>> {
        self.record("get_pools()".into());
        self.with(|t| Ok(t.pools.values().cloned().collect()))
    }

    async fn get_volume_stats(&self, id: &str) -> Result<VolumeIoStats> {
        self.record(format!("get_volume_stats({id})"));
        self.with(|t| {
            let v = t.volumes.get(id).ok_or_else(|| missing("volume", id))?;
            let target = v.spec.target.as_ref().ok_or_else(|| {
                RestError::new(
                    ErrorKind::NotPublished,
                    format!("volume {id} is not published"),
                )
            })?;
            Ok(VolumeIoStats {
                volume_uuid: id.into(),
                node: target.node.clone(),
                nexus_uuid: NEXUS_1.into(),
                stats: io_stats(7),
                replicas: vec![ReplicaIoStats {
                    uuid: REPLICA_1.into(),
                    node: target.node.clone(),
                    pool: "pool-1".into(),
                    stats: Some(io_stats(7)),
                }],
            })
        })
    }

    async fn get_pool_stats(&self, node: Option<&str>, id: &str) -> Result<PoolIoStats> {
        self.record(format!("get_pool_stats({node:?}, {id})"));
        self.with(|t| {
            let p = t.pools.get(id).ok_or_else(|| missing("pool", id))?;
            let at = p.spec.as_ref().map(|s| s.node.clone()).unwrap_or_default();
            if node.is_some_and(|n| n != at) {
                return Err(missing("pool", id));
            }
            Ok(PoolIoStats {
                id: id.into(),
                node: at,
                stats: io_stats(3),
            })
        })
    }

    async fn get_pool(&self, id: &str) -> Result<Pool> {
        self.record(format!("get_pool({id})"));
        self.with(|t| t.pools.get(id).cloned().ok_or_else(|| missing("pool", id)))
    }

    async fn del_pool(&self, id: &str) -> Result<()> {
        self.record(format!("del_pool({id})"));
        self.with(|t| {
            t.pools
                .remove(id)
                .map(|_| ())
                .ok_or_else(|| missing("pool", id))
        })
    }

    async fn get_node_pools(&self, node: &str) -> Result<Vec<Pool>> {
        self.record(format!("get_node_pools({node})"));
        self.with(|t| {
            t.nodes.get(node).ok_or_else(|| missing("node", node))?;
            Ok(t.pools
                .values()
                .filter(|p| p.spec.as_ref().is_some_and(|s| s.node == node))
                .cloned()
                .collect())
        })
    }

    async fn put_node_pool(&self, node: &str, id: &str, body: CreatePoolBody) -> Result<Pool> {
        self.record(format!("put_node_pool({node}, {id})"));
        self.with(|t| {
            t.nodes.get(node).ok_or_else(|| missing("node", node))?;
            if t.pools.contains_key(id) {
                return Err(RestError::new(
                    ErrorKind::AlreadyExists,
                    format!("pool {id} already exists"),
                ));
            }
            let p = pool(node, id, body.disks, body.labels);
            t.pools.insert(id.into(), p.clone());
            Ok(p)
        })
    }

    async fn del_node_pool(&self, node: &str, id: &str) -> Result<()> {
        self.record(format!("del_node_pool({node}, {id})"));
        self.with(|t| {
            let on_node = t
                .pools
                .get(id)
                .and_then(|p| p.spec.as_ref())
                .is_some_and(|s| s.node == node);
            if !on_node {
                return Err(missing("pool", &format!("{id} on node {node}")));
            }
            t.pools.remove(id);
            Ok(())
        })
    }

    async fn label_pool(&self, id: &str, key: &str, value: Option<&str>) -> Result<Pool> {
        self.record(format!("label_pool({id}, {key}, {value:?})"));
        self.with(|t| {
            let p = t.pools.get_mut(id).ok_or_else(|| missing("pool", id))?;
            let spec = p.spec.as_mut().ok_or_else(|| missing("pool spec", id))?;
            match value {
                Some(value) => {
                    spec.labels.insert(key.into(), value.into());
                }
                None => {
                    spec.labels
                        .remove(key)
                        .ok_or_else(|| missing("label", key))?;
                }
            }
            Ok(p.clone())
        })
    }

    async fn get_replicas(&self) -> Result<Vec<Replica>> {
        self.record("get_replicas()".into());
        self.with(|t| Ok(t.replicas.values().cloned().collect()))
    }

    async fn get_replica(&self, id: &str) -> Result<Replica> {
        self.record(format!("get_replica({id})"));
        self.with(|t| {
            t.replicas
                .get(id)
                .cloned()
                .ok_or_else(|| missing("replica", id))
        })
    }

    async fn get_nexuses(&self) -> Result<Vec<Nexus>> {
        self.record("get_nexuses()".into());
        self.with(|t| Ok(t.nexuses.values().cloned().collect()))
    }

    async fn get_nexus(&self, id: &str) -> Result<Nexus> {
        self.record(format!("get_nexus({id})"));
        self.with(|t| {
            t.nexuses
                .get(id)
                .cloned()
                .ok_or_else(|| missing("nexus", id))
        })
    }

    async fn get_nodes(&self) -> Result<Vec<Node>> {
        self.record("get_nodes()".into());
        self.with(|t| Ok(t.nodes.values().cloned().collect()))
    }

    async fn get_node(&self, id: &str) -> Result<Node> {
        self.record(format!("get_node({id})"));
        self.with(|t| t.nodes.get(id).cloned().ok_or_else(|| missing("node", id)))
    }

    async fn put_node_cordon(&self, id: &str, label: &str) -> Result<Node> {
        self.record(format!("put_node_cordon({id}, {label})"));
        self.edit_node(id, |state| {
            if state.cordon_labels.iter().any(|l| l == label) {
                return Err(RestError::new(
                    ErrorKind::AlreadyExists,
                    format!("node {id} is already cordoned with {label}"),
                ));
            }
            state.cordon_labels.push(label.into());
            Ok(())
        })
    }

    async fn del_node_cordon(&self, id: &str, label: &str) -> Result<Node> {
        self.record(format!("del_node_cordon({id}, {label})"));
        self.edit_node(id, |state| {
            let before = state.cordon_labels.len() + state.drain_labels.len();
            state.cordon_labels.retain(|l| l != label);
            state.drain_labels.retain(|l| l != label);
            if before == state.cordon_labels.len() + state.drain_labels.len() {
                return Err(missing("cordon label", label));
            }
            if state.drain_labels.is_empty() {
                state.drain_status = None;
            }
            Ok(())
        })
    }

    async fn put_node_drain(&self, id: &str, label: &str) -> Result<Node> {
        self.record(format!("put_node_drain({id}, {label})"));
        self.edit_node(id, |state| {
            state.drain_labels.push(label.into());
            state.drain_status = Some(DrainStatus::Draining);
            Ok(())
        })
    }

    async fn label_node(&self, id: &str, key: &str, value: Option<&str>) -> Result<Node> {
        self.record(format!("label_node({id}, {key}, {value:?})"));
        self.with(|t| {
            let n = t.nodes.get_mut(id).ok_or_else(|| missing("node", id))?;
            let spec = n.spec.as_mut().ok_or_else(|| missing("node spec", id))?;
            match value {
                Some(value) => {
                    spec.labels.insert(key.into(), value.into());
                }
                None => {
                    spec.labels
                        .remove(key)
                        .ok_or_else(|| missing("label", key))?;
                }
            }
            Ok(n.clone())
        })
    }

    async fn get_specs(&self) -> Result<Specs> {
        self.record("get_specs()".into());
        self.with(|t| {
            Ok(Specs {
                nodes: t.nodes.values().filter_map(|n| n.spec.clone()).collect(),
                pools: t.pools.values().filter_map(|p| p.spec.clone()).collect(),
                replicas: vec![],
                volumes: t.volumes.values().map(|v| v.spec.clone()).collect(),
                nexuses: vec![],
            })
        })
    }

    async fn get_versions(&self) -> Result<Versions> {
        self.record("get_versions()".into());
        Ok(Versions {
            rest: String::new(),
            core: "double".into(),
            store: "double".into(),
        })
    }

    async fn get_upgrade_status(&self) -> Result<UpgradeStatus> {
        self.record("get_upgrade_status()".into());
        self.with(|t| {
            t.upgrade
                .clone()
                .ok_or_else(|| RestError::not_found("upgrade status"))
        })
    }

    async fn put_upgrade_status(&self, body: UpgradeStatus) -> Result<UpgradeStatus> {
        self.record("put_upgrade_status()".into());
        self.with(|t| {
            t.upgrade = Some(body.clone());
            Ok(body)
        })
    }

    async fn del_upgrade_status(&self) -> Result<()> {
        self.record("del_upgrade_status()".into());
        self.with(|t| match t.upgrade.take() {
            Some(_) => Ok(()),
            None => Err(RestError::not_found("upgrade status")),
        })
    }
}

impl RoutingDouble {
    fn edit_node(
        &self,
        id: &str,
        f: impl FnOnce(&mut CordonDrainState) -> Result<()>,
    ) -> Result<Node> {
        self.with(|t| {
            let n = t.nodes.get_mut(id).ok_or_else(|| missing("node", id))?;
            let spec = n.spec.as_mut().ok_or_else(|| missing("node spec", id))?;
            f(&mut spec.cordon_drain_state)?;
            Ok(n.clone())
        })
    }
}
