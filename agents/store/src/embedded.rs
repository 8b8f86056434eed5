//! The embedded store: etcd's model in process, persisted in a directory.
//!
//! State lives in memory (`mvcc::Mvcc`: an ordered map with a global
//! revision, create/mod revision and version per key, and leases). Every
//! change is encoded as one checksummed, length-prefixed record
//! (`codec`) and queued for one writer thread (`store-wal`), which writes
//! the queued records as one checksummed batch and fsyncs it before any of
//! them is acknowledged: changes that arrive while it writes are committed
//! together by its next fsync (group commit). When the log grows past a
//! threshold the thread writes a snapshot atomically and starts a new log
//! (`wal`). Opening replays the snapshot and the logs, cutting off a torn
//! batch at the very end (and refusing damage anywhere else).
//!
//! Visibility: a change is applied to memory under the state lock when it
//! is submitted, so later operations see it; but no caller learns of it
//! before it is durable: writers wait for their record's fsync, readers for
//! the fsync of every record submitted before their read, and watchers
//! only get events of durable records. If a log write fails, the store
//! refuses every later operation (it must be reopened).
//!
//! Leases: TTL timers run on the writer thread, which wakes at the next
//! expiry and revokes expired leases (deleting their keys) like any other
//! change. Grants and revocations are logged; keep-alives are not, so after
//! a reopen every lease restarts its full TTL (as etcd does).
//!
//! Threading: one `std::sync::Mutex` around the whole state, never held
//! across an `.await` nor during file I/O. The writer thread is plain
//! `std`, so the store works under any tokio runtime and outlives none:
//! dropping the last handle stops and joins it, after a final flush.

mod codec;
mod mvcc;
mod wal;
mod watch;

use std::{
    collections::VecDeque,
    fs::File,
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
    thread::JoinHandle,
    time::Instant,
};

use async_trait::async_trait;
use tokio::sync::broadcast;
use tracing::{debug, error, info, warn};

pub(crate) use self::mvcc::{
    KeyRange, LeaseInfo, RangeRequest, RequestOp, ResponseOp, TxnRequest, TxnResponse,
};
use self::{
    codec::Snapshot,
    mvcc::{Applied, Mvcc},
    wal::LogWriter,
    watch::{Batch, History},
};
use crate::{
    Compare, KeyValue, LeaseId, Listing, Op, Store, StoreError, TxnResult, WatchEvent, WatchStream,
};

/// Most bytes of records written (and fsynced) as one batch.
const MAX_BATCH_BYTES: usize = 64 << 20;

/// Tuning of an [`EmbeddedStore`].
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Write a snapshot and start a new log once the log holds this many
    /// bytes.
    pub snapshot_threshold_bytes: u64,
    /// Events kept in memory for watches that start in the past; older
    /// start revisions are `Compacted`.
    pub history_events: usize,
    /// Changes a watcher may fall behind before it has to catch up from the
    /// history.
    pub watch_channel_batches: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            snapshot_threshold_bytes: 8 << 20,
            history_events: 10_000,
            watch_channel_batches: 1024,
        }
    }
}

/// Everything behind the state lock.
pub(crate) struct State {
    pub mvcc: Mvcc,
    /// Encoded records not handed to the writer thread yet, with their
    /// numbers (from 1 since the open).
    queued: VecDeque<(u64, Vec<u8>)>,
    /// Number of the last record queued.
    appended_seq: u64,
    /// Events of records not durable yet: `(record number, events)`.
    pending: VecDeque<(u64, Vec<WatchEvent>)>,
    pub history: History,
    /// Revision of the last durable change.
    pub published_revision: i64,
    /// `None` once the store is closed.
    pub events: Option<broadcast::Sender<Batch>>,
    /// Set when a log write failed.
    failed: Option<String>,
    stopping: bool,
}

