//! I/O statistics of pools, replicas and nexuses: cumulative counters of
//! read and write commands (ops, bytes, latency) kept on the I/O path.
//!
//! What is counted: every read and write that completed successfully on a
//! replica (counted for the replica and for its pool) or on a nexus (its
//! own counters; the I/O it sends to a local replica child is counted
//! there too). Flush, write-zeroes and unmap are not counted. Latency is
//! the time from the start of the call to its completion, summed over the
//! counted I/Os (kept in nanoseconds, reported in microseconds), so
//! `Δlatency / Δops` between two samples is the mean latency in between.
//! Counters start at zero when the entity is created or imported by this
//! process; they are never reset.
//!
//! Hot path: an [`IoStats`] is a small array of per-thread shards, each six
//! `AtomicU64`s on its own cache line, updated with `Relaxed` adds by the
//! threads mapped to it (no lock, no allocation, no syscall: the clock is
//! read through the vDSO; no cache line bouncing between the runtime's
//! worker threads, which a single set of shared atomics costs on every
//! I/O). A snapshot sums the shards. Statistics are a process-wide switch
//! ([`set_enabled`], the io-engine's `--no-io-stats`): when off, an I/O
//! costs one relaxed load of a read-mostly flag and nothing else, so the
//! same build can be measured with and without them (`io-bench
//! --stats-cost`).
//!
//! Threading model: any thread updates any counter; readers take a
//! snapshot with relaxed loads (the six values of one snapshot are each
//! exact but may straddle an I/O in flight).

use std::{
    cell::Cell,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed},
        OnceLock,
    },
    time::Instant,
};

use serde::Serialize;
use uuid::Uuid;

/// Whether I/O statistics are kept (process-wide; on by default).
static ENABLED: AtomicBool = AtomicBool::new(true);

/// The process's monotonic epoch for [`tick_us`].
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Turns I/O statistics on or off for the whole process. Counters keep
/// their values while off; I/O done while off is not counted.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Relaxed);
}

/// Whether I/O statistics are kept.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Relaxed)
}

/// Microseconds on this process's monotonic clock (the "tick" of a
/// sample: rates are Δcounter / Δtick).
pub fn tick_us() -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The start of one I/O, taken before it is submitted; `None` when
/// statistics are off.
#[derive(Debug, Clone, Copy)]
pub struct IoTimer(Option<Instant>);

impl IoTimer {
    /// Starts timing an I/O (reads the clock only when statistics are on).
    #[inline]
    pub fn start() -> Self {
        if enabled() {
            // The epoch must predate every sample's start.
            EPOCH.get_or_init(Instant::now);
            IoTimer(Some(Instant::now()))
        } else {
            IoTimer(None)
        }
    }

    /// Nanoseconds since [`IoTimer::start`], or `None` when statistics
    /// were off at the start.
    #[inline]
    pub fn elapsed_ns(self) -> Option<u64> {
        self.0
            .map(|t| u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }
}

/// Shards per entity: threads are spread over them round-robin.
const SHARDS: usize = 8;

/// Source of the threads' shard numbers.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard (assigned on its first counted I/O).
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's shard index.
#[inline]
fn shard_index() -> usize {
    SHARD.with(|s| {
        let i = s.get();
        if i != usize::MAX {
            return i;
        }
        let i = NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS;
        s.set(i);
        i
    })
}

/// One thread group's counters, alone on a cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard {
    num_read_ops: AtomicU64,
    bytes_read: AtomicU64,
    num_write_ops: AtomicU64,
    bytes_written: AtomicU64,
    read_latency_ns: AtomicU64,
    write_latency_ns: AtomicU64,
}

/// Cumulative counters of one entity (see the module documentation).
#[derive(Debug, Default)]
pub struct IoStats {
    shards: [Shard; SHARDS],
}

impl IoStats {
    pub fn new() -> Self {
        Self::default()
    }

    #[inline]
    fn shard(&self) -> &Shard {
        &self.shards[shard_index()]
    }

    /// Counts one completed read of `bytes` that took `latency_ns`.
    #[inline]
    pub fn add_read(&self, bytes: u64, latency_ns: u64) {
        let s = self.shard();
        s.num_read_ops.fetch_add(1, Relaxed);
        s.bytes_read.fetch_add(bytes, Relaxed);
        s.read_latency_ns.fetch_add(latency_ns, Relaxed);
    }

