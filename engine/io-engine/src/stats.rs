//! I/O statistics of pools, replicas and nexuses: cumulative counters of
//! read and write commands (ops, bytes, latency) kept on the I/O path.
//!
//! What is counted: every read and write that completed successfully on a
//! replica (counted for the replica and for its pool) or on a nexus (its
//! own counters; the I/O it sends to a local replica child is counted
//! there too). Flush, write-zeroes and unmap are not counted. A pool's
//! counters are not kept on the I/O path: they are the sum of its
//! replicas' (and of those it destroyed, folded in at their destruction).
//! Latency is the time from the start of the call to its completion,
//! summed over the counted I/Os (kept in clock ticks, converted when a
//! snapshot is taken, reported in microseconds), so
//! `Δlatency / Δops` between two samples is the mean latency in between.
//! Ops and bytes are exact. The latency sum is exact while an entity does
//! fewer than about 250,000 I/Os a second per thread and direction; above
//! that it is an unbiased estimate from one I/O in up to 16, chosen at
//! random, each counting for those it stands for ([`sample`]).
//! Counters start at zero when the entity is created or imported by this
//! process; they are never reset.
//!
//! Hot path (a RAM-disk I/O costs about a microsecond of CPU, so every
//! nanosecond shows; `docs/performance.md`, "Cost of the I/O statistics"):
//! - at most two clock reads per I/O whatever the layers, and on a busy
//!   entity two per 2-16 I/Os ([`sample`]: the reads alone would be 2 % of
//!   a RAM-disk I/O): an [`IoTimer`] is started
//!   once where the I/O enters the engine, and a layer that hands the I/O
//!   to another (a nexus to its local replica) hands the timer down and
//!   gets the finished [`IoSpan`] back, so the nexus and the replica count
//!   the same span; the clock is the CPU's time-stamp counter where the
//!   kernel times with it ([`clock`]), about 8 ns a read, and the span is
//!   summed in ticks (no conversion per I/O);
//! - at most two counted entities per I/O (a nexus and its local replica;
//!   a pool adds its replicas' counters only when read);
//! - per-thread slots: each counting thread owns one of [`slot::SLOTS`]
//!   cache-line-aligned slots of every [`IoStats`] and updates it with plain
//!   relaxed stores, no locked instruction and no cache line shared between
//!   writers (threads beyond the slots share one more, with atomic adds);
//! - no lock, no allocation, no map lookup: the caller holds its
//!   `IoStats` (a field of the replica, pool or nexus).
//!
//! A snapshot sums the slots. Statistics are a process-wide switch
//! ([`set_enabled`], the io-engine's `--no-io-stats`): when off, an I/O
//! costs one relaxed load of a read-mostly flag and nothing else, so the
//! same build can be measured with and without them (`io-bench
//! --stats-cost-replica`, `--stats-cost-nexus`).
//!
//! Threading model: any thread counts into any entity; readers take a
//! snapshot with relaxed loads (the six values of one snapshot are each
//! exact but may straddle an I/O in flight).

mod clock;
mod sample;
mod slot;

pub use clock::init as init_clock;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
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
/// their values while off; I/O done while off is not counted. Turning them
/// on calibrates the clock now if it is not yet (a few milliseconds).
pub fn set_enabled(on: bool) {
    if on {
        clock::init();
    }
    ENABLED.store(on, Relaxed);
}

/// Whether I/O latencies are timed with the CPU's time-stamp counter
/// (else with `CLOCK_MONOTONIC`); calibrates the clock if not yet done.
pub fn clock_is_tsc() -> bool {
    clock::clock().is_tsc()
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

/// The start of one I/O, taken where it enters the engine: off (not
/// counted), counted only, or timed (a clock tick and the number of I/Os
/// the span stands for, see [`sample`]). Handed down to the layer under (a
/// nexus's local replica), which then does not read the clock to start.
#[derive(Debug, Clone, Copy)]
pub struct IoTimer(Timing);

#[derive(Debug, Clone, Copy)]
enum Timing {
    Off,
    Counted,
    Timed { start: u64, weight: u64 },
}

impl IoTimer {
    /// Starts timing an I/O that is always timed (reads the clock when
    /// statistics are on). The I/O path uses [`IoStats::start_read`] and
    /// [`IoStats::start_write`], which sample a busy entity.
    #[inline]
    pub fn start() -> Self {
        if enabled() {
            IoTimer::timed(1)
        } else {
            IoTimer(Timing::Off)
        }
    }

    #[inline]
    fn timed(weight: u64) -> Self {
        IoTimer(Timing::Timed {
            start: clock::clock().ticks(),
            weight,
        })
    }

    /// A timer that times nothing (for I/O that is not counted).
    #[inline]
    pub fn off() -> Self {
        IoTimer(Timing::Off)
    }

    /// Ends the I/O now (one clock read if it is timed): its span (no
    /// time when it is only counted), or `None` when statistics were off
    /// at the start.
    #[inline]
    pub fn stop(self) -> Option<IoSpan> {
        match self.0 {
            Timing::Off => None,
            Timing::Counted => Some(IoSpan { ticks: 0 }),
            Timing::Timed { start, weight } => Some(IoSpan {
                ticks: clock::clock()
                    .ticks()
                    .saturating_sub(start)
                    .saturating_mul(weight),
            }),
        }
    }
}

/// A finished I/O's latency (times the I/Os it stands for, see
/// [`sample`]), shared by the layers that count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IoSpan {
    /// Clock ticks (an end before the start, two CPUs' counters a few
    /// ticks apart, is no time).
    ticks: u64,
}

