//! The gRPC client of the local io-engine: one [`Snapshot`] per scrape.
//!
//! The channel is opened lazily and re-established by tonic after the
//! engine restarts; every call has the exporter's engine timeout, so a hung
//! engine costs a scrape at most that long.

use std::time::Duration;

use std::collections::HashMap;

use io_engine_api::v1::{
    host_rpc_client::HostRpcClient, nexus_rpc_client::NexusRpcClient,
    pool_rpc_client::PoolRpcClient, stats_rpc_client::StatsRpcClient, GetHostInfoRequest, IoStats,
    ListNexusRequest, ListPoolsRequest, ListStatsOption, PoolState,
};
use tonic::transport::{Channel, Endpoint};

use crate::metrics::{IoCounters, PoolFigures, PoolStatus, ReplicaIo, Snapshot};

/// Why the engine gave no snapshot.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid engine endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("io-engine at {endpoint} did not answer {call}: {status}")]
    Call {
        endpoint: String,
        call: &'static str,
        status: String,
    },
}

/// A client of one engine.
#[derive(Clone)]
pub struct EngineClient {
    endpoint: String,
    channel: Channel,
}

/// `IP:PORT`, `HOST:PORT` or `http://HOST:PORT` as an `http://` URI.
fn engine_uri(endpoint: &str) -> Result<String, EngineError> {
    let bad = |reason: &str| EngineError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let authority = match endpoint.split_once("://") {
        Some(("http", rest)) => rest.trim_end_matches('/'),
        Some((scheme, _)) => return Err(bad(&format!("unsupported scheme {scheme:?}"))),
        None => endpoint,
    };
    let port_ok = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        return Err(bad("expected IP:PORT or http://HOST:PORT"));
    }
    Ok(format!("http://{authority}"))
}

impl EngineClient {
    /// A client of the engine at `endpoint`; connects on the first call.
    pub fn new(endpoint: &str, timeout: Duration) -> Result<EngineClient, EngineError> {
        let uri = engine_uri(endpoint)?;
        let channel = Endpoint::from_shared(uri.clone())
            .map_err(|e| EngineError::Endpoint {
                endpoint: endpoint.to_owned(),
                reason: e.to_string(),
            })?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect_lazy();
        Ok(EngineClient {
            endpoint: uri.trim_start_matches("http://").to_owned(),
            channel,
        })
    }

    /// The endpoint as shown in logs (`IP:PORT`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn failed(&self, call: &'static str) -> impl FnOnce(tonic::Status) -> EngineError + '_ {
        move |status| EngineError::Call {
            endpoint: self.endpoint.clone(),
            call,
            status: match status.code() {
                tonic::Code::Unavailable | tonic::Code::Unknown => {
                    let source = std::error::Error::source(&status)
                        .map(|s| format!(": {s}"))
                        .unwrap_or_default();
                    format!("{}{source}", status.message())
                }
                code => format!("{code:?}: {}", status.message()),
            },
        }
    }

    /// The node name the engine reports.
    pub async fn node_name(&self) -> Result<String, EngineError> {
        let info = HostRpcClient::new(self.channel.clone())
            .get_host_info(GetHostInfoRequest {})
            .await
            .map_err(self.failed("GetHostInfo"))?
            .into_inner();
        Ok(info.node_name)
    }

    /// Everything the page shows, asked now.
    pub async fn snapshot(&self) -> Result<Snapshot, EngineError> {
        let pools = PoolRpcClient::new(self.channel.clone())
            .list_pools(ListPoolsRequest { name: None })
            .await
            .map_err(self.failed("ListPools"))?
            .into_inner()
            .pools;
        let mut pools: Vec<PoolFigures> = pools
            .into_iter()
            .map(|p| PoolFigures {
                status: pool_status(p.state),
                total_size_bytes: p.capacity,
                used_size_bytes: p.used,
                committed_size_bytes: p.committed,
                name: p.name,
            })
            .collect();
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        let mut snapshot = Snapshot {
            pools,
            ..Snapshot::default()
        };
        self.io_stats(&mut snapshot).await?;
        Ok(snapshot)
    }

    /// Fills the I/O statistics of `snapshot`, or leaves them empty when
    /// the engine keeps none (`--no-io-stats`, or an engine without the
    /// statistics service).
    async fn io_stats(&self, snapshot: &mut Snapshot) -> Result<(), EngineError> {
        let mut stats = StatsRpcClient::new(self.channel.clone());
        let all = || ListStatsOption { name: None };
        let pools = match stats.get_pool_io_stats(all()).await {
            Ok(r) => r.into_inner().stats,
            Err(s) if no_statistics(&s) => {
                tracing::debug!(status = %s.message(), "the engine keeps no I/O statistics");
                return Ok(());
            }
            Err(s) => return Err(self.failed("GetPoolIoStats")(s)),
        };
        let nexuses = stats
            .get_nexus_io_stats(all())
            .await
            .map_err(self.failed("GetNexusIoStats"))?
            .into_inner()
            .stats;
        let replicas = stats
            .get_replica_io_stats(all())
            .await
            .map_err(self.failed("GetReplicaIoStats"))?
            .into_inner()
            .stats;
        // The volume of a replica, as far as this engine knows it: the
        // volume of a local nexus that has the replica as a child.
        let volume_of: HashMap<String, String> = NexusRpcClient::new(self.channel.clone())
            .list_nexus(ListNexusRequest {
                uuid: None,
                name: None,
            })
            .await
            .map_err(self.failed("ListNexus"))?
            .into_inner()
            .nexus_list
            .into_iter()
            .flat_map(|n| {
                let volume = n.name;
                n.children
                    .into_iter()
                    .map(move |c| (c.uuid, volume.clone()))
            })
            .collect();

        snapshot.pool_io = pools
            .iter()
            .map(|s| (s.name.clone(), counters(s)))
            .collect();
        snapshot.volume_io = nexuses
            .iter()
            .map(|s| (s.name.clone(), counters(s)))
            .collect();
        snapshot.replica_io = replicas
            .iter()
            .filter_map(|r| {
                let s = r.stats.as_ref()?;
                Some(ReplicaIo {
                    name: s.uuid.clone(),
                    pool_id: r.pool_uuid.clone(),
                    pv_name: volume_of.get(&s.uuid).cloned().unwrap_or_default(),
                    io: counters(s),
                })
            })
            .collect();
        snapshot.pool_io.sort();
        snapshot.volume_io.sort();
        snapshot.replica_io.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(())
    }
}

