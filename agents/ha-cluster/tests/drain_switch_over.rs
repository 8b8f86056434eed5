//! A drain with HA, against a real cluster (etcd, agent-core, three
//! io-engines) and the real `agent-ha-cluster`; the node agent is a
//! stand-in speaking `HaNodeRpc` that registers itself and holds its
//! `ReplacePath` answer until the test lets it go (the real one needs a
//! kernel host: `csi/tests/kernel_drain.rs`). A host is played by our
//! NVMe/TCP initiator connected with the frontend node's host NQN.
//!
//! Checked, make before break: while the node agent replaces the path,
//! the new target serves I/O, the old one is still published (the host
//! keeps its path) but answers "ANA inaccessible" (a multipath host
//! waits for its new path instead of failing the I/O), and the node is
//! still Draining; once the path is replaced, the old target is
//! destroyed, the switch-over (kind `drain`) is Successful and the node
//! Drained. The core moved nothing itself.

#![allow(clippy::unwrap_used)]

#[path = "../../core/tests/common/mod.rs"]
mod common;
mod ha_kit;

use std::net::SocketAddr;

use ha_kit::StandIn;

use common::{bin, eventually, free_port, wait_port, Cluster, Proc, Timers};
use io_engine_api::{
    ha::{
        ha_cluster_rpc_client::HaClusterRpcClient, ListSwitchOversRequest, RegisterNodeAgentRequest,
    },
    names::{host_nqn, volume_nqn},
};
use openapi::{models::*, CoreApi};

const PREFIX: &str = "127.0.164";
const APP: &str = "app-1";

/// The host: our initiator connected to `uri` as the frontend node.
async fn host(uri: &str) -> (nvmf_host::Controller, nvmf_host::Namespace) {
    let mut opts = nvmf_host::ConnectOptions::from_uri(uri).unwrap();
    opts.hostnqn = host_nqn(APP);
    opts.io_timeout_ms = 10_000;
    let ctrl = nvmf_host::Controller::connect(opts).await.unwrap();
    let ns = ctrl.namespace(1).await.unwrap();
    (ctrl, ns)
}

/// "ANA inaccessible", DNR clear: a multipath host retries elsewhere.
fn ana_inaccessible(e: &blockdev::BlockDevError) -> bool {
    nvmf_host::HostError::from_blockdev(e)
        .and_then(nvmf_host::HostError::status)
        .is_some_and(|s| (s.sct, s.sc, s.dnr) == (3, 2, false))
}

async fn switch_over(ep: &str, volume: &str) -> Option<(String, String)> {
    let mut client = HaClusterRpcClient::connect(format!("http://{ep}"))
        .await
        .ok()?;
    let list = client
        .list_switch_overs(ListSwitchOversRequest {})
        .await
        .ok()?
        .into_inner();
    list.switch_overs
        .into_iter()
        .find(|s| s.volume == volume)
        .map(|s| (s.kind, s.stage))
}

