//! `agent-core`: waits for the store's leader lease, then loads the specs,
//! serves engine registration (gRPC) and the REST operations (HTTP, the
//! same routes as `api-rest`) on one port, and runs the reconcilers.
//!
//! A second instance waits for the lease. A holder that loses the lease
//! stops at once (exit code 2) so that two instances never reconcile
//! together; SIGTERM or SIGINT releases it and exits 0.

#![forbid(unsafe_code)]

use std::{io::IsTerminal, sync::Arc, time::Duration};

use agent_core::{
    api::CoreService, config::Args, core::Core, grpc::RegistrationService, reconcile,
    specs::SpecStore,
};
use anyhow::Context;
use clap::Parser;
use io_engine_api::v1::registration_rpc_server::RegistrationRpcServer;
use store::{keys::StoreKeys, EtcdStore, LeaseLock, LockOptions, SharedStore};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

async fn connect_store(endpoint: &str) -> SharedStore {
    loop {
        match EtcdStore::connect(&[endpoint.to_owned()], Duration::from_secs(5)).await {
            Ok(s) => return Arc::new(s),
            Err(e) => {
                warn!(store = endpoint, error = %e, "store unreachable; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(&args.log_format);
    // Read before anything starts: a bad token source is a clear error.
    let bearer_token = api_rest::token::load_bearer_token(args.bearer_token_file.as_deref())?;
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot install the SIGTERM handler")?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            stop.cancel();
        });
    }
    // Bind first: a taken port is a clear error before anything else.
    let listener = tokio::net::TcpListener::bind(args.grpc_endpoint)
        .await
        .with_context(|| format!("cannot listen on {}", args.grpc_endpoint))?;
    let store = connect_store(&args.store).await;
    let keys = StoreKeys::new(&args.cluster_uid, &args.namespace);
    let owner = format!("agent-core@{}/{}", args.grpc_endpoint, std::process::id());
    info!(owner = %owner, "waiting for the leader lease");
    let ttl = i64::try_from(args.lease_ttl.as_secs().max(1)).unwrap_or(10);
    let lock = tokio::select! {
        _ = stop.cancelled() => return Ok(()),
        l = LeaseLock::acquire(store.clone(), keys.lease_lock("core-agent"), owner.clone(), LockOptions { ttl_secs: ttl, retry_delay: Duration::from_millis(500) }) => l.context("cannot take the leader lease")?,
    };
    info!(owner = %owner, revision = lock.revision(), "leader lease acquired: reconciling");
    let specs = SpecStore::load(store.clone(), keys)
        .await
        .map_err(|e| anyhow::anyhow!("cannot load the specs: {e}"))?;
    let core = Core::new(args.clone(), specs);

    // One port: gRPC registration by its path, everything else is the
    // REST router.
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
            Ok(())
        }
        _ = lock.lost() => {
            error!("the leader lease was lost: stopping at once");
            std::process::exit(2);
        }
    }
}
