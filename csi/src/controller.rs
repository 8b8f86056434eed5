//! `csi-controller`: the CSI Identity and Controller services, creating,
//! publishing, expanding and deleting volumes through the REST API (the
//! REST client crate `openapi`, never a server's internals).
//!
//! - [`Args`]: the command line (`--rest-endpoint`, `--csi-socket`, ...);
//! - [`RestReadiness`]: `Probe` is ready only while the REST API answers;
//! - [`run`]: builds the services and serves them on the unix socket until
//!   SIGTERM/SIGINT.

use std::{path::PathBuf, sync::Arc, time::Duration};

use mayastor_common::log::LogFormat;
use openapi::{CoreApi, RestClient, RestClientOptions};
use tokio_util::sync::CancellationToken;

use crate::{
    identity::{IdentityService, Readiness},
    v1::identity_server::IdentityServer,
};

/// Command line of `csi-controller`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "csi-controller",
    version,
    about = "The CSI controller plugin of Mayastor"
)]
pub struct Args {
    /// REST API endpoint (`http://host:port` or `https://host:port`).
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    pub rest_endpoint: String,
    /// Unix socket to serve CSI on (a stale socket is replaced).
    #[arg(long, default_value = "/var/tmp/csi.sock")]
    pub csi_socket: PathBuf,
    /// Timeout of each REST request.
    #[arg(long, default_value = "30s", value_parser = mayastor_common::duration::parse)]
    pub rest_timeout: Duration,
    /// Bearer token for the REST API.
    #[arg(long, env = "MAYASTOR_BEARER_TOKEN", hide_env_values = true)]
    pub bearer_token: Option<String>,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

/// Ready while `GET /v0/nodes` answers.
pub struct RestReadiness {
    rest: RestClient,
}

impl RestReadiness {
    pub fn new(rest: RestClient) -> Self {
        Self { rest }
    }
}

#[tonic::async_trait]
impl Readiness for RestReadiness {
    async fn not_ready_reason(&self) -> Option<String> {
        match self.rest.get_nodes().await {
            Ok(_) => None,
            Err(error) => Some(format!("the REST API is not reachable: {error}")),
        }
    }
}

/// The REST client described by `args`.
pub fn rest_client(args: &Args) -> anyhow::Result<RestClient> {
    let opts = RestClientOptions {
        timeout: args.rest_timeout,
        bearer_token: args.bearer_token.clone(),
        ..Default::default()
    };
    RestClient::new(&args.rest_endpoint, opts)
        .map_err(|e| anyhow::anyhow!("--rest-endpoint {}: {e}", args.rest_endpoint))
}

/// Serves the controller until `shutdown` is cancelled.
pub async fn serve(args: Args, shutdown: CancellationToken) -> anyhow::Result<()> {
    let rest = rest_client(&args)?;
    let identity = IdentityService::new(
        IdentityService::controller_capabilities(),
        Arc::new(RestReadiness::new(rest)),
    );
    let router = tonic::transport::Server::builder().add_service(IdentityServer::new(identity));
    crate::socket::serve(router, &args.csi_socket, shutdown).await?;
    Ok(())
}

/// The whole program: tracing, signals, [`serve`].
pub fn run(args: Args) -> anyhow::Result<()> {
    mayastor_common::log::init_tracing("csi-controller", args.log_format);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        mayastor_common::signal::cancel_on_signal(shutdown.clone())?;
        tracing::info!(rest = %args.rest_endpoint, socket = %args.csi_socket.display(), "csi-controller starting");
        serve(args, shutdown).await
    })
}
