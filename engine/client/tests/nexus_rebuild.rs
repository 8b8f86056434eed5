//! `nexus` and `rebuild` commands of the real binary against a fake engine
//! that serves `NexusRpc` and `RebuildRpc` on 127.0.0.1: the requests that
//! reach the wire and what the commands print.

#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    process::{Command, Output},
    sync::{Arc, Mutex},
};

use io_engine_api::v1::{
    self,
    nexus_rpc_server::{NexusRpc, NexusRpcServer},
    rebuild_rpc_server::{RebuildRpc, RebuildRpcServer},
};
use tonic::{Request, Response, Status};

const NEXUS: &str = "5e6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b";
const VOLUME: &str = "0b1a4b8e-3f5d-4a57-9d8e-1c2b3a4d5e6f";
const CHILD1: &str =
    "bdev:///11111111-1111-4111-8111-111111111111?uuid=11111111-1111-4111-8111-111111111111";
const CHILD2: &str = "nvmf://127.0.0.2:8420/nqn.2019-05.io.openebs:22222222-2222-4222-8222-222222222222?uuid=22222222-2222-4222-8222-222222222222";
const DEVICE_URI: &str =
    "nvmf://127.0.0.1:8420/nqn.2019-05.io.openebs:0b1a4b8e-3f5d-4a57-9d8e-1c2b3a4d5e6f";

/// Every request the fake engine received, in order.
#[derive(Debug, Default)]
struct Calls(Mutex<Vec<String>>);