impl IoSpan {
    /// A span of `latency_ns` (for tests and other clocks).
    pub fn from_ns(latency_ns: u64) -> Self {
        IoSpan {
            ticks: clock::clock().ticks_of_ns(latency_ns),
        }
    }

    pub fn latency_ns(self) -> u64 {
        clock::clock().ns(self.ticks)
    }
}

/// One thread's counters of one entity, alone on a cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard {
    num_read_ops: AtomicU64,
    bytes_read: AtomicU64,
    num_write_ops: AtomicU64,
    bytes_written: AtomicU64,
    read_latency_ticks: AtomicU64,
    write_latency_ticks: AtomicU64,
    read_sampler: sample::Sampler,
    write_sampler: sample::Sampler,
}

/// Cumulative counters of one entity (see the module documentation).
#[derive(Debug, Default)]
pub struct IoStats {
    /// One per owned slot, then the shared one.
    shards: [Shard; slot::SLOTS + 1],
}

impl IoStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a read of this entity: timed, or only counted while the
    /// entity is busy on this thread (see [`sample`]).
    #[inline]
    pub fn start_read(&self) -> IoTimer {
        self.start(|s| &s.read_sampler)
    }

    /// Starts a write of this entity, as [`IoStats::start_read`].
    #[inline]
    pub fn start_write(&self) -> IoTimer {
        self.start(|s| &s.write_sampler)
    }

    #[inline]
    fn start(&self, sampler: fn(&Shard) -> &sample::Sampler) -> IoTimer {
        if !enabled() {
            return IoTimer(Timing::Off);
        }
        let i = slot::current();
        if i >= slot::SLOTS {
            // The shared slot has many writers: no sampling state there.
            return IoTimer::timed(1);
        }
        let sampler = sampler(&self.shards[i]);
        match sampler.pick() {
            None => IoTimer(Timing::Counted),
            Some(weight) => {
                let c = clock::clock();
                let start = c.ticks();
                sampler.timed(start, c.sample_gap());
                IoTimer(Timing::Timed { start, weight })
            }
        }
    }

    /// Counts one completed read of `bytes` that took `latency_ns`.
    pub fn add_read(&self, bytes: u64, latency_ns: u64) {
        self.read_done(Some(IoSpan::from_ns(latency_ns)), bytes);
    }

    /// Counts one completed write of `bytes` that took `latency_ns`.
    pub fn add_write(&self, bytes: u64, latency_ns: u64) {
        self.write_done(Some(IoSpan::from_ns(latency_ns)), bytes);
    }

    /// Counts a read of `bytes` over `span` (nothing when statistics were
    /// off at its start).
    #[inline]
    pub fn read_done(&self, span: Option<IoSpan>, bytes: u64) {
        if let Some(span) = span {
            let i = slot::current();
            let s = &self.shards[i];
            slot::add(&s.num_read_ops, 1, i);
            slot::add(&s.bytes_read, bytes, i);
            slot::add(&s.read_latency_ticks, span.ticks, i);
        }
    }

    /// Counts a write of `bytes` over `span` (nothing when statistics were
    /// off at its start).
    #[inline]
    pub fn write_done(&self, span: Option<IoSpan>, bytes: u64) {
        if let Some(span) = span {
            let i = slot::current();
            let s = &self.shards[i];
            slot::add(&s.num_write_ops, 1, i);
            slot::add(&s.bytes_written, bytes, i);
            slot::add(&s.write_latency_ticks, span.ticks, i);
        }
    }

    /// The raw counters now (the sum of the shards).
    pub fn counts(&self) -> IoCounts {
        let sum = |f: fn(&Shard) -> &AtomicU64| {
            self.shards
                .iter()
                .map(|s| f(s).load(Relaxed))
                .fold(0u64, u64::wrapping_add)
        };
        IoCounts {
            num_read_ops: sum(|s| &s.num_read_ops),
            bytes_read: sum(|s| &s.bytes_read),
            num_write_ops: sum(|s| &s.num_write_ops),
            bytes_written: sum(|s| &s.bytes_written),
            read_latency_ticks: sum(|s| &s.read_latency_ticks),
            write_latency_ticks: sum(|s| &s.write_latency_ticks),
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> IoStatsSnapshot {
        self.counts().snapshot()
    }
}

/// Raw counters (latency in clock ticks): what is summed across entities
/// (a pool's replicas) before one conversion to [`IoStatsSnapshot`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounts {
    num_read_ops: u64,
    bytes_read: u64,
    num_write_ops: u64,
    bytes_written: u64,
    read_latency_ticks: u64,
    write_latency_ticks: u64,
}

