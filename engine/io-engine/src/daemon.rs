//! Configuration and lifecycle of the `io-engine` process.
//!
//! Start-up: bind the gRPC listener, then the NVMe/TCP target (a bad or
//! busy address is a clear error and exit code 1), log `nvmf target
//! listening` and `io-engine listening`, and serve both.
//! Shutdown: SIGTERM or SIGINT cancels a [`CancellationToken`]; the NVMe/TCP
//! target stops serving and the gRPC server stops accepting connections and
//! lets in-flight calls finish; then every subsystem is removed and every
//! pool is flushed and exported ([`ShareManager::shutdown`]) and the process
//! exits 0. A second signal during that sequence exits at once (code 130).
//!
//! Nothing here needs hugepages or busy polling: the engine is an ordinary
//! tokio program.

pub use mayastor_common::log::LogFormat;
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use nvmf_target::{Target, TargetConfig};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    grpc::{self, HostIdentity},
    nexus::{etcd::EtcdInfoStore, host_nqn, DefaultOpener, InfoStore, NexusConfig, NexusRegistry},
    pool::PoolRegistry,
    registration::Registration,
    share::{advertised_ip, NvmfEndpoint, ShareManager},
};

/// Default gRPC endpoint: all addresses, port 10124 (as upstream).
pub const DEFAULT_GRPC_ENDPOINT: SocketAddr = SocketAddr::new(
    IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    io_engine_api::names::IO_ENGINE_GRPC_PORT,
);

/// Default NVMe/TCP port (as upstream); the IP defaults to the gRPC one.
pub const DEFAULT_NVMF_PORT: u16 = io_engine_api::names::NVMF_PORT;

/// Highest controller ID the NVMe spec allows for a dynamic controller.
pub const MAX_CNTLID: u16 = 0xffef;

/// A controller-ID window `MIN-MAX` (within 1..=0xffef): controllers of
/// this engine's target get IDs from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CntlidRange {
    pub min: u16,
    pub max: u16,
}

impl Default for CntlidRange {
    fn default() -> Self {
        Self {
            min: 1,
            max: MAX_CNTLID,
        }
    }
}

impl std::fmt::Display for CntlidRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

impl FromStr for CntlidRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (min, max) = text
            .split_once('-')
            .ok_or_else(|| format!("{text:?} is not a range MIN-MAX (e.g. 1-65519)"))?;
        let parse = |n: &str| {
            n.trim()
                .parse::<u16>()
                .map_err(|_| format!("{n:?} is not a controller ID (1..={MAX_CNTLID})"))
        };
        let range = Self {
            min: parse(min)?,
            max: parse(max)?,
        };
        if range.min == 0 || range.max > MAX_CNTLID || range.min > range.max {
            return Err(format!(
                "controller ID range {range} must satisfy 1 <= MIN <= MAX <= {MAX_CNTLID}"
            ));
        }
        Ok(range)
    }
}

/// Command line of the `io-engine` daemon.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    version = mayastor_version::version(),
    name = "io-engine",
    about = "The io-engine storage node daemon: pools and replicas, managed over gRPC."
)]
pub struct Config {
    /// IP:PORT the gRPC API listens on.
    #[arg(short = 'g', long, value_name = "IP:PORT", default_value_t = DEFAULT_GRPC_ENDPOINT)]
    pub grpc_endpoint: SocketAddr,

    /// IP:PORT the core agent is told to reach the gRPC API at (default:
    /// the listen address): for an engine behind a proxy or NAT.
    #[arg(long, value_name = "IP:PORT", env = "IO_ENGINE_GRPC_ADVERTISE")]
    pub grpc_advertise: Option<SocketAddr>,

    /// Name of this node (default: the host name).
    #[arg(short = 'N', long, value_name = "NAME")]
    pub node_name: Option<String>,

    /// IP:PORT the NVMe/TCP target listens on (default: the gRPC endpoint's
    /// IP, port 8420). Port 0 picks a free port.
    #[arg(long, value_name = "IP:PORT")]
    pub nvmf_endpoint: Option<SocketAddr>,

    /// IP put into the nvmf:// URIs of shared replicas (default: the
    /// NVMe/TCP listen IP, or 127.0.0.1 when that is 0.0.0.0).
    #[arg(long, value_name = "IP")]
    pub nvmf_advertise: Option<IpAddr>,

