//! Command line and tunables of the core agent.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use io_engine_api::names::CORE_GRPC_PORT;

pub use mayastor_common::duration::parse as parse_duration;

use crate::scheduler::ThinLimits;

/// Command line of `agent-core`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    version = mayastor_version::version(),
    name = "agent-core",
    about = "The core agent: registry, specs, scheduler and reconcilers; serves engine registration (gRPC) and the REST operations (HTTP) on one port."
)]
pub struct Args {
    /// IP:PORT of the core agent (gRPC registration and the HTTP API).
    #[arg(short = 'g', long, default_value_t = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), CORE_GRPC_PORT))]
    pub grpc_endpoint: SocketAddr,
    #[command(flatten)]
    pub store: store::StoreArgs,
    /// A node whose engine has not registered for this long is Offline.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub heartbeat_timeout: Duration,
    /// How long a faulted child may come back for a partial rebuild before
    /// it is replaced (full rebuild).
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    pub faulted_child_wait: Duration,
    /// Period of every reconciler not given its own below.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub reconcile_period: Duration,
    /// Period of the reconciler that finishes or rolls back interrupted
    /// operations (default: --reconcile-period).
    #[arg(long, value_parser = parse_duration)]
    pub operations_reconcile_period: Option<Duration>,
    /// Period of the pool reconciler: pools imported again on engines that
    /// restarted (default: --reconcile-period).
    #[arg(long, value_parser = parse_duration)]
    pub pool_reconcile_period: Option<Duration>,
    /// Period of the nexus reconciler: targets recreated on engines that
    /// restarted (default: --reconcile-period).
    #[arg(long, value_parser = parse_duration)]
    pub nexus_reconcile_period: Option<Duration>,
    /// Period of the volume reconciler: faulted children, replica counts
    /// (default: --reconcile-period).
    #[arg(long, value_parser = parse_duration)]
    pub volume_reconcile_period: Option<Duration>,
    /// Period of the thin-pool space reconciler (default: --reconcile-period).
    #[arg(long, value_parser = parse_duration)]
    pub space_reconcile_period: Option<Duration>,
    /// Period of the garbage collector (default: --reconcile-period).
    #[arg(long, value_parser = parse_duration)]
    pub gc_reconcile_period: Option<Duration>,
    /// Period of the drain reconciler (default: --reconcile-period).
    #[arg(long, value_parser = parse_duration)]
    pub drain_reconcile_period: Option<Duration>,
    /// How often engines are polled for their pools, replicas and nexuses.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub poll_period: Duration,
    /// Orphaned replicas and nexuses are destroyed after this long.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub gc_period: Duration,
    /// TTL of the leader lease.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub lease_ttl: Duration,
    /// What a leader does when it loses the lease: it stops reconciling at
    /// once either way. `exit`: exit with code 2 (a supervisor such as
    /// Kubernetes starts it again). `restart`: replace itself with a fresh
    /// copy of the same binary and flags (same PID) that waits for the
    /// lease again, for hosts without a supervisor (the local cluster).
    #[arg(long, value_enum, default_value_t = OnLeaseLoss::Exit)]
    pub on_lease_loss: OnLeaseLoss,
    /// Timeout of one engine call.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub engine_timeout: Duration,
    /// Thin pools: committed sizes may reach this percentage of capacity.
    #[arg(long, default_value_t = 250)]
    pub pool_commitment: u64,
    /// Thin replicas added later need this percentage of their size free.
    #[arg(long, default_value_t = 40)]
    pub volume_commitment: u64,
    /// Thin replicas of a new volume need this percentage of their size free.
    #[arg(long, default_value_t = 40)]
    pub volume_commitment_initial: u64,
    /// Log format on stderr (RUST_LOG filters, default info).
    #[arg(long, value_enum, default_value_t = mayastor_common::log::LogFormat::Pretty)]
    pub log_format: mayastor_common::log::LogFormat,
    /// File holding the bearer token every HTTP request must carry (or
    /// set REST_BEARER_TOKEN): give it the same token as `api-rest`, which
    /// then forwards it. With a token, no HTTP route answers without it
    /// (the probes and the spec included); engine registration (gRPC) is
    /// not covered. Without either, the HTTP API is open to whoever
    /// reaches the port.
    #[arg(long, value_name = "FILE")]
    pub bearer_token_file: Option<std::path::PathBuf>,
}

impl Args {
    pub fn limits(&self) -> ThinLimits {
        ThinLimits {
            pool_commitment_pct: self.pool_commitment,
            volume_commitment_pct: self.volume_commitment,
            volume_commitment_initial_pct: self.volume_commitment_initial,
        }
    }
}

/// `--on-lease-loss`: what a leader does once its lease is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnLeaseLoss {
    /// Exit with code 2.
    Exit,
    /// Execute the same binary with the same arguments again (same PID).
    Restart,
}
