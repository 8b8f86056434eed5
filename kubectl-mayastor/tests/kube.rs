//! The real `kubectl-mayastor` binary finding the REST endpoint through a
//! real Kubernetes API server (kube-local: etcd and kube-apiserver on
//! 127.0.0.1), with neither `--rest` nor a local cluster's endpoint file.
//!
//! Kubernetes refuses loopback addresses in Endpoints, so the REST API is
//! also served on an address of a veth pair the test creates, with its
//! peer in a network namespace of the test's own: `10.251.N.1/30` on the
//! host end (a second `api-rest` listens there, forwarding to the local
//! cluster's core agent on 127.0.35.251) and `10.251.N.2/30` on the
//! namespace end, where nothing listens. The API server's service range is
//! `10.251.N.0/24` and the `api-rest` Service's cluster IP is
//! `10.251.N.2`, so a connection to the cluster IP is refused at once
//! and no packet leaves the machine.
//!
//! Needs root (`ip netns`, `ip link`) and kube-local built (see
//! `testkit::kube_local`). Everything is stopped and removed by guards
//! however the test ends.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{cluster_binary, failing_line, rows, Cluster};
use openapi::models::Volume;
use testkit::kube_local::{print_tail, KubeLocal, StartOptions};

/// The local cluster's loopback prefix (127.0.35.*).
const PREFIX: &str = "127.0.35";
const VOLUME: &str = "8d7f3a51-2c4b-4e8e-9a6f-0b1c2d3e4f50";