    /// Controller IDs the NVMe/TCP target hands out.
    #[arg(long, value_name = "MIN-MAX", default_value_t = CntlidRange::default())]
    pub nvmf_cntlid_range: CntlidRange,

    /// Format of the log lines (stderr). Filter with RUST_LOG (default: info).
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Persistent store (etcd, or the embedded store) where nexuses keep
    /// their info: HOST:PORT or http://HOST:PORT. Without it nexus info is
    /// not persisted and a restarted nexus cannot tell stale children.
    #[arg(long, value_name = "ENDPOINT")]
    pub ps_endpoint: Option<String>,

    /// Timeout of one call to the persistent store, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub ps_timeout_ms: u64,

    /// Key prefix of nexus info in the store
    /// (`<prefix>/volume/<volume>/nexus/<nexus>/info`).
    #[arg(long, value_name = "PREFIX", default_value = crate::nexus::info::DEFAULT_PREFIX)]
    pub ps_key_prefix: String,

    /// A nexus child I/O not completed within this time faults the child
    /// (milliseconds).
    #[arg(long, value_name = "MS", default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub child_io_timeout_ms: u64,

    /// How long a nexus reconnects to a lost remote child before its I/O
    /// fails (milliseconds; at most the child I/O timeout is useful).
    #[arg(long, value_name = "MS", default_value_t = 5_000,
        value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub child_reconnect_timeout_ms: u64,

    /// Core agent to register with (HOST:PORT or http://HOST:PORT); the
    /// engine re-registers every heartbeat interval.
    #[arg(short = 'R', long, value_name = "ENDPOINT")]
    pub registration_endpoint: Option<String>,

    /// Heartbeat interval towards the core agent, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub heartbeat_interval_ms: u64,

    /// Default rebuild bandwidth limit in MiB/s (0: unlimited).
    #[arg(long, value_name = "MIB_PER_S", default_value_t = 0)]
    pub rebuild_bandwidth_mib: u64,

    /// Keep no I/O statistics (pool, replica and nexus counters): the
    /// stats calls then fail with FAILED_PRECONDITION. For measuring their
    /// cost; statistics are on by default.
    #[arg(long, env = "IO_ENGINE_NO_IO_STATS")]
    pub no_io_stats: bool,

    /// Poll: keep every runtime thread busy checking its sockets instead
    /// of sleeping until one is ready (lower latency at low queue depth,
    /// for cores given to the engine alone: each runtime thread then uses
    /// a whole core even when idle). Off by default.
    #[arg(long, env = "IO_ENGINE_POLL")]
    pub poll: bool,
}

impl Config {
    /// Where the NVMe/TCP target listens.
    pub fn nvmf_listen(&self) -> SocketAddr {
        self.nvmf_endpoint
            .unwrap_or_else(|| SocketAddr::new(self.grpc_endpoint.ip(), DEFAULT_NVMF_PORT))
    }
}

