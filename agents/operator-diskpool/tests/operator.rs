//! The DiskPool operator alone against a real Kubernetes API server
//! (kube-local, API server only, own state directory) and a real local
//! cluster (`mayastor-local`, one node on 127.0.130.x): create (status and
//! figures equal to the REST pool's, labels, finalizer, events), a bad disk
//! and an unknown node (events, status, attempts counted from the
//! operator's log: the backoff schedule, no hot loop), delete with a
//! replica present (stays Terminating with the event naming the volume,
//! goes once the volume is deleted), and the operator SIGKILLed mid-create
//! (the engine paused so the create is in flight) converging after a
//! restart, then its status following the engine's SIGKILL (Unknown) and
//! restart (Online) with an event each; a pool the operator did not create
//! is adopted and left in place when its DiskPool goes. One cluster and one API server for
//! the whole scenario.

#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use openapi::{models::*, CoreApi, ErrorKind, RestClient, RestClientOptions};
use serde_json::Value;
use testkit::{
    kube_local::{KubeLocal, StartOptions},
    wait_until, LocalCluster, Proc,
};

const PREFIX: &str = "127.0.130";
const NS: &str = "mayastor";
const NODE: &str = "node-1";
const FINALIZER: &str = "openebs.io/diskpool-protection";
const CRD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/helm/mayastor/crds/diskpool.yaml"
);
/// How long the failing DiskPools are watched for their attempts.
const FAILURE_WINDOW: Duration = Duration::from_secs(30);

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A DiskPool as JSON, or None when it does not exist.
fn diskpool(kube: &KubeLocal, name: &str) -> Option<Value> {
    let out = kube
        .kubectl()
        .args(["-n", NS, "get", "diskpool", name, "-o", "json"])
        .output()
        .unwrap();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("NotFound"), "kubectl get {name}: {stderr}");
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn apply_diskpool(kube: &KubeLocal, name: &str, node: &str, disk: &str, labels: &[(&str, &str)]) {
    let labelled: BTreeMap<&str, &str> = labels.iter().copied().collect();
    let dp = serde_json::json!({
        "apiVersion": "openebs.io/v1beta2",
        "kind": "DiskPool",
        "metadata": { "name": name, "namespace": NS },
        "spec": { "node": node, "disks": [disk], "topology": { "labelled": labelled } },
    });
    kube.apply(&dp.to_string());
}

/// (reason, note, count) of the events about DiskPool `name`; the count
/// is the series' (the recorder folds repeats into one event).
fn events(kube: &KubeLocal, name: &str) -> Vec<(String, String, u64)> {
    let out = kube.kubectl_ok(&["-n", NS, "get", "events.v1.events.k8s.io", "-o", "json"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["regarding"]["name"] == name && e["regarding"]["kind"] == "DiskPool")
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_owned(),
                e["note"].as_str().unwrap_or_default().to_owned(),
                e["series"]["count"].as_u64().unwrap_or(1),
            )
        })
        .collect()
}

fn event_count(kube: &KubeLocal, name: &str, reason: &str) -> u64 {
    events(kube, name)
        .iter()
        .filter(|(r, ..)| r == reason)
        .map(|(.., n)| n)
        .sum()
}

fn note(kube: &KubeLocal, name: &str, reason: &str) -> String {
    events(kube, name)
        .into_iter()
        .find(|e| e.0 == reason)
        .unwrap_or_else(|| panic!("no {reason} event about {name}"))
        .1
}

fn status(dp: &Value, field: &str) -> Value {
    dp["status"][field].clone()
}

fn wait_created_online(kube: &KubeLocal, name: &str, secs: u64) -> Value {
    let mut last = None;
    wait_until(
        &format!("DiskPool {name} Created/Online"),
        Duration::from_secs(secs),
        || {
            last = diskpool(kube, name);
            last.as_ref().is_some_and(|dp| {
                status(dp, "cr_state") == "Created" && status(dp, "pool_status") == "Online"
            })
        },
    );
    last.unwrap()
}

fn not_found(result: Result<Pool, openapi::RestError>) -> bool {
    matches!(result, Err(e) if e.kind == ErrorKind::NotFound)
}

