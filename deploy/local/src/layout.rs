//! Where each component of a local cluster listens and how it is started,
//! from the recorded [`Settings`].
//!
//! Engine `i` (1-based) listens on `A.B.C.i` (gRPC 10124, NVMe/TCP 8420)
//! as node `node-i`, and its metrics exporter on `A.B.C.i:9502`; the store on `A.B.C.250:2379` (etcd's peer port 2380
//! too), the core agent on `A.B.C.251:50051`, the REST API on
//! `A.B.C.252:8081`.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{bail, Context};
use io_engine_api::names;

use crate::{
    cli::StoreKind,
    state::{Settings, StateDir},
};

/// The default ports, from their one home (`io_engine_api::names`).
pub const ENGINE_GRPC_PORT: u16 = names::IO_ENGINE_GRPC_PORT;
pub const ENGINE_NVMF_PORT: u16 = names::NVMF_PORT;
pub const CORE_PORT: u16 = names::CORE_GRPC_PORT;
pub const REST_PORT: u16 = names::REST_HTTP_PORT;
pub const METRICS_PORT: u16 = names::METRICS_PORT;
/// etcd's own ports.
pub const STORE_PORT: u16 = 2379;
pub const ETCD_PEER_PORT: u16 = 2380;
const STORE_HOST: u8 = 250;
const CORE_HOST: u8 = 251;
const REST_HOST: u8 = 252;
/// Engines take host numbers 1..=MAX_NODES.
pub const MAX_NODES: u32 = 249;

/// Timers of the core agent: short, so that a killed engine is noticed
/// and rebuilt within seconds.
const CORE_TIMERS: &[(&str, &str)] = &[
    ("--heartbeat-timeout", "3s"),
    ("--reconcile-period", "1s"),
    ("--poll-period", "1s"),
    ("--faulted-child-wait", "120s"),
    // Long enough that a core starved of CPU on a busy machine keeps its
    // lease (it renews every third of it); a graceful stop releases it
    // at once anyway.
    ("--lease-ttl", "10s"),
    // No supervisor restarts a core that lost its lease here.
    ("--on-lease-loss", "restart"),
    ("--engine-timeout", "10s"),
];

/// What kind of component a process is (the order they start in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Store,
    Core,
    Engine(u32),
    /// The metrics exporter of node `i`, beside its engine.
    Exporter(u32),
    Rest,
}

/// One process of the cluster.
#[derive(Debug, Clone)]
pub struct Component {
    pub name: String,
    pub role: Role,
    /// Binary name, looked up beside the launcher then on PATH.
    pub binary: String,
    /// Addresses it listens on; the first is shown in `status`.
    pub listen: Vec<SocketAddr>,
    pub args: Vec<String>,
}

/// Parses and checks an address prefix `A.B.C` (loopback only).
pub fn parse_prefix(prefix: &str) -> anyhow::Result<[u8; 3]> {
    let parts: Vec<&str> = prefix.split('.').collect();
    let octets: Option<Vec<u8>> = parts.iter().map(|p| p.parse::<u8>().ok()).collect();
    match octets {
        Some(o) if o.len() == 3 => {
            if o[0] != 127 {
                bail!("--ip-prefix {prefix}: the local cluster runs on loopback addresses only (127.x.y)");
            }
            Ok([o[0], o[1], o[2]])
        }
        _ => bail!("--ip-prefix {prefix:?} is not three octets like 127.0.1"),
    }
}

/// The whole cluster's layout.
pub struct Layout {
    pub settings: Settings,
    prefix: [u8; 3],
}

impl Layout {
    pub fn new(settings: Settings) -> anyhow::Result<Layout> {
        let prefix = parse_prefix(&settings.ip_prefix)?;
        if settings.nodes == 0 || settings.nodes > MAX_NODES {
            bail!("--nodes must be between 1 and {MAX_NODES}");
        }
        Ok(Layout { settings, prefix })
    }

    fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.prefix[0], self.prefix[1], self.prefix[2], host)
    }

    fn host(node: u32) -> u8 {
        u8::try_from(node).expect("invariant: node numbers are checked against MAX_NODES")
    }

    pub fn store_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip(STORE_HOST).into(), STORE_PORT)
    }

    pub fn core_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip(CORE_HOST).into(), CORE_PORT)
    }

    pub fn rest_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip(REST_HOST).into(), REST_PORT)
    }

    pub fn rest_url(&self) -> String {
        format!("http://{}", self.rest_addr())
    }

    pub fn engine_grpc(&self, node: u32) -> SocketAddr {
        SocketAddr::new(self.ip(Self::host(node)).into(), ENGINE_GRPC_PORT)
    }

    pub fn engine_nvmf(&self, node: u32) -> SocketAddr {
        SocketAddr::new(self.ip(Self::host(node)).into(), ENGINE_NVMF_PORT)
    }

    pub fn node_name(node: u32) -> String {
        format!("node-{node}")
    }

    pub fn pool_name(node: u32) -> String {
        format!("pool-{node}")
    }

    pub fn engine_name(node: u32) -> String {
        format!("io-engine-{node}")
    }

    pub fn exporter_name(node: u32) -> String {
        format!("metrics-exporter-{node}")
    }

    /// The metrics exporter of node `node` (`GET /metrics`).
    pub fn exporter_addr(&self, node: u32) -> SocketAddr {
        SocketAddr::new(self.ip(Self::host(node)).into(), METRICS_PORT)
    }

    /// Every component, in start order.
    pub fn components(&self, state: &StateDir) -> Vec<Component> {
        let mut all = vec![self.store(state), self.core()];
        all.extend((1..=self.settings.nodes).map(|i| self.engine(i)));
        all.extend((1..=self.settings.nodes).map(|i| self.exporter(i)));
        all.push(self.rest());
        all
    }

    pub fn component(&self, state: &StateDir, name: &str) -> anyhow::Result<Component> {
        self.components(state)
            .into_iter()
            .find(|c| c.name == name)
            .with_context(|| format!("no component {name} in this cluster"))
    }

    fn store(&self, state: &StateDir) -> Component {
        let addr = self.store_addr();
        let data = state.store_data(self.settings.store).display().to_string();
        match self.settings.store {
            StoreKind::Embedded => Component {
                name: "store".into(),
                role: Role::Store,
                binary: "mayastor-store".into(),
                listen: vec![addr],
                args: strings(&["--listen", &addr.to_string(), "--data-dir", &data]),
            },
            StoreKind::Etcd => {
                let peer = SocketAddr::new(addr.ip(), ETCD_PEER_PORT);
                let client_url = format!("http://{addr}");
                let peer_url = format!("http://{peer}");
                Component {
                    name: "store".into(),
                    role: Role::Store,
                    binary: "etcd".into(),
                    listen: vec![addr, peer],
                    args: strings(&[
                        "--name",
                        "mayastor-local",
                        "--data-dir",
                        &data,
                        "--listen-client-urls",
                        &client_url,
                        "--advertise-client-urls",
                        &client_url,
                        "--listen-peer-urls",
                        &peer_url,
                        "--initial-advertise-peer-urls",
                        &peer_url,
                        "--initial-cluster",
                        &format!("mayastor-local={peer_url}"),
                    ]),
                }
            }
        }
    }

    fn core(&self) -> Component {
        let addr = self.core_addr();
        let mut args = strings(&[
            "--grpc-endpoint",
            &addr.to_string(),
            "--store",
            &self.store_addr().to_string(),
        ]);
        for (flag, value) in CORE_TIMERS {
            args.push((*flag).to_owned());
            args.push((*value).to_owned());
        }
        Component {
            name: "agent-core".into(),
            role: Role::Core,
            binary: "agent-core".into(),
            listen: vec![addr],
            args,
        }
    }

    fn engine(&self, node: u32) -> Component {
        let grpc = self.engine_grpc(node);
        let nvmf = self.engine_nvmf(node);
        Component {
            name: Self::engine_name(node),
            role: Role::Engine(node),
            binary: "io-engine".into(),
            listen: vec![grpc, nvmf],
            args: strings(&[
                "--grpc-endpoint",
                &grpc.to_string(),
                "--nvmf-endpoint",
                &nvmf.to_string(),
                "--node-name",
                &Self::node_name(node),
                "--registration-endpoint",
                &self.core_addr().to_string(),
                "--heartbeat-interval-ms",
                "1000",
                "--ps-endpoint",
                &self.store_addr().to_string(),
                "--child-io-timeout-ms",
                "3000",
                "--child-reconnect-timeout-ms",
                "1500",
            ]),
        }
    }

    fn exporter(&self, node: u32) -> Component {
        let listen = self.exporter_addr(node);
        Component {
            name: Self::exporter_name(node),
            role: Role::Exporter(node),
            binary: "metrics-exporter".into(),
            listen: vec![listen],
            args: strings(&[
                "--node-name",
                &Self::node_name(node),
                "--engine-endpoint",
                &self.engine_grpc(node).to_string(),
                "--listen",
                &listen.to_string(),
            ]),
        }
    }

    fn rest(&self) -> Component {
        let addr = self.rest_addr();
        Component {
            name: "api-rest".into(),
            role: Role::Rest,
            binary: "api-rest".into(),
            listen: vec![addr],
            args: strings(&[
                "--core-endpoint",
                &format!("http://{}", self.core_addr()),
                "--http",
                &addr.to_string(),
            ]),
        }
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(parse_prefix("127.0.1").expect("valid"), [127, 0, 1]);
        assert!(parse_prefix("10.0.1").is_err());
        assert!(parse_prefix("127.0").is_err());
        assert!(parse_prefix("127.0.1.2").is_err());
        assert!(parse_prefix("127.0.300").is_err());
    }

    #[test]
    fn addresses() {
        let l = Layout::new(Settings {
            nodes: 3,
            pool_size_bytes: 1 << 29,
            store: StoreKind::Embedded,
            ip_prefix: "127.0.7".into(),
        })
        .expect("layout");
        assert_eq!(l.rest_url(), "http://127.0.7.252:8081");
        assert_eq!(l.engine_grpc(2).to_string(), "127.0.7.2:10124");
        assert_eq!(l.engine_nvmf(3).to_string(), "127.0.7.3:8420");
        assert_eq!(l.store_addr().to_string(), "127.0.7.250:2379");
        assert_eq!(l.core_addr().to_string(), "127.0.7.251:50051");
        assert_eq!(l.exporter_addr(2).to_string(), "127.0.7.2:9502");
        let dir = tempfile::tempdir().expect("temporary directory");
        let state = StateDir::open(dir.path(), false)
            .expect("state directory")
            .expect("it exists");
        let exporter = l
            .components(&state)
            .into_iter()
            .find(|c| c.role == Role::Exporter(3))
            .expect("an exporter per node");
        assert_eq!(exporter.name, "metrics-exporter-3");
        assert_eq!(
            exporter.args,
            [
                "--node-name",
                "node-3",
                "--engine-endpoint",
                "127.0.7.3:10124",
                "--listen",
                "127.0.7.3:9502"
            ]
        );
        assert!(Layout::new(Settings {
            nodes: 250,
            ..l.settings.clone()
        })
        .is_err());
    }
}
