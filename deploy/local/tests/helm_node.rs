//! The Helm chart on a real Kubernetes node (kube-local `--with-node`):
//! images built by `deploy/images/build.sh` from this build's binaries
//! (the debug profile, to spare CI a release build), the chart installed
//! with real Helm (helm-python-sdk, through `deploy/helm/tests/helm_release.py`)
//! and the one-node values, its pods Ready (the DiskPool operator's too), a
//! `DiskPool` applied with kubectl becoming Created/Online with the pool's
//! figures, `kubectl mayastor` finding the REST API through the kubeconfig
//! alone, a volume made through the `api-rest` Service on that pool,
//! written and read back with checksums over NVMe/TCP by our initiator,
//! and `helm uninstall` leaving no pod (what stays is printed, with why).
//!
//! Needs root, kube-local built, the project's Python venv with
//! helm-python-sdk (`deploy/helm/tests/run.sh --install`), and the debug
//! binaries of io-engine, agent-core, api-rest, operator-diskpool and
//! kubectl-mayastor (a workspace test run builds them). Named
//! `kube_node_*`: nextest runs it in the `kube-node` group, and the test
//! kit holds the node's flock.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use mayastor_local::data::{VolumePath, BLOCK_BYTES, HOST_NODE};
use openapi::{
    client::{RestClient, RestClientOptions},
    models::{CreateVolumeBody, NodeStatus, PoolStatus, PublishVolumeBody},
    CoreApi,
};
use serde_json::{json, Value};
use testkit::kube_local::{KubeLocal, StartOptions};

/// The release's namespace (the one `kubectl mayastor` looks in).
const NAMESPACE: &str = "mayastor";
/// kube-local's node, as the engine registers it.
const NODE: &str = "kube-local-node";
const VOLUME: &str = "6b756265-6e6f-4465-8000-68656c6d3031";
const VOLUME_BYTES: u64 = 32 << 20;
const POOL_BYTES: u64 = 128 << 20;
/// Our components that must become Ready.
const READY: &[&str] = &[
    "etcd",
    "io-engine",
    "agent-core",
    "api-rest",
    "operator-diskpool",
];
const WAIT: Duration = Duration::from_secs(240);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn helm(python: &Path, kube: &KubeLocal, args: &[&str]) -> String {
    let script = repo().join("deploy/helm/tests/helm_release.py");
    testkit::run_ok(
        Command::new(python)
            .arg(&script)
            .args(args)
            .arg("--kubeconfig")
            .arg(kube.kubeconfig())
            .current_dir(script.parent().expect("deploy/helm/tests")),
        &format!("helm_release.py {}", args[0]),
    )
}

