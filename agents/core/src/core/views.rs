//! The REST views: what the API returns for nodes, pools, replicas,
//! nexuses, volumes and specs, joined from the specs and what the engines
//! report, and the conversions from the engines' enums.

use super::*;

impl Core {
    pub fn node_view(&self, id: &str) -> Option<Node> {
        let spec = self.specs.node(id);
        let state = self.registry.node(id).map(|n| NodeState {
            id: n.id.clone(),
            grpc_endpoint: n.grpc_endpoint.clone(),
            status: if n.online {
                NodeStatus::Online
            } else {
                NodeStatus::Offline
            },
            node_nqn: n.node_nqn.clone(),
            version: n.version.clone(),
        });
        if spec.is_none() && state.is_none() {
            return None;
        }
        Some(Node {
            id: id.to_owned(),
            spec,
            state,
        })
    }

    pub fn nodes_view(&self) -> Vec<Node> {
        let mut ids: Vec<String> = self.specs.nodes.read().keys().cloned().collect();
        for n in self.registry.nodes() {
            if !ids.contains(&n.id) {
                ids.push(n.id);
            }
        }
        ids.sort();
        ids.iter().filter_map(|id| self.node_view(id)).collect()
    }

    pub fn pool_view(&self, id: &str) -> Option<Pool> {
        let spec = self.specs.pools.read().get(id).cloned();
        let state = self
            .registry
            .pools()
            .into_iter()
            .find(|(_, p)| p.name == id)
            .map(|(node, p)| PoolState {
                node,
                id: p.name.clone(),
                disks: p.disks.clone(),
                status: pool_status(p.state),
                capacity: p.capacity,
                used: p.used,
                committed: p.committed,
            });
        if spec.is_none() && state.is_none() {
            return None;
        }
        Some(Pool {
            id: id.to_owned(),
            spec,
            state,
        })
    }

    pub fn pools_view(&self) -> Vec<Pool> {
        let mut ids: Vec<String> = self.specs.pools.read().keys().cloned().collect();
        for (_, p) in self.registry.pools() {
            if !ids.contains(&p.name) {
                ids.push(p.name);
            }
        }
        ids.sort();
        ids.iter().filter_map(|id| self.pool_view(id)).collect()
    }

    pub fn replicas_view(&self) -> Vec<Replica> {
        let mut out: Vec<Replica> = self
            .registry
            .replicas()
            .into_iter()
            .map(|(node, r)| replica_model(&node, &r))
            .collect();
        // Replicas the specs know but no online engine reports.
        for spec in self.specs.replicas.read().values() {
            if !out.iter().any(|r| r.uuid == spec.uuid) {
                out.push(Replica {
                    node: spec.node.clone(),
                    uuid: spec.uuid.clone(),
                    pool: spec.pool.clone(),
                    thin: spec.thin,
                    size: spec.size,
                    allocated: 0,
                    share: spec.share,
                    uri: String::new(),
                    status: ReplicaStatus::Unknown,
                    allowed_hosts: Vec::new(),
                });
            }
        }
        out.sort_by(|a, b| a.uuid.cmp(&b.uuid));
        out
    }

    pub fn nexuses_view(&self) -> Vec<Nexus> {
        let mut out: Vec<Nexus> = self
            .registry
            .nexuses()
            .iter()
            .map(|(node, n)| nexus_model(node, n))
            .collect();
        out.sort_by(|a, b| a.uuid.cmp(&b.uuid));
        out
    }

    pub fn volume_view(&self, id: &str) -> Option<Volume> {
        let rec = self.specs.volume(id)?;
        let nexus = rec
            .nexus
            .as_ref()
            .and_then(|uuid| self.registry.nexus(uuid));
        let mut topology = BTreeMap::new();
        let replicas: Vec<ReplicaSpec> = self
            .specs
            .volume_replicas(id)
            .into_iter()
            .filter(|r| r.status != SpecStatus::Deleting)
            .collect();
        let mut online = 0;
        for r in &replicas {
            let seen = self.registry.replica(&r.uuid);
            let child = nexus.as_ref().and_then(|(_, n)| child_of(n, &r.uuid));
            let state = if seen.is_some() {
                ReplicaStatus::Online
            } else {
                ReplicaStatus::Unknown
            };
            if seen.is_some() {
                online += 1;
            }
            topology.insert(
                r.uuid.clone(),
                ReplicaTopology {
                    node: Some(r.node.clone()),
                    pool: Some(r.pool.clone()),
                    state,
                    child_status: child.as_ref().map(|c| child_state(c.state)),
                    child_status_reason: child.as_ref().map(|c| reason_name(c.reason).to_owned()),
                    rebuild_progress: child
                        .as_ref()
                        .and_then(|c| u8::try_from(c.rebuild_progress).ok()),
                },
            );
        }
        let status = match &nexus {
            Some((_, n)) => match v1::NexusState::try_from(n.state) {
                Ok(v1::NexusState::NexusOnline) => {
                    if n.children.len() < usize::from(rec.spec.num_replicas) {
                        VolumeStatus::Degraded
                    } else {
                        VolumeStatus::Online
                    }
                }
                Ok(v1::NexusState::NexusDegraded) => VolumeStatus::Degraded,
                Ok(v1::NexusState::NexusFaulted) => VolumeStatus::Faulted,
                Ok(v1::NexusState::NexusShutdown) => VolumeStatus::Shutdown,
                _ => VolumeStatus::Unknown,
            },
            None if rec.spec.target.is_some() => VolumeStatus::Unknown,
            None if online == 0 => VolumeStatus::Faulted,
            None if online < usize::from(rec.spec.num_replicas) => VolumeStatus::Degraded,
            None => VolumeStatus::Online,
        };
        Some(Volume {
            state: VolumeState {
                uuid: id.to_owned(),
                size: rec.spec.size,
                status,
                target: nexus.as_ref().map(|(node, n)| nexus_model(node, n)),
                replica_topology: topology,
            },
            spec: rec.spec,
        })
    }

