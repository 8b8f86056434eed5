//! Rebuild jobs: copying a healthy child onto one that is out of sync while
//! the application's I/O goes on.
//!
//! - The destination is `Degraded` for the whole job: it takes every write
//!   (so it misses nothing from the start of the job on) but serves no
//!   reads.
//! - The job copies segments (`rebuild_segment_bytes`, default 1 MiB) from
//!   an online source. Each copy holds an exclusive range lock, so no
//!   application write to that segment is in flight while it is read from
//!   the source and written to the destination (see `range_lock`).
//! - A full rebuild copies the whole nexus; a partial one only the regions
//!   of the child's dirty-region log.
//! - Pause keeps the destination `Degraded` (it still takes writes); stop
//!   leaves it `Faulted(OUT_OF_SYNC)`; a destination error leaves it
//!   `Faulted(REBUILD_FAILED)`; a source error faults the source (unless it
//!   is the last healthy child) and the copy goes on from another one.
//! - A bandwidth limit (bytes per second, 0 = none) paces the copies.
//! - Every job that ends (completed, stopped, failed) is recorded in the
//!   nexus's rebuild history.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use blockdev::{BlockDevice, DmaBuf};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;
use tracing::{info, warn};

use super::child::{Child, ChildState, FaultReason};

/// State of a rebuild job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RebuildState {
    Init,
    Running,
    Paused,
    Stopped,
    Failed,
    Completed,
}

impl RebuildState {
    pub fn is_done(self) -> bool {
        matches!(
            self,
            RebuildState::Stopped | RebuildState::Failed | RebuildState::Completed
        )
    }
}

impl std::fmt::Display for RebuildState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RebuildState::Init => "init",
            RebuildState::Running => "running",
            RebuildState::Paused => "paused",
            RebuildState::Stopped => "stopped",
            RebuildState::Failed => "failed",
            RebuildState::Completed => "completed",
        })
    }
}

/// Progress and outcome of one rebuild.
#[derive(Debug, Clone, Serialize)]
pub struct RebuildStats {
    /// Destination child URI.
    pub uri: String,
    /// Source child URI (the last one used).
    pub src_uri: String,
    pub state: RebuildState,
    pub blocks_total: u64,
    pub blocks_recovered: u64,
    pub blocks_transferred: u64,
    pub block_size: u64,
    pub bytes_transferred: u64,
    pub is_partial: bool,
    pub start_time: SystemTime,
    pub end_time: Option<SystemTime>,
    /// Bytes per second, 0 = unlimited.
    pub max_bandwidth: u64,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

impl RebuildStats {
    /// Percent done.
    pub fn progress(&self) -> u32 {
        if self.blocks_total == 0 {
            return 100;
        }
        ((self.blocks_recovered * 100) / self.blocks_total) as u32
    }
}

/// What the client asked the job to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    Run,
    Pause,
    Stop,
}

/// One running rebuild.
pub struct RebuildJob {
    pub(crate) dst: Arc<Child>,
    /// Byte ranges to copy, ascending.
    pub(crate) ranges: Vec<(u64, u64)>,
    pub(crate) stats: Mutex<RebuildStats>,
    pub(crate) control: watch::Sender<Control>,
    pub(crate) max_bandwidth: AtomicU64,
    /// Completes (true) when the job has ended.
    pub(crate) done: watch::Sender<bool>,
}

impl std::fmt::Debug for RebuildJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RebuildJob")
            .field("dst", &self.dst.uri())
            .field("stats", &*self.stats.lock())
            .finish()
    }
}

impl RebuildJob {
    pub(crate) fn new(
        dst: Arc<Child>,
        src_uri: String,
        ranges: Vec<(u64, u64)>,
        block_size: u32,
        is_partial: bool,
        max_bandwidth: u64,
    ) -> Self {
        let total: u64 = ranges.iter().map(|(_, l)| l).sum();
        let stats = RebuildStats {
            uri: dst.uri().to_owned(),
            src_uri,
            state: RebuildState::Init,
            blocks_total: total / u64::from(block_size),
            blocks_recovered: 0,
            blocks_transferred: 0,
            block_size: u64::from(block_size),
            bytes_transferred: 0,
            is_partial,
            start_time: SystemTime::now(),
            end_time: None,
            max_bandwidth,
            error: None,
        };
        Self {
            dst,
            ranges,
            stats: Mutex::new(stats),
            control: watch::channel(Control::Run).0,
            max_bandwidth: AtomicU64::new(max_bandwidth),
            done: watch::channel(false).0,
        }
    }

    pub fn stats(&self) -> RebuildStats {
        self.stats.lock().clone()
    }

    pub(crate) fn set_control(&self, c: Control) {
        self.control.send_replace(c);
        let mut s = self.stats.lock();
        if !s.state.is_done() {
            s.state = match c {
                Control::Run => RebuildState::Running,
                Control::Pause => RebuildState::Paused,
                Control::Stop => s.state,
            };
        }
    }

    /// Waits until the job has ended.
    pub async fn wait(&self) {
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }
}

/// How a job ended.
pub(crate) enum Outcome {
    Completed,
    Stopped,
    /// Failed; the destination gets this reason.
    Failed(FaultReason, String),
}

