//! The nexus: the volume target, an N-way synchronous mirror over children.
//!
//! - Writes (and write-zeroes, unmap, flush) go to every child that takes
//!   writes (online and rebuilding ones) at once and complete when all of
//!   them did. The application sees success as long as one online child
//!   took the write.
//! - Reads go round-robin to online children; a failed read is retried on
//!   the next online child.
//! - A child whose I/O fails or does not complete within the child I/O
//!   timeout is faulted and leaves the I/O path. The fault is persisted in
//!   the nexus info (see [`info`]) before the I/O that caused it completes.
//!   The last online child is never faulted: its errors reach the
//!   application instead.
//! - A child that was online when it faulted keeps a dirty-region log (see
//!   [`dirty`]); bringing it back copies only those regions (partial
//!   rebuild). Any other child that comes back, and every new child, is
//!   copied in full (see [`rebuild`]).
//!
//! Threading model: the I/O path takes no nexus-wide lock. Child lists are
//! copy-on-write snapshots; child states are read under a per-child lock
//! held for a few instructions. Changes of child state that depend on the
//! other children ("is this the last online child?") are serialised by
//! `state_lock` (a short synchronous lock, never held across `.await`).
//! `gate` is a read-write lock every write holds shared while it runs: a
//! change that adds a child to the write path takes it exclusively once,
//! after the change, to wait for the writes that started before it (they
//! did not write to the child and marked its dirty log instead). While a
//! rebuild runs, writes also take shared byte-range locks against the
//! rebuild's exclusive segment locks (see `range_lock`).
//!
//! Files: this one holds the types, the state and the fault logic;
//! `data_path` the I/O path (the [`BlockDevice`] impl); `children` child
//! changes, rebuild control and shutdown; [`device`] the closed set of
//! child devices; `registry` the engine's nexus table.

pub mod child;
mod children;
mod data_path;
pub mod device;
pub mod dirty;
pub mod etcd;
pub mod info;
mod range_lock;
pub mod rebuild;
mod registry;

pub use child::{
    check_child_uri, child_uuid, Child, ChildOpener, ChildState, ChildStatus, DefaultOpener,
    FaultReason, OpenedChild,
};
pub use device::ChildDevice;
pub use info::{InfoStore, MemoryStore, NexusInfo};
pub use rebuild::{RebuildState, RebuildStats};
pub use registry::{ChildAction, CreateNexusArgs, NexusRegistry, PublishArgs, ReservationArgs};

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use blockdev::{Backend, DeviceInfo};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tracing::warn;
use uuid::Uuid;

use crate::pool::ErrorKind;
use range_lock::RangeLocks;
use rebuild::{Control, RebuildJob};

/// Tunables of every nexus of an engine.
#[derive(Debug, Clone)]
pub struct NexusConfig {
    /// A child I/O not completed within this time faults the child.
    pub child_io_timeout: Duration,
    /// How long a lost remote child is reconnected before its I/O fails
    /// (at most `child_io_timeout` is useful).
    pub child_reconnect_timeout: Duration,
    /// Bytes copied per rebuild step.
    pub rebuild_segment_bytes: u64,
    /// Default rebuild bandwidth limit in bytes per second (0: none).
    pub rebuild_max_bandwidth: u64,
    /// Host NQN the engine uses towards remote children.
    pub host_nqn: String,
    /// Store key prefix of nexus info.
    pub info_prefix: String,
    /// Rebuild records kept per nexus.
    pub history_len: usize,
}

impl Default for NexusConfig {
    fn default() -> Self {
        Self {
            child_io_timeout: Duration::from_secs(10),
            child_reconnect_timeout: Duration::from_secs(5),
            rebuild_segment_bytes: 1 << 20,
            rebuild_max_bandwidth: 0,
            host_nqn: host_nqn("localhost"),
            info_prefix: info::DEFAULT_PREFIX.into(),
            history_len: 64,
        }
    }
}

pub use io_engine_api::names::host_nqn;

/// Errors of nexus management.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NexusError {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Io(String),
    #[error("nexus info store: {0}")]
    Store(String),
}

impl NexusError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            NexusError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            NexusError::NotFound(_) => ErrorKind::NotFound,
            NexusError::AlreadyExists(_) => ErrorKind::AlreadyExists,
            NexusError::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            NexusError::Io(_) | NexusError::Store(_) => ErrorKind::Io,
        }
    }
}

