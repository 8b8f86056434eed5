//! The real `kubectl-mayastor` binary against real local clusters started
//! with `mayastor-local` (store, agent-core, api-rest and io-engines as
//! processes on 127.0.3X.*). Each test has its own loopback prefix
//! (127.0.30 .. 127.0.34), its own state and data directories, and a guard
//! that runs `down --wipe` however the test ends.
//!
//! Tables are compared with snapshots in which uuids and the state
//! directory are masked; `-o json|yaml` are parsed back into the models and
//! checked field by field against what the REST API returns.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{failing_line, rows, wait_until, which, Cluster};
use openapi::models::*;
use openapi::CoreApi;

const VOLUME: &str = "5703e66a-e5e5-4c84-9dbe-e5a9a5c805db";

// ---------------------------------------------------------------- tests --

/// Every `get`, default and wide, as tables; `-o json|yaml` parsed back;
/// labels; the endpoint found through the local cluster's file.
#[test]
fn get_commands_tables_json_yaml_and_labels() {
    let cluster = Cluster::up("127.0.30", 2);
    let created = cluster.create_volume(VOLUME, 2, Some("node-1"));
    assert_eq!(created.spec.num_replicas, 2);

    insta::assert_snapshot!(cluster.table(&["get", "nodes"]), @r"
    ID      GRPC ENDPOINT     STATUS
    node-1  127.0.30.1:10124  Online
    node-2  127.0.30.2:10124  Online
    ");
    insta::assert_snapshot!(cluster.table(&["get", "node", "node-2", "-o", "wide"]), @r"
    ID      GRPC ENDPOINT     STATUS  VERSION
    node-2  127.0.30.2:10124  Online  0.1.0
    ");
    insta::assert_snapshot!(cluster.table(&["get", "pools"]), @r"
    ID      TOTAL CAPACITY  USED CAPACITY  DISKS                           NODE    STATUS  MANAGED
    pool-1  508MiB          64MiB          aio://<state>/pools/pool-1.img  node-1  Online  true
    pool-2  508MiB          64MiB          aio://<state>/pools/pool-2.img  node-2  Online  true
    ");
    insta::assert_snapshot!(cluster.table(&["get", "pool", "pool-1", "-o", "wide"]), @r"
    ID      TOTAL CAPACITY  USED CAPACITY  DISKS                           NODE    STATUS  MANAGED  AVAILABLE  COMMITTED
    pool-1  508MiB          64MiB          aio://<state>/pools/pool-1.img  node-1  Online  true     444MiB     64MiB
    ");
    insta::assert_snapshot!(cluster.table(&["get", "volumes"]), @r"
    ID      REPLICAS  TARGET-NODE  ACCESSIBILITY  STATUS  SIZE   THIN-PROVISIONED
    <uuid>  2         node-1       nvmf           Online  64MiB  false
    ");
    insta::assert_snapshot!(cluster.table(&["get", "volume", VOLUME, "-o", "wide"]), @r"
    ID      REPLICAS  TARGET-NODE  ACCESSIBILITY  STATUS  SIZE   THIN-PROVISIONED  ALLOCATED  SNAPSHOTS
    <uuid>  2         node-1       nvmf           Online  64MiB  false             64MiB      0
    ");
    insta::assert_snapshot!(cluster.table(&["get", "volume-replica-topology", VOLUME]), @r"
    ID      NODE    POOL    STATUS
    <uuid>  node-1  pool-1  Online
    <uuid>  node-2  pool-2  Online
    ");
    insta::assert_snapshot!(cluster.table(&["get", "volume-replica-topology", VOLUME, "-o", "wide"]), @r"
    ID      NODE    POOL    STATUS  CAPACITY  ALLOCATED  SNAPSHOTS  CHILD-STATUS  REASON  REBUILD
    <uuid>  node-1  pool-1  Online  64MiB     64MiB      0          Online        <none>  <none>
    <uuid>  node-2  pool-2  Online  64MiB     64MiB      0          Online        <none>  <none>
    ");
    // The volume id heads its group; the second row has it blank.
    let topologies = cluster.ok(&["get", "volume-replica-topologies"]);
    let table = rows(&topologies);
    assert_eq!(table.len(), 2, "{topologies}");
    assert_eq!(table[0]["VOLUME-ID"], VOLUME);
    assert_eq!(table[1]["VOLUME-ID"], "");
    let mut nodes: Vec<&str> = table.iter().map(|r| r["NODE"].as_str()).collect();
    nodes.sort();
    assert_eq!(nodes, ["node-1", "node-2"]);
    insta::assert_snapshot!(cluster.table(&["get", "rebuild-history", VOLUME]), @"DST  SRC  STATE  TOTAL  RECOVERED  TRANSFERRED  IS-PARTIAL  START-TIME  END-TIME");
    insta::assert_snapshot!(cluster.table(&["get", "cordon", "nodes"]), @"ID  GRPC ENDPOINT  STATUS  CORDONED  CORDON LABELS");
    insta::assert_snapshot!(cluster.table(&["get", "drain", "node", "node-1"]), @r"
    ID      GRPC ENDPOINT     STATUS  CORDONED  DRAIN STATE   DRAIN LABELS
    node-1  127.0.30.1:10124  Online  false     Not draining
    ");

    // -o json and -o yaml: the full objects, equal to the REST API's.
    let client = cluster.client();
    let (api_volume, api_pools, api_nodes, api_history) = cluster.block_on(async {
        (
            client.get_volume(VOLUME).await.unwrap(),
            client.get_pools().await.unwrap(),
            client.get_nodes().await.unwrap(),
            client.get_rebuild_history(VOLUME).await.unwrap(),
        )
    });
    for format in ["json", "yaml"] {
        let parse = |args: &[&str]| -> serde_json::Value {
            let mut all = args.to_vec();
            all.extend(["-o", format]);
            let text = cluster.ok(&all);
            match format {
                "json" => serde_json::from_str(&text).unwrap(),
                _ => serde_yaml::from_str(&text).unwrap(),
            }
        };
        let volumes: Vec<Volume> = serde_json::from_value(parse(&["get", "volumes"])).unwrap();
        assert_eq!(volumes.len(), 1);
        let volume = &volumes[0];
        assert_eq!(volume.spec.uuid, VOLUME);
        assert_eq!(volume.spec.size, 64 << 20);
        assert_eq!(volume.spec.num_replicas, 2);
        assert!(!volume.spec.thin);
        assert_eq!(volume.spec.target.as_ref().unwrap().node, "node-1");
        assert_eq!(
            volume.spec.target.as_ref().unwrap().protocol,
            Protocol::Nvmf
        );
        assert_eq!(volume.state.status, VolumeStatus::Online);
        assert_eq!(volume.state.target.as_ref().unwrap().node, "node-1");
        assert_eq!(volume.state.replica_topology.len(), 2);
        assert_eq!(volume, &api_volume, "{format}");

        let one: Volume = serde_json::from_value(parse(&["get", "volume", VOLUME])).unwrap();
        assert_eq!(one, api_volume);

        let pools: Vec<Pool> = serde_json::from_value(parse(&["get", "pools"])).unwrap();
        assert_eq!(pools.len(), 2);
        for pool in &pools {
            let state = pool.state.as_ref().unwrap();
            assert_eq!(state.status, PoolStatus::Online);
            assert_eq!(state.used, 64 << 20);
            assert_eq!(state.capacity, 508 << 20);
            assert_eq!(pool.spec.as_ref().unwrap().node, state.node);
            assert!(api_pools.contains(pool), "{pool:?}");
        }
        let pool: Pool = serde_json::from_value(parse(&["get", "pool", "pool-2"])).unwrap();
        assert_eq!(pool.id, "pool-2");
        assert_eq!(pool.state.as_ref().unwrap().node, "node-2");

        let nodes: Vec<Node> = serde_json::from_value(parse(&["get", "nodes"])).unwrap();
        let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["node-1", "node-2"]);
        for node in &nodes {
            let state = node.state.as_ref().unwrap();
            assert_eq!(state.status, NodeStatus::Online);
            assert_eq!(
                state.grpc_endpoint,
                format!("127.0.30.{}:10124", &node.id["node-".len()..])
            );
            assert!(api_nodes.contains(node), "{node:?}");
        }
        let node: Node = serde_json::from_value(parse(&["get", "node", "node-1"])).unwrap();
        assert_eq!(node.id, "node-1");

        let topology: BTreeMap<String, ReplicaTopology> =
            serde_json::from_value(parse(&["get", "volume-replica-topology", VOLUME])).unwrap();
        assert_eq!(topology, api_volume.state.replica_topology);
        let topologies: BTreeMap<String, BTreeMap<String, ReplicaTopology>> =
            serde_json::from_value(parse(&["get", "volume-replica-topologies"])).unwrap();
        assert_eq!(topologies.len(), 1);
        assert_eq!(topologies[VOLUME], api_volume.state.replica_topology);

        let history: RebuildHistory =
            serde_json::from_value(parse(&["get", "rebuild-history", VOLUME])).unwrap();
        assert_eq!(history, api_history);
        assert_eq!(history.target_uuid, VOLUME);

        let cordoned: Vec<Node> =
            serde_json::from_value(parse(&["get", "cordon", "nodes"])).unwrap();
        assert!(cordoned.is_empty());
        let drain: Vec<Node> =
            serde_json::from_value(parse(&["get", "drain", "node", "node-2"])).unwrap();
        assert_eq!(drain.len(), 1);
        assert_eq!(drain[0].id, "node-2");
    }

    // Labels on nodes and pools, with kubectl's --overwrite rule.
    assert_eq!(
        cluster.ok(&["label", "node", "node-1", "zone=a"]),
        "Node node-1 labelled successfully. Current labels: {\"zone\": \"a\"}\n"
    );
    let refused = cluster.fails(&["label", "node", "node-1", "zone=b"]);
    assert!(refused.contains("--overwrite is false"), "{refused}");
    let node: Node = serde_json::from_str(&cluster.ok(&[
        "label",
        "node",
        "node-1",
        "zone=b",
        "--overwrite",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(node.spec.unwrap().labels["zone"], "b");
    assert_eq!(
        cluster.ok(&["label", "pool", "pool-2", "openebs.io/tier=fast"]),
        "Pool pool-2 labelled successfully. Current labels: {\"openebs.io/tier\": \"fast\"}\n"
    );
    let pool: Pool =
        serde_json::from_str(&cluster.ok(&["get", "pool", "pool-2", "-o", "json"])).unwrap();
    assert_eq!(pool.spec.unwrap().labels["openebs.io/tier"], "fast");
    assert_eq!(
        cluster.ok(&["label", "pool", "pool-2", "openebs.io/tier-"]),
        "Pool pool-2 labelled successfully. Current labels: {}\n"
    );
    assert_eq!(
        cluster.ok(&["label", "node", "node-1", "zone-"]),
        "Node node-1 labelled successfully. Current labels: {}\n"
    );
    let missing = cluster.fails(&["label", "node", "node-1", "zone-"]);
    assert_eq!(missing, "error: node node-1 has no label 'zone'");
    let bad = cluster.fails(&["label", "pool", "pool-1", "zone"]);
    assert!(bad.contains("invalid label 'zone'"), "{bad}");
    let bad = cluster.fails(&["label", "node", "node-1", "a b=c"]);
    assert!(bad.contains("invalid label key"), "{bad}");
}

/// Scale up and down shows in the replica topology; bad counts fail.
#[test]
fn scale_volume_changes_the_topology() {
    let cluster = Cluster::up("127.0.31", 3);
    cluster.create_volume(VOLUME, 1, Some("node-1"));
    let topology =
        |cluster: &Cluster| rows(&cluster.ok(&["get", "volume-replica-topology", VOLUME]));
    assert_eq!(topology(&cluster).len(), 1);

    assert_eq!(
        cluster.ok(&["scale", "volume", VOLUME, "3"]),
        format!("Volume {VOLUME} Scaled Successfully 🚀\n")
    );
    let three = topology(&cluster);
    assert_eq!(three.len(), 3);
    let mut nodes: Vec<&str> = three.iter().map(|r| r["NODE"].as_str()).collect();
    nodes.sort();
    assert_eq!(
        nodes,
        ["node-1", "node-2", "node-3"],
        "one replica per node"
    );
    let volumes = rows(&cluster.ok(&["get", "volumes"]));
    assert_eq!(volumes[0]["REPLICAS"], "3");

    let scaled: Volume =
        serde_json::from_str(&cluster.ok(&["scale", "volume", VOLUME, "2", "-o", "json"])).unwrap();
    assert_eq!(scaled.spec.num_replicas, 2);
    let two = topology(&cluster);
    assert_eq!(two.len(), 2);
    assert!(
        two.iter().all(|r| three.iter().any(|t| t["ID"] == r["ID"])),
        "scaling down keeps existing replicas"
    );
    assert_eq!(
        cluster.ok(&["scale", "volume", VOLUME, "1"]),
        format!("Volume {VOLUME} Scaled Successfully 🚀\n")
    );
    assert_eq!(topology(&cluster).len(), 1);
    assert_eq!(cluster.volume(VOLUME).spec.num_replicas, 1);

    // Invalid counts: one line, non-zero exit, nothing changed.
    assert_eq!(
        cluster.fails(&["scale", "volume", VOLUME, "0"]),
        "error: invalid replica count 0: a volume needs at least 1 replica"
    );
    let above = cluster.fails(&["scale", "volume", VOLUME, "4"]);
    assert!(
        above.contains("cannot scale volume") && above.contains('4'),
        "{above}"
    );
    let words = cluster.fails(&["scale", "volume", VOLUME, "two"]);
    assert!(words.contains("invalid replica count 'two'"), "{words}");
    assert_eq!(topology(&cluster).len(), 1);
    let unknown = cluster.fails(&[
        "scale",
        "volume",
        "6f6b0a2e-9b1e-4a43-9c1d-3c3e0c1b2a10",
        "2",
    ]);
    assert!(unknown.contains("NotFound"), "{unknown}");
}

/// Cordon, uncordon and drain show in `get nodes`, `get cordon nodes` and
/// `get drain nodes`; the drain moves the volume target off the node.
#[test]
fn cordon_uncordon_and_drain() {
    let cluster = Cluster::up("127.0.32", 3);
    cluster.create_volume(VOLUME, 2, Some("node-1"));

    assert_eq!(
        cluster.ok(&["cordon", "node", "node-2", "maintenance"]),
        "Node node-2 cordoned successfully\n"
    );
    insta::assert_snapshot!(cluster.table(&["get", "nodes"]), @r"
    ID      GRPC ENDPOINT     STATUS
    node-1  127.0.32.1:10124  Online
    node-2  127.0.32.2:10124  Online,Cordoned
    node-3  127.0.32.3:10124  Online
    ");
    insta::assert_snapshot!(cluster.table(&["get", "cordon", "nodes"]), @r"
    ID      GRPC ENDPOINT     STATUS  CORDONED  CORDON LABELS
    node-2  127.0.32.2:10124  Online  true      maintenance
    ");
    cluster.ok(&["cordon", "node", "node-2", "second"]);
    let cordon = rows(&cluster.ok(&["get", "cordon", "node", "node-2"]));
    assert_eq!(cordon[0]["CORDON LABELS"], "maintenance, second");
    assert_eq!(
        cluster.ok(&["uncordon", "node", "node-2", "maintenance"]),
        "Node node-2 successfully uncordoned (still cordoned by: second)\n"
    );
    assert_eq!(
        cluster.ok(&["uncordon", "node", "node-2", "second"]),
        "Node node-2 successfully uncordoned\n"
    );
    insta::assert_snapshot!(cluster.table(&["get", "cordon", "nodes"]), @"ID  GRPC ENDPOINT  STATUS  CORDONED  CORDON LABELS");
    let gone = cluster.fails(&["uncordon", "node", "node-2", "second"]);
    assert!(gone.contains("NotFound"), "{gone}");

    // Drain node-1, which holds the target: it moves, the node ends Drained.
    let before = cluster.volume(VOLUME);
    assert_eq!(before.state.target.as_ref().unwrap().node, "node-1");
    assert_eq!(
        cluster.ok(&[
            "drain",
            "node",
            "node-1",
            "upgrade",
            "--drain-timeout",
            "90s"
        ]),
        "Node node-1 successfully drained\n"
    );
    let after = cluster.volume(VOLUME);
    let target = after.state.target.as_ref().expect("still published");
    assert_ne!(target.node, "node-1", "the target moved");
    assert_ne!(
        target.uuid,
        before.state.target.as_ref().unwrap().uuid,
        "a new nexus"
    );
    let volumes = rows(&cluster.ok(&["get", "volumes"]));
    assert_eq!(volumes[0]["TARGET-NODE"], target.node);

    insta::assert_snapshot!(cluster.table(&["get", "drain", "nodes"]), @r"
    ID      GRPC ENDPOINT     STATUS  CORDONED  DRAIN STATE  DRAIN LABELS
    node-1  127.0.32.1:10124  Online  true      Drained      upgrade
    ");
    let nodes = rows(&cluster.ok(&["get", "nodes"]));
    assert_eq!(nodes[0]["STATUS"], "Online,Drained");
    let cordoned = rows(&cluster.ok(&["get", "cordon", "nodes"]));
    assert_eq!(cordoned.len(), 1);
    assert_eq!(cordoned[0]["CORDONED"], "true");

    assert_eq!(
        cluster.ok(&["uncordon", "node", "node-1", "upgrade"]),
        "Node node-1 successfully uncordoned\n"
    );
    insta::assert_snapshot!(cluster.table(&["get", "drain", "nodes"]), @"ID  GRPC ENDPOINT  STATUS  CORDONED  DRAIN STATE  DRAIN LABELS");
    let nodes = rows(&cluster.ok(&["get", "nodes"]));
    assert!(nodes.iter().all(|n| n["STATUS"] == "Online"), "{nodes:?}");

    // A drain that cannot finish (the only other replica node cordoned)
    // gives up after --drain-timeout with one line.
    let replica_nodes: Vec<String> = after
        .state
        .replica_topology
        .values()
        .filter_map(|t| t.node.clone())
        .collect();
    let target_node = target.node.clone();
    for other in ["node-1", "node-2", "node-3"] {
        if other != target_node {
            cluster.ok(&["cordon", "node", other, "hold"]);
        }
    }
    let stuck = cluster.fails(&[
        "drain",
        "node",
        &target_node,
        "stuck",
        "--drain-timeout",
        "2s",
    ]);
    assert!(
        stuck.contains("still draining after 2s"),
        "{stuck} ({replica_nodes:?})"
    );
    wait_until("the stuck drain to show", Duration::from_secs(10), || {
        rows(&cluster.ok(&["get", "drain", "node", &target_node]))[0]["DRAIN STATE"] == "Draining"
    });
}

/// `kubectl mayastor ...` through kubectl's own plugin discovery.
#[test]
fn kubectl_finds_the_plugin() {
    let cluster = Cluster::up("127.0.33", 1);
    cluster.create_volume(VOLUME, 1, None);
    let kubectl = which("kubectl").expect(
        "kubectl is not installed (Debian: apt-get install kubernetes-client); it runs the plugin in this test",
    );
    let plugin_dir = Path::new(env!("CARGO_BIN_EXE_kubectl-mayastor"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = std::env::join_paths(std::iter::once(plugin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let empty = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(&kubectl)
            .args(args)
            .env("PATH", &path)
            .env("HOME", empty.path())
            .env("XDG_DATA_HOME", empty.path())
            .env("KUBECONFIG", empty.path().join("none"))
            .output()
            .unwrap()
    };
    let out = run(&["mayastor", "get", "volumes", "--rest", &cluster.rest]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl mayastor get volumes: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let table = rows(&stdout);
    assert_eq!(table.len(), 1, "{stdout}");
    assert_eq!(table[0]["ID"], VOLUME);
    assert_eq!(table[0]["REPLICAS"], "1");
    assert_eq!(table[0]["TARGET-NODE"], "<none>");
    assert_eq!(table[0]["SIZE"], "64MiB");

    let plugins = run(&["plugin", "list"]);
    assert!(
        String::from_utf8_lossy(&plugins.stdout).contains("kubectl-mayastor"),
        "{}",
        String::from_utf8_lossy(&plugins.stdout)
    );
    // Errors come back through kubectl with the plugin's exit code.
    let out = run(&["mayastor", "get", "volume", "nope", "--rest", &cluster.rest]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("error: cannot get volume nope"));
}

/// Unreachable endpoint, unknown ids, no endpoint at all: one line on
/// stderr, exit code 1.
#[test]
fn errors_are_one_line() {
    let cluster = Cluster::up("127.0.34", 1);
    let unknown = "6f6b0a2e-9b1e-4a43-9c1d-3c3e0c1b2a10";
    for (args, expected) in [
        (vec!["get", "volume", unknown], "NotFound"),
        (vec!["get", "volume-replica-topology", unknown], "NotFound"),
        (vec!["get", "rebuild-history", unknown], "NotFound"),
        (vec!["get", "pool", "pool-9"], "NotFound"),
        (vec!["get", "node", "node-9"], "NotFound"),
        (vec!["cordon", "node", "node-9", "x"], "NotFound"),
        (vec!["drain", "node", "node-9", "x"], "NotFound"),
        (vec!["label", "node", "node-9", "a=b"], "NotFound"),
        (vec!["label", "pool", "pool-9", "a=b"], "NotFound"),
        (vec!["scale", "volume", unknown, "1"], "NotFound"),
        (vec!["get", "volume", "not-a-uuid"], "InvalidArgument"),
    ] {
        let line = cluster.fails(&args);
        assert!(line.contains(expected), "{args:?}: {line}");
    }

    // The local cluster's endpoint file is found without --rest.
    let nodes = rows(&cluster.ok(&["get", "nodes"]));
    assert_eq!(nodes.len(), 1);

    // Nobody listens on 127.0.34.9:8081.
    let line = cluster.fails(&["--rest", "http://127.0.34.9:8081", "get", "volumes"]);
    assert!(
        line.contains("cannot connect to http://127.0.34.9:8081") && line.contains("--rest"),
        "{line}"
    );
    let line = cluster.fails(&["--rest", "not a url", "get", "nodes"]);
    assert!(line.contains("invalid REST endpoint"), "{line}");

    // No --rest, no local cluster, no kubeconfig.
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-mayastor"))
        .args(["get", "nodes"])
        .env("XDG_DATA_HOME", empty.path())
        .env("HOME", empty.path())
        .env("KUBECONFIG", empty.path().join("none"))
        .output()
        .unwrap();
    let line = failing_line(out, &["get", "nodes"]);
    assert!(
        line.contains("pass the REST endpoint with --rest http://IP:PORT"),
        "{line}"
    );
}