impl Calls {
    fn record(&self, request: &impl std::fmt::Debug) {
        self.0.lock().unwrap().push(format!("{request:?}"));
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[derive(Debug, Clone, Default)]
struct FakeEngine {
    calls: Arc<Calls>,
}

fn child(uri: &str, state: v1::ChildState, progress: i32) -> v1::Child {
    v1::Child {
        uri: uri.into(),
        uuid: String::new(),
        state: state.into(),
        reason: if state == v1::ChildState::ChildOnline {
            v1::ChildStateReason::ChildReasonNone.into()
        } else {
            v1::ChildStateReason::ChildReasonOutOfSync.into()
        },
        rebuild_progress: progress,
        has_dirty_log: false,
        faulted_at_ms: 0,
    }
}

fn nexus(device_uri: &str) -> v1::Nexus {
    v1::Nexus {
        uuid: NEXUS.into(),
        name: VOLUME.into(),
        size: 64 << 20,
        state: v1::NexusState::NexusDegraded.into(),
        children: vec![
            child(CHILD1, v1::ChildState::ChildOnline, -1),
            child(CHILD2, v1::ChildState::ChildDegraded, 42),
        ],
        device_uri: device_uri.into(),
        rebuilds: 1,
        nqn: format!("nqn.2019-05.io.openebs:{VOLUME}"),
        ..Default::default()
    }
}

fn stats(state: v1::RebuildJobState) -> v1::RebuildStats {
    v1::RebuildStats {
        nexus_uuid: NEXUS.into(),
        uri: CHILD2.into(),
        src_uri: CHILD1.into(),
        state: state.into(),
        blocks_total: 131_072,
        blocks_recovered: 55_050,
        blocks_transferred: 55_050,
        block_size: 512,
        bytes_transferred: 55_050 * 512,
        progress: 42,
        is_partial: false,
        start_time_ms: 1_700_000_000_000,
        end_time_ms: 0,
        max_bandwidth: 0,
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl NexusRpc for FakeEngine {
    async fn create_nexus(&self, r: Request<v1::CreateNexusRequest>) -> Reply<v1::Nexus> {
        self.calls.record(r.get_ref());
        Ok(Response::new(nexus("")))
    }

    async fn destroy_nexus(
        &self,
        r: Request<v1::DestroyNexusRequest>,
    ) -> Reply<v1::DestroyNexusResponse> {
        self.calls.record(r.get_ref());
        Ok(Response::new(v1::DestroyNexusResponse {}))
    }

    async fn list_nexus(&self, r: Request<v1::ListNexusRequest>) -> Reply<v1::ListNexusResponse> {
        self.calls.record(r.get_ref());
        let all = vec![nexus(DEVICE_URI)];
        let nexus_list = all
            .into_iter()
            .filter(|n| r.get_ref().uuid.as_ref().is_none_or(|u| *u == n.uuid))
            .collect();
        Ok(Response::new(v1::ListNexusResponse { nexus_list }))
    }

    async fn shutdown_nexus(&self, r: Request<v1::ShutdownNexusRequest>) -> Reply<v1::Nexus> {
        self.calls.record(r.get_ref());
        Ok(Response::new(nexus("")))
    }

    async fn publish_nexus(&self, r: Request<v1::PublishNexusRequest>) -> Reply<v1::Nexus> {
        self.calls.record(r.get_ref());
        Ok(Response::new(nexus(DEVICE_URI)))
    }

    async fn unpublish_nexus(&self, r: Request<v1::UnpublishNexusRequest>) -> Reply<v1::Nexus> {
        self.calls.record(r.get_ref());
        Ok(Response::new(nexus("")))
    }

    async fn add_child_nexus(&self, r: Request<v1::AddChildNexusRequest>) -> Reply<v1::Nexus> {
        self.calls.record(r.get_ref());
        Ok(Response::new(nexus("")))
    }

    async fn remove_child_nexus(
        &self,
        r: Request<v1::RemoveChildNexusRequest>,
    ) -> Reply<v1::Nexus> {
        self.calls.record(r.get_ref());
        Err(Status::failed_precondition(format!(
            "child {} is the last healthy child of nexus {NEXUS}",
            r.get_ref().uri
        )))
    }

    async fn child_operation(&self, r: Request<v1::ChildOperationRequest>) -> Reply<v1::Nexus> {
        self.calls.record(r.get_ref());
        Ok(Response::new(nexus("")))
    }
}

#[tonic::async_trait]
impl RebuildRpc for FakeEngine {
    async fn start_rebuild(&self, r: Request<v1::StartRebuildRequest>) -> Reply<v1::RebuildStats> {
        self.calls.record(r.get_ref());
        Ok(Response::new(stats(v1::RebuildJobState::RebuildRunning)))
    }

    async fn stop_rebuild(&self, r: Request<v1::RebuildRequest>) -> Reply<v1::RebuildStats> {
        self.calls.record(r.get_ref());
        Ok(Response::new(stats(v1::RebuildJobState::RebuildStopped)))
    }

    async fn pause_rebuild(&self, r: Request<v1::RebuildRequest>) -> Reply<v1::RebuildStats> {
        self.calls.record(r.get_ref());
        Ok(Response::new(stats(v1::RebuildJobState::RebuildPaused)))
    }

    async fn resume_rebuild(&self, r: Request<v1::RebuildRequest>) -> Reply<v1::RebuildStats> {
        self.calls.record(r.get_ref());
        Ok(Response::new(stats(v1::RebuildJobState::RebuildRunning)))
    }

    async fn get_rebuild_stats(&self, r: Request<v1::RebuildRequest>) -> Reply<v1::RebuildStats> {
        self.calls.record(r.get_ref());
        if r.get_ref().uri == CHILD1 {
            return Err(Status::not_found(format!("child {CHILD1} has no rebuild")));
        }
        Ok(Response::new(stats(v1::RebuildJobState::RebuildRunning)))
    }

    async fn get_rebuild_history(
        &self,
        r: Request<v1::RebuildHistoryRequest>,
    ) -> Reply<v1::RebuildHistoryResponse> {
        self.calls.record(r.get_ref());
        let done = v1::RebuildStats {
            blocks_recovered: 131_072,
            progress: 100,
            bytes_transferred: 64 << 20,
            end_time_ms: 1_700_000_060_000,
            ..stats(v1::RebuildJobState::RebuildCompleted)
        };
        Ok(Response::new(v1::RebuildHistoryResponse {
            nexus_uuid: r.into_inner().nexus_uuid,
            records: vec![done],
        }))
    }
}

/// Starts the fake engine on an ephemeral port.
async fn start() -> (SocketAddr, Arc<Calls>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let engine = FakeEngine::default();
    let calls = engine.calls.clone();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(NexusRpcServer::new(engine.clone()))
            .add_service(RebuildRpcServer::new(engine))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (addr, calls)
}

/// Runs the client binary against `addr`.
async fn client(addr: SocketAddr, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_io-engine-client"));
    command.arg("-e").arg(addr.to_string()).args(args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexus_commands_send_the_right_requests_and_print_upstream_style() {
    let (addr, calls) = start().await;

    // create: nothing printed; sizes in bytes, name defaults to the uuid.
    let out = client(
        addr,
        &["nexus", "create", NEXUS, "--size", "64", CHILD1, CHILD2],
    )
    .await;
    assert_eq!(stdout(&out), "");
    let call = calls.take().remove(0);
    assert!(call.starts_with("CreateNexusRequest"), "{call}");
    assert!(
        call.contains(&format!("uuid: \"{NEXUS}\", name: \"{NEXUS}\"")),
        "{call}"
    );
    assert!(call.contains(&format!("size: {}", 64u64 << 20)), "{call}");
    assert!(
        call.contains(&format!("children: [\"{CHILD1}\", \"{CHILD2}\"]")),
        "{call}"
    );
    assert!(call.contains("resv_key: 0"), "{call}");
    assert!(call.contains("nexus_info_key: None"), "{call}");

    // create with -o json prints the nexus.
    let out = client(
        addr,
        &[
            "-o",
            "json",
            "nexus",
            "create",
            NEXUS,
            "--size=1GiB",
            "--name",
            VOLUME,
            CHILD1,
        ],
    )
    .await;
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["uuid"], NEXUS);
    assert_eq!(json["children"][1]["rebuild_progress_percent"], 42);
    assert!(calls.take()[0].contains(&format!("name: \"{VOLUME}\", size: 1073741824")));

    // list: upstream columns, children with -c.
    let out = stdout(&client(addr, &["nexus", "list"]).await);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("NAME "), "{out}");
    assert!(
        lines[0].contains(" UUID ") && lines[0].ends_with(" REBUILDS PATH"),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&format!("{VOLUME} {NEXUS} 64.0 MiB degraded")),
        "{out}"
    );
    assert!(
        lines[1].ends_with(&format!("       1 {DEVICE_URI}")),
        "{out}"
    );
    let out = stdout(&client(addr, &["nexus", "list", "-c"]).await);
    assert!(
        out.lines()
            .nth(1)
            .unwrap()
            .ends_with(&format!(" {CHILD1},{CHILD2}")),
        "{out}"
    );
    let out = stdout(&client(addr, &["-o", "wide", "nexus", "list"]).await);
    assert!(out.lines().next().unwrap().ends_with(" CHILDREN"), "{out}");
    let out = stdout(&client(addr, &["nexus", "list", "-o", "json"]).await);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[0]["device_uri"], DEVICE_URI);
    assert_eq!(json[0]["state"], "degraded");

    // children.
    let out = stdout(&client(addr, &["nexus", "children", NEXUS]).await);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("NAME ") && lines[0].ends_with(" STATE    REASON      REBUILD%"));
    assert!(lines[1].starts_with(CHILD1) && lines[1].ends_with(" online   -                  -"));
    assert!(lines[2].starts_with(CHILD2) && lines[2].ends_with(" degraded out_of_sync       42"));
    let missing = "00000000-0000-4000-8000-000000000000";
    let out = client(addr, &["nexus", "children", missing]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("error: nexus '{missing}' not found (NotFound)\n")
    );
    calls.take();

    // publish prints the URI alone on its line.
    let out = client(
        addr,
        &[
            "nexus",
            "publish",
            NEXUS,
            "--allowed-host",
            "nqn.2019-05.io.openebs:node-name:n1",
            "--min-cntlid=100",
            "--max-cntlid=200",
            "--resv-key=5",
            "--resv-type=exclusive-access",
        ],
    )
    .await;
    assert_eq!(stdout(&out), format!("{DEVICE_URI}\n"));
    let call = calls.take().remove(0);
    assert!(
        call.contains("allowed_hosts: [\"nqn.2019-05.io.openebs:node-name:n1\"]"),
        "{call}"
    );
    assert!(
        call.contains("min_cntlid: Some(100), max_cntlid: Some(200)"),
        "{call}"
    );
    assert!(
        call.contains("resv_key: Some(5), resv_type: Some(ExclusiveAccess), preempt_key: None"),
        "{call}"
    );

    // The plain verbs print nothing.
    for verb in ["unpublish", "shutdown", "destroy"] {
        assert_eq!(
            stdout(&client(addr, &["nexus", verb, NEXUS]).await),
            "",
            "{verb}"
        );
    }
    let names: Vec<String> = calls
        .take()
        .iter()
        .map(|c| c[..c.find(' ').unwrap()].to_string())
        .collect();
    assert_eq!(
        names,
        [
            "UnpublishNexusRequest",
            "ShutdownNexusRequest",
            "DestroyNexusRequest"
        ]
    );

    // Children.
    assert_eq!(
        stdout(&client(addr, &["nexus", "add", NEXUS, CHILD2, "--norebuild"]).await),
        ""
    );
    assert!(calls.take()[0].contains("norebuild: true"));
    assert_eq!(
        stdout(&client(addr, &["nexus", "child-op", NEXUS, CHILD2, "offline"]).await),
        ""
    );
    assert!(calls.take()[0].contains("action: Offline"));
    assert_eq!(
        stdout(&client(addr, &["nexus", "child-op", NEXUS, CHILD2, "fault"]).await),
        ""
    );
    assert!(calls.take()[0].contains("action: Fault"));

    // An engine error: one line on stderr with its kind, exit code 1.
    let out = client(addr, &["nexus", "remove", NEXUS, CHILD1]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: child {CHILD1} is the last healthy child of nexus {NEXUS} (FailedPrecondition)\n"
        )
    );
    assert_eq!(calls.take().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_commands_send_the_right_requests_and_print_tables() {
    let (addr, calls) = start().await;

    let out = client(
        addr,
        &["rebuild", "start", NEXUS, CHILD2, "--max-bandwidth", "10"],
    )
    .await;
    assert_eq!(stdout(&out), "");
    let call = calls.take().remove(0);
    assert!(
        call.contains(&format!("max_bandwidth: Some({})", 10u64 << 20)),
        "{call}"
    );
    let out = client(addr, &["-o", "json", "rebuild", "start", NEXUS, CHILD2]).await;
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["state"], "running");
    assert!(calls.take()[0].contains("max_bandwidth: None"));

    for (verb, request) in [
        ("stop", "RebuildRequest"),
        ("pause", "RebuildRequest"),
        ("resume", "RebuildRequest"),
    ] {
        assert_eq!(
            stdout(&client(addr, &["rebuild", verb, NEXUS, CHILD2]).await),
            ""
        );
        let call = calls.take().remove(0);
        assert!(call.starts_with(request) && call.contains(CHILD2), "{call}");
    }

    let out = stdout(&client(addr, &["rebuild", "progress", NEXUS, CHILD2]).await);
    assert_eq!(
        out,
        "PROGRESS (%) STATE         BLOCKS\n          42 running 55050/131072\n"
    );
    let out = stdout(&client(addr, &["rebuild", "stats", NEXUS, CHILD2]).await);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("STATE    TOTAL RECOVERED"), "{out}");
    assert!(lines[1].starts_with("running 131072     55050"), "{out}");
    assert!(lines[1].ends_with(&format!(" unlimited {CHILD1}")), "{out}");

