//! Reconcilers: the loops that make the observed state follow the specs.
//!
//! Each [`Reconciler`] is a small unit with its own period (its own
//! command-line flag, defaulting to `--reconcile-period`) and its own loop;
//! a pass runs under the core's operation lock, only on the lease holder:
//! - [`Reconciler::Operations`] ([`recover_ops`]): finishes or rolls back
//!   operations a crash interrupted (create and publish are rolled back,
//!   destroy, unpublish and resize finished);
//! - [`Reconciler::Pools`] ([`restore_pools`]): pools are created
//!   (imported) again on engines that restarted;
//! - [`Reconciler::Nexuses`] ([`restore_nexuses`]): targets are recreated
//!   on engines that restarted — the engine's nexus info decides which
//!   children come back online;
//! - [`Reconciler::Volumes`] ([`self_heal`]): a faulted child whose replica
//!   is reachable again within the faulted-child wait is onlined (partial
//!   rebuild); after the wait it is retired and replaced (full rebuild) —
//!   but only when a replacement can be placed, so a volume that cannot
//!   heal keeps its replicas and stays Degraded; replica counts of
//!   published and unpublished volumes are brought to the spec (scale up,
//!   or down removing faulted first);
//! - [`Reconciler::Space`] ([`thin_space`]): a thin pool that ran out of
//!   space gets its largest replica moved to another pool, then the
//!   children that ran out of space there are onlined again;
//! - [`Reconciler::Gc`] ([`gc`]): specs left `Deleting`, specs left
//!   `Creating` by a crash, and replicas and nexuses no spec knows (after
//!   one GC period) are removed;
//! - [`Reconciler::Drain`] ([`drain`]): targets move off draining nodes.
//!
//! When the core starts leading, one pass of every reconciler runs in the
//! order above (interrupted operations are settled before anything else
//! looks at the specs); then each runs on its own period.
//!
//! The poll loop ([`poll_loop`]) refreshes observed state and marks nodes
//! without a heartbeat offline.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use io_engine_api::v1;
use openapi::models::{DrainStatus, SpecStatus};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    config::Args,
    core::{child_of, Core},
    scheduler,
    specs::VolumeOp,
};

/// The reconcilers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reconciler {
    Operations,
    Pools,
    Nexuses,
    Volumes,
    Space,
    Gc,
    Drain,
}

impl Reconciler {
    /// Every reconciler, in the order of the first pass.
    pub const ALL: [Reconciler; 7] = [
        Reconciler::Operations,
        Reconciler::Pools,
        Reconciler::Nexuses,
        Reconciler::Volumes,
        Reconciler::Space,
        Reconciler::Gc,
        Reconciler::Drain,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reconciler::Operations => "operations",
            Reconciler::Pools => "pools",
            Reconciler::Nexuses => "nexuses",
            Reconciler::Volumes => "volumes",
            Reconciler::Space => "space",
            Reconciler::Gc => "gc",
            Reconciler::Drain => "drain",
        }
    }

    /// Its period: its own flag, else `--reconcile-period`.
    pub fn period(self, args: &Args) -> Duration {
        let own = match self {
            Reconciler::Operations => args.operations_reconcile_period,
            Reconciler::Pools => args.pool_reconcile_period,
            Reconciler::Nexuses => args.nexus_reconcile_period,
            Reconciler::Volumes => args.volume_reconcile_period,
            Reconciler::Space => args.space_reconcile_period,
            Reconciler::Gc => args.gc_reconcile_period,
            Reconciler::Drain => args.drain_reconcile_period,
        };
        own.unwrap_or(args.reconcile_period)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A replica being moved off a thin pool that ran out of space: its
/// successor is rebuilt before it is removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub from: String,
    pub to: String,
    pub pool: String,
    pub started: Instant,
}

/// State the reconcilers keep between passes (shared by all of them).
#[derive(Default)]
pub struct ReconcileState {
    /// Orphans first seen at.
    orphans: Mutex<HashMap<String, Instant>>,
    /// Volume uuid -> the replica move in progress.
    moves: Mutex<HashMap<String, Move>>,
    /// Passes run, by reconciler.
    passes: [AtomicU64; 7],
}

impl ReconcileState {
    /// How many passes `r` has run.
    pub fn passes(&self, r: Reconciler) -> u64 {
        self.passes[r.index()].load(Ordering::Relaxed)
    }

