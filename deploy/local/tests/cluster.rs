//! The launcher end to end, with real processes on loopback addresses
//! (one `--ip-prefix` per test, 127.0.20 to 127.0.24, so tests run in
//! parallel) and a temporary state directory each.
//!
//! - `up`, `status`, `demo` (volume back Online with 3 healthy replicas),
//!   `down` with every recorded PID gone;
//! - `up` twice (same PIDs), `down` twice, `up` after `down` with the
//!   data written before read back and verified;
//! - `up` with a port already taken: a clear error naming it and nothing
//!   left running;
//! - the etcd store: `up`, `down`, `up` again with the pools back;
//! - `scripts/run.sh`, the README's first command, end to end.
//!
//! A guard runs `down` when a test ends, passing or failing.

#![allow(clippy::unwrap_used)]

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use mayastor_local::{
    data::{VolumePath, HOST_NODE},
    demo::{healthy, DEMO_VOLUME},
    process::ProcRecord,
};
use openapi::{
    client::{RestClient, RestClientOptions},
    models::*,
    CoreApi,
};

/// One cluster's launcher: a state directory and an address prefix.
struct Launcher {
    exe: PathBuf,
    state: tempfile::TempDir,
    prefix: &'static str,
}

impl Launcher {
    fn new(prefix: &'static str) -> Launcher {
        Launcher {
            exe: testkit::local_cluster::launcher(),
            state: tempfile::tempdir().unwrap(),
            prefix,
        }
    }

    fn dir(&self) -> &Path {
        self.state.path()
    }

