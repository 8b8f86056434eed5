//! `csi-controller`: the CSI Identity and Controller services, creating,
//! publishing, expanding and deleting volumes through the REST API (the
//! REST client crate `openapi`, never a server's internals).
//!
//! - [`Args`]: the command line (`--rest-endpoint`, `--csi-socket`, ...);
//! - [`RestReadiness`]: `Probe` is ready only while the REST API answers;
//! - [`service`]: the Controller RPCs; [`params`]: the StorageClass
//!   parameters; [`views`]: REST resources as CSI sees them (conditions,
//!   free capacity); [`guard`]: one call at a time per volume and the
//!   create limit; [`errors`]: REST errors as CSI codes;
//! - [`run`]: builds the services and serves them on the unix socket until
//!   SIGTERM/SIGINT.
//!
//! Threading: tonic serves each call on the tokio runtime; the only shared
//! state is the set of volumes with a call in flight (a std mutex never
//! held across an await) and the create-limit semaphore.

pub mod errors;
pub mod guard;
pub mod params;
pub mod service;
pub mod views;

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use mayastor_common::log::LogFormat;
use openapi::{CoreApi, RestClient, RestClientOptions};
use tokio_util::sync::CancellationToken;

use crate::{
    identity::{IdentityService, Readiness},
    v1::{controller_server::ControllerServer, identity_server::IdentityServer},
};

/// The pools CSI volumes may use unless told otherwise.
pub const DEFAULT_POOL_LABEL: &str = "openebs.io/created-by=operator-diskpool";

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
    /// Label (`key=value`, or `key` for any value) a pool must carry to
    /// hold replicas of CSI volumes; repeat for several.
    #[arg(long = "pool-label", value_name = "KEY=VALUE", default_value = DEFAULT_POOL_LABEL, value_parser = parse_label)]
    pub pool_labels: Vec<(String, String)>,
    /// Use every pool, labelled or not (e.g. a local cluster's pools).
    #[arg(long, conflicts_with = "pool_labels")]
    pub any_pool: bool,
    /// Most `CreateVolume` calls in flight at once; more are ABORTED (the CO
    /// retries).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub create_volume_limit: u16,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').unwrap_or((text, ""));
    if key.is_empty() || key.contains(char::is_whitespace) || value.contains(char::is_whitespace) {
        return Err(format!("{text:?} is not KEY=VALUE or KEY"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

impl Args {
    /// The labels a pool needs to hold CSI volumes.
    pub fn pool_selector(&self) -> BTreeMap<String, String> {
        if self.any_pool {
            BTreeMap::new()
        } else {
            self.pool_labels.iter().cloned().collect()
        }
    }
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
        Arc::new(RestReadiness::new(rest.clone())),
    );
    let controller = service::ControllerService::new(
        Arc::new(rest),
        args.pool_selector(),
        usize::from(args.create_volume_limit),
    );
    let router = tonic::transport::Server::builder()
        .add_service(IdentityServer::new(identity))
        .add_service(ControllerServer::new(controller));
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
