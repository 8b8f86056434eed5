//! `kubectl mayastor dump` against real local clusters (`mayastor-local`:
//! store, agent-core, api-rest and io-engines as processes on
//! 127.0.6X.*): the bundle unpacked (zip and tar.gz) and checked against
//! the REST objects field by field, the component logs cut to `--since`,
//! the store dump against the specs, the manifest; per-volume bundles;
//! bad input and Ctrl-C leave nothing behind.

#![allow(clippy::unwrap_used)]

mod common;
mod dumpkit;

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use common::{wait_until, Cluster};
use dumpkit::{assert_ok, bundle_of, error_line, listing, Bundle};
use openapi::models::*;
use openapi::CoreApi;
use supportability::{now_ns, rfc3339};

const VOLUME: &str = "d0d0d0d0-1111-4c84-9dbe-e5a9a5c805db";

/// Everything the REST API says, read after the dump.
struct Objects {
    nodes: Vec<Node>,
    pools: Vec<Pool>,
    volumes: Vec<Volume>,
    replicas: Vec<Replica>,
    nexuses: Vec<Nexus>,
    specs: Specs,
}

fn objects(cluster: &Cluster) -> Objects {
    let c = cluster.client();
    cluster.block_on(async {
        Objects {
            nodes: c.get_nodes().await.unwrap(),
            pools: c.get_pools().await.unwrap(),
            volumes: c.get_volumes(0, None).await.unwrap().entries,
            replicas: c.get_replicas().await.unwrap(),
            nexuses: c.get_nexuses().await.unwrap(),
            specs: c.get_specs().await.unwrap(),
        }
    })
}

