//! The PV garbage collector of `csi-controller` against a real Kubernetes
//! API server (kube-local: etcd, kube-apiserver and the controller-manager,
//! whose PV binder sets the phases and removes the PV protection
//! finalizer) and a real 1-node local cluster (loopback 127.0.102.x).
//! Everything is asserted on the REST state of the volumes:
//!
//! - a volume with no PV (and no PVC) is deleted after the grace period,
//!   not before;
//! - a volume with a PV is never touched: a Bound PV, the same PV once
//!   Released (Retain), an Available PV with no claim; nor is a volume the
//!   CSI controller did not create;
//! - a Retain PV deleted by hand frees its volume.
//!
//! Also: a bad `--kube-config-path` or GC period is a one-line error.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use openapi::{CoreApi, ErrorKind};
use testkit::kube_local::KubeLocal;

const MIB: i64 = 1 << 20;
/// `--orphan-vol-gc-period` and `--orphan-vol-gc-grace` of the test.
const PERIOD: Duration = Duration::from_secs(2);
const GRACE: Duration = Duration::from_secs(6);

async fn exists(rest: &openapi::RestClient, id: &str) -> bool {
    match rest.get_volume(id).await {
        Ok(_) => true,
        Err(e) if e.kind == ErrorKind::NotFound => false,
        Err(e) => panic!("GET volume {id}: {e}"),
    }
}

