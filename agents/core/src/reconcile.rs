//! Reconcilers: the loops that make the observed state follow the specs.
//!
//! Each [`Reconciler`] is a small unit with its own period (its own
//! command-line flag, defaulting to `--reconcile-period`) and its own loop;
//! passes run one at a time, only on the lease holder, and act on a volume
//! (or pool) only while holding its lock, taken without waiting: a
//! resource an API operation holds is skipped until the next pass, and an
//! operation in flight is never mistaken for an interrupted one:
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
//! Each lives in its own file under `reconcile/` and returns what it asks
//! for next ([`Action`]: requeue after a delay, or wait for the next
//! resync at its period) or the items that failed ([`ReconcileError`]);
//! failures go through one error policy with exponential backoff
//! ([`policy`]). Every pass runs in a `reconcile` span with the
//! reconciler's name, and its per-item work in spans with the `volume`,
//! `pool` or `node` field.
//!
//! When the core starts leading, one pass of every reconciler runs in the
//! order above (interrupted operations are settled before anything else
//! looks at the specs); then each runs on its own schedule.
//!
//! The poll loop ([`poll_loop`]) refreshes observed state and marks nodes
//! without a heartbeat offline.

mod drain;
mod gc;
mod nexuses;
mod operations;
pub mod policy;
mod pools;
mod space;
mod volumes;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use io_engine_api::v1;
use openapi::models::{DrainStatus, ReplicaSpec, SpecStatus};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use crate::{
    config::Args,
    core::{child_of, Core},
    locks::{Resource, ResourceGuard},
    scheduler,
    specs::VolumeOp,
    CoreError,
};

/// How soon a pass that skipped a resource an operation held runs again
/// (at most its period).
const BUSY_REQUEUE: Duration = Duration::from_secs(1);

pub use drain::drain;
pub use gc::gc;
pub use nexuses::restore_nexuses;
pub use operations::recover_ops;
pub use policy::{Action, ErrorPolicy, Outcome, ReconcileError, ReconcileResult};
pub use pools::restore_pools;
pub use space::{finish_moves, thin_space};
pub use volumes::self_heal;

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
/// of each in order, then each on the schedule its results ask for.
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
    let mut firsts = step(&core, &state).await.into_iter();
    let loops = Reconciler::ALL.map(|r| {
        let (core, state, stop) = (core.clone(), state.clone(), stop.clone());
        let first = firsts.next().unwrap_or(Ok(Action::AwaitChange));
        tokio::spawn(async move {
            let period = r.period(&core.args);
            info!(
                reconciler = r.name(),
                period_ms = period.as_millis() as u64,
                "reconciler started"
            );
            policy::drive(r.name(), period, first, stop, || pass(&core, &state, r)).await;
        })
    });
    for l in loops {
        let _ = l.await;
    }
}

/// One pass of reconciler `r` (passes run one at a time).
pub async fn pass(core: &Core, state: &ReconcileState, r: Reconciler) -> ReconcileResult {
    // Held across the pass's engine calls: passes reason over the whole
    // cluster and stay one at a time, as they always were; API operations
    // never take this lock.
    let _g = core.reconcile_lock.lock().await;
    run_locked(core, state, r).await
}

async fn run_locked(core: &Core, state: &ReconcileState, r: Reconciler) -> ReconcileResult {
    let span = tracing::info_span!("reconcile", reconciler = r.name());
    let result = async {
        match r {
            Reconciler::Operations => recover_ops(core).await,
            Reconciler::Pools => restore_pools(core).await,
            Reconciler::Nexuses => restore_nexuses(core).await,
            Reconciler::Volumes => self_heal(core, state).await,
            Reconciler::Space => thin_space(core, state).await,
            Reconciler::Gc => gc(core, state).await,
            Reconciler::Drain => drain(core).await,
        }
    }
    .instrument(span)
    .await;
    let n = state.passes[r.index()].fetch_add(1, Ordering::Relaxed) + 1;
    debug!(
        reconciler = r.name(),
        passes = n,
        ok = result.is_ok(),
        "reconcile pass"
    );
    result
}

/// One pass of every reconciler, in order, under one hold of the
/// reconcile lock; their results, in the same order.
pub async fn step(core: &Core, state: &ReconcileState) -> Vec<ReconcileResult> {
    // Held across engine calls for the same reason as in [`pass`].
    let _g = core.reconcile_lock.lock().await;
    let mut results = Vec::new();
    for r in Reconciler::ALL {
        results.push(run_locked(core, state, r).await);
    }
    results
}
