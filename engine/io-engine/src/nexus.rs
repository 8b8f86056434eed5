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

pub mod child;
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
pub use info::{InfoStore, MemoryStore, NexusInfo};
pub use rebuild::{RebuildState, RebuildStats};
pub use registry::{ChildAction, CreateNexusArgs, NexusRegistry, PublishArgs, ReservationArgs};

use std::{
    collections::{HashMap, VecDeque},
    io,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use blockdev::{
    check_io, dynamic::IoFuture, dynamic::SharedDevice, Backend, BlockDevError, BlockDevice,
    DeviceInfo,
};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tracing::{info, warn};
use uuid::Uuid;

use crate::pool::ErrorKind;
use range_lock::RangeLocks;
use rebuild::{Control, Outcome, RebuildJob};

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
            host_nqn: "nqn.2019-05.io.openebs:node-name:localhost".into(),
            info_prefix: info::DEFAULT_PREFIX.into(),
            history_len: 64,
        }
    }
}

/// The host NQN of the engine of node `node`.
pub fn host_nqn(node: &str) -> String {
    format!("nqn.2019-05.io.openebs:node-name:{node}")
}

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
    clean: AtomicBool,
    /// Bumped by every change the nexus info reflects.
    state_gen: AtomicU64,
    /// Generation last written to the store.
    persisted_gen: tokio::sync::Mutex<u64>,
    jobs: Mutex<HashMap<Uuid, Arc<RebuildJob>>>,
    history: Mutex<VecDeque<RebuildStats>>,
    published: Mutex<Option<Published>>,
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

fn timed_out(timeout: Duration) -> BlockDevError {
    BlockDevError::Io {
        op: "child i/o",
        offset_bytes: 0,
        source: io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no completion within {} ms", timeout.as_millis()),
        ),
    }
}

fn no_healthy_child(op: &'static str, offset_bytes: u64) -> BlockDevError {
    BlockDevError::Io {
        op,
        offset_bytes,
        source: io::Error::other("the nexus has no healthy child"),
    }
}

/// Reason a failed child I/O faults the child with.
fn reason_of(e: &BlockDevError) -> FaultReason {
    match e {
        BlockDevError::Io { source, .. } if source.raw_os_error() == Some(28) => {
            FaultReason::NoSpace
        }
        BlockDevError::Io { source, .. }
            if source.to_string().contains("capacity exceeded")
                || source.to_string().contains("no space") =>
        {
            FaultReason::NoSpace
        }
        _ => FaultReason::IoFailure,
    }
}

/// One write-like operation.
#[derive(Clone, Copy)]
enum WriteOp<'a> {
    Write(&'a [u8]),
    Zeroes(u64),
    Unmap(u64),
}

