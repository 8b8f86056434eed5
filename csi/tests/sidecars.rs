//! The real CSI sidecars of `../shared/tools/csi-tools` (external-provisioner
//! v5.3.0, external-attacher v4.9.0 and external-resizer v1.12.0, host
//! processes with `--kubeconfig`)
//! against a real API server with its controller-manager (kube-local, no
//! node; the Nodes and CSINodes a kubelet would register are made by hand:
//! the registration by a real kubelet is `registrar.rs`)
//! and the real `csi-controller` on a real 2-node local cluster
//! (loopback 127.0.103.x): a PVC against a 2-replica StorageClass is
//! provisioned (PV Bound, the volume in REST with 2 replicas and the PVC's
//! size), a VolumeAttachment publishes it to its node and unpublishes it
//! when deleted, expanding the PVC grows the volume, deleting the PVC deletes the
//! volume and the PV. Asserted on the REST state and the API objects.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use openapi::{CoreApi, ErrorKind};
use testkit::{kube_local::KubeLocal, Proc};

const MIB: u64 = 1 << 20;

fn jsonpath(kube: &KubeLocal, args: &[&str], path: &str) -> String {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    let path = format!("jsonpath={path}");
    all.extend_from_slice(&["-o", &path]);
    kube.kubectl_ok(&all)
}

