//! Test kit of the control plane: a real etcd, real `io-engine` daemons on
//! 127.0.x.y addresses and a real `agent-core`, each a process with its log
//! in a temporary directory, stopped by PID (SIGKILL when dropped; the logs
//! are printed when the test fails).
//!
//! Binaries of other packages are built once per test process with the
//! same cargo, profile and target directory (a no-op when up to date).

#![allow(dead_code, clippy::unwrap_used)]

use std::fs;

#[allow(unused_imports)]
pub use testkit::{
    bin,
    etcd::{start as etcd, start_in_memory as etcd_in_memory, start_with_data as etcd_with_data},
    eventually, free_port, log_time, wait_port, Proc,
};

/// Timers of a test cluster (short, so scenarios run in seconds).
#[derive(Clone)]
pub struct Timers {
    pub faulted_child_wait: &'static str,
    pub gc_period: &'static str,
    /// More `agent-core` flags (e.g. a reconciler's own period).
    pub core_extra: &'static [&'static str],
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            faulted_child_wait: "4s",
            gc_period: "3s",
            core_extra: &[],
        }
    }
}

/// etcd + agent-core + N engines, each engine with a pool on a file.
pub struct Cluster {
    pub etcd: Proc,
    pub etcd_ep: String,
    pub core: Proc,
    pub core_ep: String,
    pub engines: Vec<Proc>,
    pub nodes: Vec<String>,
    pub dir: tempfile::TempDir,
    pub prefix: String,
}

/// The address of node `i` (1-based) of a cluster with address prefix
/// `prefix` (e.g. "127.0.3").
pub fn node_ip(prefix: &str, i: usize) -> String {
    format!("{prefix}.{}", 10 + i)
}

pub fn core_args(prefix: &str, etcd_ep: &str, core_ep: &str, t: &Timers) -> Vec<String> {
    let _ = prefix;
    let base = [
        "--grpc-endpoint",
        core_ep,
        "--store",
        etcd_ep,
        "--heartbeat-timeout",
        "2s",
        "--reconcile-period",
        "1s",
        "--poll-period",
        "500ms",
        "--faulted-child-wait",
        t.faulted_child_wait,
        "--gc-period",
        t.gc_period,
        "--lease-ttl",
        "3s",
        "--engine-timeout",
        "10s",
    ];
    // A flag in `core_extra` replaces the default above.
    let mut args: Vec<String> = base
        .chunks(2)
        .filter(|pair| !t.core_extra.contains(&pair[0]))
        .flatten()
        .map(|s| s.to_string())
        .collect();
    args.extend(t.core_extra.iter().map(|s| s.to_string()));
    args
}

impl Cluster {
    /// Starts etcd on `<prefix>.1`, the core on `<prefix>.2` and `n`
    /// engines on `<prefix>.11...`.
    pub fn start(prefix: &str, n: usize, timers: Timers) -> Cluster {
        let (etcd, etcd_ep) = etcd(&format!("{prefix}.1"));
        let core_ip = format!("{prefix}.2");
        let core_ep = format!("{core_ip}:{}", free_port(&core_ip));
        let core = Proc::spawn(
            "agent-core",
            bin("agent-core", "agent-core"),
            core_args(prefix, &etcd_ep, &core_ep, &timers),
        );
        wait_port(&core_ep, "agent-core");
        let dir = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        let mut c = Cluster {
            etcd,
            etcd_ep,
            core,
            core_ep,
            engines: Vec::new(),
            nodes: Vec::new(),
            dir,
            prefix: prefix.to_owned(),
        };
        for i in 1..=n {
            c.add_engine(i);
        }
        c
    }

    pub fn engine_args(&self, i: usize) -> Vec<String> {
        let ip = node_ip(&self.prefix, i);
        let grpc = format!("{ip}:{}", free_port(&ip));
        let nvmf = format!("{ip}:{}", free_port(&ip));
        [
            "--grpc-endpoint",
            &grpc,
            "--node-name",
            &format!("node-{i}"),
            "--nvmf-endpoint",
            &nvmf,
            "-R",
            &self.core_ep,
            "--heartbeat-interval-ms",
            "500",
            "--ps-endpoint",
            &self.etcd_ep,
            "--child-io-timeout-ms",
            "3000",
            "--child-reconnect-timeout-ms",
            "1500",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    pub fn add_engine(&mut self, i: usize) {
        let args = self.engine_args(i);
        let grpc = args[1].clone();
        let p = Proc::spawn(
            &format!("io-engine-{i}"),
            bin("io-engine", "io-engine"),
            args,
        );
        wait_port(&grpc, "io-engine");
        self.engines.push(p);
        self.nodes.push(format!("node-{i}"));
    }

    /// A pool file for node `i` (sparse).
    pub fn disk(&self, name: &str, size: u64) -> String {
        let path = self.dir.path().join(format!("{name}.img"));
        if !path.exists() {
            fs::File::create(&path).unwrap().set_len(size).unwrap();
        }
        format!("aio://{}", path.display())
    }

    pub fn rest_url(&self) -> String {
        format!("http://{}", self.core_ep)
    }
}

impl Cluster {
    /// The gRPC endpoint of engine `i` (0-based, in start order).
    pub fn engine_endpoint(&self, i: usize) -> String {
        let args = self.engines[i].args();
        let at = args.iter().position(|a| a == "--grpc-endpoint").unwrap();
        args[at + 1].clone()
    }
}

impl Cluster {
    /// A REST client of the core agent (the core serves the REST routes).
    pub fn rest(&self) -> openapi::client::RestClient {
        openapi::client::RestClient::new(
            &self.rest_url(),
            openapi::client::RestClientOptions {
                timeout: std::time::Duration::from_secs(60),
                ..Default::default()
            },
        )
        .unwrap()
    }
}

/// A pool `<prefix><i>` of `size` bytes on the `i`-th node of `c` (from
/// 1), each on its own disk file.
pub async fn pool_on_every_node(
    c: &Cluster,
    api: &openapi::client::RestClient,
    prefix: &str,
    size: u64,
) {
    use openapi::{models::CreatePoolBody, CoreApi};
    for (i, node) in c.nodes.iter().enumerate() {
        let id = format!("{prefix}{}", i + 1);
        let body = CreatePoolBody {
            disks: vec![c.disk(&id, size)],
            labels: None,
        };
        if let Err(e) = api.put_node_pool(node, &id, body).await {
            panic!("pool {id} on {node}: {e:?}");
        }
    }
}

/// Waits until `n` nodes are online.
pub async fn nodes_online(api: &openapi::client::RestClient, n: usize) {
    use openapi::CoreApi;
    eventually("nodes online", 30, || async {
        let nodes = api.get_nodes().await.map_err(|e| e.to_string())?;
        let online = nodes
            .iter()
            .filter(|n| {
                n.state
                    .as_ref()
                    .is_some_and(|s| s.status == openapi::models::NodeStatus::Online)
            })
            .count();
        if online == n {
            Ok(())
        } else {
            Err(format!("{online} of {n} online"))
        }
    })
    .await;
}
