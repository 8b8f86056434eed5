//! The guided upgrade on Kubernetes: the Helm chart installed on
//! kube-local's real node with images of version A (this build), then
//! `kubectl mayastor upgrade` of version B (this build's binaries with
//! their version slot stamped, `mayastor_version::stamp`, made into images
//! tagged B by `deploy/images/build.sh`) rolls the release to B.
//!
//! Checked first: a `--set` of a chart value that is not an image is
//! refused in one line, and `--dry-run` passes; neither changes an image,
//! a pod or the record. Then: every control-plane workload of the release runs our images
//! tagged B; the io-engine pod was deleted and its replacement (a new UID,
//! images B) became Ready, in that order (from the upgrade's Events); the
//! core agent, the REST API and the node report B; the store's record says
//! `Successful` with the node's entry and times (also through
//! `get upgrade-status -o json`); and a volume written (CRC-32C per block)
//! before the upgrade reads back equal after it.
//!
//! What kube-local's one node cannot show, said plainly: there is one
//! storage node, so "one node at a time" is one pod replaced (the order
//! of several is checked by the local-cluster scenarios, the same state
//! machine); the volume has one replica and no second node to take its
//! target, so it is unpublished during the upgrade (the local-cluster
//! scenario keeps a writer running); the CSI sidecar images are not on the
//! node, so the csi-controller and csi-node pods never run: their
//! Deployment/DaemonSet are updated but not waited for to be available
//! (they had no available pod before).
//!
//! Needs root, kube-local built, the project's Python venv with
//! helm-python-sdk (`deploy/helm/tests/run.sh --install`), and the debug
//! binaries listed in [`COMPONENTS`] plus `kubectl-mayastor`. Named
//! `kube_node_*`: nextest runs it in the `kube-node` group, and the test
//! kit holds the node's flock.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mayastor_local::data::{VolumePath, BLOCK_BYTES, HOST_NODE};
use openapi::models::*;
use openapi::{CoreApi, RestClient, RestClientOptions};
use serde_json::{json, Value};
use testkit::kube_local::{KubeLocal, StartOptions};