    let out = client(addr, &["rebuild", "progress", NEXUS, CHILD1]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("error: child {CHILD1} has no rebuild (NotFound)\n")
    );

    let out = stdout(&client(addr, &["rebuild", "history", NEXUS]).await);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("CHILD "), "{out}");
    assert!(
        lines[0].ends_with(" STATE     PARTIAL    BYTES START                END"),
        "{out}"
    );
    assert!(
        lines[1].ends_with(" completed false   64.0 MiB 2023-11-14T22:13:20Z 2023-11-14T22:14:20Z"),
        "{out}"
    );
    let out = stdout(&client(addr, &["-o", "json", "rebuild", "history", NEXUS]).await);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["nexus_uuid"], NEXUS);
    assert_eq!(json["records"][0]["end_time"], "2023-11-14T22:14:20.000Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_before_any_request() {
    let (addr, calls) = start().await;
    let cases: [&[&str]; 6] = [
        &["nexus", "destroy", "not-a-uuid"],
        &["nexus", "create", NEXUS, "--size=0", CHILD1],
        &["nexus", "child-op", NEXUS, CHILD1, "retire"],
        &[
            "nexus",
            "publish",
            NEXUS,
            "--min-cntlid=9",
            "--max-cntlid=3",
        ],
        &["nexus", "add", NEXUS, "replica1"],
        &["rebuild", "start", NEXUS, CHILD2, "--max-bandwidth=0"],
    ];
    for args in cases {
        let out = client(addr, args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
    assert!(calls.take().is_empty());
}
