//! Test kit of the store tests: the three backends the suite runs against
//! (a real etcd process, the embedded store in process, the embedded store
//! served over gRPC), and real processes (etcd, `mayastor-store`) on
//! 127.0.0.x with free ports, run by the workspace's process test kit and
//! stopped by PID.

#![allow(dead_code, clippy::unwrap_used)]

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use store::{EmbeddedOptions, EmbeddedStore, EtcdStore, SharedStore};
use tempfile::TempDir;
use testkit::Proc;
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
    testkit::free_port_on(Ipv4Addr::new(127, 0, 0, x))
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

/// A real etcd (Debian's `etcd-server`, through the test kit) on
/// 127.0.0.x with free ports and its own data directory; killed by PID when
/// dropped.
pub struct EtcdProcess {
    pub proc: Proc,
    pub endpoint: String,
    _dir: TempDir,
}

impl EtcdProcess {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ip = free_address().ip().to_string();
        let (proc, endpoint) = testkit::etcd::start_with_args(
            &ip,
            dir.path().join("data"),
            &[
                "--heartbeat-interval",
                "25",
                "--election-timeout",
                "250",
                "--log-level",
                "warn",
            ],
        );
        let mut process = EtcdProcess {
            proc,
            endpoint,
            _dir: dir,
        };
        wait_serving(&mut process.proc, &process.endpoint, "etcd").await;
        process
    }
}

/// Waits until `proc` answers store calls on `endpoint` (20 s at most).
async fn wait_serving(proc: &mut Proc, endpoint: &str, what: &str) {
    let started = Instant::now();
    loop {
        assert!(proc.is_running(), "{what} exited at start-up");
        let endpoints = [endpoint.to_owned()];
        if EtcdStore::connect(&endpoints, Duration::from_millis(500))
            .await
            .is_ok()
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} did not answer within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
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
    pub proc: Proc,
    pub endpoint: String,
}

impl StoreProcess {
    pub async fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let address = free_address();
        let args = [
            "--listen".to_owned(),
            address.to_string(),
            "--data-dir".to_owned(),
            data_dir.display().to_string(),
        ]
        .into_iter()
        .chain(extra.iter().map(|a| (*a).to_owned()))
        .collect();
        let mut proc = Proc::spawn_env(
            "mayastor-store",
            PathBuf::from(env!("CARGO_BIN_EXE_mayastor-store")),
            args,
            &[("RUST_LOG", Some("info"))],
        );
        let endpoint = address.to_string();
        wait_serving(&mut proc, &endpoint, "mayastor-store").await;
        StoreProcess { proc, endpoint }
    }

    /// SIGKILL by PID, and reap.
    pub fn kill(&mut self) {
        self.proc.kill9();
    }

    /// The last 30 lines of its log.
    pub fn log_tail(&self) -> String {
        let text = self.proc.logs();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}
