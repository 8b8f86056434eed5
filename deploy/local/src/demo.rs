//! `mayastor-local demo`: the replicated data path end to end.
//!
//! 1. creates the demo volume (3 replicas, 64 MiB; a demo volume left by an
//!    earlier run is deleted and created afresh, so every run starts from
//!    the same state) and publishes it;
//! 2. writes a checksummed pattern over NVMe/TCP with our initiator and
//!    verifies it;
//! 3. SIGKILLs an engine that holds a replica but not the target, keeps
//!    writing (a new generation over the first half) and waits for the
//!    volume to be Degraded;
//! 4. restarts that engine and follows the rebuild to Online from the REST
//!    replica topology;
//! 5. reads the whole volume back: every block must hold its checksum and
//!    its latest generation.
//!
//! The cluster and the published demo volume stay up afterwards.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use openapi::{
    client::RestClient,
    models::{
        ChildState, CreateVolumeBody, NodeStatus, PublishVolumeBody, ReplicaStatus, Volume,
        VolumeStatus,
    },
    CoreApi, ErrorKind,
};

use crate::{
    cluster::{health, open_existing, rest_client, start, wait_listening, Health},
    data::{VolumePath, BLOCK_BYTES, HOST_NODE},
    layout::Layout,
    process::Signal,
    progress::{percent_bar, Step},
    size::format_size,
};

/// The demo volume's id (the same on every run).
pub const DEMO_VOLUME: &str = "6d617961-7374-4f72-8c6f-63616c64656d";
/// The demo volume's size.
pub const DEMO_SIZE_BYTES: u64 = 64 << 20;
/// How long each wait of the demo may take.
const WAIT: Duration = Duration::from_secs(180);

