//! A switch-over against a real cluster (etcd, agent-core, three
//! io-engines) with the real `agent-ha-cluster`; the node agent is a
//! stand-in speaking `HaNodeRpc` (the real one needs a kernel NVMe host,
//! see the VM tests), which records every `ReplacePath` and holds its
//! answer until the test lets it go.
//!
//! The target's engine is SIGKILLed and its path reported failed; the
//! cluster agent is SIGKILLed while the switch-over waits in
//! `ReplacePath`; after a restart it finishes from the stored stage
//! without republishing again, and reports for the volume meanwhile are
//! answered `IN_PROGRESS` without starting another switch-over.

#![allow(clippy::unwrap_used)]

#[path = "../../core/tests/common/mod.rs"]
mod common;
mod ha_kit;

use std::net::SocketAddr;

use ha_kit::StandIn;

use common::{bin, eventually, free_port, wait_port, Cluster, Proc, Timers};
use io_engine_api::{
    ha::{
        ha_cluster_rpc_client::HaClusterRpcClient, FailedPath, ListSwitchOversRequest,
        ReportFailedPathsRequest, ReportOutcome,
    },
    names::volume_nqn,
};
use openapi::{models::*, CoreApi};

const PREFIX: &str = "127.0.155";

fn ha_cluster_args(c: &Cluster, endpoint: &str) -> Vec<String> {
    [
        "--grpc-endpoint",
        endpoint,
        "--store",
        &c.etcd_ep,
        "--rest",
        &c.rest_url(),
        "--lease-ttl",
        "2s",
        "--retry-delay",
        "200ms",
        "--node-timeout",
        "60s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn report(
    ep: &str,
    node_agent: &str,
    paths: Vec<FailedPath>,
) -> Vec<(String, ReportOutcome)> {
    let mut client = HaClusterRpcClient::connect(format!("http://{ep}"))
        .await
        .unwrap();
    client
        .report_failed_paths(ReportFailedPathsRequest {
            node: "app-1".into(),
            endpoint: node_agent.into(),
            paths,
        })
        .await
        .unwrap()
        .into_inner()
        .paths
        .into_iter()
        .map(|p| (p.nqn, ReportOutcome::try_from(p.outcome).unwrap()))
        .collect()
}

async fn stage(ep: &str, volume: &str) -> Option<String> {
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
        .map(|s| s.stage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_switch_over_the_cluster_agent_finishes_from_the_stored_stage() {
    let mut c = Cluster::start(PREFIX, 3, Timers::default());
    let api = c.rest();
    let (volume, v) = ha_kit::published_volume(&c, 3, "app-1").await;
    let old = v.state.target.clone().unwrap();
    let old_address = old
        .device_uri
        .strip_prefix("nvmf://")
        .and_then(|r| r.split_once('/'))
        .map(|(a, _)| a.to_owned())
        .unwrap();

    // The stand-in node agent.
    let node_agent: SocketAddr = format!("{PREFIX}.4:{}", free_port(&format!("{PREFIX}.4")))
        .parse()
        .unwrap();
    let (standin, release_tx) = StandIn::serve(node_agent);
    let node_agent = node_agent.to_string();

    let ip = format!("{PREFIX}.3");
    let ep = format!("{ip}:{}", free_port(&ip));
    let mut ha = Proc::spawn(
        "agent-ha-cluster",
        bin("agent-ha-cluster", "agent-ha-cluster"),
        ha_cluster_args(&c, &ep),
    );
    wait_port(&ep, "agent-ha-cluster");

    // The target dies; its path is reported in a batch with a path that is
    // not ours.
    c.engines[0].kill9();
    let nqn = volume_nqn(&volume);
    let outcomes = report(
        &ep,
        &node_agent,
        vec![
            FailedPath {
                nqn: nqn.clone(),
                target_address: old_address.clone(),
            },
            FailedPath {
                nqn: "nqn.2014-08.org.nvmexpress.discovery".into(),
                target_address: old_address.clone(),
            },
        ],
    )
    .await;
    assert_eq!(
        outcomes,
        vec![
            (nqn.clone(), ReportOutcome::Started),
            (
                "nqn.2014-08.org.nvmexpress.discovery".into(),
                ReportOutcome::Rejected
            )
        ]
    );

    // The core republished it: the node agent is asked to replace the path.
    let calls = standin.calls.clone();
    eventually("the first ReplacePath", 60, || {
        let n = calls.lock().unwrap().len();
        async move { (n >= 1).then_some(()).ok_or(format!("{n} calls")) }
    })
    .await;
    assert_eq!(stage(&ep, &volume).await.as_deref(), Some("ReplacePath"));
    // A second report during the switch-over starts nothing.
    let again = report(
        &ep,
        &node_agent,
        vec![FailedPath {
            nqn: nqn.clone(),
            target_address: old_address.clone(),
        }],
    )
    .await;
    assert_eq!(again, vec![(nqn.clone(), ReportOutcome::InProgress)]);
    let moved = api.get_volume(&volume).await.unwrap();
    let new_target = moved.state.target.clone().unwrap();
    assert_ne!(moved.spec.target.as_ref().unwrap().node, "node-1");
    assert_ne!(new_target.uuid, old.uuid, "a new nexus");
    assert_eq!(calls.lock().unwrap()[0].new_uri, new_target.device_uri);
    assert_eq!(calls.lock().unwrap()[0].old_address, old_address);

    // SIGKILL in the middle of ReplacePath; a restart resumes it.
    ha.kill9();
    ha.start();
    wait_port(&ep, "agent-ha-cluster");
    eventually("the resumed ReplacePath", 60, || {
        let n = calls.lock().unwrap().len();
        async move { (n >= 2).then_some(()).ok_or(format!("{n} calls")) }
    })
    .await;
    let again = report(
        &ep,
        &node_agent,
        vec![FailedPath {
            nqn: nqn.clone(),
            target_address: old_address.clone(),
        }],
    )
    .await;
    assert_eq!(again, vec![(nqn.clone(), ReportOutcome::InProgress)]);
    release_tx.send(true).unwrap();
    eventually("the switch-over Successful", 60, || {
        let (ep, volume) = (ep.clone(), volume.clone());
        async move {
            let s = stage(&ep, &volume).await;
            (s.as_deref() == Some("Successful"))
                .then_some(())
                .ok_or(format!("{s:?}"))
        }
    })
    .await;

    // One republish only: the target is where it went before the kill,
    // and every ReplacePath asked for that same target.
    let after = api.get_volume(&volume).await.unwrap();
    assert_eq!(after.state.target.as_ref().unwrap().uuid, new_target.uuid);
    for call in calls.lock().unwrap().iter() {
        assert_eq!(call.nqn, nqn);
        assert_eq!(call.new_uri, new_target.device_uri);
        assert_eq!(call.old_address, old_address);
    }
    assert_eq!(c.core.log_lines("volume republished").len(), 1);
    assert!(!ha.log_lines("resuming a switch-over").is_empty());
    // The old target is gone or left to the garbage collector.
    let specs = api.get_specs().await.unwrap();
    assert!(specs
        .nexuses
        .iter()
        .filter(|n| n.uuid == old.uuid)
        .all(|n| n.status == SpecStatus::Deleting));
}
