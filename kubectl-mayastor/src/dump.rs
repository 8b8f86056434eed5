//! `kubectl mayastor dump ...`: the command line of support bundles and
//! how it finds its sources; the collecting is the `supportability`
//! crate's.
//!
//! Sources: the REST endpoint as every command finds it ([`discovery`]);
//! a local cluster's state directory when the endpoint is the local
//! cluster's (its logs and its store); Kubernetes when the endpoint came
//! from the kubeconfig or `-k` is given; the store from `-e`, else the
//! local cluster's.
//!
//! Ctrl-C stops the dump and removes its unfinished archive.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};

use crate::cli::{parse_duration, GlobalArgs};
use crate::discovery::{self, Endpoint, Source};

/// `dump` and its flags (they may follow the resource).
#[derive(Debug, Args)]
pub struct DumpArgs {
    #[command(subcommand)]
    pub resource: DumpResource,

    /// Directory the bundle is written to (must exist)
    #[arg(
        short = 'd',
        long = "output-directory-path",
        global = true,
        default_value = ".",
        value_name = "DIR"
    )]
    pub output_directory_path: PathBuf,

    /// Collect logs from this long ago on (e.g. 30m, 24h)
    #[arg(short = 's', long, global = true, default_value = "24h", value_parser = parse_duration, value_name = "DURATION")]
    pub since: Duration,

    /// Loki's base URL (else the Service labelled app=loki, through the API server)
    #[arg(short = 'l', long, global = true, value_name = "URL")]
    pub loki_endpoint: Option<String>,

    /// The store (etcd API) as HOST:PORT (else the local cluster's)
    #[arg(short = 'e', long, global = true, value_name = "HOST:PORT")]
    pub etcd_endpoint: Option<String>,

    /// Newest bytes kept per log source (e.g. 100MiB, 5000000)
    #[arg(long, global = true, default_value = "100MiB", value_parser = parse_bytes, value_name = "SIZE")]
    pub max_log_bytes: u64,

    /// Archive format: zip, or tar.gz as upstream's tool writes
    #[arg(long, global = true, default_value = "zip", value_parser = parse_format, value_name = "FORMAT")]
    pub archive: supportability::Format,

    /// Bearer token for the REST API and Loki (never written to the bundle)
    #[arg(
        long,
        global = true,
        env = "MAYASTOR_BEARER_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub bearer_token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DumpResource {
    /// Everything: topology, logs, Kubernetes resources, the store
    System {
        /// Leave the logs out
        #[arg(long)]
        disable_log_collection: bool,
    },
    /// Every volume and what it uses
    Volumes,
    /// One volume: its replicas, target, pools, nodes, rebuild history and
    /// the logs of its nodes
    Volume { id: String },
    /// Every pool
    Pools,
    /// One pool, its node and replicas
    Pool { id: String },
    /// Every node
    Nodes,
    /// One node, its pools, replicas and targets
    Node { id: String },
    /// The store only
    Etcd {
        /// Print the dump instead of writing a bundle
        #[arg(long)]
        stdout: bool,
    },
}

fn parse_format(text: &str) -> Result<supportability::Format, String> {
    text.parse()
}

/// `100MiB`, `1GiB`, or bytes; more than 0.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    match mayastor_common::size::parse(text, mayastor_common::size::BareUnit::Bytes, false)? {
        0 => Err(format!("{text:?}: the size must be greater than 0")),
        n => Ok(n),
    }
}

impl DumpResource {
    fn resource(&self) -> supportability::Resource {
        use supportability::Resource as R;
        match self {
            DumpResource::System { .. } => R::System,
            DumpResource::Volumes => R::Volumes,
            DumpResource::Volume { id } => R::Volume(id.clone()),
            DumpResource::Pools => R::Pools,
            DumpResource::Pool { id } => R::Pool(id.clone()),
            DumpResource::Nodes => R::Nodes,
            DumpResource::Node { id } => R::Node(id.clone()),
            DumpResource::Etcd { .. } => R::Etcd,
        }
    }
}

