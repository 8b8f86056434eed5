//! The kit of the upgrade scenarios: copies of the cluster's binaries
//! that differ only in their version string, component PIDs and
//! start counts from the state directory, the plugin run as a process, and
//! a writer that writes and verifies a checksummed pattern on a published
//! volume through our NVMe/TCP initiator for as long as the upgrade runs,
//! following the volume's target when it moves.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mayastor_local::data::{VolumePath, HOST_NODE};
use openapi::models::*;
use openapi::{CoreApi, RestClient};

use crate::common::{cluster_binary, Cluster};

/// The version the cluster starts on (the workspace's package version).
pub const VERSION_A: &str = env!("CARGO_PKG_VERSION");
/// The version of the second build.
pub const VERSION_B: &str = "0.2.0";

/// The binaries a local cluster's upgrade rolls out.
pub const ROLLED: [&str; 5] = [
    "io-engine",
    "agent-core",
    "api-rest",
    "mayastor-store",
    "metrics-exporter",
];

static STAMPED_B: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The directory of the version-B binaries: copies of the cluster's own
/// binaries (version A) with the version slot rewritten to
/// [`VERSION_B`] (`mayastor_version::stamp`), so the two differ only in
/// their version string and nothing is built a second time.
///
/// The copies live in `target/version-b/bin`, made once per build: under
/// an exclusive lock on `target/version-b/.lock` (the tests of a run are
/// separate processes), and made again only when a source binary changed
/// (its size and modification time are kept in `sources`). A new copy is
/// written beside and renamed into place, so a running copy is never
/// rewritten.
pub fn version_b_dir() -> PathBuf {
    let mut done = STAMPED_B.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(dir) = done.as_ref() {
        return dir.clone();
    }
    let sources: Vec<PathBuf> = ROLLED.iter().map(|n| cluster_binary(n)).collect();
    let target_dir = sources[0]
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("version-b");
    let dir = target_dir.join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(target_dir.join(".lock")).unwrap();
    lock.lock().unwrap();
    let identity: String = sources
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).unwrap();
            let mtime = m
                .modified()
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            format!("{} {} {}\n", p.display(), m.len(), mtime.as_nanos())
        })
        .collect();
    let record = dir.join("sources");
    let fresh = std::fs::read_to_string(&record).is_ok_and(|r| r == identity)
        && ROLLED.iter().all(|n| dir.join(n).exists());
    if !fresh {
        let _ = std::fs::remove_file(&record);
        for (name, source) in ROLLED.iter().zip(&sources) {
            let mut bytes = std::fs::read(source).unwrap();
            mayastor_version::stamp(&mut bytes, VERSION_B)
                .unwrap_or_else(|e| panic!("stamping {}: {e}", source.display()));
            let tmp = dir.join(format!("{name}.tmp"));
            std::fs::write(&tmp, &bytes).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::rename(&tmp, dir.join(name)).unwrap();
        }
        std::fs::write(&record, &identity).unwrap();
    }
    drop(lock);
    for name in ROLLED {
        let v = Command::new(dir.join(name))
            .arg("--version")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&v.stdout).split_whitespace().last(),
            Some(VERSION_B),
            "{name} of version B"
        );
    }
    *done = Some(dir.clone());
    dir
}

/// A directory of links to the version-B binaries, where `io-engine` is
/// replaced by `engine` (a script) when given.
pub fn bin_dir_view(into: &Path, engine: Option<&str>) -> PathBuf {
    let b = version_b_dir();
    let dir = into.join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ROLLED {
        let link = dir.join(name);
        let _ = std::fs::remove_file(&link);
        match (name, engine) {
            ("io-engine", Some(script)) => {
                use std::os::unix::fs::PermissionsExt;
                let tmp = dir.join("io-engine.tmp");
                std::fs::write(&tmp, script).unwrap();
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
                std::fs::rename(&tmp, &link).unwrap();
            }
            _ => std::os::unix::fs::symlink(b.join(name), &link).unwrap(),
        }
    }
    dir
}

/// PID of every component, from `pids/<name>.pid`.
pub fn pids(cluster: &Cluster) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(cluster.state_dir.join("pids")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(name) = name.strip_suffix(".pid") {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            let pid = text.split_whitespace().next().unwrap().parse().unwrap();
            out.insert(name.to_string(), pid);
        }
    }
    out
}

/// How many times the launcher started each component (the start lines
/// it appends to `logs/<name>.log`).
pub fn starts(cluster: &Cluster) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(cluster.state_dir.join("logs")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(name) = name.strip_suffix(".log") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let n = text
                .lines()
                .filter(|l| l.starts_with("==== mayastor-local: starting"))
                .count();
            out.insert(name.to_string(), n);
        }
    }
    out
}

/// The plugin as a command with the cluster's environment.
pub fn plugin_command(cluster: &Cluster, args: &[&str]) -> Command {
    let home = cluster.data_home.parent().unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_kubectl-mayastor"));
    c.args(args)
        .env("XDG_DATA_HOME", &cluster.data_home)
        .env("HOME", home)
        .env("KUBECONFIG", home.join("no-kubeconfig"))
        .env_remove("RUST_BACKTRACE");
    c
}