impl IoCounts {
    /// Adds `other` (wrapping, as the counters do).
    pub fn add(&mut self, other: &IoCounts) {
        self.num_read_ops = self.num_read_ops.wrapping_add(other.num_read_ops);
        self.bytes_read = self.bytes_read.wrapping_add(other.bytes_read);
        self.num_write_ops = self.num_write_ops.wrapping_add(other.num_write_ops);
        self.bytes_written = self.bytes_written.wrapping_add(other.bytes_written);
        self.read_latency_ticks = self
            .read_latency_ticks
            .wrapping_add(other.read_latency_ticks);
        self.write_latency_ticks = self
            .write_latency_ticks
            .wrapping_add(other.write_latency_ticks);
    }

    /// The counters with latencies in microseconds.
    pub fn snapshot(&self) -> IoStatsSnapshot {
        let c = clock::clock();
        IoStatsSnapshot {
            num_read_ops: self.num_read_ops,
            bytes_read: self.bytes_read,
            num_write_ops: self.num_write_ops,
            bytes_written: self.bytes_written,
            read_latency_us: c.ns(self.read_latency_ticks) / 1000,
            write_latency_us: c.ns(self.write_latency_ticks) / 1000,
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
        // More threads than owned slots: some share the atomic one.
        let s = std::sync::Arc::new(IoStats::new());
        let threads: Vec<_> = (0..(slot::SLOTS + 12))
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
        let n = (slot::SLOTS + 12) as u64;
        assert_eq!(
            (snap.num_write_ops, snap.bytes_written),
            (n * 1000, n * 1000 * 512)
        );
        // Latency is summed in clock ticks: 1 µs is a whole number of
        // them only on a 1 GHz clock, so the sum is exact to a tick per I/O.
        let want = n * 1000;
        assert!(
            snap.write_latency_us.abs_diff(want) <= want / 1000,
            "{snap:?}"
        );
    }

    #[test]
    fn timer_measures_elapsed_time() {
        // Statistics are on by default; no test turns them off.
        let t = IoTimer::start();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let span = t.stop();
        let s = IoStats::new();
        s.write_done(span, 4096);
        let snap = s.snapshot();
        assert_eq!((snap.num_write_ops, snap.bytes_written), (1, 4096));
        assert!(snap.write_latency_us >= 2000, "{snap:?}");
        assert!(snap.write_latency_us < 2000 + 1_000_000, "{snap:?}");
        // The same span counted at a second layer: the same latency.
        let pool = IoStats::new();
        pool.write_done(span, 4096);
        assert_eq!(pool.snapshot(), snap);
        // A timer started while statistics were off counts nothing.
        assert_eq!(IoTimer::off().stop(), None);
        s.read_done(IoTimer::off().stop(), 4096);
        assert_eq!(s.snapshot().num_read_ops, 0);
    }

    #[test]
    fn a_busy_entity_is_sampled_with_exact_ops_and_bytes() {
        let s = IoStats::new();
        let mut timed = 0u64;
        let n = 100_000u64;
        for _ in 0..n {
            let t = s.start_write();
            if matches!(t.0, Timing::Timed { weight, .. } if weight > 1) {
                timed += 1;
            }
            s.write_done(t.stop(), 4096);
        }
        let snap = s.snapshot();
        assert_eq!((snap.num_write_ops, snap.bytes_written), (n, n * 4096));
        // Back to back, far more than one I/O per 4 µs: most go untimed
        // and the timed ones stand for several.
        assert!(timed > 0 && timed < n / 2, "{timed} sampled of {n}");
        assert!(snap.write_latency_us > 0, "{snap:?}");
        assert_eq!(snap.num_read_ops, 0);
    }

    #[test]
    fn a_quiet_entity_times_every_io() {
        let s = IoStats::new();
        for _ in 0..5 {
            let t = s.start_read();
            assert!(matches!(t.0, Timing::Timed { weight: 1, .. }), "{t:?}");
            std::thread::sleep(std::time::Duration::from_millis(1));
            s.read_done(t.stop(), 512);
        }
        let snap = s.snapshot();
        assert_eq!((snap.num_read_ops, snap.bytes_read), (5, 2560));
        assert!(snap.read_latency_us >= 5000, "{snap:?}");
    }

    #[test]
    fn latency_sums_keep_sub_microsecond_spans_until_reported() {
        let s = IoStats::new();
        for _ in 0..1000 {
            s.read_done(Some(IoSpan::from_ns(999)), 512);
        }
        // 999 µs in total (to a clock tick per I/O): not 0 as per-I/O
        // microseconds would give.
        assert!((998..=999).contains(&s.snapshot().read_latency_us));
        assert_eq!(s.snapshot().bytes_read, 512_000);
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
