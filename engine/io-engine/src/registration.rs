//! Registration with the core agent: `Register` on start and then every
//! heartbeat interval, `Deregister` on a clean stop.
//!
//! The core agent may be down or restarting: failures are logged (once per
//! outage, not on every beat) and the next beat simply tries again, so an
//! engine never depends on the control plane to serve I/O.

use std::time::Duration;

use io_engine_api::v1::{
    registration_rpc_client::RegistrationRpcClient, DeregisterRequest, RegisterRequest,
};
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;
use tracing::{info, warn};

/// What the engine tells the core agent about itself.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Core agent endpoint (`host:port` or `http://host:port`).
    pub endpoint: String,
    pub node: String,
    pub grpc_endpoint: String,
    pub instance_uuid: String,
    pub node_nqn: String,
    pub heartbeat: Duration,
}

fn url(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    }
}

impl Registration {
    fn request(&self) -> RegisterRequest {
        RegisterRequest {
            id: self.node.clone(),
            grpc_endpoint: self.grpc_endpoint.clone(),
            instance_uuid: self.instance_uuid.clone(),
            node_nqn: self.node_nqn.clone(),
            version: mayastor_version::version().into(),
            heartbeat_ms: u64::try_from(self.heartbeat.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Beats until `stop` is cancelled, then deregisters.
    pub async fn run(self, stop: CancellationToken) {
        let ep = match Endpoint::from_shared(url(&self.endpoint)) {
            Ok(ep) => ep
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(2)),
            Err(e) => {
                warn!(endpoint = %self.endpoint, error = %e, "invalid registration endpoint");
                return;
            }
        };
        let mut client = RegistrationRpcClient::new(ep.connect_lazy());
        let mut registered = false;
        let mut ticker = tokio::time::interval(self.heartbeat);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            match client.register(self.request()).await {
                Ok(_) if !registered => {
                    info!(core = %self.endpoint, node = %self.node, "registered with the core agent");
                    registered = true;
                }
                Ok(_) => {}
                Err(e) if registered || e.code() != tonic::Code::Unavailable => {
                    warn!(core = %self.endpoint, error = %e.message(), "registration failed; retrying every heartbeat");
                    registered = false;
                }
                Err(_) => {}
            }
        }
        let _ = client
            .deregister(DeregisterRequest {
                id: self.node.clone(),
                instance_uuid: self.instance_uuid.clone(),
            })
            .await;
    }
}