/// Installs the global tracing subscriber (stderr, `RUST_LOG`, colours
/// only on a terminal).
pub fn init_tracing(format: LogFormat) {
    mayastor_common::log::init_tracing("io-engine", format);
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    mayastor_common::signal::cancel_on_signal(shutdown.clone())
        .context("cannot install the SIGTERM/SIGINT handlers")?;
    run_until(config, shutdown).await
}

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run_until(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.grpc_endpoint)
        .await
        .with_context(|| format!("cannot listen on gRPC endpoint {}", config.grpc_endpoint))?;
    let endpoint = listener
        .local_addr()
        .context("cannot read the bound gRPC address")?;
    let node_name = config.node_name.clone().unwrap_or_else(host_name);
    crate::stats::set_enabled(!config.no_io_stats);
    if config.poll {
        crate::poll::spawn_pollers(shutdown.child_token());
        tracing::info!("polling: every runtime thread stays busy");
    }
    let nvmf = start_nvmf(&config, &node_name).await?;
    let nvmf_served = {
        let target = nvmf.target.clone();
        let cancel = shutdown.child_token();
        tokio::spawn(async move { target.serve(cancel).await })
    };
    let registry = Arc::new(PoolRegistry::new(blockdev::OpenOptions::default()));
    let nexus = Arc::new(nexus_registry(&config, &node_name, &registry, &nvmf)?);
    let share = Arc::new(ShareManager::new(registry, Some(nvmf)));

    info!(
        endpoint = %endpoint,
        node = %node_name,
        version = mayastor_version::version(),
        "io-engine listening"
    );

    let registration = config.registration_endpoint.clone().map(|core| {
        let advertised = match config.grpc_advertise {
            Some(a) => a,
            None if endpoint.ip().is_unspecified() => SocketAddr::new(
                advertised_ip(endpoint.ip(), config.nvmf_advertise),
                endpoint.port(),
            ),
            None => endpoint,
        };
        let reg = Registration {
            endpoint: core,
            node: node_name.clone(),
            grpc_endpoint: advertised.to_string(),
            instance_uuid: uuid::Uuid::new_v4().to_string(),
            node_nqn: host_nqn(&node_name),
            heartbeat: Duration::from_millis(config.heartbeat_interval_ms),
        };
        let stop = shutdown.child_token();
        tokio::spawn(reg.run(stop))
    });

    let router = grpc::router(
        share.clone(),
        nexus.clone(),
        HostIdentity {
            node_name,
            grpc_endpoint: endpoint,
        },
    );
    let served = router
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown.clone().cancelled_owned(),
        )
        .await;

    // The serve loop is cancelled with `shutdown`; a gRPC failure ends the
    // process too, so make sure the target stops in that case as well.
    shutdown.cancel();
    if let Err(e) = nvmf_served.await {
        warn!(error = %e, "nvmf target task failed");
    }
    info!("gRPC server and nvmf target stopped; shutting nexuses down and exporting pools");
    nexus.shutdown_all().await;
    share.shutdown().await;
    if let Some(reg) = registration {
        let _ = reg.await;
    }
    served.context("gRPC server failed")?;
    info!("io-engine stopped");
    Ok(())
}

/// The nexus registry: children opened from the engine's pools or through
/// the initiator (as `nqn.2019-05.io.openebs:node-name:<node>`), info kept
/// in the store given by `--ps-endpoint`.
fn nexus_registry(
    config: &Config,
    node_name: &str,
    registry: &Arc<PoolRegistry>,
    nvmf: &NvmfEndpoint,
) -> anyhow::Result<NexusRegistry> {
    let cfg = NexusConfig {
        child_io_timeout: Duration::from_millis(config.child_io_timeout_ms),
        child_reconnect_timeout: Duration::from_millis(config.child_reconnect_timeout_ms),
        rebuild_max_bandwidth: config.rebuild_bandwidth_mib.saturating_mul(1 << 20),
        host_nqn: host_nqn(node_name),
        info_prefix: config.ps_key_prefix.clone(),
        ..NexusConfig::default()
    };
    let store: Option<Arc<dyn InfoStore>> = match &config.ps_endpoint {
        Some(ep) => {
            let s = EtcdInfoStore::new(ep, Duration::from_millis(config.ps_timeout_ms))
                .map_err(anyhow::Error::msg)?;
            info!(endpoint = %s.describe(), "nexus info kept in the persistent store");
            Some(Arc::new(s))
        }
        None => {
            warn!("no --ps-endpoint: nexus info is not persisted");
            None
        }
    };
    let opener = DefaultOpener {
        registry: registry.clone(),
        host_nqn: cfg.host_nqn.clone(),
        io_timeout: cfg.child_io_timeout,
        reconnect_timeout: cfg.child_reconnect_timeout,
        nvmf: Some(nvmf.target.clone()),
    };
    Ok(NexusRegistry::new(
        cfg,
        Arc::new(opener),
        store,
        Some(nvmf.clone()),
    ))
}

/// Binds the NVMe/TCP target and logs `nvmf target listening`.
async fn start_nvmf(config: &Config, node_name: &str) -> anyhow::Result<NvmfEndpoint> {
    let listen = config.nvmf_listen();
    let target_config = TargetConfig {
        listen,
        cntlid_min: config.nvmf_cntlid_range.min,
        cntlid_max: config.nvmf_cntlid_range.max,
        ..TargetConfig::default()
    };
    let target = Target::bind(target_config)
        .await
        .with_context(|| format!("cannot listen on NVMe/TCP endpoint {listen}"))?;
    let advertise = advertised_ip(listen.ip(), config.nvmf_advertise);
    let nvmf = NvmfEndpoint::new(target, advertise);
    info!(
        endpoint = %nvmf.target.local_addr(),
        advertised = %nvmf.advertised,
        cntlid_range = %config.nvmf_cntlid_range,
        node = %node_name,
        "nvmf target listening"
    );
    if listen.ip().is_unspecified() && config.nvmf_advertise.is_none() {
        warn!(
            advertised = %nvmf.advertised,
            "nvmf target listens on all addresses but advertises loopback; set --nvmf-advertise for remote hosts"
        );
    }
    Ok(nvmf)
}