// ------------------------------------------------------------ veth pair --

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip (iproute2): {e}"));
    assert!(
        out.status.success(),
        "ip {} failed: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A network namespace of this test with a veth pair into it; both are
/// deleted when dropped.
struct Link {
    netns: String,
    host_if: String,
    /// N in 10.251.N.0/30.
    net: u32,
}

impl Link {
    fn create() -> Link {
        let pid = std::process::id();
        let used =
            ip(&["-4", "-o", "addr", "show"]) + &ip(&["-4", "route", "show", "table", "all"]);
        let net = (0..250)
            .map(|k| (pid + k) % 250)
            .find(|n| !used.contains(&format!("10.251.{n}.")))
            .expect("no free 10.251.N.0/30 on this machine");
        let link = Link {
            netns: format!("ms-kube-{pid}"),
            host_if: format!("mskube{pid}"),
            net,
        };
        let peer_if = format!("mskubep{pid}");
        ip(&["netns", "add", &link.netns]);
        ip(&[
            "link",
            "add",
            &link.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer_if,
        ]);
        ip(&["link", "set", &peer_if, "netns", &link.netns]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", link.host_ip()),
            "dev",
            &link.host_if,
        ]);
        ip(&["link", "set", &link.host_if, "up"]);
        let peer_cidr = format!("{}/30", link.peer_ip());
        ip(&[
            "-n",
            &link.netns,
            "addr",
            "add",
            &peer_cidr,
            "dev",
            &peer_if,
        ]);
        ip(&["-n", &link.netns, "link", "set", &peer_if, "up"]);
        ip(&["-n", &link.netns, "link", "set", "lo", "up"]);
        link
    }

    /// The host end, where the second `api-rest` listens.
    fn host_ip(&self) -> String {
        format!("10.251.{}.1", self.net)
    }

    /// The namespace end: nothing listens there.
    fn peer_ip(&self) -> String {
        format!("10.251.{}.2", self.net)
    }

    fn service_range(&self) -> String {
        format!("10.251.{}.0/24", self.net)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Deleting the host end deletes the pair at once (deleting the
        // namespace would too, but later, in the background).
        for args in [
            vec!["link", "del", self.host_if.as_str()],
            vec!["netns", "del", self.netns.as_str()],
        ] {
            let _ = Command::new("ip")
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

// -------------------------------------------------------------- api-rest --

/// A second `api-rest` of the local cluster on another address; stopped by
/// its PID when dropped.
struct RestServer {
    child: Child,
    log: PathBuf,
}

impl RestServer {
    fn start(core: &str, listen: SocketAddr, log: PathBuf) -> RestServer {
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(cluster_binary("api-rest"))
            .args(["--core-endpoint", core])
            .args(["--http", &listen.to_string()])
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        let mut server = RestServer { child, log };
        let start = Instant::now();
        loop {
            if TcpStream::connect_timeout(&listen, Duration::from_millis(500)).is_ok() {
                return server;
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!(
                    "api-rest on {listen} exited: {status}\n{}",
                    std::fs::read_to_string(&server.log).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "api-rest does not listen on {listen} after 30s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RestServer {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            print_tail(&self.log);
        }
    }
}

// ----------------------------------------------------------------- test --

/// The plugin with no `--rest`, an empty data home (no local cluster's
/// endpoint file), and the kubeconfig only where `env` says.
fn plugin(empty: &Path, env: &[(&str, &Path)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kubectl-mayastor"));
    command
        .args(args)
        .env("XDG_DATA_HOME", empty)
        .env("HOME", empty)
        .env_remove("KUBECONFIG")
        .env_remove("RUST_BACKTRACE");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn succeeds(out: Output, args: &[&str]) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success() && stderr.is_empty(),
        "kubectl-mayastor {args:?}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    stdout
}

fn endpoints_yaml(ready: &[&str], not_ready: &[&str]) -> String {
    let list = |ips: &[&str]| {
        ips.iter()
            .map(|ip| format!("{{ip: \"{ip}\"}}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"apiVersion: v1
kind: Endpoints
metadata: {{name: api-rest, namespace: mayastor}}
subsets:
- addresses: [{}]
  notReadyAddresses: [{}]
  ports:
  - {{name: https, port: 8080, protocol: TCP}}
  - {{name: http, port: 8081, protocol: TCP}}
"#,
        list(ready),
        list(not_ready)
    )
}

/// `get nodes` and `-o json get volumes` through the `api-rest` Service's
/// ready endpoint; `-n` without the Service; the cluster IP when no
/// endpoint is ready.
#[test]
fn endpoint_found_through_the_kubernetes_api() {
    testkit::kube_local::require_built(false);
    let dir = tempfile::tempdir().unwrap();

    let cluster = Cluster::up(PREFIX, 1);
    cluster.create_volume(VOLUME, 1, None);

    let link = Link::create();
    let listen: SocketAddr = format!("{}:8081", link.host_ip()).parse().unwrap();
    let _rest = RestServer::start(
        &format!("http://{PREFIX}.251:50051"),
        listen,
        dir.path().join("api-rest.log"),
    );

    let kube = KubeLocal::start(
        &dir.path().join("kube"),
        &StartOptions {
            apiserver_args: vec![format!(
                "--service-cluster-ip-range={}",
                link.service_range()
            )],
            ..StartOptions::default()
        },
    );
    kube.apply(&format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: mayastor}}
---
apiVersion: v1
kind: Service
metadata: {{name: api-rest, namespace: mayastor}}
spec:
  clusterIP: "{cluster_ip}"
  ports:
  - {{name: https, port: 8080, protocol: TCP, targetPort: 8080}}
  - {{name: http, port: 8081, protocol: TCP, targetPort: 8081}}
---
{endpoints}"#,
        cluster_ip = link.peer_ip(),
        endpoints = endpoints_yaml(&[&link.host_ip()], &[&link.peer_ip()]),
    ));

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let k = kube.kubeconfig().to_str().unwrap();

    // The ready address with the `http` port (not the first port, https).
    let args = ["-k", k, "get", "nodes"];
    let table = succeeds(plugin(&empty, &[], &args), &args);
    let nodes = rows(&table);
    assert_eq!(nodes.len(), 1, "{table}");
    assert_eq!(nodes[0]["ID"], "node-1");
    assert_eq!(nodes[0]["GRPC ENDPOINT"], format!("{PREFIX}.1:10124"));
    assert_eq!(nodes[0]["STATUS"], "Online");

    let args = ["-k", k, "-o", "json", "get", "volumes"];
    let json = succeeds(plugin(&empty, &[], &args), &args);
    let volumes: Vec<Volume> = serde_json::from_str(&json).unwrap();
    assert_eq!(volumes.len(), 1, "{json}");
    assert_eq!(volumes[0].spec.uuid, VOLUME);
    assert_eq!(volumes[0].spec.size, 64 << 20);

    // KUBECONFIG instead of -k.
    let args = ["get", "volume", VOLUME];
    let table = succeeds(
        plugin(&empty, &[("KUBECONFIG", kube.kubeconfig())], &args),
        &args,
    );
    assert_eq!(rows(&table)[0]["ID"], VOLUME, "{table}");

    // No api-rest Service in the namespace: one line naming both.
    let args = ["-k", k, "-n", "other", "get", "nodes"];
    let line = failing_line(plugin(&empty, &[], &args), &args);
    eprintln!("-n other: {line}");
    assert!(
        line.contains("no Service api-rest in namespace other of https://127.0.0.1:")
            && line.contains("--rest"),
        "{line}"
    );

    // No ready address: the cluster IP and the Service's http port, where
    // nothing listens.
    kube.apply(&endpoints_yaml(&[], &[&link.host_ip()]));
    let url = format!("http://{}:8081", link.peer_ip());
    let args = ["-k", k, "get", "nodes"];
    let line = failing_line(plugin(&empty, &[], &args), &args);
    eprintln!("no ready address: {line}");
    assert!(
        line.contains(&format!("cannot connect to {url}/v0/nodes"))
            && line.contains(&format!(
                "(the REST endpoint {url} of the api-rest Service in namespace mayastor)"
            )),
        "{line}"
    );
}