impl WriteOp<'_> {
    fn len(&self) -> u64 {
        match self {
            WriteOp::Write(b) => b.len() as u64,
            WriteOp::Zeroes(l) | WriteOp::Unmap(l) => *l,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            WriteOp::Write(_) => "write",
            WriteOp::Zeroes(_) => "write_zeroes",
            WriteOp::Unmap(_) => "unmap",
        }
    }

    fn submit<'d>(&self, dev: &'d SharedDevice, offset: u64) -> IoFuture<'d>
    where
        Self: 'd,
    {
        match *self {
            WriteOp::Write(b) => dev.write_at(offset, b),
            WriteOp::Zeroes(l) => dev.write_zeroes(offset, l),
            WriteOp::Unmap(l) => dev.unmap(offset, l),
        }
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
            clean: AtomicBool::new(false),
            state_gen: AtomicU64::new(1),
            persisted_gen: tokio::sync::Mutex::new(0),
            jobs: Mutex::new(HashMap::new()),
            history: Mutex::new(VecDeque::new()),
            published: Mutex::new(None),
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

    pub fn block_size(&self) -> u32 {
        self.dev.block_size
    }

    pub fn info_key(&self) -> &str {
        &self.info_key
    }

    pub fn is_shut_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
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

    /// Runs one child I/O under the child I/O timeout.
    pub(crate) async fn child_io(
        &self,
        fut: IoFuture<'_>,
    ) -> Result<(), (FaultReason, BlockDevError)> {
        match tokio::time::timeout(self.cfg.child_io_timeout, fut).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err((reason_of(&e), e)),
            Err(_) => Err((FaultReason::TimedOut, timed_out(self.cfg.child_io_timeout))),
        }
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
    pub(crate) fn pick_source(&self, exclude: &Arc<Child>) -> Option<(Arc<Child>, SharedDevice)> {
        self.children()
            .iter()
            .filter(|c| !Arc::ptr_eq(c, exclude))
            .find_map(|c| c.read_device().map(|d| (c.clone(), d)))
    }

    fn check_open(&self, op: &'static str, offset_bytes: u64) -> blockdev::Result<()> {
        if self.is_shut_down() {
            return Err(BlockDevError::Io {
                op,
                offset_bytes,
                source: io::Error::other("the nexus is shut down"),
            });
        }
        Ok(())
    }

    async fn write_op(&self, offset: u64, op: WriteOp<'_>) -> blockdev::Result<()> {
        let len = op.len();
        check_io(&self.dev, op.name(), offset, len)?;
        self.check_open(op.name(), offset)?;
        let _gate = self.gate.read().await;
        let _range = if self.rebuilds_active.load(Ordering::SeqCst) > 0 {
            Some(self.ranges.shared(offset, len).await)
        } else {
            None
        };
        let children = self.children();
        let mut targets = Vec::with_capacity(children.len());
        let mut absent = Vec::new();
        for c in children.iter() {
            match c.write_device() {
                Some((dev, online)) => targets.push((c, dev, online)),
                None => absent.push(c),
            }
        }
        let results = futures::future::join_all(
            targets
                .iter()
                .map(|(_, dev, _)| self.child_io(op.submit(dev, offset))),
        )
        .await;
        let mut acked_online = false;
        let mut error = None;
        for ((child, _, online), res) in targets.iter().zip(results) {
            match res {
                Ok(()) => acked_online |= *online,
                Err((reason, e)) => {
                    warn!(nexus = %self.uuid, child = child.uri(), op = op.name(), offset, error = %e, "child i/o failed");
                    match self
                        .fault_on_io(child, reason, Some((offset, len)), true)
                        .await
                    {
                        Ok(_) => {}
                        Err(store) => {
                            return Err(BlockDevError::Io {
                                op: op.name(),
                                offset_bytes: offset,
                                source: io::Error::other(store.to_string()),
                            })
                        }
                    }
                    error = Some(e);
                }
            }
        }
        for c in absent {
            c.mark_dirty(offset, len);
        }
        if acked_online {
            Ok(())
        } else {
            Err(error.unwrap_or_else(|| no_healthy_child(op.name(), offset)))
        }
    }

    /// Faults a child on a client request. The last online child cannot be
    /// faulted.
    pub(crate) async fn fault_by_client(&self, uri: &str) -> Result<(), NexusError> {
        let child = self.child(uri)?;
        self.stop_job_of(&child).await;
        let (outcome, gen) = self.fault_locked(&child, FaultReason::ByClient, true, false);
        if outcome == FaultOutcome::LastHealthy {
            return Err(NexusError::FailedPrecondition(format!(
                "child {uri} is the last healthy child of nexus {}",
                self.uuid
            )));
        }
        // Let in-flight writes that still used the child finish: from now
        // on writes mark its log instead.
        drop(self.gate.write().await);
        self.persist_upto(gen).await
    }

    /// Stops the rebuild of `child`, if any, and waits for it to end.
    async fn stop_job_of(&self, child: &Arc<Child>) {
        let job = self.jobs.lock().get(&child.uuid()).cloned();
        if let Some(job) = job {
            job.set_control(Control::Stop);
            job.wait().await;
        }
    }

    /// Brings a faulted (or new) child back: reopens it, adds it to the
    /// write path and starts its rebuild (partial when it has a dirty log,
    /// full otherwise). A child that is online already is left alone.
    pub(crate) async fn online_child(
        &self,
        uri: &str,
        max_bandwidth: Option<u64>,
    ) -> Result<(), NexusError> {
        if self.is_shut_down() {
            return Err(NexusError::FailedPrecondition(format!(
                "nexus {} is shut down",
                self.uuid
            )));
        }
        let child = self.child(uri)?;
        match child.state() {
            ChildState::Online => return Ok(()),
            ChildState::Degraded => {
                if self.jobs.lock().contains_key(&child.uuid()) {
                    return Err(NexusError::AlreadyExists(format!(
                        "child {uri} is being rebuilt already"
                    )));
                }
            }
            ChildState::Faulted => {}
        }
        if child.device().is_none() {
            let resv = *self.reservation.lock();
            let opened = match self.open_reserved(child.uri(), &child.uuid(), &resv).await {
                Ok(o) => o,
                Err(e) => {
                    child.set_status(ChildState::Faulted, FaultReason::CannotOpen);
                    return Err(NexusError::FailedPrecondition(format!(
                        "cannot open child {uri}: {e}"
                    )));
                }
            };
            if let Err(e) = self.check_child_device(&opened.device) {
                child.set_status(ChildState::Faulted, FaultReason::CannotOpen);
                return Err(e);
            }
            child.set_device(opened);
        }
        self.start_rebuild_of(&child, max_bandwidth).await
    }

    /// Opens a child and takes the nexus's reservation on it.
    async fn open_reserved(
        &self,
        uri: &str,
        uuid: &Uuid,
        resv: &ReservationArgs,
    ) -> Result<OpenedChild, String> {
        let opened = self.opener.open(uri, uuid).await?;
        if let Err(e) = child::take_reservation(resv, &opened).await {
            if let Some(ns) = &opened.remote {
                let ctrl = ns.controller().clone();
                tokio::spawn(async move {
                    let _ = ctrl.disconnect().await;
                });
            }
            return Err(e);
        }
        Ok(opened)
    }

    /// Checks a child device fits the nexus.
    fn check_child_device(&self, dev: &SharedDevice) -> Result<(), NexusError> {
        let info = dev.info();
        if info.block_size != self.block_size() {
            return Err(NexusError::FailedPrecondition(format!(
                "child block size {} differs from the nexus block size {}",
                info.block_size,
                self.block_size()
            )));
        }
        if info.size_bytes() < self.size_bytes() {
            return Err(NexusError::FailedPrecondition(format!(
                "child size {} is smaller than the nexus size {}",
                info.size_bytes(),
                self.size_bytes()
            )));
        }
        Ok(())
    }

    /// Moves an open, out-of-sync child into the write path and starts the
    /// job that brings it in sync.
    async fn start_rebuild_of(
        &self,
        child: &Arc<Child>,
        max_bandwidth: Option<u64>,
    ) -> Result<(), NexusError> {
        let me = self
            .me
            .upgrade()
            .ok_or_else(|| NexusError::FailedPrecondition("the nexus is being destroyed".into()))?;
        let src_uri = match self.pick_source(child) {
            Some((src, _)) => src.uri().to_owned(),
            None => {
                return Err(NexusError::FailedPrecondition(format!(
                    "nexus {} has no healthy child to rebuild {} from",
                    self.uuid,
                    child.uri()
                )))
            }
        };
        // Enter the write path; from now on the range locks are on.
        self.rebuilds_active.fetch_add(1, Ordering::SeqCst);
        {
            let _g = self.state_lock.lock();
            child.set_status(ChildState::Degraded, FaultReason::None);
            self.bump();
        }
        // Wait for the writes that started before (they marked the log).
        drop(self.gate.write().await);
        let log = child.take_log();
        let (ranges, partial) = match &log {
            Some(log) => (log.runs().collect::<Vec<_>>(), true),
            None => (vec![(0, self.size_bytes())], false),
        };
        let bandwidth = max_bandwidth.unwrap_or(self.cfg.rebuild_max_bandwidth);
        let job = Arc::new(RebuildJob::new(
            child.clone(),
            src_uri,
            ranges,
            self.block_size(),
            partial,
            bandwidth,
        ));
        self.jobs.lock().insert(child.uuid(), job.clone());
        info!(nexus = %self.uuid, child = child.uri(), partial,
            bytes = job.stats().blocks_total * u64::from(self.block_size()), "rebuild queued");
        tokio::spawn(me.run_rebuild(job));
        Ok(())
    }

    /// Applies the outcome of a rebuild job.
    pub(crate) async fn finish_rebuild(&self, job: &Arc<RebuildJob>, outcome: Outcome) {
        let dst = &job.dst;
        let (state, error) = match &outcome {
            Outcome::Completed => (RebuildState::Completed, None),
            Outcome::Stopped => (RebuildState::Stopped, None),
            Outcome::Failed(_, e) => (RebuildState::Failed, Some(e.clone())),
        };
        let gen = {
            let _g = self.state_lock.lock();
            if dst.state() == ChildState::Degraded {
                match &outcome {
                    Outcome::Completed => dst.set_status(ChildState::Online, FaultReason::None),
                    Outcome::Stopped => {
                        dst.set_status(ChildState::Faulted, FaultReason::OutOfSync);
                    }
                    Outcome::Failed(reason, _) => dst.set_status(ChildState::Faulted, *reason),
                }
            }
            self.bump()
        };
        if dst.state() == ChildState::Faulted {
            dst.close();
        }
        let stats = {
            let mut s = job.stats.lock();
            s.state = state;
            s.error = error.clone();
            s.end_time = Some(SystemTime::now());
            s.clone()
        };
        {
            let mut jobs = self.jobs.lock();
            if jobs.get(&dst.uuid()).is_some_and(|j| Arc::ptr_eq(j, job)) {
                jobs.remove(&dst.uuid());
            }
        }
        self.rebuilds_active.fetch_sub(1, Ordering::SeqCst);
        {
            let mut h = self.history.lock();
            h.push_back(stats.clone());
            while h.len() > self.cfg.history_len {
                h.pop_front();
            }
        }
        match &error {
            None => info!(nexus = %self.uuid, child = dst.uri(), %state,
                bytes = stats.bytes_transferred, partial = stats.is_partial, "rebuild ended"),
            Some(e) => warn!(nexus = %self.uuid, child = dst.uri(), error = %e, "rebuild failed"),
        }
        if let Err(e) = self.persist_upto(gen).await {
            warn!(nexus = %self.uuid, error = %e, "cannot persist the nexus info after a rebuild");
        }
        job.done.send_replace(true);
    }

    /// The running rebuild of a child.
    pub fn rebuild_job(&self, uri: &str) -> Result<Arc<RebuildJob>, NexusError> {
        let child = self.child(uri)?;
        self.jobs
            .lock()
            .get(&child.uuid())
            .cloned()
            .ok_or_else(|| NexusError::NotFound(format!("no rebuild of child {uri} is running")))
    }

    /// Stats of the running rebuild of a child, or its last record.
    pub fn rebuild_stats(&self, uri: &str) -> Result<RebuildStats, NexusError> {
        if let Ok(job) = self.rebuild_job(uri) {
            return Ok(job.stats());
        }
        let child = self.child(uri)?;
        self.history
            .lock()
            .iter()
            .rev()
            .find(|s| s.uri == child.uri())
            .cloned()
            .ok_or_else(|| NexusError::NotFound(format!("child {uri} has no rebuild")))
    }

    pub(crate) fn control_rebuild(
        &self,
        uri: &str,
        c: Control,
    ) -> Result<RebuildStats, NexusError> {
        let job = self.rebuild_job(uri)?;
        job.set_control(c);
        Ok(job.stats())
    }

    /// Stops a rebuild and waits for it to end.
    pub(crate) async fn stop_rebuild(&self, uri: &str) -> Result<RebuildStats, NexusError> {
        let job = self.rebuild_job(uri)?;
        job.set_control(Control::Stop);
        job.wait().await;
        Ok(job.stats())
    }

    /// Adds a new child (it is rebuilt in full unless `norebuild`).
    ///
    /// The child takes the nexus's reservation like every child.
    pub(crate) async fn add_child(&self, uri: &str, norebuild: bool) -> Result<(), NexusError> {
        if self.is_shut_down() {
            return Err(NexusError::FailedPrecondition(format!(
                "nexus {} is shut down",
                self.uuid
            )));
        }
        let uuid = check_child_uri(uri).map_err(NexusError::InvalidArgument)?;
        if self
            .children()
            .iter()
            .any(|c| c.uri() == uri || c.uuid() == uuid)
        {
            return Err(NexusError::AlreadyExists(format!(
                "nexus {} already has child {uri}",
                self.uuid
            )));
        }
        let resv = *self.reservation.lock();
        let opened = self
            .open_reserved(uri, &uuid, &resv)
            .await
            .map_err(|e| NexusError::FailedPrecondition(format!("cannot open child {uri}: {e}")))?;
        self.check_child_device(&opened.device)?;
        let child = Arc::new(Child::new(
            uri.to_owned(),
            uuid,
            ChildStatus {
                state: ChildState::Faulted,
                reason: FaultReason::OutOfSync,
                faulted_at: None,
            },
        ));
        child.set_device(opened);
        {
            let _g = self.state_lock.lock();
            let mut list = self.children.write();
            let mut next = (**list).clone();
            next.push(child.clone());
            *list = Arc::new(next);
            self.bump();
        }
        self.persist().await?;
        info!(nexus = %self.uuid, child = uri, "child added");
        if norebuild {
            return Ok(());
        }
        self.start_rebuild_of(&child, None).await
    }

    /// Removes a child. The last online child cannot be removed.
    pub(crate) async fn remove_child(&self, uri: &str) -> Result<(), NexusError> {
        let child = self.child(uri)?;
        if child.state() == ChildState::Online && self.online_count() <= 1 {
            return Err(NexusError::FailedPrecondition(format!(
                "child {uri} is the last healthy child of nexus {}",
                self.uuid
            )));
        }
        self.stop_job_of(&child).await;
        {
            let _g = self.state_lock.lock();
            if child.state() == ChildState::Online && self.online_count() <= 1 {
                return Err(NexusError::FailedPrecondition(format!(
                    "child {uri} is the last healthy child of nexus {}",
                    self.uuid
                )));
            }
            child.set_status(ChildState::Faulted, FaultReason::ByClient);
            let mut list = self.children.write();
            let next: Vec<_> = list
                .iter()
                .filter(|c| !Arc::ptr_eq(c, &child))
                .cloned()
                .collect();
            *list = Arc::new(next);
            self.bump();
        }
        drop(self.gate.write().await);
        child.close();
        self.persist().await?;
        info!(nexus = %self.uuid, child = uri, "child removed");
        Ok(())
    }

    /// Shuts the nexus down: rebuilds stop, in-flight I/O drains, children
    /// are flushed and closed, and the info is persisted with
    /// `clean_shutdown = true`. I/O fails from then on.
    pub(crate) async fn shutdown(&self) -> Result<(), NexusError> {
        if self.shutdown.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let jobs: Vec<_> = self.jobs.lock().values().cloned().collect();
        for job in &jobs {
            job.set_control(Control::Stop);
        }
        for job in &jobs {
            job.wait().await;
        }
        drop(self.gate.write().await);
        let children = self.children();
        let mut flushed_all = true;
        for c in children.iter() {
            if let Some((dev, _)) = c.write_device() {
                if let Err((_, e)) = self.child_io(dev.flush()).await {
                    warn!(nexus = %self.uuid, child = c.uri(), error = %e, "flush at shutdown failed");
                    if c.state() == ChildState::Online {
                        flushed_all = false;
                    }
                }
            }
        }
        // A child whose final flush failed may have lost writes: not clean.
        self.clean.store(flushed_all, Ordering::SeqCst);
        self.bump();
        let persisted = self.persist().await;
        for c in children.iter() {
            c.close();
        }
        info!(nexus = %self.uuid, clean = flushed_all, "nexus shut down");
        persisted
    }
}

