//! The core agent's life: wait for the store's leader lease, load the
//! specs, serve engine registration (gRPC) and the REST operations (HTTP)
//! on one port, and run the poll loop and the reconcilers until stopped or
//! until the lease is lost.
//!
//! The port is bound first, so a taken port is a clear error before
//! anything else; a second instance waits for the lease and serves nothing
//! meanwhile.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use io_engine_api::v1::registration_rpc_server::RegistrationRpcServer;
use store::{LeaseLock, LockOptions};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    api::CoreService, config::Args, core::Core, grpc::RegistrationService, reconcile,
    specs::SpecStore,
};

/// How [`run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// `stop` was cancelled: the lease was released.
    Stopped,
    /// The lease was lost: the caller must stop at once, so that two
    /// instances never reconcile together.
    LeaseLost,
}

/// Runs the core agent until `stop` or the loss of the lease.
pub async fn run(args: Args, stop: CancellationToken) -> anyhow::Result<Ended> {
    // Read before anything starts: a bad token source is a clear error.
    let bearer_token = api_rest::token::load_bearer_token(args.bearer_token_file.as_deref())?;
    let listener = tokio::net::TcpListener::bind(args.grpc_endpoint)
        .await
        .with_context(|| format!("cannot listen on {}", args.grpc_endpoint))?;
    let Some(store) = args.store.connect_until_stopped(&stop).await else {
        return Ok(Ended::Stopped);
    };
    let keys = args.store.keys();
    let owner = format!("agent-core@{}/{}", args.grpc_endpoint, std::process::id());
    info!(owner = %owner, "waiting for the leader lease");
    let ttl = i64::try_from(args.lease_ttl.as_secs().max(1)).unwrap_or(10);
    let options = LockOptions {
        ttl_secs: ttl,
        retry_delay: Duration::from_millis(500),
    };
    let lock = tokio::select! {
        _ = stop.cancelled() => return Ok(Ended::Stopped),
        l = LeaseLock::acquire(store.clone(), keys.lease_lock("core-agent"), owner.clone(), options) => {
            l.context("cannot take the leader lease")?
        }
    };
    info!(owner = %owner, revision = lock.revision(), "leader lease acquired: reconciling");
    let specs = SpecStore::load(store.clone(), keys)
        .await
        .map_err(|e| anyhow::anyhow!("cannot load the specs: {e}"))?;
    let core = Core::new(args.clone(), specs);

    // One port: gRPC registration by its path, everything else is the
    // REST router (every route behind the token when one is set).
    let registration = RegistrationRpcServer::new(RegistrationService::new(core.clone()));
    let app = api_rest::router(
        Arc::new(CoreService(core.clone())),
        api_rest::RouterOptions {
            guard_every_route: bearer_token.is_some(),
            bearer_token,
        },
    )
    .route_service("/io_engine.v1.RegistrationRpc/{*method}", registration);
    let served_stop = stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { served_stop.cancelled().await })
            .await
    });
    info!(endpoint = %args.grpc_endpoint, "core agent listening (gRPC registration and HTTP API)");

    let poll = tokio::spawn(reconcile::poll_loop(core.clone(), stop.clone()));
    let reconciler = tokio::spawn(reconcile::run(core.clone(), stop.clone()));

    tokio::select! {
        _ = stop.cancelled() => {
            info!("stopping: releasing the leader lease");
            let _ = reconciler.await;
            let _ = poll.await;
            if let Err(e) = lock.release().await {
                warn!(error = %e, "cannot release the lease (it expires by itself)");
            }
            let _ = server.await;
            info!("core agent stopped");
            Ok(Ended::Stopped)
        }
        _ = lock.lost() => {
            error!("the leader lease was lost: stopping at once");
            Ok(Ended::LeaseLost)
        }
    }
}