fn json<T: serde::de::DeserializeOwned>(bundle: &Bundle, path: &str) -> T {
    serde_json::from_str(&bundle.text(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[derive(serde::Deserialize)]
struct Both<S, T> {
    spec: Option<S>,
    state: Option<T>,
}

fn ids_under(bundle: &Bundle, kind: &str) -> BTreeSet<String> {
    bundle
        .under(&format!("topology/{kind}/"))
        .into_iter()
        .filter_map(|n| {
            n.rsplit('/')
                .next()?
                .strip_suffix("-topology.json")
                .map(str::to_string)
        })
        .collect()
}

/// Every topology file against the REST objects: the same ids, and each
/// object equal field by field (rebuild progress excepted: it moves).
fn check_topology(bundle: &Bundle, o: &Objects) {
    let set = |it: &mut dyn Iterator<Item = String>| it.collect::<BTreeSet<_>>();
    assert_eq!(
        ids_under(bundle, "node"),
        set(&mut o.nodes.iter().map(|n| n.id.clone()))
    );
    assert_eq!(
        ids_under(bundle, "pool"),
        set(&mut o.pools.iter().map(|p| p.id.clone()))
    );
    assert_eq!(
        ids_under(bundle, "volume"),
        set(&mut o.volumes.iter().map(|v| v.spec.uuid.clone()))
    );
    let replica_ids = set(&mut o
        .replicas
        .iter()
        .map(|r| r.uuid.clone())
        .chain(o.specs.replicas.iter().map(|r| r.uuid.clone())));
    assert_eq!(ids_under(bundle, "replica"), replica_ids);
    let nexus_ids = set(&mut o
        .nexuses
        .iter()
        .map(|n| n.uuid.clone())
        .chain(o.specs.nexuses.iter().map(|n| n.uuid.clone())));
    assert_eq!(ids_under(bundle, "nexus"), nexus_ids);

    for node in &o.nodes {
        let file: Node = json(bundle, &format!("topology/node/{}-topology.json", node.id));
        assert_eq!(&file, node);
    }
    for pool in &o.pools {
        let file: Pool = json(bundle, &format!("topology/pool/{}-topology.json", pool.id));
        assert_eq!(file.spec, pool.spec);
        let (a, b) = (file.state.unwrap(), pool.state.clone().unwrap());
        assert_eq!(
            (&a.id, &a.node, &a.disks, a.capacity, a.committed),
            (&b.id, &b.node, &b.disks, b.capacity, b.committed)
        );
    }
    for volume in &o.volumes {
        let id = &volume.spec.uuid;
        let file: Volume = json(bundle, &format!("topology/volume/{id}-topology.json"));
        assert_eq!(file.spec, volume.spec);
        assert_eq!(file.state.uuid, volume.state.uuid);
        assert_eq!(file.state.size, volume.state.size);
        assert_eq!(
            file.state.replica_topology.keys().collect::<Vec<_>>(),
            volume.state.replica_topology.keys().collect::<Vec<_>>()
        );
        for (rid, topo) in &file.state.replica_topology {
            let now = &volume.state.replica_topology[rid];
            assert_eq!((&topo.node, &topo.pool), (&now.node, &now.pool));
        }
        let (a, b) = (
            file.state.target.unwrap(),
            volume.state.target.clone().unwrap(),
        );
        assert_eq!(
            (&a.uuid, &a.node, a.size, &a.device_uri),
            (&b.uuid, &b.node, b.size, &b.device_uri)
        );
        let history: RebuildHistory = json(
            bundle,
            &format!("topology/volume/{id}-rebuild-history.json"),
        );
        assert_eq!(&history.target_uuid, id);
    }
    for spec in &o.specs.replicas {
        let file: Both<ReplicaSpec, Replica> = json(
            bundle,
            &format!("topology/replica/{}-topology.json", spec.uuid),
        );
        assert_eq!(file.spec.as_ref(), Some(spec));
        let state = o.replicas.iter().find(|r| r.uuid == spec.uuid).unwrap();
        let a = file.state.unwrap();
        // (Its share and URI change when the rebuilt replica is shared.)
        assert_eq!(
            (&a.uuid, &a.node, &a.pool, a.size, a.thin),
            (
                &state.uuid,
                &state.node,
                &state.pool,
                state.size,
                state.thin
            )
        );
    }
    for spec in &o.specs.nexuses {
        let file: Both<NexusSpec, Nexus> = json(
            bundle,
            &format!("topology/nexus/{}-topology.json", spec.uuid),
        );
        assert_eq!(file.spec.as_ref(), Some(spec));
        let state = o.nexuses.iter().find(|n| n.uuid == spec.uuid).unwrap();
        let a = file.state.unwrap();
        assert_eq!(
            (&a.uuid, &a.node, a.size, &a.device_uri),
            (&state.uuid, &state.node, state.size, &state.device_uri)
        );
    }
}

/// Every component's log is there, non-empty, with no line older than
/// the cut; the planted old lines are gone and the planted new one kept.
fn check_logs(bundle: &Bundle, cluster: &Cluster, cut_ns: i64) {
    let mut components = 0;
    for entry in std::fs::read_dir(cluster.state_dir.join("logs"))
        .unwrap()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().to_string();
        let component = name.strip_suffix(".log").unwrap();
        let path = match component.strip_prefix("io-engine-") {
            Some(i) => format!("logs/mayastor/node-{i}-io-engine.log"),
            None if component.starts_with("metrics-exporter-") => format!(
                "logs/mayastor/node-{}-metrics-exporter.log",
                &component["metrics-exporter-".len()..]
            ),
            None => match component {
                "agent-core" => "logs/core-agents/agent-core.log".to_string(),
                "api-rest" => "logs/rest/api-rest.log".to_string(),
                "store" => "logs/etcd/store.log".to_string(),
                other => panic!("unexpected component log {other}"),
            },
        };
        let text = bundle.text(&path);
        assert!(!text.trim().is_empty(), "{path} is empty");
        for line in text.lines() {
            if let Some(ts) = supportability::logcut::line_time(line.as_bytes()) {
                assert!(ts >= cut_ns, "{path}: line older than --since: {line}");
            }
        }
        components += 1;
    }
    assert!(components >= 4, "store, agent-core, api-rest and engines");
    let core = bundle.text("logs/core-agents/agent-core.log");
    assert!(!core.contains("planted-old"), "{core}");
    assert!(core.contains("planted-new"));
}

/// Appends an old record (with a continuation line) and a new one to the
/// core agent's log.
fn plant_log_lines(cluster: &Cluster) {
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(cluster.state_dir.join("logs/agent-core.log"))
        .unwrap();
    let old = rfc3339(now_ns() - 3 * 3600 * 1_000_000_000);
    let new = rfc3339(now_ns());
    write!(
        log,
        "{old}  INFO planted-old line\n    planted-old continuation\n{new}  INFO planted-new line\n"
    )
    .unwrap();
}

/// `etcd_dump` holds every spec key with parseable JSON.
fn check_store_dump(bundle: &Bundle, o: &Objects) {
    let entries = supportability::store::parse_dump(&bundle.text("etcd_dump"));
    assert!(!entries.is_empty());
    // A volume's value is its record (`{"spec": {...}, ...}`).
    let find = |kind: &str, id: &str| {
        let suffix = format!("/{kind}/{id}");
        let (_, value) = entries
            .iter()
            .find(|(k, _)| k.ends_with(&suffix))
            .unwrap_or_else(|| panic!("no {kind}/{id} in etcd_dump"));
        let json = serde_json::from_str::<serde_json::Value>(value)
            .unwrap_or_else(|e| panic!("{kind}/{id}: {e}"));
        match json.get("spec") {
            Some(spec) if kind == "VolumeSpec" => spec.clone(),
            _ => json,
        }
    };
    for n in &o.specs.nodes {
        assert_eq!(find("NodeSpec", &n.id)["id"], n.id.as_str());
    }
    for p in &o.specs.pools {
        assert_eq!(find("PoolSpec", &p.id)["id"], p.id.as_str());
    }
    for v in &o.specs.volumes {
        assert_eq!(find("VolumeSpec", &v.uuid)["uuid"], v.uuid.as_str());
    }
    for r in &o.specs.replicas {
        assert_eq!(find("ReplicaSpec", &r.uuid)["uuid"], r.uuid.as_str());
    }
    for n in &o.specs.nexuses {
        assert_eq!(find("NexusSpec", &n.uuid)["uuid"], n.uuid.as_str());
    }
    for (key, value) in &entries {
        assert!(key.starts_with("/openebs.io/mayastor/"), "{key}");
        if key.contains("Spec/") {
            serde_json::from_str::<serde_json::Value>(value)
                .unwrap_or_else(|e| panic!("{key}: {e}"));
        }
    }
}

fn check_manifest(bundle: &Bundle, cluster: &Cluster) {
    bundle.check_manifest_sizes();
    let manifest = bundle.manifest();
    assert!(!manifest.partial);
    assert_eq!(manifest.resource, "system");
    let names: Vec<&str> = manifest
        .collectors
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    for want in [
        "topology",
        "rebuild-history",
        "store",
        "logs/local/agent-core",
        "logs/local/api-rest",
        "logs/local/store",
        "logs/local/io-engine-1",
        "logs/local/io-engine-2",
        "logs/local/io-engine-3",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    assert!(
        manifest.collectors.iter().all(|c| c.outcome == "ok"),
        "{:?}",
        manifest.collectors
    );
    assert_eq!(
        manifest.sources.rest.as_deref(),
        Some(cluster.rest.as_str())
    );
    let readme = bundle.text("README.txt");
    assert!(
        readme.contains("topology/<kind>/<id>-topology.json")
            && readme.contains("Everything was collected")
    );
    let tool_log = bundle.text("support_tool_logs.log");
    assert!(tool_log.contains("store: ok"), "{tool_log}");
}

/// A 3-node cluster with a published 3-replica volume whose third replica
/// is being rebuilt; `dump system` as zip and as tar.gz.
fn system_bundle(prefix: &str, store: &str) {
    let cluster = Cluster::up_with(prefix, 3, &["--store", store]);
    let client = cluster.client();
    cluster.block_on(async {
        client
            .put_volume(VOLUME, CreateVolumeBody::new(384 << 20, 2))
            .await
            .unwrap();
        client
            .put_volume_target(VOLUME, PublishVolumeBody::nvmf(Some("node-1"), None))
            .await
            .unwrap();
        client.put_volume_replica_count(VOLUME, 3).await.unwrap();
    });
    // The third replica is being rebuilt.
    wait_until("a rebuild", Duration::from_secs(30), || {
        let v = cluster.volume(VOLUME);
        v.state.replica_topology.len() == 3
            && v.state.replica_topology.values().any(|t| {
                t.rebuild_progress.is_some() || t.child_status == Some(ChildState::Degraded)
            })
    });
    plant_log_lines(&cluster);
    let out_dir = tempfile::tempdir().unwrap();
    let dir = out_dir.path().to_str().unwrap();
    let cut_ns = now_ns() - 600 * 1_000_000_000;
    let zip_args = ["dump", "system", "-d", dir, "--since", "10m"];
    let zip_out = cluster.plugin(&zip_args);
    let tar_args = [
        "dump",
        "system",
        "-d",
        dir,
        "--since",
        "10m",
        "--archive",
        "tar.gz",
    ];
    let tar_out = cluster.plugin(&tar_args);
    assert_ok(&zip_out, &zip_args);
    assert_ok(&tar_out, &tar_args);
    let zip = bundle_of(&zip_out);
    let tar = bundle_of(&tar_out);
    let zip_name = zip.path.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        zip_name.starts_with("mayastor-") && zip_name.ends_with("-UTC.zip"),
        "{zip_name}"
    );
    assert!(tar.path.to_string_lossy().ends_with("-UTC.tar.gz"));
    assert_eq!(listing(out_dir.path()).len(), 2, "only the two bundles");
    // Compare once the rebuild is over, when objects stand still.
    wait_until("the rebuild to end", Duration::from_secs(120), || {
        cluster.volume(VOLUME).state.status == VolumeStatus::Online
    });
    let o = objects(&cluster);
    for bundle in [&zip, &tar] {
        check_topology(bundle, &o);
        check_logs(bundle, &cluster, cut_ns);
        check_store_dump(bundle, &o);
        check_manifest(bundle, &cluster);
    }
    assert_eq!(zip.names(), tar.names(), "same layout in both formats");
}

#[test]
fn system_bundle_embedded_store() {
    system_bundle("127.0.60", "embedded");
}

#[test]
fn system_bundle_etcd_store() {
    if common::which("etcd").is_none() {
        panic!("etcd is needed (Debian etcd-server; scripts/test.sh installs it)");
    }
    system_bundle("127.0.61", "etcd");
}

fn create_on(cluster: &Cluster, id: &str, label: &str, node: &str) -> Volume {
    let client = cluster.client();
    cluster.block_on(async {
        let topology = Topology {
            node_topology: Some(LabelledTopology {
                inclusion: [("dumptest".to_string(), label.to_string())].into(),
                exclusion: Default::default(),
            }),
            pool_topology: None,
        };
        client
            .put_volume(
                id,
                CreateVolumeBody {
                    topology: Some(topology),
                    ..CreateVolumeBody::new(32 << 20, 1)
                },
            )
            .await
            .unwrap();
        client
            .put_volume_target(id, PublishVolumeBody::nvmf(Some(node), None))
            .await
            .unwrap()
    })
}

/// `dump volume <id>`: that volume's objects and its node's logs; nothing
/// of another volume living on another node.
#[test]
fn volume_bundle_holds_only_that_volume() {
    const OTHER: &str = "0fe0fe00-2222-4c84-9dbe-e5a9a5c805db";
    let cluster = Cluster::up("127.0.62", 3);
    let client = cluster.client();
    cluster.block_on(async {
        client
            .label_node("node-1", "dumptest", Some("a"))
            .await
            .unwrap();
        client
            .label_node("node-2", "dumptest", Some("b"))
            .await
            .unwrap();
    });
    let mine = create_on(&cluster, VOLUME, "a", "node-1");
    let other = create_on(&cluster, OTHER, "b", "node-2");
    let out_dir = tempfile::tempdir().unwrap();
    let dir = out_dir.path().to_str().unwrap();
    let args = ["dump", "volume", VOLUME, "-d", dir];
    let out = cluster.plugin(&args);
    assert_ok(&out, &args);
    let bundle = bundle_of(&out);

    let my_replica = mine.state.replica_topology.keys().next().unwrap().clone();
    let my_nexus = mine.state.target.as_ref().unwrap().uuid.clone();
    let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(ids_under(&bundle, "volume"), set(&[VOLUME]));
    assert_eq!(ids_under(&bundle, "replica"), set(&[&my_replica]));
    assert_eq!(ids_under(&bundle, "nexus"), set(&[&my_nexus]));
    assert_eq!(ids_under(&bundle, "pool"), set(&["pool-1"]));
    assert_eq!(ids_under(&bundle, "node"), set(&["node-1"]));
    assert_eq!(
        bundle.under("logs/mayastor/"),
        [
            "logs/mayastor/node-1-io-engine.log",
            "logs/mayastor/node-1-metrics-exporter.log"
        ]
    );
    assert!(
        bundle
            .text("logs/mayastor/node-1-io-engine.log")
            .lines()
            .count()
            > 0
    );
    let core = bundle.text("logs/core-agents/agent-core.log");
    assert!(
        core.contains(VOLUME),
        "the core agent's lines about the volume"
    );
    let store = bundle.text("etcd_dump");
    assert!(store.contains(&format!("VolumeSpec/{VOLUME}")), "{store}");

    let other_replica = other.state.replica_topology.keys().next().unwrap().clone();
    let other_nexus = other.state.target.as_ref().unwrap().uuid.clone();
    for unrelated in [OTHER, other_replica.as_str(), other_nexus.as_str()] {
        assert_eq!(
            bundle.contains(unrelated),
            Vec::<&str>::new(),
            "{unrelated} is in the bundle"
        );
    }
    assert_eq!(bundle.manifest().resource, format!("volume {VOLUME}"));
    bundle.check_manifest_sizes();
}

/// Bad input: one clear line, non-zero exit, nothing in the output
/// directory. Ctrl-C during a dump leaves nothing either.
#[test]
fn bad_input_and_interrupt_leave_nothing() {
    let cluster = Cluster::up("127.0.63", 1);
    let out_dir = tempfile::tempdir().unwrap();
    let dir = out_dir.path().to_str().unwrap();

    let missing = out_dir.path().join("missing");
    let line = error_line(&cluster.plugin(&["dump", "system", "-d", missing.to_str().unwrap()]));
    assert!(
        line.contains("does not exist") && line.contains("missing"),
        "{line}"
    );

    let unwritable = out_dir.path().join("read-only");
    std::fs::create_dir(&unwritable).unwrap();
    let unwritable_path = if is_root() {
        // Root writes anywhere a mode allows; sysfs refuses new files.
        std::path::PathBuf::from("/sys/kernel")
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&unwritable, std::fs::Permissions::from_mode(0o555)).unwrap();
        unwritable.clone()
    };
    let line =
        error_line(&cluster.plugin(&["dump", "system", "-d", unwritable_path.to_str().unwrap()]));
    assert!(line.contains("cannot create a file there"), "{line}");
    assert_eq!(listing(&unwritable), Vec::<String>::new());

    let line = error_line(&cluster.plugin(&[
        "dump",
        "volume",
        "5ca1ab1e-0000-4000-8000-000000000000",
        "-d",
        dir,
    ]));
    assert_eq!(
        line,
        "error: volume 5ca1ab1e-0000-4000-8000-000000000000 not found"
    );

    let line = error_line(&cluster.plugin(&[
        "dump",
        "system",
        "-d",
        dir,
        "--rest",
        "http://127.0.63.9:1",
    ]));
    assert!(
        line.contains("REST API") && line.contains("127.0.63.9:1"),
        "{line}"
    );

    let line = error_line(&cluster.plugin(&[
        "dump",
        "system",
        "-d",
        dir,
        "-e",
        "127.0.63.9:1",
        "-t",
        "2s",
    ]));
    assert!(
        line.contains("store at 127.0.63.9:1 is unreachable"),
        "{line}"
    );

    assert_eq!(
        listing(out_dir.path()),
        ["read-only"],
        "nothing left behind"
    );

    // Ctrl-C, then SIGKILL, while Loki keeps the dump waiting with its
    // archive open: nothing is left either way (the archive has no name
    // until it is complete).
    for signal in ["-INT", "-KILL"] {
        // A listener of its own per run: no connection of the last run waits
        // in its backlog.
        let loki = std::net::TcpListener::bind("127.0.63.20:0").unwrap();
        let loki_url = format!("http://{}", loki.local_addr().unwrap());
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-mayastor"))
            .args(["dump", "system", "-d", dir, "-t", "60s", "-l", &loki_url])
            .env("XDG_DATA_HOME", &cluster.data_home)
            .env("KUBECONFIG", "/nonexistent")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The dump is waiting on Loki now, its archive written to.
        let _conn = dumpkit::accept_from(&loki, &mut child, Duration::from_secs(120));
        let open = dumpkit::unnamed_files_in(child.id(), out_dir.path());
        assert_eq!(open.len(), 1, "the archive is open and unnamed: {open:?}");
        assert_eq!(listing(out_dir.path()), ["read-only"], "nothing named yet");
        let pid = child.id().to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = child.wait().unwrap();
        assert!(!exit.success());
        assert_eq!(
            listing(out_dir.path()),
            ["read-only"],
            "no partial bundle after kill {signal}"
        );
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next().map(|u| u == "0"))
        .unwrap_or(false)
}