/// State of a nexus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NexusState {
    /// Every child online.
    Online,
    /// At least one child online, some not.
    Degraded,
    /// No child online: I/O fails.
    Faulted,
    /// Shut down: I/O fails; only destroy remains.
    Shutdown,
}

impl std::fmt::Display for NexusState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NexusState::Online => "online",
            NexusState::Degraded => "degraded",
            NexusState::Faulted => "faulted",
            NexusState::Shutdown => "shutdown",
        })
    }
}

/// A point-in-time view of a child.
#[derive(Debug, Clone, Serialize)]
pub struct ChildView {
    pub uri: String,
    pub uuid: Uuid,
    pub state: ChildState,
    pub reason: FaultReason,
    /// Percent, while a rebuild of this child runs.
    pub rebuild_progress: Option<u32>,
    pub has_dirty_log: bool,
    pub faulted_at: Option<SystemTime>,
}

/// How a nexus is published.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    pub nqn: String,
    pub uri: String,
    pub allowed_hosts: Vec<String>,
    pub min_cntlid: u16,
    pub max_cntlid: u16,
}

/// A point-in-time view of a nexus.
#[derive(Debug, Clone, Serialize)]
pub struct NexusView {
    pub uuid: Uuid,
    pub name: String,
    pub size_bytes: u64,
    pub block_size: u32,
    pub state: NexusState,
    pub children: Vec<ChildView>,
    pub published: Option<Published>,
    pub rebuilds: u32,
    pub info_key: String,
    pub reservation: ReservationArgs,
}

/// The volume target.
pub struct Nexus {
    uuid: Uuid,
    name: String,
    dev: DeviceInfo,
    cfg: Arc<NexusConfig>,
    opener: Arc<dyn ChildOpener>,
    store: Option<Arc<dyn InfoStore>>,
    info_key: String,
    reservation: Mutex<ReservationArgs>,
    children: RwLock<Arc<Vec<Arc<Child>>>>,
    state_lock: Mutex<()>,
    gate: tokio::sync::RwLock<()>,
    ranges: RangeLocks,
    rebuilds_active: AtomicUsize,
    rr: AtomicUsize,
    shutdown: AtomicBool,
    /// Cleared when the nexus stops serving its hosts on this path (handed
    /// over to a new target of the volume, or fenced off by one): its I/O
    /// then fails with [`blockdev::BlockDevError::PathInaccessible`], which
    /// the NVMe/TCP target answers with "ANA inaccessible".
    accessible: AtomicBool,
    clean: AtomicBool,
    /// Bumped by every change the nexus info reflects.
    state_gen: AtomicU64,
    /// Generation last written to the store.
    persisted_gen: tokio::sync::Mutex<u64>,
    jobs: Mutex<HashMap<Uuid, Arc<RebuildJob>>>,
    history: Mutex<VecDeque<RebuildStats>>,
    published: Mutex<Option<Published>>,
    /// Reads and writes of the nexus (see [`crate::stats`]).
    io: crate::stats::IoStats,
    me: std::sync::Weak<Nexus>,
}

impl std::fmt::Debug for Nexus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nexus")
            .field("uuid", &self.uuid)
            .field("name", &self.name)
            .field("size", &self.dev.size_bytes())
            .finish()
    }
}

/// What happened when the nexus tried to fault a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultOutcome {
    /// The child is (now or already) out of the I/O path.
    Faulted,
    /// The child is the last online one and stays online.
    LastHealthy,
}