impl State {
    fn check_usable(&self) -> Result<(), StoreError> {
        if let Some(reason) = &self.failed {
            return Err(StoreError::unavailable(format!(
                "the embedded store stopped after a log write failed ({reason}); reopen it"
            )));
        }
        if self.stopping {
            return Err(StoreError::unavailable("the embedded store is closed"));
        }
        Ok(())
    }

    /// Queues a change for the writer thread.
    fn append(&mut self, applied: Applied) {
        if let Some(record) = applied.record {
            let mut frame = Vec::new();
            codec::encode_record(&record, &mut frame);
            self.appended_seq += 1;
            self.queued.push_back((self.appended_seq, frame));
            if !applied.events.is_empty() {
                self.pending.push_back((self.appended_seq, applied.events));
            }
        }
    }

    /// Publishes the events of every durable record.
    fn publish_up_to(&mut self, seq: u64) {
        while self.pending.front().is_some_and(|(s, _)| *s <= seq) {
            let Some((_, events)) = self.pending.pop_front() else {
                break;
            };
            let Some(revision) = events.first().map(WatchEvent::revision) else {
                continue;
            };
            self.history.push(&events);
            self.published_revision = self.published_revision.max(revision);
            if let Some(tx) = &self.events {
                // No receiver is fine.
                let _ = tx.send(Arc::new(events));
            }
        }
    }
}

/// What the writer thread has made durable.
#[derive(Debug, Clone, Copy, Default)]
struct Durable {
    seq: u64,
    failed: bool,
    closed: bool,
}

/// State shared by the handles, the writer thread and the watchers.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread.
    wake: Condvar,
    durable: tokio::sync::watch::Sender<Durable>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Owns the writer thread and the directory lock; dropping it closes the
/// store.
struct Handle {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    dir: PathBuf,
    /// Held (flock) for as long as the store is open.
    _lock: File,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_all();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                error!(dir = %self.dir.display(), "the store's log writer thread panicked");
            }
        }
        info!(dir = %self.dir.display(), "embedded store closed");
    }
}