impl BlockDevice for Nexus {
    fn info(&self) -> &DeviceInfo {
        &self.dev
    }

    async fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> blockdev::Result<()> {
        check_io(&self.dev, "read", offset_bytes, buf.len() as u64)?;
        self.check_open("read", offset_bytes)?;
        let children = self.children();
        let n = children.len();
        let start = self.rr.fetch_add(1, Ordering::Relaxed);
        let mut error = None;
        for i in 0..n {
            let child = &children[(start + i) % n];
            let Some(dev) = child.read_device() else {
                continue;
            };
            match self.child_io(dev.read_at(offset_bytes, buf)).await {
                Ok(()) => return Ok(()),
                Err((reason, e)) => {
                    warn!(nexus = %self.uuid, child = child.uri(), offset_bytes, error = %e, "child read failed");
                    if let Err(store) = self.fault_on_io(child, reason, None, true).await {
                        return Err(BlockDevError::Io {
                            op: "read",
                            offset_bytes,
                            source: io::Error::other(store.to_string()),
                        });
                    }
                    error = Some(e);
                }
            }
        }
        Err(error.unwrap_or_else(|| no_healthy_child("read", offset_bytes)))
    }

    async fn write_at(&self, offset_bytes: u64, buf: &[u8]) -> blockdev::Result<()> {
        self.write_op(offset_bytes, WriteOp::Write(buf)).await
    }

