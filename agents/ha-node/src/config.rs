//! Flags of `agent-ha-node`, and the address map.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use clap::Parser;
use io_engine_api::names::{CSI_NODE_GRPC_PORT, HA_CLUSTER_GRPC_PORT, HA_NODE_GRPC_PORT};
use mayastor_common::duration::parse_positive as parse_duration;

/// Command line of `agent-ha-node`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "agent-ha-node",
    version,
    about = "HA node agent: reports NVMe paths stuck connecting and replaces them after a switch-over"
)]
pub struct Args {
    /// This node's name (its host NQN is nqn.2019-05.io.openebs:node-name:<name>).
    #[arg(short = 'n', long, env = "NODE_NAME")]
    pub node_name: String,
    /// IP:PORT of the ReplacePath service.
    #[arg(short = 'g', long, default_value_t = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), HA_NODE_GRPC_PORT))]
    pub grpc_endpoint: SocketAddr,
    /// IP:PORT the cluster agent reaches this agent at (default:
    /// --grpc-endpoint, which must then not be 0.0.0.0).
    #[arg(long, env = "ADVERTISE_ENDPOINT")]
    pub advertise_endpoint: Option<SocketAddr>,
    /// The cluster agent (agent-ha-cluster), HOST:PORT.
    #[arg(short = 'c', long, default_value_t = format!("127.0.0.1:{HA_CLUSTER_GRPC_PORT}"))]
    pub cluster_agent: String,
    /// The node plugin's gRPC (csi-node), HOST:PORT.
    #[arg(long, default_value_t = format!("127.0.0.1:{CSI_NODE_GRPC_PORT}"))]
    pub csi_node: String,
    /// Root of sysfs.
    #[arg(long, default_value = "/sys")]
    pub sysfs: PathBuf,
    /// How often the controllers are looked at (sysfs states cannot be
    /// watched with inotify; a few small reads per period).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// A path `connecting` this long is reported failed.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub path_failure_threshold: Duration,
    /// An acknowledged path still failing after this long is reported
    /// again (its switch-over may have ended in error).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub report_again_after: Duration,
    /// Limit of csi-node's connect of the new path.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Limit of the wait for the new path to be live.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub live_timeout: Duration,
    /// Limit of the deletion of a controller.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub delete_timeout: Duration,
    /// CLUSTER=LOCAL: a target the cluster knows at CLUSTER (IP:PORT) is
    /// reached from this host at LOCAL (a NAT or port forward). Repeatable.
    #[arg(long = "address-map", value_parser = parse_pair)]
    pub address_map: Vec<(String, String)>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = mayastor_common::log::LogFormat::Pretty)]
    pub log_format: mayastor_common::log::LogFormat,
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    let (a, b) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not CLUSTER_IP:PORT=LOCAL_IP:PORT"))?;
    for side in [a, b] {
        side.parse::<SocketAddr>()
            .map_err(|_| format!("{side:?} in {text:?} is not IP:PORT"))?;
    }
    Ok((a.to_owned(), b.to_owned()))
}

/// Cluster addresses of targets and where this host reaches them.
#[derive(Debug, Clone, Default)]
pub struct AddressMap {
    to_local: BTreeMap<String, String>,
    to_cluster: BTreeMap<String, String>,
}

impl AddressMap {
    pub fn new(pairs: &[(String, String)]) -> Self {
        let mut m = Self::default();
        for (c, l) in pairs {
            m.to_local.insert(c.clone(), l.clone());
            m.to_cluster.insert(l.clone(), c.clone());
        }
        m
    }

    /// Where this host reaches a target the cluster knows at `addr`.
    pub fn local<'a>(&'a self, addr: &'a str) -> &'a str {
        self.to_local.get(addr).map_or(addr, String::as_str)
    }

    /// The cluster's address of a target this host reaches at `addr`.
    pub fn cluster<'a>(&'a self, addr: &'a str) -> &'a str {
        self.to_cluster.get(addr).map_or(addr, String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_maps_translate_both_ways_and_pass_the_rest() {
        let m = AddressMap::new(&[("127.0.0.5:8420".to_owned(), "10.0.2.100:4420".to_owned())]);
        assert_eq!(m.local("127.0.0.5:8420"), "10.0.2.100:4420");
        assert_eq!(m.cluster("10.0.2.100:4420"), "127.0.0.5:8420");
        assert_eq!(m.local("127.0.0.6:8420"), "127.0.0.6:8420");
        assert!(parse_pair("127.0.0.5:8420=10.0.2.100:4420").is_ok());
        assert!(parse_pair("127.0.0.5:8420").is_err());
        assert!(parse_pair("x=10.0.2.100:4420").is_err());
    }
}