/// The embedded, persistent store. Cheap to clone; the store closes when
/// the last clone is dropped (after which the directory can be opened
/// again).
#[derive(Clone)]
pub struct EmbeddedStore {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("dir", &self.handle.dir)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir` with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(dir, EmbeddedOptions::default())
    }

    /// Opens (or creates) the store in `dir`: locks the directory, loads the
    /// snapshot, replays the logs and starts the writer thread. Blocks for
    /// the file I/O.
    pub fn open_with(dir: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let lock = wal::lock_dir(&dir)?;
        let recovered = wal::recover(&dir, Instant::now())?;
        let mut history = History::new(recovered.compact_revision, options.history_events);
        for batch in recovered.batches.iter().filter(|b| !b.is_empty()) {
            history.push(batch);
        }
        let (events, _) = broadcast::channel(options.watch_channel_batches.max(1));
        let revision = recovered.mvcc.revision();
        info!(
            dir = %dir.display(),
            revision,
            keys = recovered.mvcc.len(),
            "embedded store opened"
        );
        let state = State {
            mvcc: recovered.mvcc,
            queued: VecDeque::new(),
            appended_seq: 0,
            pending: VecDeque::new(),
            history,
            published_revision: revision,
            events: Some(events),
            failed: None,
            stopping: false,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            wake: Condvar::new(),
            durable: tokio::sync::watch::channel(Durable::default()).0,
        });
        let writer = Writer {
            shared: shared.clone(),
            log: recovered.log,
            dir: dir.clone(),
            snapshot_threshold_bytes: options.snapshot_threshold_bytes,
        };
        let thread = std::thread::Builder::new()
            .name("store-wal".to_string())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::io("cannot start the store's log writer thread", e))?;
        Ok(EmbeddedStore {
            handle: Arc::new(Handle {
                shared,
                thread: Mutex::new(Some(thread)),
                dir,
                _lock: lock,
            }),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.handle.dir
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// The current revision.
    pub async fn revision(&self) -> Result<i64, StoreError> {
        self.read(|mvcc, _| mvcc.revision()).await
    }

    /// The revision right now, without waiting for durability (for
    /// response headers).
    pub(crate) fn current_revision(&self) -> i64 {
        self.shared().lock().mvcc.revision()
    }

    /// Applies a change and waits until it is durable.
    async fn change<T>(
        &self,
        f: impl FnOnce(&mut Mvcc, Instant) -> Result<(T, Applied), StoreError>,
    ) -> Result<T, StoreError> {
        let (out, seq) = {
            let mut state = self.shared().lock();
            state.check_usable()?;
            let (out, applied) = f(&mut state.mvcc, Instant::now())?;
            state.append(applied);
            (out, state.appended_seq)
        };
        self.shared().wake.notify_all();
        self.wait_durable(seq).await?;
        Ok(out)
    }

    /// Reads, then waits until every change submitted before the read is
    /// durable (so nothing that could still be lost is ever returned).
    async fn read<T>(&self, f: impl FnOnce(&mut Mvcc, Instant) -> T) -> Result<T, StoreError> {
        let (out, seq) = {
            let mut state = self.shared().lock();
            state.check_usable()?;
            (f(&mut state.mvcc, Instant::now()), state.appended_seq)
        };
        self.wait_durable(seq).await?;
        Ok(out)
    }

    async fn wait_durable(&self, seq: u64) -> Result<(), StoreError> {
        let mut rx = self.shared().durable.subscribe();
        let durable = *rx
            .wait_for(|d| d.seq >= seq || d.failed || d.closed)
            .await
            .map_err(|_| StoreError::unavailable("the embedded store is closed"))?;
        if durable.seq >= seq {
            Ok(())
        } else if durable.failed {
            Err(StoreError::unavailable(
                "the embedded store's log write failed; reopen it",
            ))
        } else {
            Err(StoreError::unavailable("the embedded store is closed"))
        }
    }

    pub(crate) async fn range(
        &self,
        request: RangeRequest,
    ) -> Result<(ResponseOp, i64), StoreError> {
        self.read(|mvcc, _| (mvcc.range(&request), mvcc.revision()))
            .await
    }

    pub(crate) async fn txn_request(&self, request: TxnRequest) -> Result<TxnResponse, StoreError> {
        self.change(|mvcc, _| mvcc.txn(request)).await
    }

    /// Grants a lease (`id` 0: the store picks one); returns it and its TTL.
    pub(crate) async fn grant(&self, id: i64, ttl_secs: i64) -> Result<(LeaseId, i64), StoreError> {
        self.change(|mvcc, now| {
            let (id, ttl, applied) = mvcc.lease_grant(id, ttl_secs, now)?;
            Ok(((id, ttl), applied))
        })
        .await
    }

    pub(crate) async fn lease_info(&self, id: LeaseId) -> Result<Option<LeaseInfo>, StoreError> {
        self.read(|mvcc, now| mvcc.lease_info(id.0, now)).await
    }

    /// Watches a range (`start_revision` `None`: from now on).
    pub(crate) fn watch_range(
        &self,
        range: KeyRange,
        start_revision: Option<i64>,
    ) -> Result<WatchStream, StoreError> {
        self.shared().lock().check_usable()?;
        Ok(watch::watch(self.shared(), range, start_revision))
    }

    pub(crate) async fn compact_history(&self, revision: i64) -> Result<i64, StoreError> {
        self.read(|_, _| ()).await?;
        let mut state = self.shared().lock();
        let current = state.mvcc.revision();
        if revision > current {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current,
            });
        }
        let compacted = state.history.compact_revision();
        if revision < compacted {
            return Err(StoreError::Compacted {
                requested: revision,
                compact_revision: compacted,
            });
        }
        state.history.compact(revision);
        Ok(current)
    }
}

fn single_kvs(response: ResponseOp) -> Vec<KeyValue> {
    match response {
        ResponseOp::Range { kvs, .. } => kvs,
        _ => Vec::new(),
    }
}

fn deleted(response: Option<&ResponseOp>) -> u64 {
    match response {
        Some(ResponseOp::DeleteRange { deleted, .. }) => (*deleted).max(0) as u64,
        _ => 0,
    }
}

pub(crate) fn ops_to_requests(ops: Vec<Op>) -> Vec<RequestOp> {
    ops.into_iter()
        .map(|op| match op {
            Op::Put { key, value, lease } => RequestOp::Put {
                key,
                value,
                lease: LeaseId::raw(lease),
                prev_kv: false,
            },
            Op::Delete { key } => RequestOp::DeleteRange {
                range: KeyRange::single(&key),
                prev_kv: false,
            },
        })
        .collect()
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, StoreError> {
        if key.is_empty() {
            return Err(StoreError::InvalidArgument("key is not provided".into()));
        }
        let (response, _) = self.range(RangeRequest::all(KeyRange::single(key))).await?;
        Ok(single_kvs(response).pop())
    }

    async fn put(
        &self,
        key: &[u8],
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<i64, StoreError> {
        let op = Op::Put {
            key: key.to_vec(),
            value,
            lease,
        };
        Ok(self.txn(Vec::new(), vec![op], Vec::new()).await?.revision)
    }

    async fn delete(&self, key: &[u8]) -> Result<bool, StoreError> {
        let response = self
            .txn_request(TxnRequest {
                success: ops_to_requests(vec![Op::delete(key)]),
                ..TxnRequest::default()
            })
            .await?;
        Ok(deleted(response.responses.first()) > 0)
    }

    async fn delete_prefix(&self, prefix: &[u8]) -> Result<u64, StoreError> {
        let response = self
            .txn_request(TxnRequest {
                success: vec![RequestOp::DeleteRange {
                    range: KeyRange::prefix(prefix),
                    prev_kv: false,
                }],
                ..TxnRequest::default()
            })
            .await?;
        Ok(deleted(response.responses.first()))
    }

    async fn list_with_revision(&self, prefix: &[u8]) -> Result<Listing, StoreError> {
        let (response, revision) = self
            .range(RangeRequest::all(KeyRange::prefix(prefix)))
            .await?;
        Ok(Listing {
            kvs: single_kvs(response),
            revision,
        })
    }

    async fn watch(
        &self,
        prefix: &[u8],
        start_revision: Option<i64>,
    ) -> Result<WatchStream, StoreError> {
        StoreError::check_start_revision(start_revision)?;
        self.watch_range(KeyRange::prefix(prefix), start_revision)
    }

    async fn txn(
        &self,
        compares: Vec<Compare>,
        on_success: Vec<Op>,
        on_failure: Vec<Op>,
    ) -> Result<TxnResult, StoreError> {
        let response = self
            .txn_request(TxnRequest {
                compares,
                success: ops_to_requests(on_success),
                failure: ops_to_requests(on_failure),
            })
            .await?;
        Ok(TxnResult {
            succeeded: response.succeeded,
            revision: response.revision,
        })
    }

    async fn lease_grant(&self, ttl_secs: i64) -> Result<LeaseId, StoreError> {
        Ok(self.grant(0, ttl_secs).await?.0)
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<i64, StoreError> {
        let mut state = self.shared().lock();
        state.check_usable()?;
        state.mvcc.lease_keep_alive(id.0, Instant::now())
    }

    async fn lease_time_to_live(&self, id: LeaseId) -> Result<Option<i64>, StoreError> {
        Ok(self.lease_info(id).await?.map(|l| l.remaining_secs))
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<(), StoreError> {
        self.change(|mvcc, _| Ok(((), mvcc.lease_revoke(id.0)?)))
            .await
    }

    async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        self.compact_history(revision).await.map(|_| ())
    }

    async fn server_version(&self) -> Result<String, StoreError> {
        Ok(mayastor_version::version().to_string())
    }
}

/// The log writer thread.
struct Writer {
    shared: Arc<Shared>,
    log: LogWriter,
    dir: PathBuf,
    snapshot_threshold_bytes: u64,
}

impl Writer {
    fn run(mut self) {
        while let Some((frames, seq, snapshot)) = self.next_batch() {
            let written = self.log.append(&frames);
            {
                let mut state = self.shared.lock();
                match written {
                    Ok(()) => {
                        state.publish_up_to(seq);
                        self.shared.durable.send_modify(|d| d.seq = seq);
                    }
                    Err(e) => {
                        error!(
                            dir = %self.dir.display(),
                            error = %e,
                            "store log write failed; refusing further operations"
                        );
                        state.failed = Some(e.to_string());
                        state.queued.clear();
                        state.pending.clear();
                        self.shared.durable.send_modify(|d| d.failed = true);
                        continue;
                    }
                }
            }
            if let Some(snapshot) = snapshot {
                self.compact_log(snapshot);
            }
        }
        let mut state = self.shared.lock();
        // Dropping the sender ends every watcher.
        state.events = None;
        self.shared.durable.send_modify(|d| d.closed = true);
    }

    /// Waits for records to write (revoking expired leases meanwhile);
    /// returns them with the number of the last one and, when the log is
    /// due for compaction, the snapshot of the state they lead to. `None`
    /// when the store is closing and everything is written.
    fn next_batch(&mut self) -> Option<(Vec<u8>, u64, Option<Snapshot>)> {
        let mut state = self.shared.lock();
        loop {
            if !state.queued.is_empty() {
                break;
            }
            if state.stopping {
                return None;
            }
            let now = Instant::now();
            let next_expiry = if state.failed.is_none() {
                let expired = state.mvcc.expired_leases(now);
                if !expired.is_empty() {
                    for id in expired {
                        if let Ok(applied) = state.mvcc.lease_revoke(id) {
                            debug!(lease = %LeaseId(id), "lease expired");
                            state.append(applied);
                        }
                    }
                    continue;
                }
                state.mvcc.next_lease_expiry()
            } else {
                None
            };
            state = match next_expiry {
                Some(at) => {
                    self.shared
                        .wake
                        .wait_timeout(state, at.saturating_duration_since(now))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
        // Whole records, up to a bounded batch (at least one record).
        let mut frames = Vec::new();
        let mut seq = 0;
        while let Some((_, frame)) = state.queued.front() {
            if !frames.is_empty() && frames.len() + frame.len() > MAX_BATCH_BYTES {
                break;
            }
            if let Some((s, frame)) = state.queued.pop_front() {
                frames.extend_from_slice(&frame);
                seq = s;
            }
        }
        // The snapshot must describe exactly the records written so far:
        // only when this batch drains the queue.
        let due = self.log.size_bytes() + frames.len() as u64 >= self.snapshot_threshold_bytes;
        let snapshot =
            (due && state.queued.is_empty()).then(|| state.mvcc.to_snapshot(self.log.seq() + 1));
        Some((frames, seq, snapshot))
    }

    /// Starts a new log, writes the snapshot covering the old ones and
    /// removes them. A failure leaves the logs as they are (recovery still
    /// has everything) and is retried at the next threshold.
    fn compact_log(&mut self, snapshot: Snapshot) {
        let next_log_seq = snapshot.next_log_seq;
        let revision = snapshot.revision;
        let result = self
            .log
            .roll()
            .and_then(|()| wal::write_snapshot(&self.dir, &codec::encode_snapshot(&snapshot)))
            .and_then(|()| wal::remove_logs_before(&self.dir, next_log_seq));
        match result {
            Ok(()) => {
                debug!(dir = %self.dir.display(), revision, "store log compacted into a snapshot")
            }
            Err(e) => warn!(
                dir = %self.dir.display(),
                error = %e,
                "store log compaction failed; will retry"
            ),
        }
    }
}