/// `agent-ha-cluster` beside `c` (its drains looked at every 500 ms) and
/// the stand-in node agent of the frontend node, registered with it: the
/// agent, its endpoint, the stand-in and its release.
async fn agents(c: &Cluster) -> (Proc, String, StandIn, tokio::sync::watch::Sender<bool>) {
    let prefix = &c.prefix;
    let ip = format!("{prefix}.3");
    let ep = format!("{ip}:{}", free_port(&ip));
    let ha = Proc::spawn(
        "agent-ha-cluster",
        bin("agent-ha-cluster", "agent-ha-cluster"),
        [
            "--grpc-endpoint",
            &ep,
            "--store",
            &c.etcd_ep,
            "--rest",
            &c.rest_url(),
            "--lease-ttl",
            "3s",
            "--retry-delay",
            "200ms",
            "--drain-period",
            "500ms",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    );
    wait_port(&ep, "agent-ha-cluster");
    let node_agent: SocketAddr = format!("{prefix}.4:{}", free_port(&format!("{prefix}.4")))
        .parse()
        .unwrap();
    let (standin, release_tx) = StandIn::serve(node_agent);
    HaClusterRpcClient::connect(format!("http://{ep}"))
        .await
        .unwrap()
        .register_node_agent(RegisterNodeAgentRequest {
            node: APP.into(),
            endpoint: node_agent.to_string(),
        })
        .await
        .unwrap();
    (ha, ep, standin, release_tx)
}

/// Whether `node` of `api`'s cluster is Drained.
async fn drained(api: &openapi::client::RestClient, node: &str) -> Result<(), String> {
    let s = api
        .get_node(node)
        .await
        .map_err(|e| e.to_string())?
        .spec
        .map(|s| s.cordon_drain_state.drain_status);
    (s == Some(Some(DrainStatus::Drained)))
        .then_some(())
        .ok_or(format!("{s:?}"))
}

/// A drain of a node whose engine is gone (its target lost): the cluster
/// agent still moves the target (the old one left to the garbage
/// collector), the host is asked for the new path with no old one to
/// delete, and the node is Drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_of_a_node_whose_engine_is_gone_moves_its_target() {
    let mut c = Cluster::start(
        "127.0.166",
        3,
        Timers {
            core_extra: &["--drain-reconcile-period", "1s"],
            ..Timers::default()
        },
    );
    let api = c.rest();
    let (volume, v) = ha_kit::published_volume(&c, 2, APP).await;
    let old = v.state.target.clone().unwrap();
    let (_ha, ep, standin, release_tx) = agents(&c).await;
    release_tx.send(true).unwrap();
    c.engines[0].kill9();
    api.put_node_drain("node-1", "maintenance").await.unwrap();
    eventually("the drain switch-over Successful", 90, || {
        let (ep, volume) = (ep.clone(), volume.clone());
        async move {
            let s = switch_over(&ep, &volume).await;
            (s == Some(("drain".into(), "Successful".into())))
                .then_some(())
                .ok_or(format!("{s:?}"))
        }
    })
    .await;
    let moved = api.get_volume(&volume).await.unwrap();
    assert_ne!(moved.spec.target.as_ref().unwrap().node, "node-1");
    let new = moved.state.target.unwrap();
    assert_ne!(new.uuid, old.uuid);
    assert!(standin
        .calls
        .lock()
        .unwrap()
        .iter()
        .any(|call| call.new_uri == new.device_uri));
    eventually("node-1 Drained", 60, || {
        let api = api.clone();
        async move { drained(&api, "node-1").await }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_hands_the_target_over_before_the_old_one_goes() {
    use blockdev::BlockDevice;
    let c = Cluster::start(
        PREFIX,
        3,
        Timers {
            core_extra: &["--drain-reconcile-period", "1s"],
            ..Timers::default()
        },
    );
    let api = c.rest();
    let (volume, v) = ha_kit::published_volume(&c, 2, APP).await;
    let old = v.state.target.clone().unwrap();
    let (old_ctrl, old_ns) = host(&old.device_uri).await;
    let block = blockdev::DmaBuf::from_slice(&[0x5a; 4096]);
    old_ns.write_at(0, &block).await.unwrap();

    // The cluster agent, and the stand-in node agent registered with it.
    let (ha, ep, standin, release_tx) = agents(&c).await;

    api.put_node_drain("node-1", "maintenance").await.unwrap();

    // The node agent is asked to replace the path.
    let calls = standin.calls.clone();
    eventually("the ReplacePath of the drain", 60, || {
        let n = calls.lock().unwrap().len();
        async move { (n >= 1).then_some(()).ok_or(format!("{n} calls")) }
    })
    .await;
    let moved = api.get_volume(&volume).await.unwrap();
    let new = moved.state.target.clone().unwrap();
    assert_ne!(moved.spec.target.as_ref().unwrap().node, "node-1");
    assert_ne!(new.uuid, old.uuid);
    {
        let call = calls.lock().unwrap()[0].clone();
        assert_eq!(call.nqn, volume_nqn(&volume));
        assert_eq!(call.new_uri, new.device_uri);
        assert!(old.device_uri.contains(&call.old_address), "{call:?}");
    }
    assert_eq!(
        switch_over(&ep, &volume).await,
        Some(("drain".into(), "ReplacePath".into()))
    );
    // Make before break: the old target is still there for the host, but
    // hands its I/O over; the new one serves, with the data.
    let specs = api.get_specs().await.unwrap();
    let kept = specs.nexuses.iter().find(|n| n.uuid == old.uuid);
    assert_eq!(
        kept.map(|n| (n.node.as_str(), n.status)),
        Some(("node-1", SpecStatus::Created)),
        "{specs:?}"
    );
    let e = old_ns.write_at(4096, &block).await.unwrap_err();
    assert!(ana_inaccessible(&e), "{e}");
    let (new_ctrl, new_ns) = host(&new.device_uri).await;
    new_ns.write_at(4096, &block).await.unwrap();
    let mut back = blockdev::DmaBuf::new(8192);
    new_ns.read_at(0, &mut back).await.unwrap();
    assert!(back.iter().all(|b| *b == 0x5a), "the data moved with it");
    let node = api.get_node("node-1").await.unwrap();
    assert_eq!(
        node.spec.unwrap().cordon_drain_state.drain_status,
        Some(DrainStatus::Draining),
        "drained while its old target still serves a path"
    );

    // The path is replaced: the old target goes, the node is drained.
    release_tx.send(true).unwrap();
    eventually("the drain switch-over Successful", 60, || {
        let (ep, volume) = (ep.clone(), volume.clone());
        async move {
            let s = switch_over(&ep, &volume).await;
            (s == Some(("drain".into(), "Successful".into())))
                .then_some(())
                .ok_or(format!("{s:?}"))
        }
    })
    .await;
    eventually("node-1 Drained", 30, || {
        let api = api.clone();
        async move { drained(&api, "node-1").await }
    })
    .await;
    let specs = api.get_specs().await.unwrap();
    assert!(
        specs.nexuses.iter().all(|n| n.uuid != old.uuid),
        "{specs:?}"
    );
    assert_eq!(
        api.get_volume(&volume)
            .await
            .unwrap()
            .state
            .target
            .unwrap()
            .uuid,
        new.uuid
    );
    assert!(c.core.log_lines("drain: moving the target").is_empty());
    assert!(!ha.log_lines("drain: switch-over started").is_empty());
    let _ = old_ctrl.disconnect().await;
    let _ = new_ctrl.disconnect().await;
}