/// The host name, from the kernel (no libc here), or `localhost`.
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults_and_flags() {
        let c = Config::parse_from(["io-engine"]);
        assert_eq!(c.grpc_endpoint.to_string(), "0.0.0.0:10124");
        assert_eq!(c.node_name, None);
        assert_eq!(c.log_format, LogFormat::Pretty);
        assert_eq!(c.nvmf_listen().to_string(), "0.0.0.0:8420");
        assert_eq!(c.nvmf_advertise, None);
        assert_eq!(c.nvmf_cntlid_range, CntlidRange { min: 1, max: 65519 });
        let c = Config::parse_from([
            "io-engine",
            "--grpc-endpoint",
            "127.0.1.2:4000",
            "--node-name",
            "n1",
            "--log-format",
            "json",
        ]);
        assert_eq!(c.grpc_endpoint.to_string(), "127.0.1.2:4000");
        assert_eq!(c.node_name.as_deref(), Some("n1"));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.nvmf_listen().to_string(), "127.0.1.2:8420");
        assert!(Config::try_parse_from(["io-engine", "-g", "nonsense"]).is_err());
        let c = Config::parse_from([
            "io-engine",
            "--nvmf-endpoint",
            "127.0.1.3:4420",
            "--nvmf-advertise",
            "10.0.0.7",
            "--nvmf-cntlid-range",
            "100-199",
        ]);
        assert_eq!(c.nvmf_listen().to_string(), "127.0.1.3:4420");
        assert_eq!(c.nvmf_advertise, Some("10.0.0.7".parse().unwrap()));
        assert_eq!(c.nvmf_cntlid_range, CntlidRange { min: 100, max: 199 });
        for bad in [
            &["--nvmf-endpoint", "127.0.0.1"][..],
            &["--nvmf-advertise", "host"],
            &["--nvmf-cntlid-range", "0-10"],
            &["--nvmf-cntlid-range", "10-5"],
            &["--nvmf-cntlid-range", "1-65520"],
            &["--nvmf-cntlid-range", "7"],
        ] {
            let args = std::iter::once("io-engine").chain(bad.iter().copied());
            assert!(Config::try_parse_from(args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cntlid_ranges() {
        assert_eq!("1-65519".parse(), Ok(CntlidRange::default()));
        assert_eq!(
            "5-5".parse::<CntlidRange>().map(|r| r.to_string()),
            Ok("5-5".to_string())
        );
        assert!("a-b".parse::<CntlidRange>().is_err());
        assert!("".parse::<CntlidRange>().is_err());
    }

    #[test]
    fn host_name_is_never_empty() {
        assert!(!host_name().is_empty());
    }

    #[tokio::test]
    async fn busy_endpoint_is_a_clear_error() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let config = Config::parse_from(["io-engine", "-g", &addr.to_string()]);
        let err = run_until(config, CancellationToken::new())
            .await
            .unwrap_err();
        assert!(format!("{err:#}").starts_with(&format!("cannot listen on gRPC endpoint {addr}")));
    }

    #[tokio::test]
    async fn busy_nvmf_endpoint_is_a_clear_error() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let config = Config::parse_from([
            "io-engine",
            "-g",
            "127.0.0.1:0",
            "--nvmf-endpoint",
            &addr.to_string(),
        ]);
        let err = run_until(config, CancellationToken::new())
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").starts_with(&format!("cannot listen on NVMe/TCP endpoint {addr}")),
            "{err:#}"
        );
    }

    #[tokio::test]
    async fn starts_and_stops_on_cancel() {
        let config = Config::parse_from([
            "io-engine",
            "-g",
            "127.0.0.1:0",
            "--nvmf-endpoint",
            "127.0.0.1:0",
        ]);
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(run_until(config, shutdown.clone()));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        shutdown.cancel();
        let res = tokio::time::timeout(std::time::Duration::from_secs(10), run)
            .await
            .unwrap()
            .unwrap();
        assert!(res.is_ok(), "{res:?}");
    }
}
