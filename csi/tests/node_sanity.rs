//! csi-sanity (kubernetes-csi/csi-test v5.4.0, prebuilt in
//! `../shared/tools/csi-tools`) against `csi-node` where it can stage:
//! both run inside the nvme-vm guest (Debian's kernel and its NVMe/TCP
//! host, mkfs, mount), with the real `csi-controller` on the host as
//! csi-sanity's controller endpoint (it creates, publishes, expands and
//! deletes the volumes of every spec) on a real 1-node local cluster
//! (loopback 127.0.105.x).
//!
//! ```text
//!  guest csi-sanity --unix--> csi-node (guest) --nvme connect--> 127.0.105.1:8420 (guest nc)
//!        |                                  --> 10.0.2.100:4420 --guestfwd--> relay --> engine 127.0.105.1:8420
//!        +--> 10.0.2.100:4421 --guestfwd--> relay --> csi-controller's unix socket (host)
//! ```
//!
//! The publish context is the controller's, unchanged: its `uri` names the
//! engine's listener (127.0.105.1:8420), which the guest reaches through a
//! busybox `nc` relay listening on the guest's own loopback (any
//! 127.0.0.0/8 address is local there) and the target forward.
//!
//! csi-sanity reads the plugin capabilities (CONTROLLER_SERVICE, which
//! decides whether its node specs call ControllerPublishVolume first) from
//! the Identity of its node endpoint only, as if controller and node were
//! one program. Ours are two, so its node endpoint is [`Passthrough`]: a
//! gRPC server on the host (reached from the guest over a forward) that
//! answers Identity from csi-controller and passes every Node call
//! unchanged to csi-node in the guest. Without it csi-sanity would stage
//! volumes with no publish context.
//!
//! Only the `Node Service` specs run (`--ginkgo.focus`): the identity and
//! controller specs run against csi-controller on the host (`sanity.rs`),
//! and each spec here stages through an emulated kernel. Nothing else is
//! skipped by this test; csi-sanity skips by itself what needs a
//! capability the driver does not claim (checked by `SanityRun::check`).

#![allow(clippy::unwrap_used)]

mod common;
mod node_kit;