impl Nexus {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        uuid: Uuid,
        name: String,
        size: u64,
        block_size: u32,
        cfg: Arc<NexusConfig>,
        opener: Arc<dyn ChildOpener>,
        store: Option<Arc<dyn InfoStore>>,
        info_key: String,
        reservation: ReservationArgs,
        children: Vec<Arc<Child>>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            uuid,
            name,
            dev: DeviceInfo {
                uri: format!("nexus:///{uuid}"),
                block_size,
                num_blocks: size / u64::from(block_size),
                backend: Backend::Nexus,
                direct_io: true,
            },
            cfg,
            opener,
            store,
            info_key,
            reservation: Mutex::new(reservation),
            children: RwLock::new(Arc::new(children)),
            state_lock: Mutex::new(()),
            gate: tokio::sync::RwLock::new(()),
            ranges: RangeLocks::new(),
            rebuilds_active: AtomicUsize::new(0),
            rr: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            accessible: AtomicBool::new(true),
            clean: AtomicBool::new(false),
            state_gen: AtomicU64::new(1),
            persisted_gen: tokio::sync::Mutex::new(0),
            jobs: Mutex::new(HashMap::new()),
            history: Mutex::new(VecDeque::new()),
            published: Mutex::new(None),
            io: crate::stats::IoStats::new(),
            me: me.clone(),
        })
    }

    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// The volume this nexus serves (its NQN is derived from it).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn size_bytes(&self) -> u64 {
        self.dev.size_bytes()
    }

    /// The nexus's I/O counters now.
    pub fn io_stats(&self) -> crate::stats::IoStatsSnapshot {
        self.io.snapshot()
    }

    pub fn block_size(&self) -> u32 {
        self.dev.block_size
    }

    pub fn info_key(&self) -> &str {
        &self.info_key
    }

    pub fn is_shut_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Whether the nexus serves I/O on its path (see `accessible`).
    pub fn is_accessible(&self) -> bool {
        self.accessible.load(Ordering::Relaxed)
    }

    /// Stops serving I/O on this path: new I/O fails with
    /// [`blockdev::BlockDevError::PathInaccessible`]; then waits, at most
    /// `limit`, for the writes in flight. `false` when they did not end
    /// within `limit`.
    pub async fn set_inaccessible(&self, limit: Duration) -> bool {
        if self.accessible.swap(false, Ordering::SeqCst) {
            tracing::info!(nexus = %self.uuid, "nexus inaccessible: its hosts go to another path");
        }
        // Every write checks the flag after taking the gate shared: once
        // the gate is ours, a write either ended or sees the flag.
        tokio::time::timeout(limit, self.gate.write()).await.is_ok()
    }

    /// Serves I/O again (the reverse of [`Nexus::set_inaccessible`]).
    pub fn set_accessible(&self) {
        if !self.accessible.swap(true, Ordering::SeqCst) {
            tracing::info!(nexus = %self.uuid, "nexus accessible again");
        }
    }

    /// A child answered "reservation conflict": a newer target of the
    /// volume took the replicas' reservation, so this nexus must not
    /// serve any more (its children are not at fault and stay as they
    /// are).
    pub(crate) fn fenced(&self) {
        if self.accessible.swap(false, Ordering::SeqCst) {
            warn!(nexus = %self.uuid, "nexus fenced off by a newer target (reservation conflict): inaccessible");
        }
    }

    /// The children, in creation order.
    pub fn children(&self) -> Arc<Vec<Arc<Child>>> {
        self.children.read().clone()
    }

    pub fn state(&self) -> NexusState {
        if self.is_shut_down() {
            return NexusState::Shutdown;
        }
        let children = self.children();
        let online = children
            .iter()
            .filter(|c| c.state() == ChildState::Online)
            .count();
        if online == 0 {
            NexusState::Faulted
        } else if online < children.len() {
            NexusState::Degraded
        } else {
            NexusState::Online
        }
    }

    pub fn view(&self) -> NexusView {
        let jobs = self.jobs.lock().clone();
        let children = self
            .children()
            .iter()
            .map(|c| {
                let s = c.status();
                ChildView {
                    uri: c.uri().to_owned(),
                    uuid: c.uuid(),
                    state: s.state,
                    reason: s.reason,
                    rebuild_progress: jobs.get(&c.uuid()).map(|j| j.stats().progress()),
                    has_dirty_log: c.has_log(),
                    faulted_at: s.faulted_at,
                }
            })
            .collect();
        NexusView {
            uuid: self.uuid,
            name: self.name.clone(),
            size_bytes: self.size_bytes(),
            block_size: self.block_size(),
            state: self.state(),
            children,
            published: self.published.lock().clone(),
            rebuilds: jobs.len() as u32,
            info_key: self.info_key.clone(),
            reservation: *self.reservation.lock(),
        }
    }

    /// Rebuild records, oldest first.
    pub fn rebuild_history(&self) -> Vec<RebuildStats> {
        self.history.lock().iter().cloned().collect()
    }

    /// Finds a child by URI (exact) or by the uuid the URI names.
    pub fn child(&self, uri: &str) -> Result<Arc<Child>, NexusError> {
        let children = self.children();
        if let Some(c) = children.iter().find(|c| c.uri() == uri) {
            return Ok(c.clone());
        }
        if let Ok(uuid) = child_uuid(uri) {
            if let Some(c) = children.iter().find(|c| c.uuid() == uuid) {
                return Ok(c.clone());
            }
        }
        Err(NexusError::NotFound(format!(
            "child {uri} not found in nexus {}",
            self.uuid
        )))
    }

    fn online_count(&self) -> usize {
        self.children()
            .iter()
            .filter(|c| c.state() == ChildState::Online)
            .count()
    }

    fn bump(&self) -> u64 {
        self.state_gen.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn snapshot_info(&self) -> NexusInfo {
        NexusInfo {
            children: self
                .children()
                .iter()
                .map(|c| info::ChildInfo {
                    healthy: c.state() == ChildState::Online,
                    uuid: c.uuid().to_string(),
                })
                .collect(),
            clean_shutdown: self.clean.load(Ordering::SeqCst),
        }
    }

    /// Makes sure the store holds at least generation `target` of the info.
    async fn persist_upto(&self, target: u64) -> Result<(), NexusError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let mut done = self.persisted_gen.lock().await;
        if *done >= target {
            return Ok(());
        }
        let (gen, info) = {
            let _g = self.state_lock.lock();
            (self.state_gen.load(Ordering::SeqCst), self.snapshot_info())
        };
        let bytes = serde_json::to_vec(&info).map_err(|e| NexusError::Store(e.to_string()))?;
        let mut last = String::new();
        // A few quick attempts: the I/O that needs this waits meanwhile.
        for attempt in 0..3u32 {
            match store.put(&self.info_key, bytes.clone()).await {
                Ok(()) => {
                    *done = gen;
                    return Ok(());
                }
                Err(e) => {
                    warn!(nexus = %self.uuid, key = %self.info_key, error = %e, attempt, "cannot persist nexus info");
                    last = e;
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
        Err(NexusError::Store(last))
    }

    /// Persists the current state.
    pub(crate) async fn persist(&self) -> Result<(), NexusError> {
        let target = self.state_gen.load(Ordering::SeqCst);
        self.persist_upto(target).await
    }

    /// Takes `child` out of the I/O path after a failed I/O and persists
    /// that before returning. `region` is the range the failed write
    /// covered (marked in the child's dirty log). `keep_log`: whether a
    /// child that was in sync may be brought back by a partial rebuild
    /// (false after a failed flush: which writes were lost is unknown).
    ///
    /// Returns `Ok(false)` when the child is the last online one (it stays
    /// online), and an error when the fault cannot be persisted.
    pub(crate) async fn fault_on_io(
        &self,
        child: &Arc<Child>,
        reason: FaultReason,
        region: Option<(u64, u64)>,
        keep_log: bool,
    ) -> Result<bool, NexusError> {
        let (outcome, gen) = self.fault_locked(child, reason, keep_log, false);
        if outcome == FaultOutcome::LastHealthy {
            return Ok(false);
        }
        if let Some((off, len)) = region {
            child.mark_dirty(off, len);
        }
        self.persist_upto(gen).await?;
        Ok(true)
    }

    /// State change of a fault; returns the generation to persist.
    fn fault_locked(
        &self,
        child: &Arc<Child>,
        reason: FaultReason,
        keep_log: bool,
        force: bool,
    ) -> (FaultOutcome, u64) {
        let gen;
        {
            let _g = self.state_lock.lock();
            match child.state() {
                ChildState::Faulted => {
                    return (FaultOutcome::Faulted, self.state_gen.load(Ordering::SeqCst));
                }
                ChildState::Online => {
                    if !force && self.online_count() <= 1 {
                        return (FaultOutcome::LastHealthy, 0);
                    }
                    if keep_log {
                        child.start_log(self.size_bytes(), self.block_size());
                    } else {
                        child.drop_log();
                    }
                }
                ChildState::Degraded => child.drop_log(),
            }
            child.set_status(ChildState::Faulted, reason);
            gen = self.bump();
        }
        warn!(nexus = %self.uuid, child = child.uri(), %reason, "child faulted");
        child.close();
        if let Some(job) = self.jobs.lock().get(&child.uuid()) {
            // The job notices the destination's state at its next step.
            job.set_control(Control::Run);
        }
        (FaultOutcome::Faulted, gen)
    }

    /// An online child other than `exclude` to copy from.
    pub(crate) fn pick_source(&self, exclude: &Arc<Child>) -> Option<(Arc<Child>, ChildDevice)> {
        self.children()
            .iter()
            .filter(|c| !Arc::ptr_eq(c, exclude))
            .find_map(|c| c.read_device().map(|d| (c.clone(), d)))
    }
}