/// Waits until the volume is gone; the last instant it was seen.
async fn wait_gone(rest: &openapi::RestClient, id: &str, within: Duration) -> Instant {
    let start = Instant::now();
    let mut seen = start;
    loop {
        let asked = Instant::now();
        if !exists(rest, id).await {
            return seen;
        }
        seen = asked;
        assert!(
            start.elapsed() < within,
            "volume {id} still exists after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn jsonpath(kube: &KubeLocal, kind: &str, name: &str, path: &str) -> String {
    kube.kubectl_ok(&["get", kind, name, "-o", &format!("jsonpath={path}")])
}

fn wait_pv_phase(kube: &KubeLocal, pv: &str, phase: &str) {
    testkit::wait_until(&format!("PV {pv} {phase}"), Duration::from_secs(60), || {
        jsonpath(kube, "pv", pv, "{.status.phase}") == phase
    });
}

/// A PV of our driver for volume `id` (`claim`: pre-bound to that PVC).
fn pv_yaml(name: &str, id: &str, class: &str, claim: Option<(&str, &str)>) -> String {
    let claim_ref = claim
        .map(|(pvc, uid)| {
            format!("  claimRef:\n    namespace: default\n    name: {pvc}\n    uid: {uid}\n")
        })
        .unwrap_or_default();
    format!(
        "apiVersion: v1
kind: PersistentVolume
metadata:
  name: {name}
spec:
  capacity:
    storage: 16Mi
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: \"{class}\"
{claim_ref}  csi:
    driver: {driver}
    volumeHandle: {id}
    fsType: ext4
",
        driver = csi::PLUGIN_NAME
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pv_garbage_collector_against_a_real_api_server() {
    let (cluster, kube) = Cluster::up_beside_kube("127.0.102", 1, "256MiB");
    let rest = cluster.rest();
    let kubeconfig = kube.kubeconfig().display().to_string();
    let ctl = Controller::start(
        &cluster.rest_url,
        &[
            "--any-pool",
            "--kube-config-path",
            &kubeconfig,
            "--orphan-vol-gc-period",
            "2s",
            "--orphan-vol-gc-grace",
            "6s",
        ],
    );
    let mut c = ctl.controller();

    // A: a PVC (its uid names the volume, as the provisioner does), then
    // the volume, then its Retain PV pre-bound to the claim.
    kube.apply(
        "apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: claim-a
  namespace: default
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: \"\"
  resources:
    requests:
      storage: 16Mi
",
    );
    let uid_a = jsonpath(&kube, "pvc", "claim-a", "{.metadata.uid}");
    let id_a = uid_a.clone();
    // C: an Available PV with no claim (another class, so the binder never
    // gives it to claim-a), made before its volume.
    let id_c = uuid::Uuid::new_v4().to_string();
    kube.apply(&pv_yaml("pv-c", &id_c, "gc-unclaimed", None));
    // B: no PV and no PVC.
    let id_b = uuid::Uuid::new_v4().to_string();

    for id in [&id_a, &id_c] {
        c.create_volume(create_req(&format!("pvc-{id}"), 16 * MIB, &[]))
            .await
            .unwrap();
    }
    let pv_a = format!("pvc-{id_a}");
    kube.apply(&pv_yaml(&pv_a, &id_a, "", Some(("claim-a", &uid_a))));
    c.create_volume(create_req(&format!("pvc-{id_b}"), 16 * MIB, &[]))
        .await
        .unwrap();
    let created_b = Instant::now();
    // D: made through REST, not by the CSI controller, with no PV.
    let id_d = uuid::Uuid::new_v4().to_string();
    rest_volume(&rest, &id_d, 16 << 20, 1).await;
    wait_pv_phase(&kube, &pv_a, "Bound");

    // --- A volume with no PV: deleted after the grace period, not before.
    // (It lived at least from `created_b` to the last time it was seen.)
    let seen_b = wait_gone(&rest, &id_b, PERIOD + GRACE + Duration::from_secs(20)).await;
    let lived = seen_b - created_b;
    println!(
        "volume with no PV: still there {lived:.1?} after its creation, deleted {:.1?} after \
         (grace {GRACE:?}, period {PERIOD:?})",
        created_b.elapsed()
    );
    // A 0.3 s allowance for the polling; without the grace period it would
    // go within one period (2 s).
    assert!(
        lived + Duration::from_millis(300) >= GRACE,
        "the volume with no PV was deleted {lived:?} after its creation, before the grace period"
    );

    // --- Volumes with a PV (Bound, then Released) or not ours: untouched
    // over a whole sweep and grace period.
    kube.kubectl_ok(&["delete", "pvc", "claim-a", "-n", "default", "--wait=false"]);
    wait_pv_phase(&kube, &pv_a, "Released");
    tokio::time::sleep(PERIOD + GRACE + Duration::from_secs(1)).await;
    for (what, id) in [
        ("Released Retain PV", &id_a),
        ("Available PV", &id_c),
        ("volume not made by csi-controller", &id_d),
    ] {
        assert!(exists(&rest, id).await, "{what}: volume {id} was deleted");
    }

    // --- A Retain PV deleted by hand: its volume is freed.
    let deleted = Instant::now();
    kube.kubectl_ok(&["delete", "pv", &pv_a, "--wait=false"]);
    testkit::wait_until("PV A gone", Duration::from_secs(60), || {
        let out = kube.kubectl().args(["get", "pv", &pv_a]).output().unwrap();
        String::from_utf8_lossy(&out.stderr).contains("NotFound")
    });
    let pv_gone = deleted.elapsed();
    wait_gone(&rest, &id_a, Duration::from_secs(30)).await;
    let freed = deleted.elapsed() - pv_gone;
    println!(
        "Retain PV deleted by hand: PV gone after {pv_gone:.1?}, its volume {freed:.1?} later"
    );
    // The watcher, not the orphan sweep (which would wait the grace period).
    assert!(
        freed < GRACE / 2,
        "the volume of the deleted PV went only {freed:?} after the PV"
    );

    // --- The others are still there, and so is C's PV.
    assert!(
        exists(&rest, &id_c).await,
        "volume with an Available PV deleted"
    );
    assert!(
        exists(&rest, &id_d).await,
        "volume not made by csi-controller deleted"
    );
    assert_eq!(
        jsonpath(&kube, "pv", "pv-c", "{.spec.csi.volumeHandle}"),
        id_c
    );

    for id in [&id_c, &id_d] {
        rest.del_volume(id).await.unwrap();
    }
    drop(ctl);
    drop(cluster);
    kube.stop();
}

/// Bad flags: a one-line error naming the flag, nothing started (exit code
/// 2 for what the command line parser refuses, 1 for a kubeconfig that
/// cannot be read).
#[test]
fn bad_gc_flags_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("csi.sock");
    let run = |extra: &[&str], code: i32| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_csi-controller"))
            .args(["--rest-endpoint", "http://127.0.102.250:1"])
            .arg("--csi-socket")
            .arg(&socket)
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(code), "{extra:?}: {stderr}");
        stderr
    };
    let missing = dir.path().join("missing-kubeconfig");
    let err = run(&["--kube-config-path", missing.to_str().unwrap()], 1);
    let err_line = err.lines().last().unwrap_or_default();
    assert!(
        err_line.starts_with("csi-controller: error: --kube-config-path")
            && err_line.contains("missing-kubeconfig"),
        "{err}"
    );
    assert!(!socket.exists(), "nothing is served on a bad kubeconfig");
    let err = run(&["--orphan-vol-gc-period", "0"], 2);
    assert!(
        err.lines()
            .next()
            .unwrap_or_default()
            .contains("--orphan-vol-gc-period"),
        "{err}"
    );
    let err = run(&["--orphan-vol-gc-grace", "soon"], 2);
    assert!(
        err.lines()
            .next()
            .unwrap_or_default()
            .contains("--orphan-vol-gc-grace"),
        "{err}"
    );
}