/// Paces copies to a bandwidth.
pub(crate) struct Pacer {
    since: Instant,
    bytes: u64,
    limit: u64,
}

impl Pacer {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            since: Instant::now(),
            bytes: 0,
            limit,
        }
    }

    pub(crate) async fn account(&mut self, bytes: u64, limit: u64) {
        if limit != self.limit {
            *self = Self::new(limit);
        }
        if limit == 0 {
            return;
        }
        self.bytes += bytes;
        let due = Duration::from_secs_f64(self.bytes as f64 / limit as f64);
        let spent = self.since.elapsed();
        if due > spent {
            tokio::time::sleep(due - spent).await;
        }
    }

    /// Restarts the accounting (after a pause).
    pub(crate) fn reset(&mut self) {
        *self = Self::new(self.limit);
    }
}

impl super::Nexus {
    /// Runs `job` to its end and applies the outcome to the destination.
    pub(crate) async fn run_rebuild(self: Arc<Self>, job: Arc<RebuildJob>) {
        {
            let mut s = job.stats.lock();
            if s.state == RebuildState::Init {
                s.state = RebuildState::Running;
            }
        }
        info!(nexus = %self.uuid(), child = job.dst.uri(), partial = job.stats.lock().is_partial,
            "rebuild started");
        let outcome = self.copy_ranges(&job).await;
        self.finish_rebuild(&job, outcome).await;
    }

    async fn copy_ranges(&self, job: &RebuildJob) -> Outcome {
        let seg = self
            .cfg
            .rebuild_segment_bytes
            .max(u64::from(self.block_size()));
        let mut buf = DmaBuf::new(seg as usize);
        let mut control = job.control.subscribe();
        let mut pacer = Pacer::new(job.max_bandwidth.load(Ordering::Relaxed));
        let bs = u64::from(self.block_size());
        for &(start, len) in &job.ranges {
            let end = start + len;
            let mut off = start;
            while off < end {
                // Client control: pause waits, stop ends.
                loop {
                    let c = *control.borrow_and_update();
                    match c {
                        Control::Run => break,
                        Control::Stop => return Outcome::Stopped,
                        Control::Pause => {
                            if control.changed().await.is_err() {
                                return Outcome::Stopped;
                            }
                            pacer.reset();
                        }
                    }
                }
                if self.is_shut_down() {
                    return Outcome::Stopped;
                }
                if job.dst.state() != ChildState::Degraded {
                    return Outcome::Failed(
                        FaultReason::IoFailure,
                        "the destination left the rebuild (faulted)".into(),
                    );
                }
                let n = seg.min(end - off);
                let chunk = &mut buf[..n as usize];
                if let Err(o) = self.copy_segment(job, off, chunk).await {
                    return o;
                }
                off += n;
                {
                    let mut s = job.stats.lock();
                    s.blocks_recovered += n / bs;
                    s.blocks_transferred += n / bs;
                    s.bytes_transferred += n;
                }
                pacer
                    .account(n, job.max_bandwidth.load(Ordering::Relaxed))
                    .await;
            }
        }
        Outcome::Completed
    }

    /// Copies one segment under an exclusive range lock, switching source
    /// when one fails.
    async fn copy_segment(
        &self,
        job: &RebuildJob,
        off: u64,
        buf: &mut [u8],
    ) -> Result<(), Outcome> {
        let len = buf.len() as u64;
        let _range = self.ranges.exclusive(off, len).await;
        loop {
            // Keep the job's source while it stays online.
            let current = job.stats.lock().src_uri.clone();
            let keep = self
                .children()
                .iter()
                .find(|c| c.uri() == current && !Arc::ptr_eq(c, &job.dst))
                .and_then(|c| c.read_device().map(|d| (c.clone(), d)));
            let Some((src, dev)) = keep.or_else(|| self.pick_source(&job.dst)) else {
                return Err(Outcome::Failed(
                    FaultReason::RebuildFailed,
                    "no healthy source child left".into(),
                ));
            };
            {
                let mut s = job.stats.lock();
                if s.src_uri != src.uri() {
                    s.src_uri = src.uri().to_owned();
                }
            }
            match self.child_io(dev.read_at(off, buf)).await {
                Ok(()) => break,
                Err((reason, e)) => {
                    warn!(nexus = %self.uuid(), child = src.uri(), error = %e, "rebuild source read failed");
                    match self.fault_on_io(&src, reason, None, true).await {
                        Ok(true) => continue,
                        _ => {
                            return Err(Outcome::Failed(
                                FaultReason::RebuildFailed,
                                format!("reading the source {} failed: {e}", src.uri()),
                            ))
                        }
                    }
                }
            }
        }
        let Some((dev, _)) = job.dst.write_device() else {
            return Err(Outcome::Failed(
                FaultReason::IoFailure,
                "the destination left the rebuild (faulted)".into(),
            ));
        };
        self.child_io(dev.write_at(off, buf))
            .await
            .map_err(|(_, e)| {
                Outcome::Failed(
                    FaultReason::RebuildFailed,
                    format!("writing the destination failed: {e}"),
                )
            })
    }
}