const NAMESPACE: &str = "mayastor";
const NODE: &str = "kube-local-node";
const VERSION_A: &str = env!("CARGO_PKG_VERSION");
const VERSION_B: &str = "0.2.0";
const VOLUME: &str = "75706b38-7300-4000-8000-000000000001";
const VOLUME_BYTES: u64 = 16 << 20;
const POOL_BYTES: u64 = 96 << 20;
/// Our components with an image in both versions (binary name = image name).
const COMPONENTS: &[&str] = &[
    "io-engine",
    "metrics-exporter",
    "agent-core",
    "api-rest",
    "operator-diskpool",
    "csi-controller",
    "csi-node",
];
/// The Deployments and DaemonSets the upgrade updates: (kind, name, our
/// containers).
const UPDATED: &[(&str, &str, &[&str])] = &[
    ("deployment", "agent-core", &["agent-core"]),
    ("deployment", "api-rest", &["api-rest"]),
    ("deployment", "operator-diskpool", &["operator-diskpool"]),
    ("deployment", "csi-controller", &["csi-controller"]),
    ("daemonset", "csi-node", &["csi-node"]),
    ("daemonset", "io-engine", &["io-engine", "metrics-exporter"]),
];
/// Pods that run here (the CSI ones wait for sidecar images).
const RUNNING: &[&str] = &[
    "etcd",
    "io-engine",
    "agent-core",
    "api-rest",
    "operator-diskpool",
];
const WAIT: Duration = Duration::from_secs(180);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `<dir>/debug/<bin>` for every component and the plugin: this build's
/// binaries with the version slot stamped to [`VERSION_B`] (where they
/// have one).
fn stamp_version_b(dir: &Path) -> PathBuf {
    let out = dir.join("debug");
    std::fs::create_dir_all(&out).unwrap();
    for name in COMPONENTS.iter().chain(&["kubectl-mayastor"]) {
        let mut bytes = std::fs::read(testkit::profile_dir().join(name)).unwrap();
        // The CSI plugins report no version (no slot): their image B is
        // the same binary under tag B.
        if mayastor_version::stamped(&bytes).is_ok() {
            mayastor_version::stamp(&mut bytes, VERSION_B)
                .unwrap_or_else(|e| panic!("stamping {name}: {e}"));
        } else {
            assert!(name.starts_with("csi-"), "{name} has no version slot");
        }
        let path = out.join(name);
        std::fs::write(&path, &bytes).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    out
}

fn build_images(kube: &KubeLocal, target_dir: &Path, tag: &str, only: &[&str]) {
    let t = Instant::now();
    let out = testkit::run_ok(
        Command::new(repo().join("deploy/images/build.sh"))
            .args([
                "--profile",
                "debug",
                "--tag",
                tag,
                "--only",
                &only.join(","),
            ])
            .arg("--target-dir")
            .arg(target_dir)
            .arg("--state-dir")
            .arg(kube.state_dir()),
        "deploy/images/build.sh",
    );
    let built = out.lines().filter(|l| l.starts_with("built ")).count();
    assert_eq!(built, only.len(), "{out}");
    println!("{built} images tagged {tag} in {:.1?}", t.elapsed());
}

fn get_json(kube: &KubeLocal, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-n", NAMESPACE, "-o", "json"]);
    serde_json::from_str(&kube.kubectl_ok(&all)).unwrap()
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn wait_running(kube: &KubeLocal) {
    let t = Instant::now();
    loop {
        let pods = get_json(kube, &["pods"]);
        let missing: Vec<&&str> = RUNNING
            .iter()
            .filter(|app| {
                !pods["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["metadata"]["labels"]["app"] == **app && ready(p))
            })
            .collect();
        if missing.is_empty() {
            println!("pods Ready {:.1?} after the install", t.elapsed());
            return;
        }
        assert!(
            t.elapsed() < WAIT,
            "not Ready: {missing:?}\n{}",
            kube.kubectl_ok(&["get", "pods", "-n", NAMESPACE, "-o", "wide"])
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The io-engine pods: (name, uid, images, Ready).
fn engine_pods(kube: &KubeLocal) -> Vec<(String, String, Vec<String>, bool)> {
    let pods = get_json(kube, &["pods", "-l", "app=io-engine"]);
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let images = p["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["image"].as_str().map(str::to_owned))
                .collect();
            (
                p["metadata"]["name"].as_str().unwrap().to_owned(),
                p["metadata"]["uid"].as_str().unwrap().to_owned(),
                images,
                ready(p),
            )
        })
        .collect()
}

/// Our containers' images of a workload's pod template, and its version label.
fn template_images(kube: &KubeLocal, kind: &str, name: &str) -> (BTreeMap<String, String>, String) {
    let w = get_json(kube, &[kind, name]);
    let t = &w["spec"]["template"];
    let images = t["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["image"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let label = t["metadata"]["labels"]["app.kubernetes.io/version"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    (images, label)
}

fn image(component: &str, version: &str) -> String {
    format!("localhost/mayastor/{component}:{version}")
}

fn client(url: &str) -> RestClient {
    RestClient::new(
        url,
        RestClientOptions {
            timeout: Duration::from_secs(30),
            ..Default::default()
        },
    )
    .unwrap()
}

async fn wait_node(api: &RestClient, version: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let node = api.get_node(NODE).await.ok();
        let state = node.as_ref().and_then(|n| n.state.as_ref());
        if state.is_some_and(|s| s.status == NodeStatus::Online && s.version == version) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{NODE} not Online on {version}: {node:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn publish(api: &RestClient) -> VolumePath {
    let volume = api
        .put_volume_target(VOLUME, PublishVolumeBody::nvmf(None, Some(HOST_NODE)))
        .await
        .unwrap();
    let uri = volume.state.target.map(|t| t.device_uri).unwrap();
    VolumePath::connect(&uri).await.unwrap()
}

#[test]
fn kube_node_upgrade_rolls_the_chart_to_new_images() {
    let started = Instant::now();
    let debug = testkit::profile_dir();
    let missing: Vec<&&str> = COMPONENTS
        .iter()
        .chain(&["kubectl-mayastor"])
        .filter(|b| !debug.join(b).is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "not built in {}: {missing:?}",
        debug.display()
    );
    let python = testkit::helm::python();
    let tmp = tempfile::tempdir().unwrap();
    let (pools, etcd, xdg, b) = (
        tmp.path().join("pools"),
        tmp.path().join("etcd"),
        tmp.path().join("xdg"),
        tmp.path().join("version-b"),
    );
    for dir in [&pools, &xdg] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let pool_file = pools.join("pool-0.img");
    std::fs::File::create(&pool_file)
        .and_then(|f| f.set_len(POOL_BYTES))
        .unwrap();
    let b_bin = stamp_version_b(&b);

    let kube = KubeLocal::start_with_node(&tmp.path().join("kube"), &StartOptions::default());
    kube.kubectl_ok(&["label", "node", NODE, "openebs.io/engine=mayastor"]);

    // Images of version A (this build) and B (stamped), side by side.
    let mut a_only: Vec<&str> = COMPONENTS.to_vec();
    a_only.push("etcd");
    build_images(&kube, debug.parent().unwrap(), VERSION_A, &a_only);
    build_images(&kube, &b, VERSION_B, COMPONENTS);

    // The chart at version A, the one-node values (as the chart's own node test).
    let overrides = json!({
        "image": { "pullPolicy": "Never" },
        "etcd": { "persistence": { "hostPath": etcd } },
        "io_engine": { "poolHostPaths": [pools] },
        "csi": {
            "image": { "pullPolicy": "Never" },
            "node": { "kubeletDir": kube.state_dir().join("node/kubelet") },
        },
    });
    let script = repo().join("deploy/helm/tests/helm_release.py");
    let values = repo().join("deploy/helm/single-node-values.yaml");
    print!(
        "{}",
        testkit::run_ok(
            Command::new(&python)
                .arg(&script)
                .args(["install", "--values"])
                .arg(&values)
                .args(["--set-json", &overrides.to_string(), "--kubeconfig"])
                .arg(kube.kubeconfig())
                .current_dir(script.parent().unwrap()),
            "helm_release.py install",
        )
    );
    wait_running(&kube);
    for &(kind, name, containers) in UPDATED {
        let (images, _) = template_images(&kube, kind, name);
        for c in containers {
            assert_eq!(images[*c], image(c, VERSION_A), "{kind} {name}");
        }
    }

    let cluster_ip = kube.kubectl_ok(&[
        "get",
        "svc",
        "api-rest",
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let api = client(&format!("http://{}:8081", cluster_ip.trim()));
    let rt = tokio::runtime::Runtime::new().unwrap();

    // A pool and a one-replica volume, written with checksummed blocks.
    let blocks = rt.block_on(async {
        wait_node(&api, VERSION_A).await;
        api.put_node_pool(
            NODE,
            "pool-0",
            CreatePoolBody {
                disks: vec![format!("aio://{}?blk_size=512", pool_file.display())],
                labels: None,
            },
        )
        .await
        .unwrap();
        api.put_volume(VOLUME, CreateVolumeBody::new(VOLUME_BYTES, 1))
            .await
            .unwrap();
        let path = publish(&api).await;
        let blocks = path.blocks();
        assert_eq!(blocks * BLOCK_BYTES, VOLUME_BYTES);
        path.write(0..blocks, 1, |_| {}).await.unwrap();
        path.verify(0..blocks, |_| 1, |_| {}).await.unwrap();
        path.disconnect().await;
        // No second node to take the target: unpublished for the upgrade.
        api.del_volume_target(VOLUME, false).await.unwrap();
        blocks
    });
    let before = engine_pods(&kube);
    assert_eq!(before.len(), 1, "{before:?}");
    let (old_pod, old_uid, _, _) = before[0].clone();

    // The upgrade, by the plugin of version B through the kubeconfig alone.
    let plugin = b_bin.join("kubectl-mayastor");
    let kubeconfig = kube.kubeconfig().to_str().unwrap().to_owned();
    let upgrade_args = [
        "-k",
        &kubeconfig,
        "upgrade",
        "--skip-single-replica-volume-validation",
    ];
    // Refusals change nothing: a chart value that is not an image, and a
    // dry run.
    let refused = Command::new(&plugin)
        .args(upgrade_args)
        .args(["--set", "io_engine.logLevel=debug"])
        .env("XDG_DATA_HOME", &xdg)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("io_engine.logLevel") && err.contains("helm upgrade"),
        "{err}"
    );
    let dry = testkit::run_ok(
        Command::new(&plugin)
            .args(upgrade_args)
            .arg("--dry-run")
            .env("XDG_DATA_HOME", &xdg),
        "upgrade --dry-run",
    );
    assert!(dry.contains("Dry run"), "{dry}");
    for &(kind, name, containers) in UPDATED {
        let (images, _) = template_images(&kube, kind, name);
        for c in containers {
            assert_eq!(
                images[*c],
                image(c, VERSION_A),
                "{kind} {name} after a refusal"
            );
        }
    }
    assert_eq!(
        engine_pods(&kube),
        before,
        "the io-engine pod after a refusal"
    );
    let recorded = rt.block_on(api.get_upgrade_status());
    assert!(recorded.is_err(), "a dry run records nothing: {recorded:?}");

    let t = Instant::now();
    let out = Command::new(&plugin)
        .args(upgrade_args)
        .env("XDG_DATA_HOME", &xdg)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = t.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("upgrade took {took:.1?}:\n{text}");
    assert!(
        out.status.success(),
        "{text}\n{}",
        kube.kubectl_ok(&["get", "pods", "-n", NAMESPACE, "-o", "wide"])
    );

    // Every workload's containers of ours on B, labelled B.
    for &(kind, name, containers) in UPDATED {
        let (images, label) = template_images(&kube, kind, name);
        for c in containers {
            assert_eq!(images[*c], image(c, VERSION_B), "{kind} {name}");
        }
        assert_eq!(label, VERSION_B, "{kind} {name}");
        // Sidecars (not ours) keep their images.
        for (c, i) in &images {
            if !containers.contains(&c.as_str()) {
                assert!(!i.ends_with(VERSION_B), "{kind} {name}: sidecar {c} {i}");
            }
        }
    }
    let etcd_image = template_images(&kube, "statefulset", "etcd").0["etcd"].clone();
    assert_eq!(
        etcd_image,
        image("etcd", VERSION_A),
        "the store is not ours to upgrade"
    );
    // The running pods of the control plane run B.
    let pods = get_json(&kube, &["pods"]);
    for app in ["agent-core", "api-rest", "operator-diskpool"] {
        let running: Vec<&Value> = pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                p["metadata"]["labels"]["app"] == app
                    && p["metadata"]["deletionTimestamp"].is_null()
            })
            .collect();
        assert_eq!(running.len(), 1, "{app}");
        assert_eq!(
            running[0]["spec"]["containers"][0]["image"],
            image(app, VERSION_B)
        );
        assert!(ready(running[0]), "{app} pod not Ready");
    }

    // The io-engine pod replaced: a new UID on B's images, Ready.
    let after = engine_pods(&kube);
    assert_eq!(after.len(), 1, "{after:?}");
    let (new_pod, new_uid, new_images, new_ready) = after[0].clone();
    assert_ne!(new_uid, old_uid, "the io-engine pod was not replaced");
    assert!(new_ready, "{new_pod} not Ready");
    assert_eq!(
        new_images,
        [
            image("io-engine", VERSION_B),
            image("metrics-exporter", VERSION_B)
        ]
    );
    println!("io-engine pod {old_pod} ({old_uid}) replaced by {new_pod} ({new_uid})");

    // The Events of the upgrade, in the order the API server stored them.
    let events = get_json(&kube, &["events"]);
    let mut ours: Vec<(u64, String, String, String)> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["source"]["component"] == "mayastor-upgrade")
        .map(|e| {
            (
                e["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap(),
                e["reason"].as_str().unwrap().to_owned(),
                e["involvedObject"]["uid"].as_str().unwrap_or("").to_owned(),
                e["message"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    ours.sort();
    for (_, reason, _, message) in &ours {
        println!("  event {reason}: {message}");
    }
    let reasons: Vec<&str> = ours.iter().map(|(_, r, _, _)| r.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "UpgradingControlPlane",
            "UpgradingDataPlane",
            "EnginePodDeleted",
            "EnginePodReady",
            "NodeUpgraded",
            "UpgradeSuccessful"
        ]
    );
    assert_eq!(ours[2].2, old_uid, "the deleted pod");
    assert_eq!(ours[3].2, new_uid, "the Ready pod");

    // Versions, the record, and the data.
    rt.block_on(async {
        let v = api.get_versions().await.unwrap();
        assert_eq!((v.core.as_str(), v.rest.as_str()), (VERSION_B, VERSION_B));
        wait_node(&api, VERSION_B).await;
        let status = api.get_upgrade_status().await.unwrap();
        assert_eq!(status.stage, UpgradeStage::Successful, "{status:?}");
        assert_eq!(
            (status.from_version.as_str(), status.to_version.as_str()),
            (VERSION_A, VERSION_B)
        );
        assert_eq!(status.nodes.len(), 1);
        let n = &status.nodes[0];
        assert_eq!(
            (n.node.as_str(), n.state, n.from_version.as_str()),
            (NODE, NodeUpgradeState::Upgraded, VERSION_A)
        );
        assert!(n.started_at.is_some() && n.finished_at.is_some(), "{n:?}");
        let node = api.get_node(NODE).await.unwrap();
        let drain = node.spec.map(|s| s.cordon_drain_state).unwrap_or_default();
        assert!(
            drain.drain_labels.is_empty() && drain.cordon_labels.is_empty(),
            "{drain:?}"
        );

        let t = Instant::now();
        let path = loop {
            // The pool is imported again by the new engine.
            match api.get_volume(VOLUME).await {
                Ok(v) if v.state.status == VolumeStatus::Online => break publish(&api).await,
                other => {
                    assert!(t.elapsed() < Duration::from_secs(60), "volume: {other:?}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        path.verify(0..blocks, |_| 1, |_| {}).await.unwrap();
        assert!(
            path.verify(0..1, |_| 2, |_| {}).await.is_err(),
            "the check is real"
        );
        path.disconnect().await;
        println!(
            "read back {} MiB written before the upgrade, CRC-32C per block: equal",
            VOLUME_BYTES >> 20
        );
        api.del_volume_target(VOLUME, false).await.unwrap();
        api.del_volume(VOLUME).await.unwrap();
    });
    let status: Value = serde_json::from_str(&testkit::run_ok(
        Command::new(&plugin)
            .args(["-k", &kubeconfig, "get", "upgrade-status", "-o", "json"])
            .env("XDG_DATA_HOME", &xdg),
        "get upgrade-status",
    ))
    .unwrap();
    assert_eq!(status["stage"], "Successful");

    // Running it again changes nothing: every component is on B already.
    let again = testkit::run_ok(
        Command::new(&plugin)
            .args(upgrade_args)
            .env("XDG_DATA_HOME", &xdg),
        "upgrade again",
    );
    assert_eq!(
        engine_pods(&kube)[0].1,
        new_uid,
        "restarted again:\n{again}"
    );
    kube.stop();
    println!("done in {:.1?}", started.elapsed());
}
