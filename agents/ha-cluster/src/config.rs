//! Flags of `agent-ha-cluster`.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use clap::Parser;
use io_engine_api::names::HA_CLUSTER_GRPC_PORT;
use mayastor_common::duration::parse as parse_duration;

/// Command line of `agent-ha-cluster`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "agent-ha-cluster",
    version,
    about = "HA cluster agent: moves a volume's target when a node agent reports its path failed"
)]
pub struct Args {
    /// IP:PORT of the gRPC service the node agents report to.
    #[arg(short = 'g', long, default_value_t = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), HA_CLUSTER_GRPC_PORT))]
    pub grpc_endpoint: SocketAddr,
    #[command(flatten)]
    pub store: store::StoreArgs,
    /// The REST API (the core agent's HTTP endpoint or api-rest).
    #[arg(short = 'r', long, default_value = "http://127.0.0.1:8081")]
    pub rest: String,
    /// File holding a bearer token for the REST API.
    #[arg(long)]
    pub bearer_token_file: Option<std::path::PathBuf>,
    /// Timeout of one REST call.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub rest_timeout: Duration,
    /// Timeout of one ReplacePath call to a node agent.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub node_timeout: Duration,
    /// Pause before a failed stage is tried again.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub retry_delay: Duration,
    /// Attempts of one stage before the switch-over ends Errored.
    #[arg(long, default_value_t = 30)]
    pub max_attempts: u32,
    /// How often the nodes are looked at for drains (the targets of a
    /// draining node move by make-before-break switch-overs).
    #[arg(long, default_value = "2s", value_parser = mayastor_common::duration::parse_positive)]
    pub drain_period: Duration,
    /// TTL of the leader lease (only the holder runs switch-overs).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub lease_ttl: Duration,
    /// Log format.
    #[arg(long, value_enum, default_value_t = mayastor_common::log::LogFormat::Pretty)]
    pub log_format: mayastor_common::log::LogFormat,
}
