//! The API unreachable, for real: the poller runs against an address where
//! nothing listens, and the dashboard must show the disconnected state
//! within two poll intervals. Then a real control plane (`mayastor-store`,
//! `agent-core`, one `io-engine`, `api-rest`) is started on that address
//! and the dashboard must recover by itself with the cluster's data; after
//! `api-rest` is killed and restarted it goes through both states again.
//! Addresses: 127.0.41.x only.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::procs::{bin, free_port, wait_port, Proc};
use common::{assert_line, render};
use openapi::models::CreatePoolBody;
use openapi::{CoreApi, RestClient, RestClientOptions};
use tokio::sync::{mpsc, Notify};
use tui::app::Connection;
use tui::poller::spawn_poller;
use tui::{App, Update};

const PREFIX: &str = "127.0.41";
const INTERVAL: Duration = Duration::from_millis(500);

/// Feeds updates to `app` until `done(app)` holds, at most `limit`.
async fn until(
    app: &mut App,
    rx: &mut mpsc::Receiver<Update>,
    limit: Duration,
    what: &str,
    done: impl Fn(&App) -> bool,
) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done(app) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(update)) => app.update(update),
            Ok(None) => panic!("the poller stopped while waiting for {what}"),
            Err(_) => panic!(
                "no {what} within {limit:?}; screen:\n{}",
                render(app, 80, 24).join("\n")
            ),
        }
    }
}

fn disconnected(app: &App) -> bool {
    matches!(app.connection, Connection::Disconnected { .. })
}

fn connected(app: &App) -> bool {
    matches!(app.connection, Connection::Connected { .. })
}

struct ControlPlane {
    _store: Proc,
    _core: Proc,
    _engine: Proc,
    rest: Proc,
    rest_addr: String,
    _dir: tempfile::TempDir,
}

