//! Test kit of the store tests: the three backends the suite runs against
//! (a real etcd process, the embedded store in process, the embedded store
//! served over gRPC), and launchers for real processes on 127.0.0.x with
//! free ports, stopped by PID.

#![allow(dead_code, clippy::unwrap_used)]

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use store::{EmbeddedOptions, EmbeddedStore, EtcdStore, SharedStore};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// Timeout of every client call in the tests.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A store under test; `client()` gives another client of the same store
/// (a new connection where there is one).
#[async_trait]
pub trait Backend: Send + Sync {
    async fn client(&self) -> SharedStore;
}

/// A loopback address 127.0.0.x (x random in 2..=254) and a port free on
/// it right now.
pub fn free_address() -> SocketAddr {
    let x = 2 + rand::random::<u8>() % 253;
    free_port_on(Ipv4Addr::new(127, 0, 0, x))
}

pub fn free_port_on(ip: Ipv4Addr) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).expect("bind a free port");
    listener.local_addr().expect("bound address")
}

/// Connects, retrying until the server answers or `patience` runs out.
pub async fn connect_retrying(endpoint: &str, patience: Duration) -> EtcdStore {
    let started = Instant::now();
    loop {
        match EtcdStore::connect(&[endpoint.to_string()], CALL_TIMEOUT).await {
            Ok(store) => return store,
            Err(e) if started.elapsed() < patience => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot connect to {endpoint}: {e}"),
        }
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A real etcd (Debian's `etcd-server`) on 127.0.0.x with free ports and
/// its own data directory; killed by PID when dropped.
pub struct EtcdProcess {
    child: Child,
    pub endpoint: String,
    dir: TempDir,
}

impl EtcdProcess {
    pub async fn start() -> Self {
        let etcd = find_in_path("etcd").unwrap_or_else(|| {
            panic!(
                "etcd is not installed; the store tests run against a real etcd: \
                 install it with `apt-get install -y etcd-server`"
            )
        });
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("etcd.log");
        let client = free_address();
        let ip = match client.ip() {
            std::net::IpAddr::V4(ip) => ip,
            std::net::IpAddr::V6(_) => Ipv4Addr::LOCALHOST,
        };
        let peer = free_port_on(ip);
        let client_url = format!("http://{client}");
        let peer_url = format!("http://{peer}");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(&etcd)
            .args(["--name", "store-test"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("store-test={peer_url}")])
            .args(["--initial-cluster-state", "new"])
            .args(["--heartbeat-interval", "25", "--election-timeout", "250"])
            .args([
                "--logger",
                "zap",
                "--log-outputs",
                "stderr",
                "--log-level",
                "warn",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", etcd.display()));
        let mut process = EtcdProcess {
            child,
            endpoint: client.to_string(),
            dir,
        };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("etcd exited ({status}) at start-up:\n{}", tail(&log_path));
            }
            let endpoints = [process.endpoint.clone()];
            let attempt = EtcdStore::connect(&endpoints, Duration::from_millis(500)).await;
            if attempt.is_ok() {
                return process;
            }
            if started.elapsed() > Duration::from_secs(20) {
                panic!("etcd did not answer within 20 s:\n{}", tail(&log_path));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct EtcdBackend {
    pub etcd: EtcdProcess,
}

impl EtcdBackend {
    pub async fn start() -> Self {
        EtcdBackend {
            etcd: EtcdProcess::start().await,
        }
    }
}

#[async_trait]
impl Backend for EtcdBackend {
    async fn client(&self) -> SharedStore {
        Arc::new(connect_retrying(&self.etcd.endpoint, CALL_TIMEOUT).await)
    }
}

/// The embedded store in this process.
pub struct EmbeddedBackend {
    pub store: EmbeddedStore,
    pub dir: TempDir,
}

impl EmbeddedBackend {
    pub fn open() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedOptions {
            // Small, so the suite also exercises snapshots.
            snapshot_threshold_bytes: 16 << 10,
            ..EmbeddedOptions::default()
        };
        EmbeddedBackend {
            store: EmbeddedStore::open_with(dir.path(), options).unwrap(),
            dir,
        }
    }
}

#[async_trait]
impl Backend for EmbeddedBackend {
    async fn client(&self) -> SharedStore {
        Arc::new(self.store.clone())
    }
}

/// The embedded store served by `serve_embedded` in this process, reached
/// through `EtcdStore` over gRPC.
pub struct ServedBackend {
    pub endpoint: String,
    shutdown: CancellationToken,
    embedded: EmbeddedBackend,
}

impl ServedBackend {
    pub async fn start() -> Self {
        let embedded = EmbeddedBackend::open();
        let listener = tokio::net::TcpListener::bind(free_address()).await.unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        let shutdown = CancellationToken::new();
        let store = embedded.store.clone();
        let stop = shutdown.clone().cancelled_owned();
        tokio::spawn(async move {
            if let Err(e) = store::serve_embedded(store, listener, stop).await {
                eprintln!("serve_embedded failed: {e}");
            }
        });
        ServedBackend {
            endpoint,
            shutdown,
            embedded,
        }
    }
}

impl Drop for ServedBackend {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[async_trait]
impl Backend for ServedBackend {
    async fn client(&self) -> SharedStore {
        Arc::new(connect_retrying(&self.endpoint, CALL_TIMEOUT).await)
    }
}

/// A `mayastor-store` process (this crate's binary) on 127.0.0.x.
pub struct StoreProcess {
    pub child: Child,
    pub endpoint: String,
    pub log_path: PathBuf,
}

impl StoreProcess {
    pub async fn start(data_dir: &Path, log_path: &Path, extra: &[&str]) -> Self {
        let address = free_address();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mayastor-store"))
            .arg("--listen")
            .arg(address.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start mayastor-store");
        let mut process = StoreProcess {
            child,
            endpoint: address.to_string(),
            log_path: log_path.to_path_buf(),
        };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!(
                    "mayastor-store exited ({status}) at start-up:\n{}",
                    tail(log_path)
                );
            }
            let endpoints = [process.endpoint.clone()];
            let attempt = EtcdStore::connect(&endpoints, Duration::from_millis(500)).await;
            if attempt.is_ok() {
                return process;
            }
            if started.elapsed() > Duration::from_secs(20) {
                panic!(
                    "mayastor-store did not answer within 20 s:\n{}",
                    tail(log_path)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL by PID, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log_path)
    }
}

impl Drop for StoreProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
