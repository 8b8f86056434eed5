//! The cluster agent's life: bind the port, take the store's
//! `ha-cluster-agent` lease, resume every unfinished switch-over from its
//! stored stage, then serve the node agents and watch the drains until
//! stopped or until the lease is lost (then the caller exits at once).

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use io_engine_api::ha::ha_cluster_rpc_server::HaClusterRpcServer;
use openapi::client::{RestClient, RestClientOptions};
use store::{LeaseLock, LockOptions};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    config::Args,
    drain::DrainWatcher,
    nodes::NodeAgents,
    record::Records,
    server::{HaClusterService, SwitchOvers},
    switch::{SwitchOptions, Switcher},
};

/// How [`run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Stopped,
    /// The lease was lost: stop at once (another instance runs the
    /// switch-overs now).
    LeaseLost,
}

/// Runs the cluster agent until `stop` or the loss of the lease.
pub async fn run(args: Args, stop: CancellationToken) -> anyhow::Result<Ended> {
    let bearer_token = match &args.bearer_token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the bearer token file {}", p.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let api = RestClient::new(
        &args.rest,
        RestClientOptions {
            timeout: args.rest_timeout,
            bearer_token,
            ..Default::default()
        },
    )
    .map_err(|e| anyhow::anyhow!("REST endpoint {}: {e}", args.rest))?;
    let listener = tokio::net::TcpListener::bind(args.grpc_endpoint)
        .await
        .with_context(|| format!("cannot listen on {}", args.grpc_endpoint))?;
    let Some(store) = args.store.connect_until_stopped(&stop).await else {
        return Ok(Ended::Stopped);
    };
    let keys = args.store.keys();
    let owner = format!(
        "agent-ha-cluster@{}/{}",
        args.grpc_endpoint,
        std::process::id()
    );
    info!(owner = %owner, "waiting for the leader lease");
    let options = LockOptions {
        ttl_secs: i64::try_from(args.lease_ttl.as_secs().max(1)).unwrap_or(10),
        retry_delay: Duration::from_millis(500),
    };
    let lock = tokio::select! {
        _ = stop.cancelled() => return Ok(Ended::Stopped),
        l = LeaseLock::acquire(store.clone(), keys.ha_cluster_lease(), owner.clone(), options) => {
            l.context("cannot take the leader lease")?
        }
    };
    info!(owner = %owner, "leader lease acquired");

    let records = Records::new(store.clone(), &keys);
    let api: Arc<dyn openapi::CoreApi> = Arc::new(api);
    let switcher = Arc::new(Switcher {
        records: records.clone(),
        api: api.clone(),
        opts: SwitchOptions {
            node_timeout: args.node_timeout,
            retry_delay: args.retry_delay,
            max_attempts: args.max_attempts.max(1),
        },
    });
    let switch_overs = SwitchOvers::new(switcher);
    // Resumed before a report is served: a report for a volume being
    // resumed is then IN_PROGRESS.
    let unfinished: Vec<_> = records
        .list()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the switch-overs: {e}"))?
        .into_iter()
        .filter(|r| !r.stage.is_final())
        .collect();
    info!(count = unfinished.len(), "unfinished switch-overs resumed");
    for rec in unfinished {
        switch_overs.resume(rec);
    }

    let nodes = NodeAgents::new(store.clone(), &keys);
    let drains = tokio::spawn(
        DrainWatcher {
            api,
            switch_overs: switch_overs.clone(),
            nodes: nodes.clone(),
            period: args.drain_period,
        }
        .run(stop.clone()),
    );
    let service = HaClusterService {
        switch_overs,
        nodes,
    };
    let served_stop = stop.clone();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(HaClusterRpcServer::new(service))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                served_stop.cancelled().await
            }),
    );
    info!(endpoint = %args.grpc_endpoint, "HA cluster agent listening");
    tokio::select! {
        _ = stop.cancelled() => {
            if let Err(e) = lock.release().await {
                warn!(error = %e, "cannot release the lease (it expires by itself)");
            }
            let _ = server.await;
            let _ = drains.await;
            info!("HA cluster agent stopped");
            Ok(Ended::Stopped)
        }
        _ = lock.lost() => {
            error!("the leader lease was lost: stopping at once");
            Ok(Ended::LeaseLost)
        }
    }
}