fn sidecar(name: &str, kubeconfig: &str, socket: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        format!("--kubeconfig={kubeconfig}"),
        format!("--csi-address={socket}"),
        "--leader-election=false".to_owned(),
        "--timeout=60s".to_owned(),
        "-v=3".to_owned(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Proc::spawn(name, csi_tool(name), args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_provision_expand_and_delete_a_pvc() {
    let (cluster, kube) = Cluster::up_beside_kube("127.0.103", 2, "256MiB");
    let rest = cluster.rest();
    let ctl = Controller::start(&cluster.rest_url, &["--any-pool"]);
    let kubeconfig = kube.kubeconfig().display().to_string();
    let socket = ctl.socket.display().to_string();
    let _provisioner = sidecar(
        "csi-provisioner",
        &kubeconfig,
        &socket,
        &["--extra-create-metadata"],
    );
    let _resizer = sidecar("csi-resizer", &kubeconfig, &socket, &[]);
    let _attacher = sidecar("csi-attacher", &kubeconfig, &socket, &[]);

    // No kubelet here: the Nodes and the CSINodes that the registrar would
    // make, with our topology key (the provisioner's Topology needs them).
    for node in ["node-1", "node-2"] {
        kube.apply(&format!(
            "apiVersion: v1
kind: Node
metadata:
  name: {node}
  labels:
    {key}: {node}
---
apiVersion: storage.k8s.io/v1
kind: CSINode
metadata:
  name: {node}
spec:
  drivers:
  - name: {driver}
    nodeID: {node}
    topologyKeys: [{key}]
",
            key = csi::NODE_TOPOLOGY_KEY,
            driver = csi::PLUGIN_NAME
        ));
    }
    kube.apply(&format!(
        "apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: mayastor-2
provisioner: {driver}
reclaimPolicy: Delete
volumeBindingMode: Immediate
allowVolumeExpansion: true
parameters:
  repl: \"2\"
  protocol: nvmf
  fsType: ext4
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
  namespace: default
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: mayastor-2
  resources:
    requests:
      storage: 32Mi
",
        driver = csi::PLUGIN_NAME
    ));

    // --- Provisioned: PVC Bound, the volume in REST as the class says.
    let started = Instant::now();
    testkit::wait_until("PVC data Bound", Duration::from_secs(90), || {
        jsonpath(&kube, &["pvc", "data", "-n", "default"], "{.status.phase}") == "Bound"
    });
    println!("PVC Bound after {:.1?}", started.elapsed());
    let uid = jsonpath(&kube, &["pvc", "data", "-n", "default"], "{.metadata.uid}");
    let pv = jsonpath(
        &kube,
        &["pvc", "data", "-n", "default"],
        "{.spec.volumeName}",
    );
    assert_eq!(pv, format!("pvc-{uid}"));
    assert_eq!(jsonpath(&kube, &["pv", &pv], "{.status.phase}"), "Bound");
    assert_eq!(
        jsonpath(&kube, &["pv", &pv], "{.spec.csi.volumeHandle}"),
        uid
    );
    let volume = rest.get_volume(&uid).await.unwrap();
    assert_eq!(volume.spec.num_replicas, 2, "{volume:?}");
    assert_eq!(volume.spec.size, 32 * MIB);
    let labels = volume.spec.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("openebs.io/created-by").map(String::as_str),
        Some("csi-controller")
    );
    // The StorageClass parameters are the volume's context.
    assert_eq!(
        labels.get("csi.openebs.io/repl").map(String::as_str),
        Some("2"),
        "{labels:?}"
    );

    // --- A VolumeAttachment (what the attach-detach controller makes for a
    // pod) is published by the attacher to that node, and unpublished when
    // deleted.
    let started = Instant::now();
    kube.apply(&format!(
        "apiVersion: storage.k8s.io/v1
kind: VolumeAttachment
metadata:
  name: data-on-node-1
spec:
  attacher: {driver}
  nodeName: node-1
  source:
    persistentVolumeName: {pv}
",
        driver = csi::PLUGIN_NAME
    ));
    testkit::wait_until("VolumeAttachment attached", Duration::from_secs(60), || {
        jsonpath(
            &kube,
            &["volumeattachment", "data-on-node-1"],
            "{.status.attached}",
        ) == "true"
    });
    let uri = jsonpath(
        &kube,
        &["volumeattachment", "data-on-node-1"],
        "{.status.attachmentMetadata.uri}",
    );
    assert!(uri.starts_with("nvmf://") && uri.ends_with(&uid), "{uri}");
    let target = rest.get_volume(&uid).await.unwrap().spec.target;
    assert_eq!(
        target.map(|t| t.frontend_nodes),
        Some(vec!["node-1".to_owned()])
    );
    println!("attached after {:.1?}", started.elapsed());
    kube.kubectl_ok(&[
        "delete",
        "volumeattachment",
        "data-on-node-1",
        "--wait=false",
    ]);
    testkit::wait_until("VolumeAttachment gone", Duration::from_secs(60), || {
        let out = kube
            .kubectl()
            .args(["get", "volumeattachment", "data-on-node-1"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).contains("NotFound")
    });
    assert_eq!(rest.get_volume(&uid).await.unwrap().spec.target, None);

    // --- Expanding the PVC grows the volume (and the PV).
    let started = Instant::now();
    kube.kubectl_ok(&[
        "patch",
        "pvc",
        "data",
        "-n",
        "default",
        "--type=merge",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"64Mi"}}}}"#,
    ]);
    loop {
        let size = rest.get_volume(&uid).await.unwrap().spec.size;
        if size == 64 * MIB {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "volume still {size} bytes"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    testkit::wait_until("PV at 64Mi", Duration::from_secs(60), || {
        jsonpath(&kube, &["pv", &pv], "{.spec.capacity.storage}") == "64Mi"
    });
    println!("volume grown after {:.1?}", started.elapsed());

    // --- Deleting the PVC deletes the volume and the PV.
    let started = Instant::now();
    kube.kubectl_ok(&["delete", "pvc", "data", "-n", "default", "--wait=false"]);
    loop {
        match rest.get_volume(&uid).await {
            Err(e) if e.kind == ErrorKind::NotFound => break,
            Err(e) => panic!("GET volume: {e}"),
            Ok(_) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "volume still there after the PVC was deleted"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    testkit::wait_until("PV deleted", Duration::from_secs(60), || {
        let out = kube.kubectl().args(["get", "pv", &pv]).output().unwrap();
        String::from_utf8_lossy(&out.stderr).contains("NotFound")
    });
    println!("volume and PV deleted after {:.1?}", started.elapsed());
    assert!(rest.get_volumes(0, None).await.unwrap().entries.is_empty());

    drop(ctl);
    drop(cluster);
    kube.stop();
}