    pub fn volumes_view(&self) -> Vec<Volume> {
        let ids: Vec<String> = self.specs.volumes.read().keys().cloned().collect();
        ids.iter().filter_map(|id| self.volume_view(id)).collect()
    }

    pub fn specs_view(&self) -> Specs {
        Specs {
            nodes: self.specs.nodes.read().values().cloned().collect(),
            pools: self.specs.pools.read().values().cloned().collect(),
            replicas: self.specs.replicas.read().values().cloned().collect(),
            volumes: self
                .specs
                .volumes
                .read()
                .values()
                .map(|r| r.spec.clone())
                .collect(),
            nexuses: self.specs.nexuses.read().values().cloned().collect(),
        }
    }
}

// ---------------------------------------------------------------- helpers

/// The child of an observed nexus that is replica `uuid`.
pub fn child_of(n: &EngineNexus, uuid: &str) -> Option<v1::Child> {
    n.children.iter().find(|c| c.uuid == uuid).cloned()
}

pub fn child_health(c: &v1::Child) -> ChildHealth {
    match v1::ChildState::try_from(c.state) {
        Ok(v1::ChildState::ChildOnline) => ChildHealth::Online,
        Ok(v1::ChildState::ChildDegraded) => ChildHealth::Rebuilding {
            progress: u8::try_from(c.rebuild_progress.max(0)).unwrap_or(0),
        },
        _ => ChildHealth::Faulted,
    }
}

pub(crate) fn child_state(s: i32) -> ChildState {
    match v1::ChildState::try_from(s) {
        Ok(v1::ChildState::ChildOnline) => ChildState::Online,
        Ok(v1::ChildState::ChildDegraded) => ChildState::Degraded,
        Ok(v1::ChildState::ChildFaulted) => ChildState::Faulted,
        _ => ChildState::Unknown,
    }
}

pub fn reason_name(r: i32) -> &'static str {
    match v1::ChildStateReason::try_from(r) {
        Ok(v1::ChildStateReason::ChildReasonIoFailure) => "io_failure",
        Ok(v1::ChildStateReason::ChildReasonTimedOut) => "timed_out",
        Ok(v1::ChildStateReason::ChildReasonCannotOpen) => "cannot_open",
        Ok(v1::ChildStateReason::ChildReasonRebuildFailed) => "rebuild_failed",
        Ok(v1::ChildStateReason::ChildReasonNoSpace) => "no_space",
        Ok(v1::ChildStateReason::ChildReasonByClient) => "by_client",
        Ok(v1::ChildStateReason::ChildReasonOutOfSync) => "out_of_sync",
        _ => "none",
    }
}

pub(crate) fn job_state(s: i32) -> &'static str {
    match v1::RebuildJobState::try_from(s) {
        Ok(v1::RebuildJobState::RebuildCompleted) => "completed",
        Ok(v1::RebuildJobState::RebuildStopped) => "stopped",
        Ok(v1::RebuildJobState::RebuildFailed) => "failed",
        Ok(v1::RebuildJobState::RebuildRunning) => "running",
        Ok(v1::RebuildJobState::RebuildPaused) => "paused",
        _ => "unknown",
    }
}

fn pool_status(s: i32) -> PoolStatus {
    match v1::PoolState::try_from(s) {
        Ok(v1::PoolState::PoolOnline) => PoolStatus::Online,
        Ok(v1::PoolState::PoolDegraded) => PoolStatus::Degraded,
        Ok(v1::PoolState::PoolFaulted) => PoolStatus::Faulted,
        _ => PoolStatus::Unknown,
    }
}

fn replica_model(node: &str, r: &v1::Replica) -> Replica {
    Replica {
        node: node.to_owned(),
        uuid: r.uuid.clone(),
        pool: r.pool_name.clone(),
        thin: r.thin,
        size: r.size,
        allocated: r.allocated,
        share: if r.share == v1::ShareProtocol::Nvmf as i32 {
            Protocol::Nvmf
        } else {
            Protocol::None
        },
        uri: r.uri.clone(),
        status: ReplicaStatus::Online,
        allowed_hosts: r.allowed_hosts.clone(),
    }
}

pub fn nexus_model(node: &str, n: &EngineNexus) -> Nexus {
    Nexus {
        node: node.to_owned(),
        uuid: n.uuid.clone(),
        size: n.size,
        status: match v1::NexusState::try_from(n.state) {
            Ok(v1::NexusState::NexusOnline) => NexusStatus::Online,
            Ok(v1::NexusState::NexusDegraded) => NexusStatus::Degraded,
            Ok(v1::NexusState::NexusFaulted) => NexusStatus::Faulted,
            Ok(v1::NexusState::NexusShutdown) => NexusStatus::Shutdown,
            _ => NexusStatus::Unknown,
        },
        children: n
            .children
            .iter()
            .map(|c| Child {
                uri: c.uri.clone(),
                state: child_state(c.state),
                state_reason: reason_name(c.reason).to_owned(),
                rebuild_progress: u8::try_from(c.rebuild_progress).ok(),
            })
            .collect(),
        device_uri: n.device_uri.clone(),
        rebuilds: n.rebuilds,
        protocol: if n.device_uri.is_empty() {
            Protocol::None
        } else {
            Protocol::Nvmf
        },
    }
}

/// Unix milliseconds as RFC 3339 UTC (empty for 0).
pub use mayastor_common::time::format_millis_or_empty as rfc3339;