    /// Counts one completed write of `bytes` that took `latency_ns`.
    #[inline]
    pub fn add_write(&self, bytes: u64, latency_ns: u64) {
        let s = self.shard();
        s.num_write_ops.fetch_add(1, Relaxed);
        s.bytes_written.fetch_add(bytes, Relaxed);
        s.write_latency_ns.fetch_add(latency_ns, Relaxed);
    }

    /// Counts a read timed by `timer` (nothing when statistics were off).
    #[inline]
    pub fn read_done(&self, timer: IoTimer, bytes: u64) {
        if let Some(ns) = timer.elapsed_ns() {
            self.add_read(bytes, ns);
        }
    }

    /// Counts a write timed by `timer` (nothing when statistics were off).
    #[inline]
    pub fn write_done(&self, timer: IoTimer, bytes: u64) {
        if let Some(ns) = timer.elapsed_ns() {
            self.add_write(bytes, ns);
        }
    }

    /// The counters now (the sum of the shards).
    pub fn snapshot(&self) -> IoStatsSnapshot {
        let sum = |f: fn(&Shard) -> &AtomicU64| {
            self.shards
                .iter()
                .map(|s| f(s).load(Relaxed))
                .fold(0u64, u64::wrapping_add)
        };
        IoStatsSnapshot {
            num_read_ops: sum(|s| &s.num_read_ops),
            bytes_read: sum(|s| &s.bytes_read),
            num_write_ops: sum(|s| &s.num_write_ops),
            bytes_written: sum(|s| &s.bytes_written),
            read_latency_us: sum(|s| &s.read_latency_ns) / 1000,
            write_latency_us: sum(|s| &s.write_latency_ns) / 1000,
        }
    }
}

/// The counters of one entity at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IoStatsSnapshot {
    pub num_read_ops: u64,
    pub bytes_read: u64,
    pub num_write_ops: u64,
    pub bytes_written: u64,
    /// Sum of the latencies of the counted reads, microseconds.
    pub read_latency_us: u64,
    /// Sum of the latencies of the counted writes, microseconds.
    pub write_latency_us: u64,
}

/// The statistics of one pool, replica or nexus, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct EntityIoStats {
    pub name: String,
    pub uuid: Uuid,
    /// For a replica: its pool's name and uuid.
    pub pool: Option<(String, Uuid)>,
    pub stats: IoStatsSnapshot,
    /// [`tick_us`] when the snapshot was taken.
    pub tick_us: u64,
}

impl EntityIoStats {
    /// Whether this entry is the one named `name_or_uuid`.
    pub fn matches(&self, name_or_uuid: &str) -> bool {
        self.name == name_or_uuid || Uuid::parse_str(name_or_uuid).is_ok_and(|u| u == self.uuid)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counts_reads_and_writes_separately() {
        let s = IoStats::new();
        s.add_read(4096, 1_500);
        s.add_read(512, 2_600);
        s.add_write(8192, 10_000);
        assert_eq!(
            s.snapshot(),
            IoStatsSnapshot {
                num_read_ops: 2,
                bytes_read: 4608,
                num_write_ops: 1,
                bytes_written: 8192,
                read_latency_us: 4,
                write_latency_us: 10,
            }
        );
    }

    #[test]
    fn counts_from_many_threads_add_up() {
        let s = std::sync::Arc::new(IoStats::new());
        let threads: Vec<_> = (0..12)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        s.add_write(512, 1000);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let snap = s.snapshot();
        assert_eq!(
            (
                snap.num_write_ops,
                snap.bytes_written,
                snap.write_latency_us
            ),
            (12_000, 12_000 * 512, 12_000)
        );
    }

    #[test]
    fn timer_measures_elapsed_time() {
        let t = IoTimer(Some(Instant::now()));
        std::thread::sleep(std::time::Duration::from_millis(2));
        let s = IoStats::new();
        s.write_done(t, 4096);
        let snap = s.snapshot();
        assert_eq!((snap.num_write_ops, snap.bytes_written), (1, 4096));
        assert!(snap.write_latency_us >= 2000, "{snap:?}");
        // A timer started while statistics were off counts nothing.
        s.read_done(IoTimer(None), 4096);
        assert_eq!(s.snapshot().num_read_ops, 0);
    }

    #[test]
    fn matches_by_name_or_uuid() {
        let u = Uuid::new_v4();
        let e = EntityIoStats {
            name: "p1".into(),
            uuid: u,
            pool: None,
            stats: IoStatsSnapshot::default(),
            tick_us: tick_us(),
        };
        assert!(e.matches("p1"));
        assert!(e.matches(&u.to_string()));
        assert!(!e.matches("p2"));
        assert!(!e.matches(&Uuid::new_v4().to_string()));
    }
}