/// Pods of the namespace: name -> (app label, ready, phase).
fn pods(kube: &KubeLocal) -> BTreeMap<String, (String, bool, String)> {
    let text = kube.kubectl_ok(&["get", "pods", "-n", NAMESPACE, "-o", "json"]);
    let list: Value = serde_json::from_str(&text).expect("kubectl get pods -o json");
    let mut out = BTreeMap::new();
    for pod in list["items"].as_array().into_iter().flatten() {
        let name = pod["metadata"]["name"].as_str().unwrap_or("?").to_owned();
        let app = pod["metadata"]["labels"]["app"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        let ready = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        let phase = pod["status"]["phase"].as_str().unwrap_or("?").to_owned();
        out.insert(name, (app, ready, phase));
    }
    out
}

fn wait_ready(kube: &KubeLocal, apps: &[&str]) -> Duration {
    let started = Instant::now();
    loop {
        let pods = pods(kube);
        let missing: Vec<&&str> = apps
            .iter()
            .filter(|app| !pods.values().any(|(a, ready, _)| a == **app && *ready))
            .collect();
        if missing.is_empty() {
            return started.elapsed();
        }
        if started.elapsed() > WAIT {
            eprintln!(
                "{}",
                kube.kubectl_ok(&["get", "pods", "-n", NAMESPACE, "-o", "wide"])
            );
            for app in &missing {
                let out = kube
                    .kubectl()
                    .args(["logs", "-n", NAMESPACE, "-l", &format!("app={app}")])
                    .args(["--all-containers", "--tail=20"])
                    .output();
                if let Ok(o) = out {
                    eprintln!("== logs of {app}\n{}", String::from_utf8_lossy(&o.stdout));
                }
            }
            panic!("not Ready within {WAIT:?}: {missing:?}");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// DiskPool `name` of the namespace as JSON, read from its API path (no
/// kubectl discovery cache involved: it may predate the CRD).
fn diskpool(kube: &KubeLocal, name: &str) -> Value {
    let path = format!("/apis/openebs.io/v1beta2/namespaces/{NAMESPACE}/diskpools/{name}");
    serde_json::from_str(&kube.kubectl_ok(&["get", "--raw", &path])).expect("DiskPool JSON")
}

/// `kubectl mayastor ARGS` through kubectl's plugin discovery, with only the
/// kubeconfig to find the REST API (no --rest, no local cluster file).
fn plugin(kube: &KubeLocal, xdg: &Path, args: &[&str]) -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![testkit::profile_dir()];
    dirs.extend(std::env::split_paths(&path));
    testkit::run_ok(
        Command::new(kube.kubectl_path())
            .arg("mayastor")
            .args(args)
            .env("PATH", std::env::join_paths(dirs).expect("PATH"))
            .env("KUBECONFIG", kube.kubeconfig())
            .env("XDG_DATA_HOME", xdg),
        &format!("kubectl mayastor {}", args.join(" ")),
    )
}

/// A table's rows as columns split on runs of two or more spaces.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

#[test]
fn kube_node_helm_install_images_pool_volume_uninstall() {
    let started = Instant::now();
    let debug = testkit::profile_dir();
    let needed = [
        "io-engine",
        "agent-core",
        "api-rest",
        "operator-diskpool",
        "kubectl-mayastor",
    ];
    let missing: Vec<&str> = needed
        .into_iter()
        .filter(|b| !debug.join(b).is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "{} has no {}: cargo build --workspace --bins",
        debug.display(),
        missing.join(", ")
    );
    let python = testkit::helm::python();
    let tmp = tempfile::tempdir().unwrap();
    let (pools, etcd, xdg) = (
        tmp.path().join("pools"),
        tmp.path().join("etcd"),
        tmp.path().join("xdg"),
    );
    for dir in [&pools, &xdg] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let pool_file = pools.join("pool-0.img");
    std::fs::File::create(&pool_file)
        .and_then(|f| f.set_len(POOL_BYTES))
        .unwrap();

    let kube = KubeLocal::start_with_node(&tmp.path().join("kube"), &StartOptions::default());
    kube.kubectl_ok(&["label", "node", NODE, "openebs.io/engine=mayastor"]);

    // 1. The images, from this build's debug binaries.
    let t = Instant::now();
    let build = testkit::run_ok(
        Command::new(repo().join("deploy/images/build.sh"))
            .args(["--profile", "debug", "--target-dir"])
            .arg(debug.parent().unwrap())
            .arg("--state-dir")
            .arg(kube.state_dir()),
        "deploy/images/build.sh",
    );
    print!("{build}");
    let built: Vec<String> = build
        .lines()
        .filter_map(|l| l.strip_prefix("built localhost/mayastor/"))
        .filter_map(|l| l.split(':').next())
        .map(str::to_owned)
        .collect();
    for component in READY {
        assert!(built.iter().any(|b| b == component), "no {component} image");
    }
    println!("images built in {:.1?}: {}", t.elapsed(), built.join(", "));
    let has = |c: &str| built.iter().any(|b| b == c);

    // 2. The chart, with the one-node values; components without an image
    // (not in the workspace yet) are switched off where the chart allows it.
    // Nothing is pulled: images missing here (the CSI sidecars, components
    // not built) leave their pods waiting, never reaching for a registry.
    let overrides = json!({
        "image": { "pullPolicy": "Never" },
        "etcd": { "persistence": { "hostPath": etcd } },
        "io_engine": { "poolHostPaths": [pools] },
        "csi": {
            "image": { "pullPolicy": "Never" },
            "node": { "kubeletDir": kube.state_dir().join("node/kubelet") },
        },
        "base": { "metrics": { "enabled": has("metrics-exporter") } },
    });
    let values = repo().join("deploy/helm/single-node-values.yaml");
    let installed = helm(
        &python,
        &kube,
        &[
            "install",
            "--values",
            values.to_str().unwrap(),
            "--set-json",
            &overrides.to_string(),
        ],
    );
    print!("{installed}");
    let apps = READY.to_vec();
    let ready_in = wait_ready(&kube, &apps);
    println!(
        "Ready {:.1?} after the install: {}",
        ready_in,
        apps.join(", ")
    );
    for (name, (app, ready, phase)) in pods(&kube) {
        println!("  pod {name:<40} {app:<18} ready={ready} {phase}");
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster_ip = kube.kubectl_ok(&[
        "get",
        "svc",
        "api-rest",
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let rest_url = format!("http://{}:8081", cluster_ip.trim());
    let api = RestClient::new(
        &rest_url,
        RestClientOptions {
            timeout: Duration::from_secs(30),
            ..Default::default()
        },
    )
    .expect("REST client");

    // 3. The engine registered at the node's address; a DiskPool on a file
    // of the pool host path, applied with kubectl: the operator makes the
    // pool through the REST Service and reports it Created/Online with the
    // pool's figures.
    let uri = format!("aio://{}?blk_size=512", pool_file.display());
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let nodes = api.get_nodes().await.unwrap_or_default();
            let online = nodes.iter().any(|n| {
                n.state
                    .as_ref()
                    .is_some_and(|s| s.id == NODE && s.status == NodeStatus::Online)
            });
            if online {
                break;
            }
            assert!(Instant::now() < deadline, "{NODE} not Online: {nodes:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let t = Instant::now();
    kube.apply(&format!(
        r#"apiVersion: openebs.io/v1beta2
kind: DiskPool
metadata:
  name: pool-0
  namespace: {NAMESPACE}
spec:
  node: {NODE}
  disks: ["{uri}"]
"#
    ));
    let dsp = loop {
        let dsp = diskpool(&kube, "pool-0");
        let status = &dsp["status"];
        if status["cr_state"] == "Created" && status["pool_status"] == "Online" {
            break dsp;
        }
        if t.elapsed() > Duration::from_secs(60) {
            let events = kube
                .kubectl()
                .args(["get", "events", "-n", NAMESPACE])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
            panic!("DiskPool pool-0 not Created/Online: {dsp}\n{events:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let pool = rt.block_on(api.get_pool("pool-0")).expect("pool-0 in REST");
    let state = pool.state.expect("pool state");
    assert_eq!(state.status, PoolStatus::Online);
    assert!(state.capacity > VOLUME_BYTES && state.capacity <= POOL_BYTES);
    assert_eq!(state.disks, std::slice::from_ref(&uri));
    let status = &dsp["status"];
    assert_eq!(status["capacity"], state.capacity);
    assert_eq!(status["used"], state.used);
    assert_eq!(status["available"], state.capacity - state.used);
    assert_eq!(
        pool.spec.expect("pool spec").labels["openebs.io/created-by"],
        "operator-diskpool"
    );
    // The operator's RBAC lets it publish events (a failure there is only
    // logged by the operator).
    let path = format!("/apis/events.k8s.io/v1/namespaces/{NAMESPACE}/events");
    let events: Value = serde_json::from_str(&kube.kubectl_ok(&["get", "--raw", &path])).unwrap();
    let reasons: Vec<&str> = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["regarding"]["name"] == "pool-0" && e["regarding"]["kind"] == "DiskPool")
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"Creating") && reasons.contains(&"Created"),
        "events of pool-0: {reasons:?}"
    );
    println!(
        "DiskPool pool-0 Created/Online {:.1?} after kubectl apply: capacity {}, used {}, available {}",
        t.elapsed(),
        status["capacity"],
        status["used"],
        status["available"]
    );

    // 4. The plugin finds the REST API through the kubeconfig alone.
    let table = plugin(&kube, &xdg, &["get", "pools"]);
    print!("{table}");
    let pools_rows = rows(&table);
    assert_eq!(
        pools_rows[0],
        [
            "ID",
            "TOTAL CAPACITY",
            "USED CAPACITY",
            "DISKS",
            "NODE",
            "STATUS",
            "MANAGED"
        ]
    );
    assert!(
        pools_rows[1..]
            .iter()
            .any(|r| r[0] == "pool-0" && r[3] == uri && r[4] == NODE && r[5] == "Online"),
        "{table}"
    );
    let table = plugin(&kube, &xdg, &["get", "nodes"]);
    print!("{table}");
    let node_rows = rows(&table);
    assert_eq!(node_rows[0], ["ID", "GRPC ENDPOINT", "STATUS"]);
    assert!(
        node_rows[1..]
            .iter()
            .any(|r| r == &[NODE, "10.244.0.1:10124", "Online"]),
        "{table}"
    );

    // 5. A volume through the REST Service, published over NVMe/TCP on the
    // node's address, written and read back with checksummed blocks.
    rt.block_on(async {
        api.put_volume(VOLUME, CreateVolumeBody::new(VOLUME_BYTES, 1))
            .await
            .expect("volume through the REST Service");
        let volume = api
            .put_volume_target(VOLUME, PublishVolumeBody::nvmf(None, Some(HOST_NODE)))
            .await
            .expect("publish");
        let target = volume
            .state
            .target
            .map(|t| t.device_uri)
            .expect("a published volume has a target");
        assert!(
            target.starts_with("nvmf://10.244.0.1:8420/"),
            "target {target} is not on the node's NVMe/TCP listener"
        );
        let t = Instant::now();
        let path = VolumePath::connect(&target).await.expect("connect");
        let blocks = path.blocks();
        assert_eq!(blocks * BLOCK_BYTES, VOLUME_BYTES);
        path.write(0..blocks, 1, |_| {}).await.expect("write");
        path.verify(0..blocks, |_| 1, |_| {}).await.expect("verify");
        // The check is real: the same blocks are not generation 2.
        assert!(path.verify(0..1, |_| 2, |_| {}).await.is_err());
        path.disconnect().await;
        println!(
            "wrote and read back {} MiB ({blocks} blocks, CRC-32C each) over {target} in {:.1?}",
            VOLUME_BYTES >> 20,
            t.elapsed()
        );
        api.del_volume_target(VOLUME, false)
            .await
            .expect("unpublish");
        api.del_volume(VOLUME).await.expect("delete volume");
    });

    // 6. helm uninstall: no pod is left.
    print!("{}", helm(&python, &kube, &["uninstall"]));
    let t = Instant::now();
    while !pods(&kube).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "pods left after helm uninstall: {:?}",
            pods(&kube)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    println!("no pod left {:.1?} after helm uninstall", t.elapsed());

    // What stays, and why.
    let crds = kube.kubectl_ok(&["get", "crd", "-o", "name"]);
    assert!(crds.contains("diskpools.openebs.io"), "{crds}");
    println!("stays: CRD diskpools.openebs.io (Helm installs crds/ and never deletes them, so DiskPools are not lost)");
    // The DiskPool stays, with its finalizer: the operator that would
    // remove it is gone with the release, and the pool with it (a reinstall's
    // operator finds the pool and takes the DiskPool up again).
    let dsp = diskpool(&kube, "pool-0");
    assert_eq!(
        dsp["metadata"]["finalizers"],
        json!(["openebs.io/diskpool-protection"])
    );
    assert_eq!(dsp["status"]["cr_state"], "Created");
    println!(
        "stays: DiskPool pool-0 with its finalizer openebs.io/diskpool-protection (custom resources outlive the release; \
         with the operator gone nothing deletes its pool, which a reinstall takes up again)"
    );
    let pvs = kube.kubectl_ok(&["get", "pv", "-o", "name"]);
    assert_eq!(pvs.trim(), "", "no PersistentVolume was provisioned");
    println!("stays: PersistentVolumes: none (nothing was provisioned through CSI here; CSI-made PVs would stay, with the data on the pools)");
    let ns = kube.kubectl_ok(&["get", "ns", NAMESPACE, "-o", "name"]);
    println!(
        "stays: {} (Helm does not delete the namespace it created)",
        ns.trim()
    );
    let member = etcd.join("etcd-0");
    assert!(
        std::fs::read_dir(&member).is_ok_and(|mut d| d.next().is_some()),
        "the store's data should stay in {}",
        member.display()
    );
    println!(
        "stays: the store's data in the host path {} and the pool's file {} (host paths: a reinstall finds the pool and its volumes again)",
        member.display(),
        pool_file.display()
    );
    kube.stop();
    println!("done in {:.1?}", started.elapsed());
}
