//! `kubectl mayastor dump system` against a real Kubernetes cluster:
//! kube-local with its worker node (etcd, kube-apiserver,
//! controller-manager, scheduler, kubelet, containerd; see
//! `testkit::kube_local`), plus a one-node local cluster on 127.0.65.*
//! for the topology and the store.
//!
//! In namespace `dumptest` the test creates, from an image it builds with
//! kube-local's `image` command (busybox): a DaemonSet whose pod prints
//! numbered lines, a Deployment whose container exits once and restarts
//! (so it has a previous log), a Deployment whose pod stays Pending (a
//! nodeSelector no node has), a pod that prints a Secret's value and the
//! kubeconfig's and the REST API's tokens, the DiskPool CRD and two
//! DiskPools, a StorageClass of our provisioner (and one of another) with
//! a PV and a bound PVC. Then it checks the bundle: objects as YAML equal
//! to the API's, current and previous logs with their lines, the Pending
//! pod as the one failed collector with its reason, exit code non-zero,
//! and no secret anywhere in the unpacked archive (byte search).
//!
//! Needs root and kube-local built; runs in the nextest group `kube-node`
//! (tests named `kube_node_*`), holding the node lock.

#![allow(clippy::unwrap_used)]

mod common;
mod dumpkit;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::Cluster;
use dumpkit::{bundle_of, error_line};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use serde_json::Value;
use testkit::kube_local::{KubeLocal, StartOptions};

const PREFIX: &str = "127.0.65";
const NS: &str = "dumptest";
const IMAGE: &str = "localhost/dumptest/busybox:1";
const NODE: &str = "kube-local-node";

/// A value nobody else has (time and pid based; hex).
fn random_value(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}{:x}{:x}", nanos, std::process::id())
}

fn objects_yaml(secret: &str, kube_token: &str, rest_token: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: creds, namespace: {NS}}}
stringData: {{password: "{secret}"}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: mayastor-io-engine, namespace: {NS}, labels: {{app: io-engine}}}}
spec:
  selector: {{matchLabels: {{app: io-engine}}}}
  template:
    metadata: {{labels: {{app: io-engine}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: io-engine
        image: {IMAGE}
        imagePullPolicy: Never
        command: ["/bin/sh", "-c", "for i in 1 2 3 4 5; do echo \"io-engine line $i\"; done; exec sleep 3600"]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: mayastor-agent-core, namespace: {NS}, labels: {{app: agent-core}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: agent-core}}}}
  template:
    metadata: {{labels: {{app: agent-core}}}}
    spec:
      terminationGracePeriodSeconds: 1
      volumes: [{{name: runs, emptyDir: {{}}}}]
      containers:
      - name: agent-core
        image: {IMAGE}
        imagePullPolicy: Never
        volumeMounts: [{{name: runs, mountPath: /runs}}]
        command: ["/bin/sh", "-c", "n=$(cat /runs/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /runs/n; for i in 1 2 3; do echo \"agent-core run $n line $i\"; done; if [ $n -lt 2 ]; then exit 1; fi; exec sleep 3600"]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: mayastor-csi-controller, namespace: {NS}, labels: {{app: csi-controller}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: csi-controller}}}}
  template:
    metadata: {{labels: {{app: csi-controller}}}}
    spec:
      nodeSelector: {{dumptest/no-such-node: "true"}}
      containers:
      - name: csi-controller
        image: {IMAGE}
        imagePullPolicy: Never
        command: ["/bin/sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata: {{name: planted, namespace: {NS}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: planted
    image: {IMAGE}
    imagePullPolicy: Never
    env:
    - name: SECRET_VALUE
      valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}
    command: ["/bin/sh", "-c", "echo \"secret is $SECRET_VALUE\"; echo 'kube credential {kube_token}'; echo 'rest credential {rest_token}'; echo planted done; exec sleep 3600"]
