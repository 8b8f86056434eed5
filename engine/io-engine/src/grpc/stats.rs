//! `StatsRpc`: the I/O counters of pools, replicas and nexuses (see
//! [`crate::stats`] for what is counted).
//!
//! A read-only shell over the registries' snapshots: no lock is held beyond
//! the registries' own list locks, and nothing on the I/O path waits for a
//! call. With statistics off (`--no-io-stats`) every call fails with
//! `FAILED_PRECONDITION`, so a consumer never mistakes "off" for "idle".

use std::sync::Arc;

use io_engine_api::v1::{self, stats_rpc_server::StatsRpc};
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::{
    nexus::NexusRegistry,
    pool::PoolRegistry,
    stats::{self, EntityIoStats},
};

/// The `StatsRpc` service.
#[derive(Clone)]
pub struct StatsService {
    pools: Arc<PoolRegistry>,
    nexuses: Arc<NexusRegistry>,
}

impl StatsService {
    pub fn new(pools: Arc<PoolRegistry>, nexuses: Arc<NexusRegistry>) -> Self {
        Self { pools, nexuses }
    }
}

/// Checks that statistics are on, then keeps the entry named by the
/// request's filter (or all of them).
fn select(
    what: &str,
    all: Vec<EntityIoStats>,
    filter: Option<&str>,
) -> Result<Vec<EntityIoStats>, Status> {
    if !stats::enabled() {
        return Err(Status::failed_precondition(
            "i/o statistics are off on this engine (started with --no-io-stats)",
        ));
    }
    let Some(name) = filter else {
        return Ok(all);
    };
    super::require_name("name", name)?;
    let found: Vec<_> = all.into_iter().filter(|e| e.matches(name)).collect();
    if found.is_empty() {
        return Err(Status::not_found(format!("{what} '{name}' not found")));
    }
    Ok(found)
}

/// Wire form of one entity's counters.
pub fn io_stats_message(e: &EntityIoStats) -> v1::IoStats {
    v1::IoStats {
        name: e.name.clone(),
        uuid: e.uuid.to_string(),
        num_read_ops: e.stats.num_read_ops,
        bytes_read: e.stats.bytes_read,
        num_write_ops: e.stats.num_write_ops,
        bytes_written: e.stats.bytes_written,
        read_latency_us: e.stats.read_latency_us,
        write_latency_us: e.stats.write_latency_us,
        tick_us: e.tick_us,
    }
}

#[tonic::async_trait]
impl StatsRpc for StatsService {
    #[instrument(skip_all)]
    async fn get_pool_io_stats(
        &self,
        request: Request<v1::ListStatsOption>,
    ) -> Result<Response<v1::PoolIoStatsResponse>, Status> {
        let req = request.into_inner();
        let found = select("pool", self.pools.pool_io_stats(), req.name.as_deref())?;
        Ok(Response::new(v1::PoolIoStatsResponse {
            stats: found.iter().map(io_stats_message).collect(),
        }))
    }

    #[instrument(skip_all)]
    async fn get_nexus_io_stats(
        &self,
        request: Request<v1::ListStatsOption>,
    ) -> Result<Response<v1::NexusIoStatsResponse>, Status> {
        let req = request.into_inner();
        let found = select("nexus", self.nexuses.io_stats(), req.name.as_deref())?;
        Ok(Response::new(v1::NexusIoStatsResponse {
            stats: found.iter().map(io_stats_message).collect(),
        }))
    }

    #[instrument(skip_all)]
    async fn get_replica_io_stats(
        &self,
        request: Request<v1::ListStatsOption>,
    ) -> Result<Response<v1::ReplicaIoStatsResponse>, Status> {
        let req = request.into_inner();
        let found = select(
            "replica",
            self.pools.replica_io_stats(),
            req.name.as_deref(),
        )?;
        Ok(Response::new(v1::ReplicaIoStatsResponse {
            stats: found
                .iter()
                .map(|e| {
                    let (pool_name, pool_uuid) = e
                        .pool
                        .as_ref()
                        .map(|(n, u)| (n.clone(), u.to_string()))
                        .unwrap_or_default();
                    v1::ReplicaIoStats {
                        stats: Some(io_stats_message(e)),
                        pool_name,
                        pool_uuid,
                    }
                })
                .collect(),
        }))
    }
}
