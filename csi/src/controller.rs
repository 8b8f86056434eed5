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
//! - [`pv_gc`]: the PV garbage collector, run when a Kubernetes API server
//!   is known (`--kube-config-path`, or in a pod);
//! - [`run`]: builds the services and serves them on the unix socket until
//!   SIGTERM/SIGINT.
//!
//! Threading: tonic serves each call on the tokio runtime; the only shared
//! state is the set of volumes with a call in flight (a std mutex never
//! held across an await) and the create-limit semaphore.

pub mod errors;
pub mod guard;
pub mod params;
pub mod pv_gc;
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
    /// Kubeconfig of the cluster whose PersistentVolumes the PV garbage
    /// collector watches [default: the in-cluster config inside a pod;
    /// elsewhere the collector is off].
    #[arg(long, visible_alias = "kubeconfig", value_name = "FILE")]
    pub kube_config_path: Option<PathBuf>,
    /// Time between two sweeps for volumes with no PV.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = mayastor_common::duration::parse_positive)]
    pub orphan_vol_gc_period: Duration,
    /// How long a volume found with no PV waits before it is checked
    /// again and deleted.
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = mayastor_common::duration::parse)]
    pub orphan_vol_gc_grace: Duration,
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

/// The Kubernetes client of the PV garbage collector: `--kube-config-path`,
/// else the in-cluster config inside a pod, else `None` (collector off).
/// The KUBECONFIG variable and `~/.kube/config` are not read: a collector
/// must never delete volumes against a cluster nobody pointed it at.
pub async fn kube_client(args: &Args) -> anyhow::Result<Option<kube::Client>> {
    let config = match &args.kube_config_path {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| anyhow::anyhow!("--kube-config-path {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .map_err(|e| anyhow::anyhow!("--kube-config-path {}: {e}", path.display()))?
        }
        None if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => kube::Config::incluster()
            .map_err(|e| anyhow::anyhow!("in-cluster Kubernetes config: {e}"))?,
        None => return Ok(None),
    };
    let client =
        kube::Client::try_from(config).map_err(|e| anyhow::anyhow!("Kubernetes client: {e}"))?;
    Ok(Some(client))
}

/// Serves the controller until `shutdown` is cancelled.
pub async fn serve(args: Args, shutdown: CancellationToken) -> anyhow::Result<()> {
    let rest = rest_client(&args)?;
    let kube = kube_client(&args).await?;
    let identity = IdentityService::new(
        IdentityService::controller_capabilities(),
        Arc::new(RestReadiness::new(rest.clone())),
    );
    let rest: Arc<dyn CoreApi> = Arc::new(rest);
    let controller = service::ControllerService::new(
        rest.clone(),
        args.pool_selector(),
        usize::from(args.create_volume_limit),
    );
    match kube {
        Some(kube) => {
            let times = pv_gc::GcTimes {
                period: args.orphan_vol_gc_period,
                grace: args.orphan_vol_gc_grace,
            };
            let gc = pv_gc::PvGarbageCollector::new(kube, rest, controller.guards(), times);
            tokio::spawn(gc.run(shutdown.clone()));
        }
        None => tracing::info!(
            "no Kubernetes API server (no --kube-config-path, not in a pod): PV garbage collector off"
        ),
    }
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