    /// The replica moves in progress.
    pub fn moves(&self) -> HashMap<String, Move> {
        self.moves.lock().clone()
    }
}

/// Refreshes observed state and expires nodes, every poll period.
pub async fn poll_loop(core: Arc<Core>, stop: CancellationToken) {
    loop {
        for id in core.registry.expire(core.args.heartbeat_timeout) {
            warn!(node = %id, "node offline: no heartbeat");
        }
        let nodes = core.registry.nodes();
        futures::future::join_all(
            nodes
                .iter()
                .filter(|n| n.online)
                .map(|n| core.refresh(&n.id)),
        )
        .await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(core.args.poll_period) => {}
        }
    }
}

/// Runs the reconcilers until `stop`: after the shortest period, one pass
/// of each in order, then each on its own period.
pub async fn run(core: Arc<Core>, stop: CancellationToken) {
    let state = Arc::new(ReconcileState::default());
    let first = Reconciler::ALL
        .iter()
        .map(|r| r.period(&core.args))
        .min()
        .unwrap_or(core.args.reconcile_period);
    tokio::select! {
        _ = stop.cancelled() => return,
        _ = tokio::time::sleep(first) => {}
    }
    step(&core, &state).await;
    let loops = Reconciler::ALL.map(|r| {
        let (core, state, stop) = (core.clone(), state.clone(), stop.clone());
        tokio::spawn(async move {
            let period = r.period(&core.args);
            info!(
                reconciler = r.name(),
                period_ms = period.as_millis() as u64,
                "reconciler started"
            );
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(period) => {}
                }
                pass(&core, &state, r).await;
            }
        })
    });
    for l in loops {
        let _ = l.await;
    }
}

/// One pass of reconciler `r` under the operation lock.
pub async fn pass(core: &Core, state: &ReconcileState, r: Reconciler) {
    let _g = core.op_lock.lock().await;
    run_locked(core, state, r).await;
}

async fn run_locked(core: &Core, state: &ReconcileState, r: Reconciler) {
    match r {
        Reconciler::Operations => recover_ops(core).await,
        Reconciler::Pools => restore_pools(core).await,
        Reconciler::Nexuses => restore_nexuses(core).await,
        Reconciler::Volumes => self_heal(core, state).await,
        Reconciler::Space => thin_space(core, state).await,
        Reconciler::Gc => gc(core, state).await,
        Reconciler::Drain => drain(core).await,
    }
    let n = state.passes[r.index()].fetch_add(1, Ordering::Relaxed) + 1;
    debug!(reconciler = r.name(), passes = n, "reconcile pass");
}

/// One pass of every reconciler, in order, under one hold of the lock.
pub async fn step(core: &Core, state: &ReconcileState) {
    let _g = core.op_lock.lock().await;
    for r in Reconciler::ALL {
        run_locked(core, state, r).await;
    }
}

