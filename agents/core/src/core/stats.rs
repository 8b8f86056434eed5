//! I/O statistics of volumes and pools, read from the engines' `StatsRpc`
//! on demand (nothing is cached or stored: the engines hold the counters).
//!
//! A volume's figures are its target nexus's, from the engine of the
//! target's node, plus each replica's from its own node; a pool's come from
//! the engine of the node that has it imported.

use io_engine_api::v1::{IoStats as EngineIoStats, ListStatsOption};

use super::*;

/// REST form of an engine's counters.
fn io_stats(s: &EngineIoStats) -> IoStats {
    IoStats {
        num_read_ops: s.num_read_ops,
        bytes_read: s.bytes_read,
        num_write_ops: s.num_write_ops,
        bytes_written: s.bytes_written,
        read_latency_us: s.read_latency_us,
        write_latency_us: s.write_latency_us,
        tick_us: s.tick_us,
    }
}

fn by_name(name: &str) -> ListStatsOption {
    ListStatsOption {
        name: Some(name.to_owned()),
    }
}

impl Core {
    /// `GET /volumes/{id}/stats`.
    pub async fn volume_stats(&self, id: &str) -> CoreResult<VolumeIoStats> {
        let rec = self.volume_record(id)?;
        let (Some(target), Some(nexus)) = (&rec.spec.target, &rec.nexus) else {
            return Err(rest(
                ErrorKind::NotPublished,
                format!(
                    "volume {id} is not published: its I/O statistics are kept by its target \
                     (publish it with PUT /volumes/{id}/target)"
                ),
            ));
        };
        let found = self
            .client(&target.node)?
            .stats
            .get_nexus_io_stats(by_name(nexus))
            .await
            .map_err(engine_err(&target.node))?
            .into_inner()
            .stats;
        let stats = found.first().map(io_stats).ok_or_else(|| {
            rest(
                ErrorKind::NotFound,
                format!(
                    "nexus {nexus} of volume {id} not found on node {}",
                    target.node
                ),
            )
        })?;
        let mut replicas = Vec::new();
        for r in self.specs.volume_replicas(id) {
            replicas.push(ReplicaIoStats {
                stats: self.replica_stats(&r.node, &r.uuid).await,
                uuid: r.uuid,
                node: r.node,
                pool: r.pool,
            });
        }
        Ok(VolumeIoStats {
            volume_uuid: id.to_owned(),
            node: target.node.clone(),
            nexus_uuid: nexus.clone(),
            stats,
            replicas,
        })
    }

    /// One replica's counters, `None` when its engine cannot tell.
    async fn replica_stats(&self, node: &str, uuid: &str) -> Option<IoStats> {
        let mut client = self.client(node).ok()?.stats;
        match client.get_replica_io_stats(by_name(uuid)).await {
            Ok(r) => r
                .into_inner()
                .stats
                .first()
                .and_then(|r| r.stats.as_ref())
                .map(io_stats),
            Err(e) => {
                warn!(replica = %uuid, node = %node, error = %e.message(), "replica stats unavailable");
                None
            }
        }
    }

    /// `GET /pools/{id}/stats` (and with `node`, the pool must be there).
    pub async fn pool_stats(&self, node: Option<&str>, id: &str) -> CoreResult<PoolIoStats> {
        let pool = self
            .pool_view(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("pool {id}"))))?;
        let at = pool
            .state
            .as_ref()
            .map(|s| s.node.clone())
            .or_else(|| pool.spec.as_ref().map(|s| s.node.clone()))
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("pool {id}"))))?;
        if let Some(node) = node {
            if node != at {
                return Err(CoreError::Rest(RestError::not_found(format!(
                    "pool {id} on node {node}"
                ))));
            }
        }
        let found = self
            .client(&at)?
            .stats
            .get_pool_io_stats(by_name(id))
            .await
            .map_err(engine_err(&at))?
            .into_inner()
            .stats;
        let stats = found.first().map(io_stats).ok_or_else(|| {
            rest(
                ErrorKind::NotFound,
                format!("pool {id} is not imported on node {at}"),
            )
        })?;
        Ok(PoolIoStats {
            id: id.to_owned(),
            node: at,
            stats,
        })
    }
}