---
apiVersion: openebs.io/v1beta2
kind: DiskPool
metadata: {{name: pool-1, namespace: {NS}}}
spec: {{node: {NODE}, disks: ["aio:///dev/sdb"]}}
---
apiVersion: openebs.io/v1beta2
kind: DiskPool
metadata: {{name: pool-2, namespace: {NS}}}
spec: {{node: {NODE}, disks: ["malloc:///malloc0?size_mb=64"]}}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{name: mayastor-3}}
provisioner: io.openebs.csi-mayastor
parameters: {{repl: "3", protocol: nvmf}}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{name: other-class}}
provisioner: example.com/other
---
apiVersion: v1
kind: PersistentVolume
metadata: {{name: pvc-dump-1}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  storageClassName: mayastor-3
  csi: {{driver: io.openebs.csi-mayastor, volumeHandle: 6e5d4c3b-2a19-4807-a6f5-e4d3c2b1a098}}
  claimRef: {{namespace: {NS}, name: data-1}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: data-1, namespace: {NS}}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: mayastor-3
  volumeName: pvc-dump-1
  resources: {{requests: {{storage: 1Gi}}}}
"#
    )
}

/// `kubectl get ARGS -o json`.
fn get(kube: &KubeLocal, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&kube.kubectl_ok(&all)).unwrap()
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn name(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The pod of `app` (label), once its status satisfies `ready`.
fn wait_pod(kube: &KubeLocal, app: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let pods = get(
            kube,
            &["-n", NS, "get", "pods", "-l", &format!("app={app}")],
        );
        if let Some(pod) = items(&pods).into_iter().find(|p| ready(p)) {
            return pod;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}: {pods:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn container_status<'a>(pod: &'a Value, container: &str) -> Option<&'a Value> {
    pod["status"]["containerStatuses"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == container)
}

fn running(pod: &Value, container: &str) -> bool {
    container_status(pod, container).is_some_and(|c| c["state"]["running"].is_object())
}

/// A YAML file of the bundle as JSON.
fn yaml(bundle: &dumpkit::Bundle, path: &str) -> Value {
    serde_yaml::from_str(&bundle.text(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn names(list: &Value) -> BTreeSet<String> {
    items(list).iter().map(name).collect()
}

#[test]
fn kube_node_dump_system() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::up(PREFIX, 1);
    let kube = KubeLocal::start_with_node(&dir.path().join("kube"), &StartOptions::default());
    eprintln!("clusters up in {:.1?}", started.elapsed());

    kube.image(&["--name", IMAGE, "--busybox", "--entrypoint", "/bin/sh"]);
    kube.kubectl_ok(&[
        "apply",
        "-f",
        testkit::kube_local::tool_dir()
            .join("examples/diskpool-crd.yaml")
            .to_str()
            .unwrap(),
    ]);
    kube.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/diskpools.openebs.io",
        "--timeout=30s",
    ]);

    let secret = random_value("sv");
    let rest_token = random_value("rt");
    let kubeconfig_text = std::fs::read_to_string(kube.kubeconfig()).unwrap();
    let kube_token = kubeconfig_text
        .lines()
        .find_map(|l| l.trim().strip_prefix("token:"))
        .map(|t| t.trim().trim_matches('"').to_string())
        .expect("kube-local's kubeconfig has a token");
    assert!(kube_token.len() >= 8, "{kube_token}");
    kube.apply(&objects_yaml(&secret, &kube_token, &rest_token));

    // Running pods with their lines, the restarted container, the Pending
    // pod and its scheduling event.
    let engine_pod = wait_pod(&kube, "io-engine", "the DaemonSet's pod", |p| {
        running(p, "io-engine")
    });
    let agent_pod = wait_pod(&kube, "agent-core", "agent-core restarted", |p| {
        running(p, "agent-core")
            && container_status(p, "agent-core")
                .is_some_and(|c| c["restartCount"].as_i64().unwrap_or(0) >= 1)
    });
    let pending_pod = wait_pod(&kube, "csi-controller", "the Pending pod", |p| {
        p["status"]["phase"] == "Pending"
    });
    let pending = name(&pending_pod);
    let start = Instant::now();
    while !kube
        .kubectl_ok(&["-n", NS, "logs", "planted"])
        .contains("planted done")
    {
        assert!(start.elapsed() < Duration::from_secs(60), "planted pod");
        std::thread::sleep(Duration::from_millis(500));
    }
    // kubectl 1.20 has no `wait --for=jsonpath`.
    let start = Instant::now();
    while get(&kube, &["-n", NS, "get", "pvc", "data-1"])["status"]["phase"] != "Bound" {
        assert!(start.elapsed() < Duration::from_secs(60), "PVC not bound");
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("objects ready at {:.1?}", started.elapsed());

    // ---- the dump
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let args = [
        "dump",
        "system",
        "-k",
        kube.kubeconfig().to_str().unwrap(),
        "-n",
        NS,
        "--rest",
        &cluster.rest,
        "-d",
        out_dir.to_str().unwrap(),
        "--bearer-token",
        &rest_token,
    ];
    let t = Instant::now();
    let out = cluster.plugin(&args);
    eprintln!("dump took {:.1?}", t.elapsed());
    let line = error_line(&out);
    let bundle = bundle_of(&out);
    assert!(
        line.contains("partially collected") && line.contains(&pending),
        "{line}"
    );
    bundle.check_manifest_sizes();
    let manifest = bundle.manifest();
    assert!(manifest.partial);
    assert_eq!(
        manifest
            .sources
            .kubernetes
            .as_deref()
            .map(|s| s.starts_with("https://127.0.0.1:")),
        Some(true),
        "{:?}",
        manifest.sources
    );

    // The one failure: the Pending pod, with its reason.
    let failures: Vec<_> = manifest.failures().collect();
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert_eq!(
        failures[0].name,
        format!("logs/pod/{NS}/{pending}/csi-controller")
    );
    let reason = failures[0].error.clone().unwrap_or_default();
    assert!(
        reason.contains("Pending") && reason.contains("Unschedulable"),
        "{reason}"
    );
    let outcome = |n: &str| {
        manifest
            .collectors
            .iter()
            .find(|c| c.name == n)
            .map(|c| c.outcome.clone())
            .unwrap_or_else(|| panic!("no collector {n}"))
    };
    for n in [
        "topology",
        "store",
        "k8s/Secret",
        "k8s/DaemonSet",
        "k8s/Deployment",
        "k8s/StatefulSet",
        "k8s/DiskPool",
        "k8s/StorageClass",
        "k8s/PersistentVolume",
        "k8s/PersistentVolumeClaim",
        "k8s/Node",
        "k8s/Pod",
        "k8s/Event",
    ] {
        assert_eq!(outcome(n), "ok", "{n}");
    }
    assert_eq!(outcome("logs/loki"), "skipped");

    // ---- resources as YAML equal to the API's objects
    let configs = "k8s_resources/configurations";
    let ds: DaemonSet =
        serde_json::from_value(yaml(&bundle, &format!("{configs}/mayastor-io-engine.yaml")))
            .unwrap();
    let api_ds: DaemonSet =
        serde_json::from_value(get(&kube, &["-n", NS, "get", "ds", "mayastor-io-engine"])).unwrap();
    assert_eq!(ds.metadata.name, api_ds.metadata.name);
    assert_eq!(ds.metadata.namespace.as_deref(), Some(NS));
    assert_eq!(ds.spec, api_ds.spec);
    for deployment in ["mayastor-agent-core", "mayastor-csi-controller"] {
        let d: Deployment =
            serde_json::from_value(yaml(&bundle, &format!("{configs}/{deployment}.yaml"))).unwrap();
        let api: Deployment =
            serde_json::from_value(get(&kube, &["-n", NS, "get", "deployment", deployment]))
                .unwrap();
        assert_eq!(d.metadata.name.as_deref(), Some(deployment));
        assert_eq!(d.spec, api.spec, "{deployment}");
    }
    let pools = yaml(&bundle, &format!("{configs}/k8s_diskPools.yaml"));
    let api_pools = get(&kube, &["-n", NS, "get", "diskpools"]);
    assert_eq!(names(&pools), ["pool-1", "pool-2"].map(String::from).into());
    for pool in items(&pools) {
        let api = items(&api_pools)
            .into_iter()
            .find(|p| name(p) == name(&pool))
            .unwrap();
        assert_eq!(pool["spec"], api["spec"]);
        assert_eq!(pool["kind"], "DiskPool");
    }
    let classes = yaml(&bundle, &format!("{configs}/k8s_storageClasses.yaml"));
    assert_eq!(names(&classes), ["mayastor-3".to_string()].into());
    assert_eq!(items(&classes)[0]["parameters"]["repl"], "3");
    let pvs = yaml(&bundle, &format!("{configs}/k8s_persistentVolumes.yaml"));
    assert_eq!(names(&pvs), ["pvc-dump-1".to_string()].into());
    assert_eq!(
        items(&pvs)[0]["spec"],
        get(&kube, &["get", "pv", "pvc-dump-1"])["spec"]
    );
    let pvcs = yaml(
        &bundle,
        &format!("{configs}/k8s_persistentVolumeClaims.yaml"),
    );
    assert_eq!(names(&pvcs), ["data-1".to_string()].into());
    assert_eq!(items(&pvcs)[0]["spec"]["volumeName"], "pvc-dump-1");
    let nodes = yaml(&bundle, &format!("{configs}/k8s_nodes.yaml"));
    assert_eq!(names(&nodes), [NODE.to_string()].into());
    let pods = yaml(&bundle, "k8s_resources/pods.yaml");
    assert_eq!(
        names(&pods),
        [
            name(&engine_pod),
            name(&agent_pod),
            pending.clone(),
            "planted".into()
        ]
        .into()
    );
    let events_yaml = yaml(&bundle, "k8s_resources/k8s_events.yaml");
    let events_json: Value =
        serde_json::from_str(&bundle.text("k8s_resources/k8s_events.json")).unwrap();
    assert_eq!(events_yaml, events_json);
    let reasons: BTreeSet<(String, String)> = items(&events_json)
        .iter()
        .map(|e| {
            (
                e["involvedObject"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                e["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(
        reasons.contains(&(pending.clone(), "FailedScheduling".into())),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&(name(&agent_pod), "BackOff".into()))
            || reasons.contains(&(name(&agent_pod), "Started".into())),
        "{reasons:?}"
    );

    // ---- logs through the API server
    let engine_log = bundle.text(&format!(
        "logs/mayastor/{NODE}-{}-io-engine.log",
        name(&engine_pod)
    ));
    let expected: String = (1..=5).map(|i| format!("io-engine line {i}\n")).collect();
    assert_eq!(engine_log, expected);
    let agent = name(&agent_pod);
    let previous = bundle.text(&format!(
        "logs/core-agents/{NODE}-{agent}-agent-core-previous.log"
    ));
    let current = bundle.text(&format!("logs/core-agents/{NODE}-{agent}-agent-core.log"));
    let runs = |run: u32| -> String {
        (1..=3)
            .map(|i| format!("agent-core run {run} line {i}\n"))
            .collect()
    };
    let restarts = container_status(&get(&kube, &["-n", NS, "get", "pod", &agent]), "agent-core")
        .and_then(|c| c["restartCount"].as_u64())
        .unwrap_or(0) as u32;
    assert_eq!(current, runs(restarts + 1));
    assert_eq!(previous, runs(restarts));
    assert!(bundle.under("logs/").iter().all(|n| !n.contains(&pending)));

    // ---- everything else
    assert!(bundle
        .files
        .contains_key("topology/node/node-1-topology.json"));
    assert!(!bundle.text("etcd_dump").is_empty());
    let local_logs: Vec<_> = manifest
        .collectors
        .iter()
        .filter(|c| c.name.starts_with("logs/local/"))
        .collect();
    assert!(!local_logs.is_empty(), "{:#?}", manifest.collectors);
    assert!(
        local_logs.iter().all(|c| c.outcome == "ok"),
        "{local_logs:#?}"
    );
    for f in ["README.txt", "support_tool_logs.log"] {
        assert!(bundle.files.contains_key(f), "{f}");
    }

    // ---- redaction: the planted pod's log got there, without secrets
    let planted = bundle.text(&format!("logs/other/{NODE}-planted-planted.log"));
    assert_eq!(
        planted,
        "secret is <redacted>\nkube credential <redacted>\nrest credential <redacted>\nplanted done\n"
    );
    let secret_b64 = supportability::kubernetes::base64_encode(secret.as_bytes());
    for (what, needle) in [
        ("the Secret's value", secret.as_str()),
        ("the Secret's value in base64", secret_b64.as_str()),
        ("the kubeconfig's token", kube_token.as_str()),
        ("the REST bearer token", rest_token.as_str()),
    ] {
        assert_eq!(bundle.contains(needle), Vec::<&str>::new(), "{what} leaked");
    }
    assert!(
        manifest
            .redactions
            .get("known-secret")
            .copied()
            .unwrap_or(0)
            >= 3,
        "{:?}",
        manifest.redactions
    );
    eprintln!("whole test {:.1?}", started.elapsed());
}