pub fn plugin(cluster: &Cluster, args: &[&str]) -> Output {
    plugin_command(cluster, args).output().unwrap()
}

pub fn text(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The upgrade record, parsed from `get upgrade-status -o json`.
pub fn status(cluster: &Cluster) -> UpgradeStatus {
    let out = plugin(cluster, &["get", "upgrade-status", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Creates a 3-replica volume of `size` bytes published on `node` to the
/// writer's host.
pub fn published_volume(cluster: &Cluster, id: &str, size: u64, node: &str) {
    let client = cluster.client();
    cluster.block_on(async {
        client
            .put_volume(id, CreateVolumeBody::new(size, 3))
            .await
            .unwrap();
        client
            .put_volume_target(id, PublishVolumeBody::nvmf(Some(node), Some(HOST_NODE)))
            .await
            .unwrap();
    });
}

/// What the writer saw.
#[derive(Debug, Default, Clone)]
pub struct WriterReport {
    /// Full passes written and read back whole.
    pub passes: u64,
    /// Chunk writes acknowledged.
    pub writes: u64,
    /// I/Os that failed on a path and were retried on the volume's
    /// current target (as a multipath host does).
    pub failovers: u64,
}

/// A writer running on its own runtime.
pub struct Writer {
    stop: Arc<AtomicBool>,
    runtime: tokio::runtime::Runtime,
    task: tokio::task::JoinHandle<Result<WriterReport, String>>,
}

impl Writer {
    pub fn start(rest: &str, volume: &str) -> Writer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let rest = RestClient::new(rest, Default::default()).unwrap();
        let task = runtime.spawn(write_and_verify(rest, volume.to_string(), stop.clone()));
        Writer {
            stop,
            runtime,
            task,
        }
    }

    /// Finishes the pass at hand (written and verified) and reports.
    pub fn stop(self) -> Result<WriterReport, String> {
        self.stop.store(true, Ordering::SeqCst);
        self.runtime.block_on(self.task).unwrap()
    }
}

/// Blocks per write.
const CHUNK_BLOCKS: u64 = 32;
/// How long an I/O may keep failing while the target moves.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(90);

async fn connect(rest: &RestClient, volume: &str, deadline: Instant) -> Result<VolumePath, String> {
    let mut last = String::new();
    while Instant::now() < deadline {
        match rest.get_volume(volume).await {
            Ok(v) => {
                if let Some(uri) = v
                    .state
                    .target
                    .as_ref()
                    .map(|t| t.device_uri.clone())
                    .filter(|u| !u.is_empty())
                {
                    match VolumePath::connect(&uri).await {
                        Ok(p) => return Ok(p),
                        Err(e) => last = format!("{e:#}"),
                    }
                } else {
                    last = "no target".into();
                }
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("cannot reach the volume's target: {last}"))
}

/// Writes generation after generation over the whole volume in chunks,
/// recording the generation of every acknowledged block, and reads the
/// whole volume back after each pass; an I/O error switches to the
/// volume's current target and retries (a failover); a block read back
/// wrong, or a path that cannot be found again, ends it with an error.
async fn write_and_verify(
    rest: RestClient,
    volume: String,
    stop: Arc<AtomicBool>,
) -> Result<WriterReport, String> {
    let mut report = WriterReport::default();
    let mut path = connect(&rest, &volume, Instant::now() + FAILOVER_TIMEOUT).await?;
    let blocks = path.blocks();
    let mut acked = vec![0u64; blocks as usize];
    let mut generation = 0;
    loop {
        generation += 1;
        let mut start = 0;
        while start < blocks {
            let end = (start + CHUNK_BLOCKS).min(blocks);
            let deadline = Instant::now() + FAILOVER_TIMEOUT;
            loop {
                match path.write(start..end, generation, |_| {}).await {
                    Ok(()) => break,
                    Err(_) => {
                        report.failovers += 1;
                        path = connect(&rest, &volume, deadline).await?;
                    }
                }
            }
            for b in start..end {
                acked[b as usize] = generation;
            }
            report.writes += 1;
            start = end;
        }
        let deadline = Instant::now() + FAILOVER_TIMEOUT;
        loop {
            match path.verify(0..blocks, |b| acked[b as usize], |_| {}).await {
                Ok(()) => break,
                Err(e) if format!("{e:#}").contains("read back wrong") => {
                    return Err(format!("pass {generation}: {e:#}"));
                }
                Err(_) => {
                    report.failovers += 1;
                    path = connect(&rest, &volume, deadline).await?;
                }
            }
        }
        report.passes += 1;
        if stop.load(Ordering::SeqCst) {
            path.disconnect().await;
            return Ok(report);
        }
    }
}

/// Every node's engine version and the control plane's versions.
pub fn versions(cluster: &Cluster) -> (Versions, BTreeMap<String, String>) {
    let client = cluster.client();
    cluster.block_on(async {
        let v = client.get_versions().await.unwrap();
        let nodes = client
            .get_nodes()
            .await
            .unwrap()
            .into_iter()
            .map(|n| (n.id, n.state.map(|s| s.version).unwrap_or_default()))
            .collect();
        (v, nodes)
    })
}