/// Finishes or rolls back interrupted volume operations.
pub async fn recover_ops(core: &Core) {
    let pending: Vec<_> = core
        .specs
        .volumes
        .read()
        .values()
        .filter(|r| r.op.is_some())
        .cloned()
        .collect();
    for mut rec in pending {
        let id = rec.spec.uuid.clone();
        let result = match rec.op.clone() {
            Some(VolumeOp::Create) => {
                info!(volume = %id, "rolling back an interrupted create");
                let mut r = Ok(());
                for replica in core.specs.volume_replicas(&id) {
                    if let Err(e) = core.destroy_replica(&replica).await {
                        r = Err(e);
                    }
                }
                match r {
                    Ok(()) => core.specs.delete_volume(&id).await,
                    Err(e) => Err(e),
                }
            }
            Some(VolumeOp::Destroy) => {
                info!(volume = %id, "finishing an interrupted destroy");
                core.finish_destroy(rec.clone()).await
            }
            Some(VolumeOp::Publish { nexus, .. }) => {
                info!(volume = %id, "rolling back an interrupted publish");
                let spec = core.specs.nexuses.read().get(&nexus).cloned();
                match spec {
                    Some(spec) => core.rollback_publish(&mut rec, &spec).await,
                    None => {
                        rec.op = None;
                        rec.nexus = None;
                        rec.spec.target = None;
                        if let Err(e) = core.specs.put_volume(rec.clone()).await {
                            warn!(volume = %id, error = %e, "cannot clear the publish");
                        }
                    }
                }
                Ok(())
            }
            Some(VolumeOp::Unpublish) => {
                info!(volume = %id, "finishing an interrupted unpublish");
                match core.unpublish_locked(&mut rec).await {
                    Ok(()) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Some(VolumeOp::Resize { size }) => {
                info!(volume = %id, size, "finishing an interrupted resize");
                core.finish_resize(&mut rec, size).await
            }
            None => Ok(()),
        };
        if let Err(e) = result {
            warn!(volume = %id, error = %e, "interrupted operation not settled yet");
        }
    }
}

/// Pools back on engines that lost them (restarts): imported from their
/// disks.
pub async fn restore_pools(core: &Core) {
    for node in core.registry.nodes().into_iter().filter(|n| n.online) {
        let pools: Vec<_> = core
            .specs
            .pools
            .read()
            .values()
            .filter(|p| p.node == node.id && p.status == SpecStatus::Created)
            .cloned()
            .collect();
        let mut changed = false;
        for p in pools {
            if node.pools.iter().any(|o| o.name == p.id) {
                continue;
            }
            info!(pool = %p.id, node = %node.id, "importing a pool the engine lost");
            match node
                .client
                .pool
                .clone()
                .create_pool(v1::CreatePoolRequest {
                    name: p.id.clone(),
                    uuid: None,
                    disks: p.disks.clone(),
                    cluster_size: None,
                })
                .await
            {
                Ok(_) => changed = true,
                Err(e) => warn!(pool = %p.id, error = %e.message(), "cannot import the pool"),
            }
        }
        if changed {
            core.refresh(&node.id).await;
        }
    }
}

/// Targets back on engines that lost them (restarts): the engine's nexus
/// info decides which children come back online.
pub async fn restore_nexuses(core: &Core) {
    for node in core.registry.nodes().into_iter().filter(|n| n.online) {
        let nexuses: Vec<_> = core
            .specs
            .nexuses
            .read()
            .values()
            .filter(|n| n.node == node.id && n.status == SpecStatus::Created)
            .cloned()
            .collect();
        for spec in nexuses {
            if node.nexuses.iter().any(|o| o.uuid == spec.uuid) {
                continue;
            }
            let Some(rec) = spec.owner.as_ref().and_then(|v| core.specs.volume(v)) else {
                continue;
            };
            if rec.nexus.as_deref() != Some(spec.uuid.as_str()) {
                continue;
            }
            info!(nexus = %spec.uuid, node = %node.id, volume = %rec.spec.uuid, "recreating a nexus the engine lost");
            let replicas = core.specs.volume_replicas(&rec.spec.uuid);
            if let Err(e) = core.start_nexus(&rec, &spec, 0, &replicas).await {
                warn!(nexus = %spec.uuid, error = %e, "cannot recreate the nexus yet");
            }
        }
    }
}

fn age_ms(ms: i64) -> Duration {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Duration::from_millis(u64::try_from(now - ms).unwrap_or(0))
}

/// Faulted children of published volumes, and the replica count of every
/// volume. Children that ran out of space are left to [`thin_space`], and
/// a volume with a replica move in progress keeps its extra replica.
pub async fn self_heal(core: &Core, state: &ReconcileState) {
    let volumes: Vec<_> = core
        .specs
        .volumes
        .read()
        .values()
        .filter(|r| r.spec.status == SpecStatus::Created && r.op.is_none())
        .cloned()
        .collect();
    for rec in volumes {
        let id = rec.spec.uuid.clone();
        let moving = state.moves.lock().contains_key(&id);
        if rec.spec.target.is_none() && rec.nexus.is_none() {
            // Unpublished: only the replica count (a scale that stopped
            // half way, e.g. by a crash, is finished here).
            if !moving {
                replica_count(core, &rec).await;
            }
            continue;
        }
        let Some((target, nexus)) = core.observed_nexus(&rec) else {
            continue;
        };
        let client = match core.registry.online_client(&target) {
            Some(c) => c,
            None => continue,
        };
        let replicas = core.specs.volume_replicas(&id);
        for child in &nexus.children {
            if child.state != v1::ChildState::ChildFaulted as i32 {
                continue;
            }
            let Some(replica) = replicas.iter().find(|r| r.uuid == child.uuid) else {
                // A child no spec knows: drop it.
                let _ = client
                    .nexus
                    .clone()
                    .remove_child_nexus(v1::RemoveChildNexusRequest {
                        uuid: nexus.uuid.clone(),
                        uri: child.uri.clone(),
                    })
                    .await;
                continue;
            };
            // Reachable: its engine reports it and its pool is healthy (a
            // pool whose disk returned errors must not take it back). Ask
            // the engine now: the last poll may predate the fault.
            core.refresh(&replica.node).await;
            let reachable = core.registry.replica(&replica.uuid).is_some()
                && core.registry.pools().iter().any(|(node, p)| {
                    *node == replica.node
                        && p.name == replica.pool
                        && p.state == v1::PoolState::PoolOnline as i32
                });
            let waited = child.faulted_at_ms > 0
                && age_ms(child.faulted_at_ms) >= core.args.faulted_child_wait;
            if child.reason == v1::ChildStateReason::ChildReasonNoSpace as i32 {
                // Its pool is full: the space reconciler frees room first.
                continue;
            }
            if reachable && !waited {
                // Back in time: online it (partial rebuild when it can).
                if let Err(e) = client
                    .nexus
                    .clone()
                    .child_operation(v1::ChildOperationRequest {
                        nexus_uuid: nexus.uuid.clone(),
                        uri: child.uri.clone(),
                        action: v1::ChildAction::Online as i32,
                    })
                    .await
                {
                    warn!(volume = %id, child = %child.uri, error = %e.message(), "cannot online the child yet");
                } else {
                    info!(volume = %id, child = %child.uri, "child back: onlined for a rebuild");
                }
                continue;
            }
            if !waited {
                continue;
            }
            // Retire it, but only when a replacement can be placed.
            let cluster = core.cluster();
            let others: Vec<_> = cluster
                .replicas
                .iter()
                .filter(|r| r.volume.as_deref() == Some(id.as_str()) && r.uuid != replica.uuid)
                .cloned()
                .collect();
            let mut req = crate::core::Core::request_for(&rec.spec);
            req.replicas = rec.spec.num_replicas;
            if scheduler::place_additional_replica(&cluster, &req, &others).is_err() {
                continue;
            }
            info!(volume = %id, child = %child.uri, "retiring a faulted replica");
            if let Err(e) = core.remove_replica(&rec, &replica.uuid).await {
                warn!(volume = %id, error = %e, "cannot retire the replica");
            }
        }
        if !moving {
            replica_count(core, &rec).await;
        }
        // Replicas that are reachable but not in the nexus (their node was
        // away when the nexus was made): add them back (full rebuild).
        if let Some((_, nexus)) = core.observed_nexus(&rec) {
            for r in core.specs.volume_replicas(&id) {
                if r.status != SpecStatus::Created || child_of(&nexus, &r.uuid).is_some() {
                    continue;
                }
                if core.registry.replica(&r.uuid).is_none() {
                    continue;
                }
                let Ok(uri) = core.child_uri(&r, &target).await else {
                    continue;
                };
                match client
                    .nexus
                    .clone()
                    .add_child_nexus(v1::AddChildNexusRequest {
                        uuid: nexus.uuid.clone(),
                        uri,
                        norebuild: false,
                    })
                    .await
                {
                    Ok(_) => {
                        info!(volume = %id, replica = %r.uuid, "replica added back to the target")
                    }
                    Err(e) => {
                        warn!(volume = %id, error = %e.message(), "cannot add the replica back")
                    }
                }
            }
        }
        core.refresh(&target).await;
    }
}

/// A child that ran out of space, waiting for room on its pool.
struct OutOfSpace {
    volume: String,
    target: String,
    nexus: String,
    uri: String,
    /// Bytes its replica still lacks to be fully allocated.
    lacks: u64,
}

/// Thin pools that ran out of space. A child faulted `no_space` marks its
/// replica's pool as full. For each such pool:
/// 1. a move already under way from it is finished first ([`finish_moves`]);
/// 2. when the pool has room again (free space of at least the
///    volume-commitment share of what each waiting child still lacks), its
///    out-of-space children are onlined: a partial rebuild copies what
///    they missed;
/// 3. otherwise the largest replica that can go elsewhere moves
///    ([`scheduler::relieve_pool`]): a faulted one is retired and replaced
///    at once, a healthy one gets its successor first and is removed once
///    the successor is rebuilt, so its volume never loses a copy.
pub async fn thin_space(core: &Core, state: &ReconcileState) {
    finish_moves(core, state).await;
    let volumes: Vec<_> = core
        .specs
        .volumes
        .read()
        .values()
        .filter(|r| r.spec.status == SpecStatus::Created && r.op.is_none())
        .cloned()
        .collect();
    let cluster = core.cluster();
    let mut full: BTreeMap<String, Vec<OutOfSpace>> = BTreeMap::new();
    for rec in &volumes {
        let Some((target, nexus)) = core.observed_nexus(rec) else {
            continue;
        };
        for child in &nexus.children {
            if child.state != v1::ChildState::ChildFaulted as i32
                || child.reason != v1::ChildStateReason::ChildReasonNoSpace as i32
            {
                continue;
            }
            let Some(replica) = cluster.replicas.iter().find(|r| r.uuid == child.uuid) else {
                continue;
            };
            full.entry(replica.pool.clone())
                .or_default()
                .push(OutOfSpace {
                    volume: rec.spec.uuid.clone(),
                    target: target.clone(),
                    nexus: nexus.uuid.clone(),
                    uri: child.uri.clone(),
                    lacks: replica.size.saturating_sub(replica.allocated),
                });
        }
    }
    let requests: BTreeMap<String, scheduler::VolumeRequest> = volumes
        .iter()
        .map(|r| (r.spec.uuid.clone(), Core::request_for(&r.spec)))
        .collect();
    for (pool, waiting) in full {
        if state.moves.lock().values().any(|m| m.pool == pool) {
            // Room is on its way.
            continue;
        }
        let cluster = core.cluster();
        let Some(p) = cluster.pools.iter().find(|p| p.id == pool) else {
            continue;
        };
        let mut free = p.capacity.saturating_sub(p.used);
        let mut stuck = 0;
        for w in &waiting {
            let need = (w.lacks.saturating_mul(cluster.limits.volume_commitment_pct) / 100).max(1);
            if free < need {
                stuck += 1;
                continue;
            }
            free -= need;
            let Some(client) = core.registry.online_client(&w.target) else {
                continue;
            };
            match client
                .nexus
                .clone()
                .child_operation(v1::ChildOperationRequest {
                    nexus_uuid: w.nexus.clone(),
                    uri: w.uri.clone(),
                    action: v1::ChildAction::Online as i32,
                })
                .await
            {
                Ok(_) => {
                    info!(volume = %w.volume, child = %w.uri, pool = %pool, "pool has room again: child onlined for a rebuild")
                }
                Err(e) => {
                    warn!(volume = %w.volume, child = %w.uri, error = %e.message(), "cannot online the child yet")
                }
            }
        }
        if stuck == 0 {
            continue;
        }
        let Some(relief) = scheduler::relieve_pool(&cluster, &pool, &requests) else {
            warn!(pool = %pool, "thin pool out of space and no replica on it can move elsewhere");
            continue;
        };
        let Some(rec) = volumes.iter().find(|r| r.spec.uuid == relief.volume) else {
            continue;
        };
        let id = &rec.spec.uuid;
        if relief.faulted {
            info!(volume = %id, replica = %relief.replica, pool = %pool, to = %relief.to.pool, "thin pool out of space: replacing its largest replica elsewhere");
            if let Err(e) = core.remove_replica(rec, &relief.replica).await {
                warn!(volume = %id, error = %e, "cannot retire the replica");
                continue;
            }
            if let Err(e) = core.add_replica_on(rec, &relief.to).await {
                warn!(volume = %id, error = %e, "cannot place the successor; the volume reconciler retries");
            }
        } else {
            info!(volume = %id, replica = %relief.replica, pool = %pool, to = %relief.to.pool, "thin pool out of space: moving its largest replica");
            match core.add_replica_on(rec, &relief.to).await {
                Ok(new) => {
                    state.moves.lock().insert(
                        id.clone(),
                        Move {
                            from: relief.replica,
                            to: new.uuid,
                            pool,
                            started: Instant::now(),
                        },
                    );
                }
                Err(e) => warn!(volume = %id, error = %e, "cannot start the move"),
            }
        }
    }
}

/// Moves under way: once the successor is an Online child (rebuilt), the
/// old replica is removed. A successor that faulted, or a volume that lost
/// its target, ends the move; the volume reconciler then brings the replica
/// count back (faulted replicas go first).
pub async fn finish_moves(core: &Core, state: &ReconcileState) {
    for (volume, mv) in state.moves() {
        let end = || {
            state.moves.lock().remove(&volume);
        };
        let Some(rec) = core.specs.volume(&volume) else {
            end();
            continue;
        };
        let Some((_, nexus)) = core.observed_nexus(&rec) else {
            if rec.nexus.is_none() {
                end();
            }
            continue;
        };
        match child_of(&nexus, &mv.to) {
            Some(c) if c.state == v1::ChildState::ChildOnline as i32 => {
                match core.remove_replica(&rec, &mv.from).await {
                    Ok(()) => {
                        info!(volume = %volume, from = %mv.from, to = %mv.to, pool = %mv.pool, secs = mv.started.elapsed().as_secs(), "replica moved off the full pool");
                        end();
                    }
                    Err(e) => {
                        warn!(volume = %volume, error = %e, "cannot remove the moved replica yet")
                    }
                }
            }
            Some(c) if c.state == v1::ChildState::ChildFaulted as i32 => {
                warn!(volume = %volume, replica = %mv.to, "the successor faulted: move abandoned");
                end();
            }
            Some(_) => {}
            None => {
                if !core.specs.replicas.read().contains_key(&mv.to) {
                    end();
                }
            }
        }
    }
}

/// Brings a volume's replicas to its replica count: one replica added or
/// one removed per step.
async fn replica_count(core: &Core, rec: &crate::specs::VolumeRecord) {
    let id = &rec.spec.uuid;
    let current = core
        .specs
        .volume_replicas(id)
        .into_iter()
        .filter(|r| r.status != SpecStatus::Deleting)
        .count();
    let want = usize::from(rec.spec.num_replicas);
    if current < want {
        match core.add_replica(rec).await {
            Ok(r) => info!(volume = %id, replica = %r.uuid, node = %r.node, "replica added"),
            Err(e) => {
                warn!(volume = %id, error = %e, "volume stays degraded: no replacement possible")
            }
        }
    } else if current > want {
        if let Some(victim) = scheduler::replica_to_remove(&core.cluster(), id) {
            if let Err(e) = core.remove_replica(rec, &victim).await {
                warn!(volume = %id, error = %e, "cannot remove a surplus replica");
            }
        }
    }
}

/// Removes what specs no longer want and what no spec knows.
pub async fn gc(core: &Core, state: &ReconcileState) {
    // Specs left Deleting.
    let deleting: Vec<_> = core
        .specs
        .replicas
        .read()
        .values()
        .filter(|r| r.status == SpecStatus::Deleting)
        .cloned()
        .collect();
    for r in deleting {
        if core.registry.online_client(&r.node).is_some() {
            if let Err(e) = core.destroy_replica(&r).await {
                warn!(replica = %r.uuid, error = %e, "gc: cannot destroy replica");
            }
        }
    }
    let nexus_deleting: Vec<_> = core
        .specs
        .nexuses
        .read()
        .values()
        .filter(|n| n.status == SpecStatus::Deleting)
        .cloned()
        .collect();
    for n in nexus_deleting {
        if let Some(client) = core.registry.online_client(&n.node) {
            if client
                .nexus
                .clone()
                .destroy_nexus(v1::DestroyNexusRequest {
                    uuid: n.uuid.clone(),
                })
                .await
                .is_ok()
            {
                let _ = core.specs.delete_nexus(&n.uuid).await;
            }
        }
    }
    // Specs left Creating by a crash (operations hold the lock we hold).
    let creating: Vec<_> = core
        .specs
        .replicas
        .read()
        .values()
        .filter(|r| r.status == SpecStatus::Creating)
        .cloned()
        .collect();
    for r in creating {
        info!(replica = %r.uuid, "gc: replica creation was interrupted; removing it");
        if let Err(e) = core.destroy_replica(&r).await {
            warn!(replica = %r.uuid, error = %e, "gc: cannot remove the replica");
        }
    }
    let pools_creating: Vec<_> = core
        .specs
        .pools
        .read()
        .values()
        .filter(|p| p.status == SpecStatus::Creating)
        .cloned()
        .collect();
    for p in pools_creating {
        // The engine may or may not have it: keep it when it does.
        let exists = core.registry.pools().iter().any(|(_, o)| o.name == p.id);
        let settled = if exists {
            core.specs
                .put_pool(openapi::models::PoolSpec {
                    status: SpecStatus::Created,
                    ..p.clone()
                })
                .await
        } else if core.registry.online_client(&p.node).is_some() {
            core.specs.delete_pool(&p.id).await
        } else {
            Ok(())
        };
        if let Err(e) = settled {
            warn!(pool = %p.id, error = %e, "gc: cannot settle the pool spec");
        }
    }
    // Orphans: replicas (named by their uuid, as the core names them) and
    // nexuses that no spec knows, seen for a whole GC period.
    let mut seen_now = Vec::new();
    for (node, r) in core.registry.replicas() {
        if r.name == r.uuid && !core.specs.replicas.read().contains_key(&r.uuid) {
            seen_now.push((format!("replica/{}", r.uuid), node, r.uuid.clone(), true));
        }
    }
    for (node, n) in core.registry.nexuses() {
        if !core.specs.nexuses.read().contains_key(&n.uuid) {
            seen_now.push((format!("nexus/{}", n.uuid), node, n.uuid.clone(), false));
        }
    }
    let mut orphans = state.orphans.lock().clone();
    orphans.retain(|k, _| seen_now.iter().any(|(key, ..)| key == k));
    for (key, node, uuid, is_replica) in seen_now {
        let first = *orphans.entry(key.clone()).or_insert_with(Instant::now);
        if first.elapsed() < core.args.gc_period {
            continue;
        }
        let Some(client) = core.registry.online_client(&node) else {
            continue;
        };
        info!(what = %key, node = %node, "gc: destroying an orphan");
        let done = if is_replica {
            client
                .replica
                .clone()
                .destroy_replica(v1::DestroyReplicaRequest {
                    replica: Some(v1::destroy_replica_request::Replica::Uuid(uuid)),
                })
                .await
                .is_ok()
        } else {
            client
                .nexus
                .clone()
                .destroy_nexus(v1::DestroyNexusRequest { uuid })
                .await
                .is_ok()
        };
        if done {
            orphans.remove(&key);
            core.refresh(&node).await;
        }
    }
    *state.orphans.lock() = orphans;
}

/// Moves targets off draining nodes; a node with none left is Drained.
pub async fn drain(core: &Core) {
    let draining: Vec<_> = core
        .specs
        .nodes
        .read()
        .values()
        .filter(|n| n.cordon_drain_state.drain_status == Some(DrainStatus::Draining))
        .cloned()
        .collect();
    for node in draining {
        let volumes: Vec<_> = core
            .specs
            .volumes
            .read()
            .values()
            .filter(|r| r.spec.target.as_ref().is_some_and(|t| t.node == node.id))
            .cloned()
            .collect();
        let mut left = 0;
        for mut rec in volumes {
            let frontend = rec
                .spec
                .target
                .as_ref()
                .and_then(|t| t.frontend_nodes.first().cloned());
            // Only move a target that has somewhere to go: otherwise the
            // volume keeps its target and the node stays Draining.
            let replica_nodes: Vec<String> = core
                .specs
                .volume_replicas(&rec.spec.uuid)
                .into_iter()
                .map(|r| r.node)
                .collect();
            if let Err(e) = scheduler::target_node(
                &core.cluster(),
                &rec.spec.uuid,
                None,
                &replica_nodes,
                std::slice::from_ref(&node.id),
            ) {
                warn!(volume = %rec.spec.uuid, node = %node.id, error = %e, "drain: no node can take the target");
                left += 1;
                continue;
            }
            info!(volume = %rec.spec.uuid, node = %node.id, "drain: moving the target");
            if let Err(e) = core.unpublish_locked(&mut rec).await {
                warn!(volume = %rec.spec.uuid, error = %e, "drain: cannot remove the old target");
                left += 1;
                continue;
            }
            if let Err(e) = core
                .publish_locked(
                    rec.clone(),
                    None,
                    frontend.as_deref(),
                    std::slice::from_ref(&node.id),
                )
                .await
            {
                warn!(volume = %rec.spec.uuid, error = %e, "drain: cannot publish elsewhere");
                left += 1;
            }
        }
        if left == 0 {
            let mut spec = node.clone();
            spec.cordon_drain_state.drain_status = Some(DrainStatus::Drained);
            if core.specs.put_node(spec).await.is_ok() {
                info!(node = %node.id, "node drained");
            }
        }
    }
}
