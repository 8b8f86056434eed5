//! Startup: the multipath check, the ReplacePath server and the watcher,
//! until stopped.

use anyhow::Context;
use io_engine_api::ha::ha_node_rpc_server::HaNodeRpcServer;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::{
    config::{AddressMap, Args},
    register::Registration,
    replace::{ReplaceLimits, ReplaceService},
    sysfs::Sysfs,
    watch::{Tracker, Watcher},
};

/// How often the registration with the cluster agent is sent again.
pub const REGISTER_AGAIN: std::time::Duration = std::time::Duration::from_secs(60);

/// What is logged on a host without native multipath.
pub const NO_MULTIPATH: &str = "the kernel's native NVMe multipath is off on this host \
     (/sys/module/nvme_core/parameters/multipath is not Y; boot with nvme_core.multipath=Y): \
     HA cannot work here, no path is reported";

/// Runs the node agent until `stop`.
pub async fn run(args: Args, stop: CancellationToken) -> anyhow::Result<()> {
    let advertise = match args.advertise_endpoint {
        Some(a) => a,
        None if !args.grpc_endpoint.ip().is_unspecified() => args.grpc_endpoint,
        None => anyhow::bail!(
            "--grpc-endpoint {} is a wildcard: give --advertise-endpoint (where the cluster agent reaches this agent)",
            args.grpc_endpoint
        ),
    };
    let listener = tokio::net::TcpListener::bind(args.grpc_endpoint)
        .await
        .with_context(|| format!("cannot listen on {}", args.grpc_endpoint))?;
    let sysfs = Sysfs::new(&args.sysfs);
    let multipath = sysfs.multipath();
    let map = AddressMap::new(&args.address_map);
    let service = ReplaceService::new(
        sysfs.clone(),
        map.clone(),
        args.csi_node.clone(),
        ReplaceLimits {
            connect: args.connect_timeout,
            live: args.live_timeout,
            delete: args.delete_timeout,
        },
        multipath,
    );
    let served_stop = stop.clone();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(HaNodeRpcServer::new(service))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                served_stop.cancelled().await
            }),
    );
    info!(node = %args.node_name, endpoint = %args.grpc_endpoint, advertise = %advertise,
          cluster_agent = %args.cluster_agent, "HA node agent listening");
    if multipath {
        let registration = tokio::spawn(
            Registration {
                node: args.node_name.clone(),
                advertise: advertise.to_string(),
                cluster_agent: args.cluster_agent.clone(),
                retry: args.interval,
                again: REGISTER_AGAIN,
            }
            .run(stop.clone()),
        );
        info!(interval = ?args.interval, threshold = ?args.path_failure_threshold, "watching the NVMe paths");
        let watcher = Watcher {
            node: args.node_name.clone(),
            advertise: advertise.to_string(),
            cluster_agent: args.cluster_agent.clone(),
            sysfs,
            map,
            interval: args.interval,
            tracker: Tracker::new(args.path_failure_threshold, args.report_again_after),
        };
        watcher.run(stop.clone()).await;
        let _ = registration.await;
    } else {
        error!("{NO_MULTIPATH}");
        stop.cancelled().await;
    }
    server
        .await
        .context("server task")?
        .context("gRPC server")?;
    info!("HA node agent stopped");
    Ok(())
}
