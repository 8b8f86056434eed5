//! `csi-node` on this host, which has no kernel NVMe/TCP host (`nvme_tcp`):
//! it starts, says so in its log and in Probe, fails NodeStage with
//! FAILED_PRECONDITION, and answers bad input with the CSI codes (never a
//! panic), changing nothing. Identity, capabilities and NodeGetInfo as
//! documented. Calls go through the unix socket; the plugin's TCP
//! endpoint (127.0.110.9) is probed too.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::HashMap,
    os::unix::fs::FileTypeExt,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{block_cap, rwo_fs};
use csi::v1::{
    identity_client::IdentityClient, node_client::NodeClient, node_service_capability,
    volume_capability, GetPluginInfoRequest, NodeExpandVolumeRequest, NodeGetCapabilitiesRequest,
    NodeGetInfoRequest, NodeGetVolumeStatsRequest, NodePublishVolumeRequest,
    NodeStageVolumeRequest, NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest, ProbeRequest,
};
use testkit::free_port;
use tonic::{transport::Channel, Code};

const IP: &str = "127.0.110.9";

struct Plugin {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- csi-node log ----\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (Code, String) {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => (s.code(), s.message().to_owned()),
    }
}

fn stage_req(id: &str, staging: &str, ctx: HashMap<String, String>) -> NodeStageVolumeRequest {
    NodeStageVolumeRequest {
        volume_id: id.to_owned(),
        publish_context: ctx,
        staging_target_path: staging.to_owned(),
        volume_capability: Some(rwo_fs("ext4")),
        secrets: Default::default(),
        volume_context: Default::default(),
    }
}