fn operator(kube: &KubeLocal, rest: &str) -> Proc {
    let bin = testkit::bin("operator-diskpool", "operator-diskpool");
    let mut args: Vec<String> = [
        "--endpoint",
        rest,
        "--namespace",
        NS,
        "--interval",
        "3s",
        "--request-timeout",
        "30s",
        "--kube-config-path",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(kube.kubeconfig().display().to_string());
    Proc::spawn("operator-diskpool", bin, args)
}

/// When the operator attempted (and failed) to reconcile `name`, from its
/// log's "reconcile failed" lines.
fn failed_attempts(op: &Proc, name: &str) -> Vec<SystemTime> {
    op.log_lines("reconcile failed")
        .into_iter()
        .filter(|(_, line)| line.contains(&format!("pool={name} ")))
        .map(|(at, _)| at)
        .collect()
}

/// The attempts within the window follow the backoff (5 s, then 10 s,
/// then 20 s...): a few, each gap at least its step of the schedule (less
/// a little for timer slack).
fn assert_backoff(name: &str, attempts: &[SystemTime]) {
    let gaps: Vec<Duration> = attempts
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).unwrap_or_default())
        .collect();
    eprintln!(
        "{name}: {} failed attempts in {FAILURE_WINDOW:?}, gaps {gaps:.1?}",
        attempts.len()
    );
    assert!(
        (2..=4).contains(&attempts.len()),
        "{name}: {} attempts in {FAILURE_WINDOW:?} (gaps {gaps:?})",
        attempts.len()
    );
    for (i, gap) in gaps.iter().enumerate() {
        let step = Duration::from_secs(5 << i);
        assert!(
            *gap >= step.mul_f64(0.9),
            "{name}: gap {i} is {gap:?}, the backoff says {step:?}: {gaps:?}"
        );
    }
}

fn disk_file(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(64 << 20).unwrap();
    format!("aio://{}", path.display())
}

