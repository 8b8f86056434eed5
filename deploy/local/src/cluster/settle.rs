//! The end of `up`: nodes registered and online, pools created through
//! REST (an existing pool spec is simply returned) and online, published
//! volumes online.

use std::time::{Duration, Instant};

use anyhow::bail;
use openapi::{
    models::{CreatePoolBody, NodeStatus, PoolStatus, VolumeStatus},
    CoreApi,
};

use super::rest_client;
use crate::{layout::Layout, progress::Step, size::format_size, state::StateDir};

/// How long `up` waits for nodes and pools.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Nodes online, pools created and online, published volumes online.
pub(super) async fn settle(state: &StateDir, layout: &Layout) -> anyhow::Result<()> {
    let api = rest_client(layout, Duration::from_secs(10))?;
    let n = layout.settings.nodes;
    let names: Vec<String> = (1..=n).map(Layout::node_name).collect();

    let step = Step::start(format!("waiting for {n} node(s) to register"));
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let last = match api.get_nodes().await {
            Ok(nodes) => {
                let online = names
                    .iter()
                    .filter(|id| {
                        nodes.iter().any(|node| {
                            node.id == **id
                                && node
                                    .state
                                    .as_ref()
                                    .is_some_and(|s| s.status == NodeStatus::Online)
                        })
                    })
                    .count();
                if online == names.len() {
                    break;
                }
                step.message(format!("waiting for nodes: {online}/{n} online"));
                format!("{online} of {n} nodes online")
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            bail!(
                "the nodes did not come online: {last}; see the logs in {}",
                state.logs_dir().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    step.done(format!("{n} node(s) online"));

    let step = Step::start(format!("creating {n} pool(s)"));
    for node in 1..=n {
        let pool = Layout::pool_name(node);
        let disk = format!("aio://{}", state.pool_file(node).display());
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let body = CreatePoolBody {
                disks: vec![disk.clone()],
                labels: None,
            };
            match api
                .put_node_pool(&Layout::node_name(node), &pool, body)
                .await
            {
                Ok(_) => break,
                Err(e) if e.kind == openapi::ErrorKind::AlreadyExists => {
                    bail!("cannot create {pool}: {e}")
                }
                Err(e) if Instant::now() > deadline => bail!("cannot create {pool}: {e}"),
                Err(e) => step.message(format!("creating {pool}: {e} (retrying)")),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let last = match api.get_pools().await {
            Ok(pools) => {
                let online = (1..=n)
                    .filter(|i| {
                        pools.iter().any(|p| {
                            p.id == Layout::pool_name(*i)
                                && p.state
                                    .as_ref()
                                    .is_some_and(|s| s.status == PoolStatus::Online)
                        })
                    })
                    .count();
                if online == n as usize {
                    break;
                }
                step.message(format!("waiting for pools: {online}/{n} online"));
                format!("{online} of {n} pools online")
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            bail!(
                "the pools did not come online: {last}; see the logs in {}",
                state.logs_dir().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    step.done(format!(
        "{n} pool(s) online ({} each)",
        format_size(layout.settings.pool_size_bytes)
    ));

    // Volumes published before a `down` come back once their target is
    // recreated; a volume that does not is reported, not fatal.
    let step = Step::start("waiting for published volumes");
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let volumes = match api.get_volumes(0, None).await {
            Ok(v) => v.entries,
            Err(e) => bail!("cannot list the volumes: {e}"),
        };
        let published: Vec<_> = volumes.iter().filter(|v| v.spec.target.is_some()).collect();
        let not_online: Vec<String> = published
            .iter()
            .filter(|v| v.state.status != VolumeStatus::Online)
            .map(|v| format!("{} {:?}", v.spec.uuid, v.state.status))
            .collect();
        if not_online.is_empty() {
            step.done(format!(
                "{} volume(s), {} published, all online",
                volumes.len(),
                published.len()
            ));
            break;
        }
        if Instant::now() > deadline {
            drop(step);
            println!(
                "! {} published volume(s) not online yet: {}",
                not_online.len(),
                not_online.join(", ")
            );
            break;
        }
        step.message(format!(
            "waiting for {} published volume(s) to be online",
            not_online.len()
        ));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}