/// `mayastor-local demo`.
pub async fn demo(root: &Path) -> anyhow::Result<()> {
    let (state, layout) = open_existing(root)?;
    if layout.settings.nodes < 3 {
        bail!(
            "the demo needs at least 3 nodes and this cluster has {}: run `mayastor-local down --wipe` then `mayastor-local up --nodes 3`",
            layout.settings.nodes
        );
    }
    let down: Vec<String> = layout
        .components(&state)
        .iter()
        .filter(|c| health(&state, c).1 != Health::Running)
        .map(|c| c.name.clone())
        .collect();
    if !down.is_empty() {
        bail!(
            "the cluster is not fully up ({} not running): run `mayastor-local up` first",
            down.join(", ")
        );
    }
    let api = rest_client(&layout, Duration::from_secs(30))?;
    let started = Instant::now();

    // 1. The volume.
    let step = Step::start("creating the demo volume");
    wait_nodes_online(&api, &layout).await?;
    match api.get_volume(DEMO_VOLUME).await {
        Ok(old) => {
            step.message("deleting the demo volume of an earlier run");
            if old.spec.target.is_some() {
                api.del_volume_target(DEMO_VOLUME, true)
                    .await
                    .context("cannot unpublish the old demo volume")?;
            }
            api.del_volume(DEMO_VOLUME)
                .await
                .context("cannot delete the old demo volume")?;
            step.println("✓ deleted the demo volume of an earlier run");
        }
        Err(e) if e.kind == ErrorKind::NotFound => {}
        Err(e) => return Err(e).context("cannot look up the demo volume"),
    }
    let volume = api
        .put_volume(DEMO_VOLUME, CreateVolumeBody::new(DEMO_SIZE_BYTES, 3))
        .await
        .context("cannot create the demo volume")?;
    step.done(format!(
        "created volume {DEMO_VOLUME}: 3 replicas of {} on {}",
        format_size(DEMO_SIZE_BYTES),
        replica_nodes(&volume).join(", ")
    ));

    let step = Step::start("publishing it over NVMe/TCP");
    let volume = api
        .put_volume_target(DEMO_VOLUME, PublishVolumeBody::nvmf(None, Some(HOST_NODE)))
        .await
        .context("cannot publish the demo volume")?;
    let target_node = volume
        .spec
        .target
        .as_ref()
        .map(|t| t.node.clone())
        .context("the published volume has no target")?;
    let uri = volume
        .state
        .target
        .as_ref()
        .map(|t| t.device_uri.clone())
        .filter(|u| !u.is_empty())
        .context("the published volume has no device URI")?;
    step.done(format!("published on {target_node}: {uri}"));

    // 2. Data.
    let path = VolumePath::connect(&uri).await?;
    let blocks = path.blocks();
    let half = blocks / 2;
    let bar = blocks_bar(blocks, "writing generation 1");
    path.write(0..blocks, 1, |n| at_block(&bar, n)).await?;
    bar.set_position(0);
    bar.set_message("verifying");
    path.verify(0..blocks, |_| 1, |n| at_block(&bar, n)).await?;
    bar.finish_and_clear();
    println!(
        "✓ wrote and verified {} ({blocks} checksummed blocks) over NVMe/TCP as {HOST_NODE}",
        format_size(blocks * BLOCK_BYTES)
    );

    // 3. Kill a replica's engine (not the target's).
    let victim = replica_nodes(&volume)
        .into_iter()
        .filter(|n| *n != target_node)
        .find_map(|n| Some((n.strip_prefix("node-")?.parse::<u32>().ok()?, n)));
    let Some((victim, victim_node)) = victim else {
        bail!("no replica of the demo volume lives outside the target node {target_node}");
    };
    let engine = Layout::engine_name(victim);
    let rec = state
        .pid(&engine)
        .filter(|r| r.is_alive())
        .with_context(|| format!("{engine} is not running"))?;
    if !rec.signal(Signal::Kill) {
        bail!("cannot kill {engine} (pid {})", rec.pid);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while rec.is_alive() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    state.remove_pid(&engine);
    println!(
        "✓ killed {engine} (SIGKILL, pid {}): {victim_node} held a replica, the target is on {target_node}",
        rec.pid
    );

    let bar = blocks_bar(
        half,
        format!("writing generation 2 while {victim_node} is down"),
    );
    path.write(0..half, 2, |n| at_block(&bar, n)).await?;
    bar.finish_and_clear();
    let step = Step::start("waiting for the volume to be Degraded");
    let degraded = wait_volume(&api, "Degraded", |v| {
        v.state.status == VolumeStatus::Degraded
    })
    .await?;
    step.done(format!(
        "volume Degraded after writing {} more; replicas: {}",
        format_size(half * BLOCK_BYTES),
        topology_line(&degraded)
    ));

    // 4. Restart and rebuild.
    let step = Step::start(format!("restarting {engine}"));
    let component = layout.component(&state, &engine)?;
    let mut spawned = start(&state, &component)?;
    wait_listening(&mut [(&component, &mut spawned)]).await?;
    step.done(format!("restarted {engine} (pid {})", spawned.record.pid));

    let bar = percent_bar(format!("rebuilding the replica on {victim_node}"));
    let rebuild_started = Instant::now();
    let online = wait_volume(&api, "Online with 3 healthy replicas", |v| {
        let progress = v
            .state
            .replica_topology
            .values()
            .filter_map(|r| r.rebuild_progress)
            .min();
        if let Some(p) = progress {
            bar.set_position(u64::from(p));
        }
        bar.set_message(format!("volume {:?}: {}", v.state.status, topology_line(v)));
        healthy(v)
    })
    .await;
    bar.set_position(100);
    bar.finish_and_clear();
    let online = online?;
    let history = api
        .get_rebuild_history(DEMO_VOLUME)
        .await
        .ok()
        .and_then(|h| h.records.into_iter().last())
        .map(|r| {
            format!(
                "; last rebuild: {}, {} copied of {}",
                if r.is_partial { "partial" } else { "full" },
                format_size(r.blocks_transferred * r.block_size),
                format_size(r.blocks_total * r.block_size)
            )
        })
        .unwrap_or_default();
    println!(
        "✓ rebuilt in {:.1} s: volume Online, replicas: {}{history}",
        rebuild_started.elapsed().as_secs_f64(),
        topology_line(&online)
    );

    // 5. Everything again.
    let bar = blocks_bar(blocks, "re-verifying every block");
    path.verify(
        0..blocks,
        |b| if b < half { 2 } else { 1 },
        |n| at_block(&bar, n),
    )
    .await?;
    bar.finish_and_clear();
    path.disconnect().await;
    println!(
        "✓ re-verified all {}: every block has its checksum and latest generation",
        format_size(blocks * BLOCK_BYTES)
    );
    println!(
        "Demo done in {:.0} s. Volume {DEMO_VOLUME} stays published on {target_node} ({uri}).",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Volume Online, with 3 replicas Online that are healthy children.
pub fn healthy(v: &Volume) -> bool {
    v.state.status == VolumeStatus::Online
        && v.state.replica_topology.len() == 3
        && v.state
            .replica_topology
            .values()
            .all(|r| r.state == ReplicaStatus::Online && r.child_status == Some(ChildState::Online))
}

fn replica_nodes(v: &Volume) -> Vec<String> {
    let mut nodes: Vec<String> = v
        .state
        .replica_topology
        .values()
        .filter_map(|r| r.node.clone())
        .collect();
    nodes.sort();
    nodes
}

/// `node-1 Online, node-2 Faulted, node-3 Degraded 40%`.
fn topology_line(v: &Volume) -> String {
    let mut parts: Vec<(String, String)> = v
        .state
        .replica_topology
        .values()
        .map(|r| {
            let node = r.node.clone().unwrap_or_else(|| "?".into());
            let state = match (r.child_status, r.rebuild_progress) {
                (Some(c), Some(p)) => format!("{c:?} {p}%"),
                (Some(c), None) => format!("{c:?}"),
                (None, _) => format!("{:?}", r.state),
            };
            (node, state)
        })
        .collect();
    parts.sort();
    parts
        .into_iter()
        .map(|(n, s)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn wait_nodes_online(api: &RestClient, layout: &Layout) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let online = api.get_nodes().await.map(|nodes| {
            nodes
                .iter()
                .filter(|n| {
                    n.state
                        .as_ref()
                        .is_some_and(|s| s.status == NodeStatus::Online)
                })
                .count()
        });
        match online {
            Ok(n) if n >= 3 && n as u32 >= layout.settings.nodes => return Ok(()),
            Ok(n) if Instant::now() > deadline => {
                bail!("only {n} node(s) online; the demo needs 3 (see `mayastor-local status`)")
            }
            Err(e) if Instant::now() > deadline => return Err(e).context("cannot list the nodes"),
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Polls the demo volume until `done` says so.
async fn wait_volume(
    api: &RestClient,
    what: &str,
    mut done: impl FnMut(&Volume) -> bool,
) -> anyhow::Result<Volume> {
    let deadline = Instant::now() + WAIT;
    loop {
        let last = match api.get_volume(DEMO_VOLUME).await {
            Ok(v) if done(&v) => return Ok(v),
            Ok(v) => format!("{:?}: {}", v.state.status, topology_line(&v)),
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            bail!(
                "the demo volume was not {what} within {} s (last: {last})",
                WAIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A bar over `blocks` blocks, shown in bytes (set positions with
/// [`at_block`]).
fn blocks_bar(blocks: u64, message: impl Into<String>) -> ProgressBar {
    let bar = ProgressBar::new(blocks * BLOCK_BYTES);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.into());
    bar
}

/// Moves a [`blocks_bar`] to block `n`.
fn at_block(bar: &ProgressBar, n: u64) {
    bar.set_position(n * BLOCK_BYTES);
}
