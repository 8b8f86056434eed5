//! `csi-node`'s command line (flags as upstream's node plugin) and the
//! start-up that turns it into a running plugin.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use mayastor_common::log::LogFormat;
use tokio_util::sync::CancellationToken;

use super::{
    config::{NodeConfig, NvmeDefaults},
    server::{self, Endpoints},
};

/// The CSI node plugin: stages volumes with the kernel NVMe/TCP host,
/// formats and mounts them or hands over the raw block device.
#[derive(Debug, Parser)]
#[command(name = "csi-node", version)]
pub struct Args {
    /// The Kubernetes node name: the CSI node id, the topology value of
    /// `openebs.io/nodename` and the host NQN
    /// `nqn.2019-05.io.openebs:node-name:<NAME>`.
    #[arg(long, env = "MY_NODE_NAME")]
    pub node_name: String,
    /// The unix socket the kubelet and the sidecars call.
    #[arg(long, default_value = "/csi/csi.sock")]
    pub csi_socket: PathBuf,
    /// The same services on TCP (IP:PORT; upstream's port is 10199).
    #[arg(long)]
    pub grpc_endpoint: Option<SocketAddr>,
    /// Seconds the kernel keeps reconnecting a lost controller, unless the
    /// volume's `nvmeCtrlLossTmo` says otherwise.
    #[arg(long, default_value_t = NvmeDefaults::default().ctrl_loss_tmo_s)]
    pub nvme_ctrl_loss_tmo: u32,
    /// Keep-alive timeout in seconds (volume parameter `nvmeKeepAliveTmo`).
    #[arg(long, default_value_t = NvmeDefaults::default().keep_alive_tmo_s, value_parser = clap::value_parser!(u32).range(1..))]
    pub nvme_keep_alive_tmo: u32,
    /// Seconds between reconnect attempts (`nvmeReconnectDelay`).
    #[arg(long, default_value_t = NvmeDefaults::default().reconnect_delay_s, value_parser = clap::value_parser!(u32).range(1..))]
    pub nvme_reconnect_delay: u32,
    /// I/O queues per controller (`nvmeNrIoQueues`); the kernel's default
    /// (one per CPU) when absent.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub nvme_nr_io_queues: Option<u32>,
    /// Block I/O timeout in seconds (`ioTimeout`); the kernel's when absent.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub nvme_io_timeout: Option<u32>,
    /// Seconds to wait for a connected volume's block device.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub device_wait: u64,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

/// Starts tracing and the runtime and serves until SIGTERM or SIGINT.
pub fn run(args: Args) -> anyhow::Result<()> {
    mayastor_common::log::init_tracing("csi-node", args.log_format);
    let nvme = NvmeDefaults {
        ctrl_loss_tmo_s: args.nvme_ctrl_loss_tmo,
        keep_alive_tmo_s: args.nvme_keep_alive_tmo,
        reconnect_delay_s: args.nvme_reconnect_delay,
        nr_io_queues: args.nvme_nr_io_queues,
        io_timeout_s: args.nvme_io_timeout,
        device_wait: Duration::from_secs(args.device_wait),
    };
    let cfg = NodeConfig::new(&args.node_name, nvme).map_err(|e| anyhow::anyhow!(e))?;
    let endpoints = Endpoints {
        csi_socket: args.csi_socket,
        grpc: args.grpc_endpoint,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        mayastor_common::signal::cancel_on_signal(shutdown.clone())?;
        server::run(cfg, endpoints, shutdown).await
    })
}