    fn run(&self, args: &[&str]) -> Output {
        let started = Instant::now();
        let out = Command::new(&self.exe)
            .arg("--state-dir")
            .arg(self.dir())
            .args(args)
            .output()
            .unwrap();
        eprintln!(
            "$ mayastor-local {} ({:.1} s, {})\n{}{}",
            args.join(" "),
            started.elapsed().as_secs_f64(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "mayastor-local {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn up(&self, extra: &[&str]) -> String {
        let mut args = vec!["up", "--ip-prefix", self.prefix];
        args.extend(extra);
        self.ok(&args)
    }

    fn rest_url(&self) -> String {
        format!("http://{}.252:8081", self.prefix)
    }

    fn api(&self) -> RestClient {
        RestClient::new(
            &self.rest_url(),
            RestClientOptions {
                timeout: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .unwrap()
    }

    /// The recorded processes, by name.
    fn pids(&self) -> Vec<(String, ProcRecord)> {
        let mut out: Vec<(String, ProcRecord)> = std::fs::read_dir(self.dir().join("pids"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.strip_suffix(".pid")?.to_owned();
                let rec = ProcRecord::parse(&std::fs::read_to_string(e.path()).ok()?)?;
                Some((name, rec))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        let _ = Command::new(&self.exe)
            .arg("--state-dir")
            .arg(self.dir())
            .arg("down")
            .output();
    }
}

const COMPONENTS: [&str; 9] = [
    "agent-core",
    "api-rest",
    "io-engine-1",
    "io-engine-2",
    "io-engine-3",
    "metrics-exporter-1",
    "metrics-exporter-2",
    "metrics-exporter-3",
    "store",
];

fn names(pids: &[(String, ProcRecord)]) -> Vec<&str> {
    pids.iter().map(|(n, _)| n.as_str()).collect()
}

fn assert_all_gone(pids: &[(String, ProcRecord)]) {
    for (name, rec) in pids {
        assert!(!rec.is_alive(), "{name} (pid {}) still runs", rec.pid);
    }
}

fn assert_nothing_listens(prefix: &str) {
    for addr in [
        format!("{prefix}.250:2379"),
        format!("{prefix}.251:50051"),
        format!("{prefix}.252:8081"),
        format!("{prefix}.1:10124"),
        format!("{prefix}.2:8420"),
    ] {
        let addr = addr.parse().unwrap();
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err(),
            "something still listens on {addr}"
        );
    }
}

async fn eventually_volume(
    api: &RestClient,
    id: &str,
    what: &str,
    check: impl Fn(&Volume) -> bool,
) -> Volume {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let last = match api.get_volume(id).await {
            Ok(v) if check(&v) => return v,
            Ok(v) => format!("{v:?}"),
            Err(e) => e.to_string(),
        };
        assert!(Instant::now() < deadline, "volume {id} not {what}: {last}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_status_demo_down_leaves_no_process() {
    let l = Launcher::new("127.0.20");
    let out = l.up(&[]);
    assert!(
        out.lines()
            .any(|line| line == "REST endpoint: http://127.0.20.252:8081"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(l.dir().join("rest-endpoint")).unwrap(),
        "http://127.0.20.252:8081\n"
    );
    let out = l.ok(&["status"]);
    for name in COMPONENTS {
        let row = out
            .lines()
            .find(|line| line.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} row in:\n{out}"));
        assert!(row.ends_with("running"), "{row}");
    }
    assert!(out.contains("nodes:   3 (3 online)"), "{out}");
    assert!(out.contains("pools:   3 (3 online)"), "{out}");
    assert!(
        out.lines()
            .any(|line| line == "REST endpoint: http://127.0.20.252:8081"),
        "{out}"
    );

    let out = l.ok(&["demo"]);
    assert!(out.contains("volume Degraded"), "{out}");
    assert!(out.contains("re-verified all 64 MiB"), "{out}");
    let api = l.api();
    let v = api.get_volume(DEMO_VOLUME).await.unwrap();
    assert_eq!(v.state.status, VolumeStatus::Online, "{v:?}");
    assert_eq!(v.spec.num_replicas, 3);
    assert_eq!(v.state.replica_topology.len(), 3, "{v:?}");
    for r in v.state.replica_topology.values() {
        assert_eq!(r.state, ReplicaStatus::Online, "{v:?}");
        assert_eq!(r.child_status, Some(ChildState::Online), "{v:?}");
    }
    assert!(healthy(&v));
    let history = api.get_rebuild_history(DEMO_VOLUME).await.unwrap();
    assert!(
        history
            .records
            .iter()
            .any(|r| r.rebuild_job_state == "completed"),
        "{history:?}"
    );
    // The killed engine runs again under a new PID.
    let pids = l.pids();
    assert_eq!(names(&pids), COMPONENTS);
    assert!(pids.iter().all(|(_, r)| r.is_alive()), "{pids:?}");

    l.ok(&["down"]);
    assert_all_gone(&pids);
    assert_nothing_listens("127.0.20");
    assert!(l.pids().is_empty());
    assert!(!l.dir().join("rest-endpoint").exists());
    let status = l.run(&["status"]);
    assert!(!status.status.success());
    let out = String::from_utf8_lossy(&status.stdout);
    for name in COMPONENTS {
        let row: Vec<&str> = out
            .lines()
            .find(|line| line.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} row in:\n{out}"))
            .split_whitespace()
            .collect();
        assert_eq!((row[1], row[3]), ("-", "stopped"), "{out}");
    }
    assert!(out.contains("store  "), "{out}");
    assert!(out.contains("127.0.20.250:2379"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_twice_down_twice_and_data_survives_a_restart() {
    let l = Launcher::new("127.0.21");
    l.up(&["--nodes", "3", "--pool-size", "256MiB"]);
    let first = l.pids();
    assert_eq!(names(&first), COMPONENTS);
    // Again: nothing new is started.
    let out = l.up(&[]);
    assert!(out.contains("every component is already running"), "{out}");
    assert_eq!(l.pids(), first);
    // Flags that contradict the recorded cluster are refused.
    let out = l.run(&["up", "--nodes", "4"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--nodes 3 (not 4)"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(l.pids(), first);

    // Data through a published 3-replica volume.
    let api = l.api();
    let id = "0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3";
    api.put_volume(id, CreateVolumeBody::new(16 << 20, 3))
        .await
        .unwrap();
    let v = api
        .put_volume_target(id, PublishVolumeBody::nvmf(Some("node-2"), Some(HOST_NODE)))
        .await
        .unwrap();
    let uri = v.state.target.unwrap().device_uri;
    let path = VolumePath::connect(&uri).await.unwrap();
    let blocks = path.blocks();
    assert_eq!(blocks, 4096);
    path.write(0..blocks, 7, |_| {}).await.unwrap();
    path.verify(0..blocks, |_| 7, |_| {}).await.unwrap();
    path.disconnect().await;

    l.ok(&["down"]);
    assert_all_gone(&first);
    let out = l.ok(&["down"]);
    assert!(out.contains("nothing was running"), "{out}");
    assert!(l.dir().join("pools/pool-1.img").exists());

    // Back up: the recorded settings, the same pools and the volume with
    // its data.
    let out = l.up(&[]);
    assert!(out.contains("256 MiB"), "{out}");
    let second = l.pids();
    assert_eq!(names(&second), COMPONENTS);
    assert!(second
        .iter()
        .all(|(n, r)| first.iter().all(|(m, s)| n != m || r != s)));
    let pools = api.get_pools().await.unwrap();
    assert_eq!(pools.len(), 3, "{pools:?}");
    for p in &pools {
        assert_eq!(
            p.state.as_ref().unwrap().status,
            PoolStatus::Online,
            "{p:?}"
        );
    }
    let v = eventually_volume(&api, id, "Online with 3 healthy children", |v| {
        v.state.status == VolumeStatus::Online
            && v.state.replica_topology.len() == 3
            && v.state
                .replica_topology
                .values()
                .all(|r| r.child_status == Some(ChildState::Online))
    })
    .await;
    assert_eq!(v.spec.target.as_ref().unwrap().node, "node-2");
    let uri = v.state.target.unwrap().device_uri;
    let path = VolumePath::connect(&uri).await.unwrap();
    path.verify(0..blocks, |_| 7, |_| {}).await.unwrap();
    path.disconnect().await;

    l.ok(&["down", "--wipe"]);
    assert_all_gone(&second);
    assert!(!l.dir().join("pools").exists());
    assert!(!l.dir().join("cluster.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_with_a_port_taken_names_it_and_leaves_nothing_running() {
    let l = Launcher::new("127.0.22");
    let taken = TcpListener::bind("127.0.22.252:8081").unwrap();
    let out = l.run(&["up", "--ip-prefix", "127.0.22"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.0.22.252:8081"), "{err}");
    assert!(err.contains("already in use"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(l.pids().is_empty(), "{:?}", l.pids());
    drop(taken);
    assert_nothing_listens("127.0.22");
    // The failed attempt recorded nothing: other settings may be chosen.
    assert!(!l.dir().join("cluster.json").exists());

    // A port taken by an engine's NVMe/TCP listener is named too.
    let taken = TcpListener::bind("127.0.22.2:8420").unwrap();
    let out = l.run(&["up", "--ip-prefix", "127.0.22", "--nodes", "2"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.0.22.2:8420"), "{err}");
    assert!(l.pids().is_empty());
    drop(taken);
    assert_nothing_listens("127.0.22");

    // A component that dies during start-up (here the core agent, refusing
    // an empty bearer token) after the store started: it is stopped.
    let out = Command::new(&l.exe)
        .arg("--state-dir")
        .arg(l.dir())
        .args(["up", "--ip-prefix", "127.0.22"])
        .env("REST_BEARER_TOKEN", "")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("agent-core exited during start-up"), "{err}");
    assert!(err.contains("bearer token is empty"), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("stopped what this command started: store"),
        "{stdout}"
    );
    assert!(l.pids().is_empty(), "{:?}", l.pids());
    assert_nothing_listens("127.0.22");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_brings_the_pools_back() {
    if !["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .iter()
        .any(|p| Path::new(p).exists())
    {
        panic!("etcd is not installed: run `apt-get install -y etcd-server`");
    }
    let l = Launcher::new("127.0.23");
    l.up(&["--store", "etcd", "--nodes", "2", "--pool-size", "128MiB"]);
    let first = l.pids();
    assert!(l.dir().join("etcd").is_dir());
    l.ok(&["status"]);
    let out = l.run(&["demo"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 3 nodes"), "{err}");
    l.ok(&["down"]);
    assert_all_gone(&first);
    l.up(&[]);
    let pools = l.api().get_pools().await.unwrap();
    assert_eq!(pools.len(), 2, "{pools:?}");
    assert!(pools.iter().all(|p| p
        .state
        .as_ref()
        .is_some_and(|s| s.status == PoolStatus::Online)));
    l.ok(&["down"]);
}

/// The README's first command, as a user runs it (with its own state
/// directory and addresses, and no terminal for the dashboard): the
/// cluster comes up, the demo ends with the volume Online, and the
/// cluster keeps running until `down`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_main_command_brings_up_the_cluster_and_runs_the_demo() {
    let l = Launcher::new("127.0.24");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/run.sh");
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .env("STATE_DIR", l.dir())
        .env("IP_PREFIX", l.prefix)
        .env("NO_TUI", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "$ scripts/run.sh ({:.1} s, {})\n{stdout}{}",
        started.elapsed().as_secs_f64(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
    assert!(
        stdout
            .lines()
            .any(|line| line == "REST endpoint: http://127.0.24.252:8081"),
        "{stdout}"
    );
    assert!(stdout.contains("re-verified all 64 MiB"), "{stdout}");
    for name in COMPONENTS {
        assert!(
            stdout
                .lines()
                .any(|line| line.split_whitespace().next() == Some(name)
                    && line.ends_with("running")),
            "status shows no running {name}:\n{stdout}"
        );
    }
    let v = l.api().get_volume(DEMO_VOLUME).await.unwrap();
    assert_eq!(v.state.status, VolumeStatus::Online, "{v:?}");
    assert!(healthy(&v), "{v:?}");
    let pids = l.pids();
    assert_eq!(names(&pids), COMPONENTS);
    l.ok(&["down"]);
    assert_all_gone(&pids);
    assert_nothing_listens("127.0.24");
}