use std::{
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use common::*;
use csi::v1::{
    identity_client::IdentityClient, identity_server, node_client::NodeClient, node_server, *,
};
use node_kit::{Guest, GuestSetup, Relay};
use tonic::{transport::Channel, Request, Response, Status};

const PREFIX: &str = "127.0.105";

/// `--ginkgo.skip` patterns of this run, with the reason.
const SKIPS: &[(&str, &str)] = &[];

/// `--ginkgo.focus` of this run, with the reason.
const FOCUS: (&str, &str) = (
    "Node Service",
    "identity and controller specs run against csi-controller on the host (sanity.rs)",
);

/// The endpoint csi-sanity takes for the driver: Identity from
/// csi-controller, Node from csi-node in the guest, each call passed on
/// unchanged.
#[derive(Clone)]
struct Passthrough {
    identity: IdentityClient<Channel>,
    /// Set once the guest runs.
    node: Arc<OnceLock<NodeClient<Channel>>>,
}

impl Passthrough {
    fn identity(&self) -> Result<IdentityClient<Channel>, Status> {
        Ok(self.identity.clone())
    }

    fn node(&self) -> Result<NodeClient<Channel>, Status> {
        self.node
            .get()
            .cloned()
            .ok_or_else(|| Status::unavailable("csi-node in the guest is not up yet"))
    }
}

/// `impl $service for Passthrough`, each method passed to `self.$client()`.
macro_rules! pass {
    ($service:path, $client:ident, $($method:ident($req:ty) -> $resp:ty;)*) => {
        #[tonic::async_trait]
        impl $service for Passthrough {
            $(
                async fn $method(&self, r: Request<$req>) -> Result<Response<$resp>, Status> {
                    self.$client()?.$method(r.into_inner()).await
                }
            )*
        }
    };
}

pass!(identity_server::Identity, identity,
    get_plugin_info(GetPluginInfoRequest) -> GetPluginInfoResponse;
    get_plugin_capabilities(GetPluginCapabilitiesRequest) -> GetPluginCapabilitiesResponse;
    probe(ProbeRequest) -> ProbeResponse;
);

pass!(node_server::Node, node,
    node_stage_volume(NodeStageVolumeRequest) -> NodeStageVolumeResponse;
    node_unstage_volume(NodeUnstageVolumeRequest) -> NodeUnstageVolumeResponse;
    node_publish_volume(NodePublishVolumeRequest) -> NodePublishVolumeResponse;
    node_unpublish_volume(NodeUnpublishVolumeRequest) -> NodeUnpublishVolumeResponse;
    node_get_volume_stats(NodeGetVolumeStatsRequest) -> NodeGetVolumeStatsResponse;
    node_expand_volume(NodeExpandVolumeRequest) -> NodeExpandVolumeResponse;
    node_get_capabilities(NodeGetCapabilitiesRequest) -> NodeGetCapabilitiesResponse;
    node_get_info(NodeGetInfoRequest) -> NodeGetInfoResponse;
);

impl Passthrough {
    /// Serves on 127.0.0.1 (where the guest's forwards land); the port.
    async fn serve(self) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(identity_server::IdentityServer::new(self.clone()))
                .add_service(node_server::NodeServer::new(self))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        port
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_csi_sanity_against_csi_node_in_the_guest() {
    let started = Instant::now();
    let sanity = csi_tool("csi-sanity");
    let cluster = Cluster::up(PREFIX, 1, "256MiB");
    let ctl = Controller::start(&cluster.rest_url, &["--any-pool"]);
    let engine = cluster.engine_nvmf(1);
    let target = Relay::start(engine);
    let controller = Relay::to_unix(&ctl.socket);
    let node = Arc::new(OnceLock::new());
    let endpoint = Passthrough {
        identity: ctl.identity(),
        node: node.clone(),
    }
    .serve()
    .await;
    let g = Guest::start(GuestSetup {
        guest_forwards: vec![
            (4420, target.port),
            (4421, controller.port),
            (4422, endpoint),
        ],
        copies: vec![sanity],
        script: format!("(nc -ll -p {} -e nc 10.0.2.100 4420 &) ;", engine.port()),
        csi_node_args: vec![],
        ..Default::default()
    })
    .await;
    let _ = node.set(g.node().await);
    println!("cluster and guest ready after {:.1?}", started.elapsed());

    let mut args = vec![
        "--csi.endpoint=10.0.2.100:4422".to_owned(),
        "--csi.controllerendpoint=10.0.2.100:4421".to_owned(),
        "--csi.stagingdir=/tmp/sanity/staging".to_owned(),
        "--csi.mountdir=/tmp/sanity/mount".to_owned(),
        format!("--csi.testvolumesize={}", 16 << 20),
        format!("--csi.testvolumeexpandsize={}", 32 << 20),
        format!("'--ginkgo.focus={}'", FOCUS.0),
        "--ginkgo.junit-report=/tmp/sanity/junit.xml".to_owned(),
        "--ginkgo.no-color".to_owned(),
    ];
    if !SKIPS.is_empty() {
        let skip = SKIPS.iter().map(|(s, _)| *s).collect::<Vec<_>>().join("|");
        args.push(format!("'--ginkgo.skip={skip}'"));
    }
    let ran = Instant::now();
    let (rc, stdout) = g.sh_within(
        &format!("mkdir -p /tmp/sanity && csi-sanity {}", args.join(" ")),
        Duration::from_secs(1200),
    );
    println!(
        "csi-sanity in the guest: exit {rc} after {:.1?}",
        ran.elapsed()
    );
    let junit = g.ok("cat /tmp/sanity/junit.xml");
    SanityRun {
        stdout,
        success: rc == 0,
        junit,
    }
    .check(SKIPS, Some(FOCUS), 20);
    // Every volume the specs made was deleted again.
    let left = cluster_volumes(&cluster).await;
    assert!(left.is_empty(), "volumes left behind: {left:?}");
    drop(g);
    drop(ctl);
    drop(cluster);
    println!("node csi-sanity test: {:.1?}", started.elapsed());
}

async fn cluster_volumes(cluster: &Cluster) -> Vec<String> {
    use openapi::CoreApi;
    cluster
        .rest()
        .get_volumes(0, None)
        .await
        .unwrap()
        .entries
        .into_iter()
        .map(|v| v.spec.uuid.to_string())
        .collect()
}
