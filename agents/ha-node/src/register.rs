//! Registration with the cluster agent: where this node agent is reached,
//! sent at start (retried every `retry` until the cluster agent answers)
//! and again every `again` (a cluster agent whose store was wiped learns
//! it back). A drain's switch-over asks the node agent of the volume's
//! frontend node, found this way, to replace the path.

use std::time::Duration;

use io_engine_api::ha::{ha_cluster_rpc_client::HaClusterRpcClient, RegisterNodeAgentRequest};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// A client of the cluster agent at `HOST:PORT` (connect within 3 s, each
/// call within 10 s).
pub async fn cluster_agent(
    address: &str,
) -> Result<HaClusterRpcClient<tonic::transport::Channel>, String> {
    let endpoint = format!("http://{address}");
    let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
        .map_err(|e| format!("cluster agent endpoint {endpoint}: {e}"))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| format!("cluster agent {endpoint} unreachable: {e}"))?;
    Ok(HaClusterRpcClient::new(channel))
}

/// What the registration needs.
pub struct Registration {
    pub node: String,
    pub advertise: String,
    pub cluster_agent: String,
    pub retry: Duration,
    pub again: Duration,
}

impl Registration {
    /// Registers until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut registered = false;
        loop {
            match self.register().await {
                Ok(()) => {
                    if !registered {
                        info!(cluster_agent = %self.cluster_agent, "registered with the cluster agent");
                    }
                    registered = true;
                }
                Err(e) => {
                    registered = false;
                    warn!(error = %e, "cannot register with the cluster agent; retrying");
                }
            }
            let pause = if registered { self.again } else { self.retry };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn register(&self) -> Result<(), String> {
        cluster_agent(&self.cluster_agent)
            .await?
            .register_node_agent(RegisterNodeAgentRequest {
                node: self.node.clone(),
                endpoint: self.advertise.clone(),
            })
            .await
            .map_err(|s| format!("RegisterNodeAgent: {}", s.message()))?;
        Ok(())
    }
}