/// The local cluster's state directory when `endpoint` is its REST API.
fn local_state_dir(endpoint: Option<&Endpoint>) -> Option<PathBuf> {
    if let Some(Endpoint {
        source: Source::LocalCluster(file),
        ..
    }) = endpoint
    {
        return file.parent().map(PathBuf::from);
    }
    let file = discovery::local_endpoint_file()?;
    let url = std::fs::read_to_string(&file).ok()?;
    let url = url.lines().next()?.trim();
    match endpoint {
        Some(e) if e.url.trim_end_matches('/') != url.trim_end_matches('/') => None,
        _ => file.parent().map(PathBuf::from),
    }
}

/// A dump of `resource` with the sources found from `endpoint` (the REST
/// API as found by discovery) and the global flags: the local cluster's
/// state directory, Kubernetes; the rest at the command line's defaults.
/// The dashboard's bundle key uses it too.
pub fn options(
    global: &GlobalArgs,
    endpoint: Option<&Endpoint>,
    resource: supportability::Resource,
) -> supportability::DumpOptions {
    let from_kubernetes = matches!(endpoint.map(|e| &e.source), Some(Source::Kubernetes { .. }));
    let mut opts = supportability::DumpOptions::new(resource);
    opts.timeout = global.timeout;
    opts.rest_url = endpoint.map(|e| e.url.clone());
    opts.local_state_dir = local_state_dir(endpoint);
    opts.kube = (from_kubernetes || global.kube_config_path.is_some()).then(|| {
        supportability::KubeOptions {
            kubeconfig: global.kube_config_path.clone(),
            namespace: global.namespace.clone(),
        }
    });
    opts
}

/// Runs `dump ...` on its own runtime.
pub fn run(global: &GlobalArgs, args: &DumpArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        tokio::select! {
            result = execute(global, args) => result,
            _ = tokio::signal::ctrl_c() => {
                Err(anyhow!("interrupted: no bundle was written"))
            }
        }
    })
}

async fn execute(global: &GlobalArgs, args: &DumpArgs) -> anyhow::Result<()> {
    let resource = args.resource.resource();
    let is_etcd = resource == supportability::Resource::Etcd;
    let endpoint = match discovery::without_kubernetes(global.rest.as_deref())? {
        Some(endpoint) => Some(endpoint),
        // The store alone needs no REST endpoint.
        None if is_etcd => None,
        None => Some(
            crate::resolve_kubernetes(global)
                .await
                .map_err(|e| anyhow!("{e:#}"))?,
        ),
    };
    let mut opts = options(global, endpoint.as_ref(), resource);

    if let DumpResource::Etcd { stdout: true } = args.resource {
        let store = args
            .etcd_endpoint
            .clone()
            .or_else(|| {
                opts.local_state_dir
                    .as_ref()
                    .and_then(|d| supportability::local::LocalCluster::new(d).store_endpoint())
            })
            .ok_or_else(|| {
                anyhow!("no store endpoint: pass the store's address with -e HOST:PORT")
            })?;
        let mut out = std::io::stdout().lock();
        supportability::dump_store_to(&store, global.timeout, &mut out).await?;
        return Ok(());
    }

    opts.output_dir = args.output_directory_path.clone();
    opts.format = args.archive;
    opts.since = args.since;
    opts.max_log_bytes = args.max_log_bytes;
    opts.bearer_token = args.bearer_token.clone();
    opts.store_endpoint = args.etcd_endpoint.clone();
    opts.loki_endpoint = args.loki_endpoint.clone();
    opts.collect_logs = !matches!(
        args.resource,
        DumpResource::System {
            disable_log_collection: true
        }
    );

    let progress = supportability::progress::terminal();
    let summary = supportability::dump(&opts, progress.as_ref()).await?;
    println!("{}", summary.path.display());
    if summary.complete() {
        Ok(())
    } else {
        let failures: Vec<String> = summary
            .manifest
            .failures()
            .map(|c| format!("{}: {}", c.name, c.error.as_deref().unwrap_or("")))
            .collect();
        Err(anyhow!(
            "partially collected ({} collector(s) failed: {}); the bundle is {}",
            failures.len(),
            failures.join("; "),
            summary.path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("100MiB"), Ok(100 << 20));
        assert_eq!(parse_bytes("5000"), Ok(5000));
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        for bad in ["", "0", "x", "10q", "99999999999999999999", "10MB"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }
}