#[tokio::test]
async fn without_nvme_tcp_and_with_bad_input() {
    assert!(
        !Path::new("/sys/module/nvme_tcp").exists(),
        "this test expects a host without the nvme_tcp module (the VM tests cover the kernel host)"
    );
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("csi/csi.sock");
    let log = dir.path().join("csi-node.log");
    let port = free_port(IP);

    // A bad flag: one line, exit 1, nothing served.
    let out = Command::new(env!("CARGO_BIN_EXE_csi-node"))
        .args(["--node-name", "bad name", "--csi-socket"])
        .arg(&sock)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("invalid node name"), "{err}");
    assert!(!sock.exists());

    let child = Command::new(env!("CARGO_BIN_EXE_csi-node"))
        .args(["--node-name", "node-a", "--csi-socket"])
        .arg(&sock)
        .args(["--grpc-endpoint", &format!("{IP}:{port}")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _plugin = Plugin {
        child,
        log: log.clone(),
    };
    // The TCP endpoint answers once it listens...
    let start = Instant::now();
    let tcp = loop {
        let c = Channel::from_shared(format!("http://{IP}:{port}"))
            .unwrap()
            .connect()
            .await;
        if let Ok(c) = c {
            break c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "csi-node did not listen"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    IdentityClient::new(tcp)
        .probe(ProbeRequest {})
        .await
        .unwrap();
    // ...and everything else goes through the kubelet's unix socket.
    assert!(std::fs::metadata(&sock).unwrap().file_type().is_socket());
    let channel = csi::client::channel(&sock);
    let mut id = IdentityClient::new(channel.clone());
    let mut node = NodeClient::new(channel);

    // Identity: our name; not ready, and the log says why.
    let info = id
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "io.openebs.csi-mayastor");
    let probe = id.probe(ProbeRequest {}).await.unwrap().into_inner();
    assert_eq!(probe.ready, Some(false));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("nvme_tcp"), "{text}");

    // Node identity and capabilities.
    let ni = node
        .node_get_info(NodeGetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ni.node_id, "node-a");
    assert_eq!(
        ni.accessible_topology.unwrap().segments,
        HashMap::from([("openebs.io/nodename".to_owned(), "node-a".to_owned())])
    );
    let caps = node
        .node_get_capabilities(NodeGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut types: Vec<i32> = caps
        .capabilities
        .iter()
        .filter_map(|c| {
            c.r#type
                .as_ref()
                .map(|node_service_capability::Type::Rpc(r)| r.r#type)
        })
        .collect();
    types.sort();
    use node_service_capability::rpc::Type;
    assert_eq!(
        types,
        vec![
            Type::StageUnstageVolume as i32,
            Type::GetVolumeStats as i32,
            Type::ExpandVolume as i32,
            Type::VolumeCondition as i32
        ]
    );

    // NodeStage: a valid request fails for want of nvme_tcp; bad ones are
    // INVALID_ARGUMENT; nothing is created.
    let vol = uuid::Uuid::new_v4().to_string();
    let staging = dir.path().join("staging");
    let st = staging.to_str().unwrap();
    let ctx = HashMap::from([(
        "uri".to_owned(),
        format!("nvmf://10.0.2.100:4420/nqn.2019-05.io.openebs:{vol}"),
    )]);
    let (c, m) = code(
        node.node_stage_volume(stage_req(&vol, st, ctx.clone()))
            .await,
    );
    assert_eq!(c, Code::FailedPrecondition, "{m}");
    assert!(m.contains("nvme_tcp"), "{m}");
    assert!(!staging.exists(), "a failed stage created {st}");

    let bad_ctx = |k: &str, v: &str| {
        let mut c = ctx.clone();
        c.insert(k.to_owned(), v.to_owned());
        c
    };
    let other = uuid::Uuid::new_v4();
    let mut cases = vec![
        ("no volume id", stage_req("", st, ctx.clone())),
        ("malformed volume id", stage_req("pvc-1", st, ctx.clone())),
        ("no staging path", stage_req(&vol, "", ctx.clone())),
        (
            "relative staging path",
            stage_req(&vol, "rel/stage", ctx.clone()),
        ),
        ("no uri", stage_req(&vol, st, HashMap::new())),
        ("bad uri", stage_req(&vol, st, bad_ctx("uri", "nvmf://h/x"))),
        (
            "another volume's uri",
            stage_req(
                &vol,
                st,
                bad_ctx("uri", &format!("nvmf://h:1/nqn.2019-05.io.openebs:{other}")),
            ),
        ),
        (
            "bad queue count",
            stage_req(&vol, st, bad_ctx("nvmeNrIoQueues", "0")),
        ),
        (
            "bad timeout",
            stage_req(&vol, st, bad_ctx("ioTimeout", "soon")),
        ),
    ];
    let mut r = stage_req(&vol, st, ctx.clone());
    r.volume_capability = None;
    cases.push(("no capability", r));
    let mut r = stage_req(&vol, st, ctx.clone());
    r.volume_capability = Some(rwo_fs("btrfs"));
    cases.push(("unsupported filesystem", r));
    let mut r = stage_req(&vol, st, ctx.clone());
    let mut cap = block_cap();
    cap.access_mode = Some(volume_capability::AccessMode {
        mode: volume_capability::access_mode::Mode::MultiNodeMultiWriter as i32,
    });
    r.volume_capability = Some(cap);
    cases.push(("multi-node access mode", r));
    let mut r = stage_req(&vol, st, ctx.clone());
    r.volume_capability.as_mut().unwrap().access_type = None;
    cases.push(("no access type", r));
    for (what, req) in cases {
        let (c, m) = code(node.node_stage_volume(req).await);
        assert_eq!(c, Code::InvalidArgument, "{what}: {m}");
        assert!(!m.is_empty() && !m.contains('\n'), "{what}: {m:?}");
    }
    assert!(!staging.exists());

    // NodePublish.
    let target = dir.path().join("pod/mount");
    let tp = target.to_str().unwrap();
    let publish = |id: &str, staging: &str, target: &str| NodePublishVolumeRequest {
        volume_id: id.to_owned(),
        publish_context: ctx.clone(),
        staging_target_path: staging.to_owned(),
        target_path: target.to_owned(),
        volume_capability: Some(rwo_fs("ext4")),
        readonly: false,
        secrets: Default::default(),
        volume_context: Default::default(),
    };
    for (what, req, want) in [
        ("no volume id", publish("", st, tp), Code::InvalidArgument),
        ("malformed id", publish("x", st, tp), Code::InvalidArgument),
        ("no target", publish(&vol, st, ""), Code::InvalidArgument),
        (
            "no staging path",
            publish(&vol, "", tp),
            Code::FailedPrecondition,
        ),
        (
            "not staged",
            publish(&vol, st, tp),
            Code::FailedPrecondition,
        ),
    ] {
        let (c, m) = code(node.node_publish_volume(req).await);
        assert_eq!(c, want, "{what}: {m}");
    }
    let mut r = publish(&vol, st, tp);
    r.volume_capability = None;
    assert_eq!(
        code(node.node_publish_volume(r).await).0,
        Code::InvalidArgument
    );
    assert!(!target.exists());

    // Unpublish and unstage of what is not there: OK (idempotent); bad
    // fields: INVALID_ARGUMENT.
    let unpublish = |id: &str, t: &str| NodeUnpublishVolumeRequest {
        volume_id: id.to_owned(),
        target_path: t.to_owned(),
    };
    node.node_unpublish_volume(unpublish(&vol, tp))
        .await
        .unwrap();
    for r in [unpublish("", tp), unpublish("x", tp), unpublish(&vol, "")] {
        assert_eq!(
            code(node.node_unpublish_volume(r).await).0,
            Code::InvalidArgument
        );
    }
    let unstage = |id: &str, s: &str| NodeUnstageVolumeRequest {
        volume_id: id.to_owned(),
        staging_target_path: s.to_owned(),
    };
    node.node_unstage_volume(unstage(&vol, st)).await.unwrap();
    for r in [unstage("", st), unstage("x", st), unstage(&vol, "")] {
        assert_eq!(
            code(node.node_unstage_volume(r).await).0,
            Code::InvalidArgument
        );
    }

    // Stats and expand: missing fields INVALID_ARGUMENT; a path that does
    // not exist or holds no volume: NOT_FOUND.
    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let stats = |id: &str, p: &str| NodeGetVolumeStatsRequest {
        volume_id: id.to_owned(),
        volume_path: p.to_owned(),
        staging_target_path: String::new(),
    };
    let expand = |id: &str, p: &str| NodeExpandVolumeRequest {
        volume_id: id.to_owned(),
        volume_path: p.to_owned(),
        capacity_range: None,
        staging_target_path: String::new(),
        volume_capability: None,
        secrets: Default::default(),
    };
    let plain = plain.to_str().unwrap();
    for (id, p, want) in [
        ("", tp, Code::InvalidArgument),
        (vol.as_str(), "", Code::InvalidArgument),
        (vol.as_str(), tp, Code::NotFound),
        ("id", "/some/path", Code::NotFound),
        // A relative path cannot hold the volume (csi-sanity's "volume is
        // not found" specs send one).
        (vol.as_str(), "some/path", Code::NotFound),
        (vol.as_str(), plain, Code::NotFound),
        (vol.as_str(), "/", Code::NotFound),
    ] {
        let (c, m) = code(node.node_get_volume_stats(stats(id, p)).await);
        assert_eq!(c, want, "stats {id:?} {p:?}: {m}");
        let (c, m) = code(node.node_expand_volume(expand(id, p)).await);
        assert_eq!(c, want, "expand {id:?} {p:?}: {m}");
    }

    // Still serving after all that.
    id.probe(ProbeRequest {}).await.unwrap();
}