fn control_plane(rest_addr: &str) -> ControlPlane {
    let dir = tempfile::tempdir().unwrap();
    let store_ip = format!("{PREFIX}.1");
    let store_ep = format!("{store_ip}:{}", free_port(&store_ip));
    let store = Proc::spawn(
        "mayastor-store",
        bin("store", "mayastor-store"),
        vec![
            "--listen".into(),
            store_ep.clone(),
            "--data-dir".into(),
            dir.path().join("store").display().to_string(),
        ],
    );
    wait_port(&store_ep, "mayastor-store");

    let core_ip = format!("{PREFIX}.2");
    let core_ep = format!("{core_ip}:{}", free_port(&core_ip));
    let core = Proc::spawn(
        "agent-core",
        bin("agent-core", "agent-core"),
        [
            "--grpc-endpoint",
            &core_ep,
            "--store",
            &store_ep,
            "--heartbeat-timeout",
            "2s",
            "--reconcile-period",
            "1s",
            "--poll-period",
            "500ms",
            "--lease-ttl",
            "3s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    );
    wait_port(&core_ep, "agent-core");

    let engine_ip = format!("{PREFIX}.11");
    let grpc = format!("{engine_ip}:{}", free_port(&engine_ip));
    let nvmf = format!("{engine_ip}:{}", free_port(&engine_ip));
    let engine = Proc::spawn(
        "io-engine-1",
        bin("io-engine", "io-engine"),
        [
            "--grpc-endpoint",
            &grpc,
            "--node-name",
            "node-1",
            "--nvmf-endpoint",
            &nvmf,
            "-R",
            &core_ep,
            "--heartbeat-interval-ms",
            "500",
            "--ps-endpoint",
            &store_ep,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    );
    wait_port(&grpc, "io-engine");

    let rest = Proc::spawn(
        "api-rest",
        bin("api-rest", "api-rest"),
        vec![
            "--core-endpoint".into(),
            format!("http://{core_ep}"),
            "--http".into(),
            rest_addr.into(),
        ],
    );
    wait_port(rest_addr, "api-rest");
    ControlPlane {
        _store: store,
        _core: core,
        _engine: engine,
        rest,
        rest_addr: rest_addr.into(),
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnected_within_two_intervals_then_recovers_with_a_real_api() {
    // Build first, so that building does not count against the intervals.
    for (pkg, b) in [
        ("store", "mayastor-store"),
        ("agent-core", "agent-core"),
        ("io-engine", "io-engine"),
        ("api-rest", "api-rest"),
    ] {
        tokio::task::spawn_blocking(move || bin(pkg, b))
            .await
            .unwrap();
    }

    let rest_ip = format!("{PREFIX}.252");
    let rest_addr = format!("{rest_ip}:{}", free_port(&rest_ip));
    let url = format!("http://{rest_addr}");
    let client = RestClient::new(
        &url,
        RestClientOptions {
            timeout: Duration::from_secs(2),
            ..RestClientOptions::default()
        },
    )
    .unwrap();
    let api: Arc<dyn CoreApi> = Arc::new(client.clone());
    let (tx, mut rx) = mpsc::channel(tui::poller::UPDATES);
    let refresh = Arc::new(Notify::new());
    let mut app = App::new(url.clone());

    // 1. nothing listens: disconnected within two intervals
    let started = Instant::now();
    let poller = spawn_poller(
        &tokio::runtime::Handle::current(),
        api,
        INTERVAL,
        tx,
        refresh,
    );
    until(
        &mut app,
        &mut rx,
        2 * INTERVAL,
        "disconnected state",
        disconnected,
    )
    .await;
    assert!(started.elapsed() <= 2 * INTERVAL);
    let s = render(&app, 80, 24);
    assert_line(&s, &["DISCONNECTED, retrying"]);
    assert_line(
        &s,
        &[
            "API unreachable since",
            "(1 failed polls); no data yet; Unavailable",
        ],
    );
    assert_line(&s, &["API unreachable: Unavailable"]);

    // 2. the real control plane comes up on that address, with a pool
    let mut cp = tokio::task::spawn_blocking({
        let addr = rest_addr.clone();
        move || control_plane(&addr)
    })
    .await
    .unwrap();
    let disk = cp._dir.path().join("pool-1.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(128 << 20)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let created = client
            .put_node_pool(
                "node-1",
                "pool-1",
                CreatePoolBody {
                    disks: vec![format!("aio://{}", disk.display())],
                    labels: None,
                },
            )
            .await;
        match created {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("pool not created yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("cannot create the pool: {e}"),
        }
    }
    until(
        &mut app,
        &mut rx,
        Duration::from_secs(60),
        "recovery with node-1 and pool-1",
        |app| {
            connected(app)
                && app.snapshot.as_ref().is_some_and(|s| {
                    s.node("node-1").is_some() && s.pools.iter().any(|p| p.id == "pool-1")
                })
        },
    )
    .await;
    let s = render(&app, 80, 24);
    assert_line(&s, &["connected, updated"]);
    assert_line(&s, &["node-1", "Online"]);
    assert_line(&s, &["pool-1 Online", "used 0%", "total"]);
    assert_line(&s, &["connected to http://127.0.41.252:"]);
    assert!(!poller.is_finished());

    // 3. api-rest dies: disconnected again, still running; back when it is
    cp.rest.kill9();
    until(
        &mut app,
        &mut rx,
        Duration::from_secs(10),
        "second outage",
        disconnected,
    )
    .await;
    let s = render(&app, 80, 24);
    assert_line(&s, &["DISCONNECTED, retrying"]);
    assert_line(&s, &["(1 failed polls); last data kept; Unavailable"]);
    assert_line(&s, &["pool-1 Online"]);
    cp.rest.start();
    wait_port(&cp.rest_addr, "api-rest");
    until(
        &mut app,
        &mut rx,
        Duration::from_secs(30),
        "second recovery",
        connected,
    )
    .await;
    let reconnects = app
        .events
        .iter()
        .filter(|e| e.text.starts_with("API reachable again"))
        .count();
    assert_eq!(reconnects, 1);
    assert!(!poller.is_finished());
    poller.abort();
}