#[test]
fn operator_against_kube_local_and_a_local_cluster() {
    let started = Instant::now();
    let disks = tempfile::tempdir().unwrap();
    let kube_state = tempfile::tempdir().unwrap();
    let kube = KubeLocal::start(&kube_state.path().join("kube"), &StartOptions::default());
    kube.kubectl_ok(&["create", "namespace", NS]);
    kube.kubectl_ok(&["apply", "-f", CRD]);
    kube.kubectl_ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=60s",
        "crd/diskpools.openebs.io",
    ]);
    let cluster = LocalCluster::up(PREFIX, 1, &["--pool-size", "64MiB"]);
    let rest = RestClient::new(&cluster.rest_url, RestClientOptions::default()).unwrap();
    let mut op = operator(&kube, &cluster.rest_url);
    eprintln!("set up in {:.1?}", started.elapsed());

    // --- create: Created/Online, figures equal to REST's, labels on the
    // pool; the failing ones start their clock alongside.
    let file_disk = disk_file(disks.path(), "file-pool.img");
    apply_diskpool(&kube, "dp-file", NODE, &file_disk, &[("zone", "a")]);
    let bad_since = Instant::now();
    let missing_disk = "aio:///nonexistent/dir/disk.img";
    apply_diskpool(&kube, "dp-bad", NODE, missing_disk, &[]);
    let nonode_disk = disk_file(disks.path(), "x.img");
    apply_diskpool(&kube, "dp-nonode", "node-9", &nonode_disk, &[]);

    let dp = wait_created_online(&kube, "dp-file", 60);
    let pool = block_on(rest.get_pool("dp-file")).unwrap();
    let state = pool.state.clone().unwrap();
    assert!(state.capacity > 0);
    assert_eq!(status(&dp, "capacity"), state.capacity);
    assert_eq!(status(&dp, "used"), state.used);
    assert_eq!(status(&dp, "available"), state.capacity - state.used);
    assert_eq!(state.disks, std::slice::from_ref(&file_disk));
    let labels = pool.spec.unwrap().labels;
    assert_eq!(labels["openebs.io/created-by"], "operator-diskpool");
    assert_eq!(labels["zone"], "a");
    assert_eq!(labels.len(), 2, "{labels:?}");
    assert_eq!(dp["metadata"]["finalizers"], serde_json::json!([FINALIZER]));
    let reasons: Vec<String> = events(&kube, "dp-file").into_iter().map(|e| e.0).collect();
    assert!(reasons.contains(&"Creating".to_owned()), "{reasons:?}");
    assert!(reasons.contains(&"Created".to_owned()), "{reasons:?}");
    // The printer columns show the figures.
    let table = kube.kubectl_ok(&["-n", NS, "get", "dsp", "dp-file"]);
    eprint!("{table}");
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..4], ["dp-file", NODE, "Created", "Online"], "{table}");
    assert_eq!(row[4], state.capacity.to_string(), "{table}");

    // --- a replica on it (placed by the topology label).
    let volume = "b9f4c6a0-3c1e-4f43-9a51-0d3e8f7a1c22";
    block_on(rest.put_volume(
        volume,
        CreateVolumeBody {
            size: 16 << 20,
            replicas: 1,
            thin: false,
            policy: VolumePolicy::default(),
            topology: Some(Topology {
                node_topology: None,
                pool_topology: Some(LabelledTopology {
                    inclusion: [("zone".to_owned(), "a".to_owned())].into(),
                    exclusion: BTreeMap::new(),
                }),
            }),
            labels: None,
            affinity_group: None,
        },
    ))
    .unwrap();
    let replicas = block_on(rest.get_replicas()).unwrap();
    assert!(
        replicas.iter().any(|r| r.pool == "dp-file"),
        "replica placed on dp-file: {replicas:?}"
    );
    // The status follows the pool's usage on the next resync.
    wait_until("used figure updated", Duration::from_secs(20), || {
        let used = block_on(rest.get_pool("dp-file"))
            .unwrap()
            .state
            .unwrap()
            .used;
        used > 0
            && diskpool(&kube, "dp-file").is_some_and(|dp| {
                status(&dp, "used") == used && status(&dp, "available") == state.capacity - used
            })
    });

    // --- delete while it holds the replica: stays Terminating, says why.
    kube.kubectl_ok(&["-n", NS, "delete", "diskpool", "dp-file", "--wait=false"]);
    wait_until("PoolInUse event", Duration::from_secs(30), || {
        events(&kube, "dp-file")
            .iter()
            .any(|(r, note, _)| r == "PoolInUse" && note.contains(volume))
    });
    std::thread::sleep(Duration::from_secs(4));
    let dp = diskpool(&kube, "dp-file").expect("kept while the replica exists");
    assert_eq!(status(&dp, "cr_state"), "Terminating");
    assert_eq!(dp["metadata"]["finalizers"], serde_json::json!([FINALIZER]));
    assert!(block_on(rest.get_pool("dp-file")).is_ok());
    eprintln!("dp-file: {}", note(&kube, "dp-file", "PoolInUse"));

    // --- the failures: events and status, the attempts follow the backoff.
    std::thread::sleep(FAILURE_WINDOW.saturating_sub(bad_since.elapsed()));
    let window_end = SystemTime::now();
    for (name, reason, what) in [
        ("dp-bad", "CreateFailed", missing_disk),
        ("dp-nonode", "NodeNotFound", "node-9"),
    ] {
        let attempts = failed_attempts(&op, name);
        let in_window: Vec<SystemTime> = attempts
            .iter()
            .copied()
            .filter(|at| *at <= window_end)
            .collect();
        assert_backoff(name, &in_window);
        // The event of an attempt is published before its log line: read
        // after the log, the count may be one ahead.
        let events = event_count(&kube, name, reason) as usize;
        assert!(
            (attempts.len()..=attempts.len() + 1).contains(&events),
            "{name}: {events} {reason} events for {} attempts",
            attempts.len()
        );
        let note = note(&kube, name, reason);
        eprintln!("{name}: {reason}: {note}");
        assert!(note.contains(what), "{note}");
        let dp = diskpool(&kube, name).unwrap();
        assert_eq!(status(&dp, "cr_state"), "Creating", "{name}");
        assert!(not_found(block_on(rest.get_pool(name))), "{name}");
    }

    // --- the volume goes, then the pool and the DiskPool.
    block_on(rest.del_volume(volume)).unwrap();
    wait_until("dp-file gone", Duration::from_secs(30), || {
        diskpool(&kube, "dp-file").is_none()
    });
    assert!(not_found(block_on(rest.get_pool("dp-file"))));
    assert_eq!(event_count(&kube, "dp-file", "Deleted"), 1);
    // Failed ones go at once: there is no pool to delete.
    kube.kubectl_ok(&[
        "-n",
        NS,
        "delete",
        "diskpool",
        "dp-bad",
        "dp-nonode",
        "--timeout=30s",
    ]);

    // --- SIGKILL mid-create: the engine is paused so the create is in
    // flight (the pool's spec is Creating) when the operator dies.
    let engine = cluster.engine_pid(1).expect("engine 1 runs");
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &engine.to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {sig} {engine}");
    };
    signal("-STOP");
    let crash_disk = disk_file(disks.path(), "crash-pool.img");
    apply_diskpool(&kube, "dp-crash", NODE, &crash_disk, &[]);
    let mut in_flight = false;
    let t = Instant::now();
    while !in_flight && t.elapsed() < Duration::from_secs(20) {
        in_flight = matches!(
            block_on(rest.get_pool("dp-crash")),
            Ok(Pool {
                spec: Some(PoolSpec {
                    status: SpecStatus::Creating,
                    ..
                }),
                ..
            })
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    op.kill9();
    signal("-CONT");
    assert!(in_flight, "the create was never in flight");
    let dp = diskpool(&kube, "dp-crash").unwrap();
    assert_eq!(status(&dp, "cr_state"), "Creating");
    op.start();
    let dp = wait_created_online(&kube, "dp-crash", 60);
    let pools = block_on(rest.get_pools()).unwrap();
    let holders: Vec<&str> = pools
        .iter()
        .filter(|p| {
            p.spec
                .as_ref()
                .is_some_and(|s| s.disks.contains(&crash_disk))
                || p.state
                    .as_ref()
                    .is_some_and(|s| s.disks.contains(&crash_disk))
        })
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(holders, ["dp-crash"], "one pool on the disk");
    let pool = block_on(rest.get_pool("dp-crash")).unwrap();
    let state = pool.state.unwrap();
    assert_eq!(status(&dp, "capacity"), state.capacity);
    assert_eq!(status(&dp, "used"), state.used);
    assert_eq!(
        pool.spec.unwrap().labels["openebs.io/created-by"],
        "operator-diskpool"
    );
    assert_eq!(dp["metadata"]["finalizers"], serde_json::json!([FINALIZER]));

    // --- the status is kept current: the engine SIGKILLed, its node
    // stops reporting the pool (Unknown, a warning event); restarted, the
    // pool is imported again (Online, an event).
    assert!(cluster.kill_engine(1), "engine 1 killed");
    let t = Instant::now();
    wait_until("dp-crash Unknown", Duration::from_secs(30), || {
        diskpool(&kube, "dp-crash").is_some_and(|dp| status(&dp, "pool_status") == "Unknown")
    });
    eprintln!(
        "dp-crash Unknown {:.1?} after the engine's SIGKILL",
        t.elapsed()
    );
    let restarted = cluster.run(&["restart", "io-engine-1"]);
    assert!(
        restarted.status.success(),
        "restart io-engine-1: {}",
        String::from_utf8_lossy(&restarted.stderr)
    );
    let t = Instant::now();
    wait_created_online(&kube, "dp-crash", 60);
    eprintln!(
        "dp-crash Online {:.1?} after the engine's restart",
        t.elapsed()
    );
    let changes: Vec<String> = events(&kube, "dp-crash")
        .into_iter()
        .filter(|e| e.0 == "PoolStatusChanged")
        .map(|e| e.1)
        .collect();
    assert!(
        changes
            .iter()
            .any(|n| n.contains("is Unknown (was Online)")),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|n| n.contains("is Online (was Unknown)")),
        "{changes:?}"
    );

    // --- a pool the operator did not create (the cluster's own pool-1):
    // adopted by a DiskPool of its name, node and disk, and left in place
    // when that DiskPool is deleted.
    let own = block_on(rest.get_pool("pool-1")).unwrap().spec.unwrap();
    assert!(!own.labels.contains_key("openebs.io/created-by"));
    apply_diskpool(&kube, "pool-1", NODE, &own.disks[0], &[]);
    wait_created_online(&kube, "pool-1", 30);
    kube.kubectl_ok(&["-n", NS, "delete", "diskpool", "pool-1", "--timeout=30s"]);
    assert!(note(&kube, "pool-1", "Released").contains("not created by the operator"));
    assert!(
        block_on(rest.get_pool("pool-1")).is_ok(),
        "pool-1 left in place"
    );

    // Deleting it without replicas removes the pool.
    kube.kubectl_ok(&["-n", NS, "delete", "diskpool", "dp-crash", "--timeout=30s"]);
    assert!(not_found(block_on(rest.get_pool("dp-crash"))));
    assert!(op.is_running(), "the operator is still up");
    assert_eq!(op.terminate(), Some(0), "SIGTERM stops it cleanly");
    drop(cluster);
    kube.stop();
    eprintln!("scenario done in {:.1?}", started.elapsed());
}