    async fn flush(&self) -> blockdev::Result<()> {
        self.check_open("flush", 0)?;
        let children = self.children();
        let targets: Vec<_> = children
            .iter()
            .filter_map(|c| c.write_device().map(|(d, online)| (c, d, online)))
            .collect();
        let results =
            futures::future::join_all(targets.iter().map(|(_, d, _)| self.child_io(d.flush())))
                .await;
        let mut acked_online = false;
        let mut error = None;
        for ((child, _, online), res) in targets.iter().zip(results) {
            match res {
                Ok(()) => acked_online |= *online,
                Err((reason, e)) => {
                    warn!(nexus = %self.uuid, child = child.uri(), error = %e, "child flush failed");
                    if let Err(store) = self.fault_on_io(child, reason, None, false).await {
                        return Err(BlockDevError::Io {
                            op: "flush",
                            offset_bytes: 0,
                            source: io::Error::other(store.to_string()),
                        });
                    }
                    error = Some(e);
                }
            }
        }
        if acked_online {
            Ok(())
        } else {
            Err(error.unwrap_or_else(|| no_healthy_child("flush", 0)))
        }
    }

    async fn write_zeroes(&self, offset_bytes: u64, len_bytes: u64) -> blockdev::Result<()> {
        self.write_op(offset_bytes, WriteOp::Zeroes(len_bytes))
            .await
    }

    async fn unmap(&self, offset_bytes: u64, len_bytes: u64) -> blockdev::Result<()> {
        self.write_op(offset_bytes, WriteOp::Unmap(len_bytes)).await
    }
}