/// The engine answers, but keeps no statistics.
fn no_statistics(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::FailedPrecondition | tonic::Code::Unimplemented
    )
}

fn counters(s: &IoStats) -> IoCounters {
    IoCounters {
        bytes_read: s.bytes_read,
        num_read_ops: s.num_read_ops,
        bytes_written: s.bytes_written,
        num_write_ops: s.num_write_ops,
        read_latency_us: s.read_latency_us,
        write_latency_us: s.write_latency_us,
    }
}

fn pool_status(state: i32) -> PoolStatus {
    match PoolState::try_from(state) {
        Ok(PoolState::PoolOnline) => PoolStatus::Online,
        Ok(PoolState::PoolDegraded) => PoolStatus::Degraded,
        Ok(PoolState::PoolFaulted) => PoolStatus::Faulted,
        Ok(PoolState::PoolUnknown) | Err(_) => PoolStatus::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            engine_uri("127.0.0.1:10124").expect("ip:port"),
            "http://127.0.0.1:10124"
        );
        assert_eq!(
            engine_uri("http://io-engine:10124/").expect("url"),
            "http://io-engine:10124"
        );
        for bad in ["127.0.0.1", "https://x:1", ":10124", "host:port", "h:70000"] {
            let e = engine_uri(bad).expect_err(bad).to_string();
            assert!(e.starts_with("invalid engine endpoint"), "{e}");
        }
    }

    #[test]
    fn states() {
        assert_eq!(
            pool_status(PoolState::PoolOnline as i32),
            PoolStatus::Online
        );
        assert_eq!(
            pool_status(PoolState::PoolDegraded as i32),
            PoolStatus::Degraded
        );
        assert_eq!(
            pool_status(PoolState::PoolFaulted as i32),
            PoolStatus::Faulted
        );
        assert_eq!(pool_status(99), PoolStatus::Unknown);
    }

    #[tokio::test]
    async fn unreachable_engine_is_an_error_not_a_hang() {
        // Nothing listens on port 1 of the exporter's test loopback range.
        let client = EngineClient::new("127.0.145.1:1", Duration::from_secs(2)).expect("endpoint");
        let started = std::time::Instant::now();
        let e = client.snapshot().await.expect_err("nobody listens");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            e.to_string()
                .starts_with("io-engine at 127.0.145.1:1 did not answer ListPools"),
            "{e}"
        );
    }
}
