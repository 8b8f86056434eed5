//! `csi-node`'s servers: the Identity and Node services (and the HA
//! contract's `NodePathRpc`, see [`super::path`]) on the kubelet's
//! unix socket and on a TCP endpoint (for tools and tests that cannot reach
//! the socket), until the shutdown token is cancelled.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

use super::{config::NodeConfig, nvme, path::NodePathService, pb, service::NodeService};
use crate::ha::node_path_rpc_server::NodePathRpcServer;
use crate::identity::{IdentityService, Readiness};

/// `Probe`: ready when the kernel NVMe/TCP host is there.
struct NvmeTcpReadiness;

#[tonic::async_trait]
impl Readiness for NvmeTcpReadiness {
    async fn not_ready_reason(&self) -> Option<String> {
        (!nvme::ensure_nvme_tcp().await).then(|| nvme::NO_NVME_TCP.to_owned())
    }
}

/// The plugin capabilities of the node plugin: topology (the node reports
/// `openebs.io/nodename`) and online and offline expansion.
fn node_plugin_capabilities() -> Vec<pb::PluginCapability> {
    use pb::plugin_capability::{service, volume_expansion, Service, Type, VolumeExpansion};
    vec![
        pb::PluginCapability {
            r#type: Some(Type::Service(Service {
                r#type: service::Type::VolumeAccessibilityConstraints as i32,
            })),
        },
        pb::PluginCapability {
            r#type: Some(Type::VolumeExpansion(VolumeExpansion {
                r#type: volume_expansion::Type::Online as i32,
            })),
        },
        pb::PluginCapability {
            r#type: Some(Type::VolumeExpansion(VolumeExpansion {
                r#type: volume_expansion::Type::Offline as i32,
            })),
        },
    ]
}

/// Where `csi-node` listens.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub csi_socket: PathBuf,
    /// TCP endpoint of the same services (`None`: socket only).
    pub grpc: Option<SocketAddr>,
}

/// Serves until `shutdown` is cancelled. Without `nvme_tcp` it still
/// starts (Probe and NodeStage say why volumes cannot be staged).
pub async fn run(
    cfg: NodeConfig,
    endpoints: Endpoints,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if nvme::ensure_nvme_tcp().await {
        tracing::info!("kernel NVMe/TCP host (nvme_tcp) available");
    } else {
        tracing::error!("{}", nvme::NO_NVME_TCP);
    }
    tracing::info!(node = %cfg.node_name, host_nqn = %cfg.host_nqn(), "csi-node starting");
    let path = NodePathService::new(cfg.clone());
    let node = NodeService::new(cfg);
    let identity = IdentityService::new(node_plugin_capabilities(), Arc::new(NvmeTcpReadiness));
    let router = || {
        Server::builder()
            .add_service(pb::identity_server::IdentityServer::new(identity.clone()))
            .add_service(pb::node_server::NodeServer::new(node.clone()))
            .add_service(NodePathRpcServer::new(path.clone()))
    };
    let tcp = match endpoints.grpc {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
            tracing::info!(endpoint = %addr, "serving CSI on TCP");
            let r = router();
            let token = shutdown.clone();
            Some(tokio::spawn(async move {
                r.serve_with_incoming_shutdown(TcpListenerStream::new(listener), token.cancelled())
                    .await
            }))
        }
        None => None,
    };
    let served = crate::socket::serve(router(), &endpoints.csi_socket, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(t) = tcp {
        t.await
            .map_err(|e| anyhow::anyhow!("TCP server task: {e}"))?
            .map_err(|e| anyhow::anyhow!("gRPC server on TCP: {e}"))?;
    }
    served?;
    Ok(())
}
