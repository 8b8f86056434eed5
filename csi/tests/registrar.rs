//! The real node-driver-registrar (v2.17.0, `../shared/tools/csi-tools`)
//! registers the real `csi-node` with the real kubelet of kube-local's
//! worker node (`start --with-node`), both as host processes laid out as
//! the DaemonSet lays them out: the plugin's socket at
//! `<kubelet root>/plugins/io.openebs.csi-mayastor/csi.sock` (the
//! registrar's `--kubelet-registration-path`), the registration socket in
//! `<kubelet root>/plugins_registry`, where the kubelet's plugin watcher
//! finds it.
//!
//! Asserted on the API objects the kubelet writes: the node's CSINode
//! lists our driver with node id = the node name and the topology key
//! `openebs.io/nodename`; the Node carries that topology label and the
//! `csi.volume.kubernetes.io/nodeid` annotation; the registrar's health
//! endpoint answers 200. When the registrar stops (its socket removed),
//! the kubelet drops the driver from the CSINode again.
//!
//! Named `kube_node_*`: nextest runs it in the `kube-node` group, and the
//! test kit holds the node's flock for the node's whole life. Loopback
//! 127.0.104.x for the registrar's health endpoint.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    time::{Duration, Instant},
};

use common::{csi_tool, wait_socket};
use testkit::{
    kube_local::{KubeLocal, StartOptions},
    Proc,
};

/// kube-local's node name (the kubelet's `--hostname-override`).
const NODE: &str = "kube-local-node";

/// The kubelet's root directory, from the node's `STATE/env`.
fn kubelet_dir(kube: &KubeLocal) -> PathBuf {
    let env = std::fs::read_to_string(kube.state_dir().join("env")).unwrap();
    env.lines()
        .find_map(|l| {
            l.trim_start_matches("export ")
                .strip_prefix("KUBE_LOCAL_KUBELET_DIR=")
        })
        .map(|v| PathBuf::from(v.trim_matches(|c| c == '\'' || c == '"')))
        .expect("kube-local's env names the kubelet's root directory")
}

fn jsonpath(kube: &KubeLocal, kind: &str, path: &str) -> String {
    kube.kubectl_ok(&["get", kind, NODE, "-o", &format!("jsonpath={path}")])
}

/// Our driver's entry in the node's CSINode, if any.
fn csinode_driver(kube: &KubeLocal) -> Option<serde_yaml::Value> {
    let text = kube.kubectl_ok(&["get", "csinode", NODE, "-o", "json"]);
    let csinode: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    csinode["spec"]["drivers"]
        .as_sequence()?
        .iter()
        .find(|d| d["name"].as_str() == Some(csi::PLUGIN_NAME))
        .cloned()
}

/// The status line of `GET /healthz` at `addr`.
fn healthz(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.0\r\nHost: registrar\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn kube_node_registrar_registers_csi_node_with_the_kubelet() {
    let registrar_bin = csi_tool("csi-node-driver-registrar");
    let state = tempfile::tempdir().unwrap();
    let kube = KubeLocal::start_with_node(&state.path().join("kube"), &StartOptions::default());
    let kubelet = kubelet_dir(&kube);
    // The kubelet makes its CSINode (no drivers yet) when it registers.
    testkit::wait_until("the node's CSINode", Duration::from_secs(60), || {
        kube.kubectl()
            .args(["get", "csinode", NODE])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert_eq!(csinode_driver(&kube), None, "driver there too early");

    let plugin_dir = kubelet.join("plugins").join(csi::PLUGIN_NAME);
    std::fs::create_dir_all(&plugin_dir).unwrap();
    let socket = plugin_dir.join("csi.sock");
    let registry = kubelet.join("plugins_registry");
    std::fs::create_dir_all(&registry).unwrap();
    let mut node = Proc::spawn(
        "csi-node",
        PathBuf::from(env!("CARGO_BIN_EXE_csi-node")),
        vec![
            "--node-name".into(),
            NODE.into(),
            "--csi-socket".into(),
            socket.display().to_string(),
        ],
    );
    wait_socket(&socket);

    let started = Instant::now();
    let health = format!("127.0.104.1:{}", testkit::free_port("127.0.104.1"));
    let mut registrar = Proc::spawn(
        "csi-node-driver-registrar",
        registrar_bin,
        vec![
            format!("--csi-address={}", socket.display()),
            format!("--kubelet-registration-path={}", socket.display()),
            format!("--plugin-registration-path={}", registry.display()),
            format!("--http-endpoint={health}"),
            "-v=4".into(),
        ],
    );
    let reg_socket = registry.join(format!("{}-reg.sock", csi::PLUGIN_NAME));
    wait_socket(&reg_socket);

    // --- Registered: the kubelet called NodeGetInfo through the socket the
    // registrar named and wrote the CSINode and the Node.
    testkit::wait_until(
        "our driver in the node's CSINode",
        Duration::from_secs(60),
        || csinode_driver(&kube).is_some(),
    );
    println!("registered after {:.1?}", started.elapsed());
    let driver = csinode_driver(&kube).unwrap();
    assert_eq!(driver["nodeID"].as_str(), Some(NODE), "{driver:?}");
    let keys: Vec<&str> = driver["topologyKeys"]
        .as_sequence()
        .map(|k| k.iter().filter_map(|k| k.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(keys, [csi::NODE_TOPOLOGY_KEY], "{driver:?}");
    let label = csi::NODE_TOPOLOGY_KEY.replace('.', "\\.");
    assert_eq!(
        jsonpath(&kube, "node", &format!("{{.metadata.labels.{label}}}")),
        NODE,
        "the node's topology label"
    );
    let annotation = jsonpath(
        &kube,
        "node",
        "{.metadata.annotations.csi\\.volume\\.kubernetes\\.io/nodeid}",
    );
    assert!(
        annotation.contains(&format!("\"{}\":\"{NODE}\"", csi::PLUGIN_NAME)),
        "csi.volume.kubernetes.io/nodeid annotation: {annotation:?}"
    );
    assert!(
        healthz(&health).contains(" 200 "),
        "registrar health: {}",
        healthz(&health)
    );

    // --- The registrar stops and removes its socket: the kubelet drops
    // the driver from the CSINode.
    let stopped = Instant::now();
    registrar.terminate();
    testkit::wait_until(
        "our driver gone from the CSINode",
        Duration::from_secs(60),
        || csinode_driver(&kube).is_none(),
    );
    println!("deregistered after {:.1?}", stopped.elapsed());
    node.terminate();
    kube.stop();
}
