//! Runs one workload against one block device.
//!
//! I/O path: this is the measuring loop, so it follows the engine's hot-path
//! rules: no allocation per I/O (each worker owns one preallocated
//! [`DmaBuf`] and one histogram; the device future lives in the worker's
//! own state), no logging, no locks. The only shared state is an atomic
//! operation counter (bumped every [`PROGRESS_BATCH`] I/Os, for the
//! progress bar), the sequential cursor and a stop flag.
//!
//! Threading model: queue depth N = N tokio tasks, each issuing I/O
//! back-to-back (submit, await completion, record latency, repeat) on the
//! caller's multi-thread runtime, so they spread over its worker threads.
//! The device is generic (`D: BlockDevice`), so raw disks and replicas are
//! driven by the same monomorphised loop with no dynamic dispatch.
//!
//! Measurement: latency is the time from calling `read_at`/`write_at` to
//! its completion; IOPS is completed I/Os divided by the time from spawning
//! the workers to the last one finishing (workers stop issuing at the
//! deadline and drain what they have in flight); CPU is the process's
//! user + system time over the same span.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use blockdev::{BlockDevice, DmaBuf};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use rand::{rngs::SmallRng, Rng, RngCore, SeedableRng};

use crate::{
    stats::{self, CpuTime, HostCpu, HostLoad, LatencySummary},
    workload::{Pattern, Workload},
    BenchError,
};

/// Worker-local I/O count flushed to the shared counter this often.
const PROGRESS_BATCH: u64 = 64;
/// Progress bar refresh period.
const TICK: Duration = Duration::from_millis(100);
/// I/O size of the fill pass (reduced to a divisor of the region).
const FILL_IO_BYTES: u64 = 1 << 20;
/// Queue depth of the fill pass.
const FILL_QUEUE_DEPTH: usize = 8;

/// The byte range of a device a benchmark uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Region {
    pub offset_bytes: u64,
    pub len_bytes: u64,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Sample {
    pub ops: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub latency: LatencySummary,
    pub cpu: CpuTime,
    /// CPU of the target process over the same span (NVMe/TCP devices
    /// whose target's PID is known; `None` otherwise).
    pub target_cpu: Option<CpuTime>,
    /// Machine-wide CPU use during the run (`None` without `/proc/stat`).
    pub host: Option<HostLoad>,
}

impl Sample {
    pub fn iops(&self) -> f64 {
        stats::per_second(self.ops, self.elapsed)
    }

    pub fn mib_per_s(&self) -> f64 {
        stats::mib_per_second(self.bytes, self.elapsed)
    }

    pub fn cpu_us_per_io(&self) -> f64 {
        stats::cpu_us_per_op(self.cpu.total(), self.ops)
    }

    /// The target process's CPU per I/O, when it was measured.
    pub fn target_cpu_us_per_io(&self) -> Option<f64> {
        self.target_cpu
            .map(|c| stats::cpu_us_per_op(c.total(), self.ops))
    }
}

/// When a worker stops.
#[derive(Debug, Clone, Copy)]
enum Limit {
    /// Stop issuing this long after the run started.
    For(Duration),
    /// Stop issuing at this instant (what [`Limit::For`] becomes when the
    /// run starts).
    Until(Instant),
    /// Stop after the sequential cursor has covered the region once.
    OnePass,
}

/// The shape of a run, shared by its workers.
struct Job {
    region: Region,
    io_bytes: u64,
    /// Number of I/O-sized slots in the region.
    slots: u64,
    write: bool,
    pattern: Pattern,
    limit: Limit,
    seed: u64,
    cursor: AtomicU64,
    ops: AtomicU64,
    stop: AtomicBool,
}

impl Job {
    fn new(
        region: Region,
        io_bytes: u64,
        block_size: u32,
        write: bool,
        pattern: Pattern,
        limit: Limit,
        seed: u64,
    ) -> Result<Self, BenchError> {
        let bs = u64::from(block_size);
        if io_bytes == 0 || !io_bytes.is_multiple_of(bs) || !region.offset_bytes.is_multiple_of(bs)
        {
            return Err(BenchError::Config(format!(
                "I/O size {io_bytes} or region offset {} is not a multiple of the device block size {block_size}",
                region.offset_bytes
            )));
        }
        let slots = region.len_bytes / io_bytes;
        if slots == 0 {
            return Err(BenchError::Config(format!(
                "the working set ({} bytes) is smaller than one {io_bytes}-byte I/O",
                region.len_bytes
            )));
        }
        Ok(Job {
            region,
            io_bytes,
            slots,
            write,
            pattern,
            limit,
            seed,
            cursor: AtomicU64::new(0),
            ops: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        })
    }
}

/// One worker's results.
struct WorkerOut {
    ops: u64,
    hist: Histogram<u64>,
}

/// Issues I/O back-to-back until the job's limit.
async fn worker<D: BlockDevice>(dev: &D, job: &Job, index: u64) -> Result<WorkerOut, BenchError> {
    let io_len = usize::try_from(job.io_bytes)
        .map_err(|_| BenchError::Config(format!("I/O size {} is too large", job.io_bytes)))?;
    let mut buf = DmaBuf::new(io_len);
    let mut rng = SmallRng::seed_from_u64(job.seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    if job.write {
        // Non-trivial payload, written once: compressing or deduplicating
        // layers below cannot shortcut it.
        rng.fill_bytes(&mut buf);
    }
    let mut hist = stats::new_histogram();
    let mut ops = 0u64;
    let mut unreported = 0u64;
    let result = loop {
        if job.stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        let slot = match job.pattern {
            Pattern::Random => rng.random_range(0..job.slots),
            Pattern::Sequential => {
                let n = job.cursor.fetch_add(1, Ordering::Relaxed);
                match job.limit {
                    Limit::OnePass if n >= job.slots => break Ok(()),
                    _ => n % job.slots,
                }
            }
        };
        let offset = job.region.offset_bytes + slot * job.io_bytes;
        let start = Instant::now();
        let res = if job.write {
            dev.write_at(offset, &buf).await
        } else {
            dev.read_at(offset, &mut buf).await
        };
        let end = Instant::now();
        if let Err(source) = res {
            break Err(BenchError::Io {
                op: if job.write { "write" } else { "read" },
                offset_bytes: offset,
                source,
            });
        }
        stats::record(&mut hist, end - start);
        // Devices that complete synchronously (RAM) never return Pending:
        // let the other queue slots run once this task's budget is spent.
        tokio::task::coop::consume_budget().await;
        ops += 1;
        unreported += 1;
        if unreported == PROGRESS_BATCH {
            job.ops.fetch_add(unreported, Ordering::Relaxed);
            unreported = 0;
        }
        if let Limit::Until(deadline) = job.limit {
            if end >= deadline {
                break Ok(());
            }
        }
    };
    job.ops.fetch_add(unreported, Ordering::Relaxed);
    if result.is_err() {
        // Let the other workers stop early; the first error is reported.
        job.stop.store(true, Ordering::Relaxed);
    }
    result.map(|()| WorkerOut { ops, hist })
}

/// Spawns `queue_depth` workers on the current runtime and merges their
/// results. `on_tick` is called periodically with the I/Os done so far.
async fn run_job<D: BlockDevice + 'static>(
    dev: &Arc<D>,
    job: Job,
    queue_depth: usize,
    target_pid: Option<u32>,
    mut on_tick: impl FnMut(u64, Duration),
) -> Result<Sample, BenchError> {
    let mut job = job;
    let host_before = HostCpu::now();
    let target_before = target_pid.and_then(CpuTime::of_pid);
    let cpu_before = CpuTime::now();
    let start = Instant::now();
    // The run lasts at least its runtime from the instant it is timed from.
    if let Limit::For(runtime) = job.limit {
        job.limit = Limit::Until(start + runtime);
    }
    let job = Arc::new(job);
    let mut handles = Vec::with_capacity(queue_depth);
    for i in 0..queue_depth {
        let dev = Arc::clone(dev);
        let job = Arc::clone(&job);
        handles.push(tokio::spawn(
            async move { worker(&*dev, &job, i as u64).await },
        ));
    }
    let mut all = futures::future::join_all(handles);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let joined = loop {
        tokio::select! {
            joined = &mut all => break joined,
            _ = tick.tick() => on_tick(job.ops.load(Ordering::Relaxed), start.elapsed()),
        }
    };
    let elapsed = start.elapsed();
    let cpu = CpuTime::now().since(cpu_before);
    let target_cpu = target_before
        .zip(target_pid.and_then(CpuTime::of_pid))
        .map(|(before, after)| after.since(before));
    // All CPUs of the machine, not only those this process may run on.
    let ncpu = stats::online_cpus();
    let measured = cpu.total() + target_cpu.map_or(Duration::ZERO, CpuTime::total);
    let host = host_before
        .zip(HostCpu::now())
        .and_then(|(before, after)| after.load_since(before, measured, elapsed, ncpu));

    let mut hist = stats::new_histogram();
    let mut ops = 0u64;
    let mut first_err = None;
    for j in joined {
        match j {
            Ok(Ok(out)) => {
                ops += out.ops;
                hist.add(&out.hist)
                    .expect("invariant: histograms with identical bounds merge");
            }
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(BenchError::Task(e.to_string()));
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    on_tick(ops, elapsed);
    Ok(Sample {
        ops,
        bytes: ops * job.io_bytes,
        elapsed,
        latency: LatencySummary::from_histogram(&hist),
        cpu,
        target_cpu,
        host,
    })
}

/// Runs `workload` for `runtime` against `region` of `dev`.
///
/// Write workloads are followed by an untimed flush so the next run does
/// not pay for this one's write-back. `target_pid`: the process serving
/// the device (an NVMe/TCP target), whose CPU is measured too.
pub async fn run_workload<D: BlockDevice + 'static>(
    dev: &Arc<D>,
    region: Region,
    workload: Workload,
    runtime: Duration,
    seed: u64,
    target_pid: Option<u32>,
    bar: &ProgressBar,
) -> Result<Sample, BenchError> {
    let job = Job::new(
        region,
        workload.io_size_bytes() as u64,
        dev.info().block_size,
        workload.is_write(),
        workload.pattern(),
        Limit::For(runtime),
        seed,
    )?;
    let runtime_ms = u64::try_from(runtime.as_millis()).unwrap_or(u64::MAX);
    bar.set_length(runtime_ms.max(1));
    let sample = run_job(
        dev,
        job,
        workload.queue_depth(),
        target_pid,
        |ops, elapsed| {
            let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
            bar.set_position(ms.min(runtime_ms));
            bar.set_message(format!("{:>9.0} IOPS", stats::per_second(ops, elapsed)));
        },
    )
    .await?;
    if workload.is_write() {
        dev.flush().await.map_err(|source| BenchError::Io {
            op: "flush",
            offset_bytes: 0,
            source,
        })?;
    }
    Ok(sample)
}

/// Writes the whole region once (sequential, large I/Os) and flushes, so
/// later reads hit written data on every kind of target.
pub async fn fill<D: BlockDevice + 'static>(
    dev: &Arc<D>,
    region: Region,
    seed: u64,
    bar: &ProgressBar,
) -> Result<Sample, BenchError> {
    let bs = u64::from(dev.info().block_size);
    // The largest power of two <= FILL_IO_BYTES that divides the region, so
    // one pass covers every byte.
    let mut io_bytes = FILL_IO_BYTES;
    while io_bytes > bs && !region.len_bytes.is_multiple_of(io_bytes) {
        io_bytes /= 2;
    }
    let job = Job::new(
        region,
        io_bytes,
        dev.info().block_size,
        true,
        Pattern::Sequential,
        Limit::OnePass,
        seed,
    )?;
    bar.set_length(region.len_bytes.max(1));
    let sample = run_job(dev, job, FILL_QUEUE_DEPTH, None, |ops, _| {
        bar.set_position((ops * io_bytes).min(region.len_bytes));
    })
    .await?;
    dev.flush().await.map_err(|source| BenchError::Io {
        op: "flush",
        offset_bytes: 0,
        source,
    })?;
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn malloc(size_mb: u64) -> Arc<blockdev::Device> {
        let uri = format!("malloc:///bench-runner-{size_mb}?size_mb={size_mb}");
        Arc::new(
            blockdev::open_uri(&uri, &blockdev::OpenOptions::default())
                .await
                .unwrap(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fill_covers_the_region_exactly() {
        let dev = malloc(4).await;
        // An odd-sized region in the middle of the device.
        let region = Region {
            offset_bytes: 512 * 3,
            len_bytes: (1 << 20) + 512 * 5,
        };
        let s = fill(&dev, region, 7, &ProgressBar::hidden()).await.unwrap();
        assert_eq!(s.bytes, region.len_bytes);
        let mut before = DmaBuf::new(512);
        dev.read_at(region.offset_bytes - 512, &mut before)
            .await
            .unwrap();
        assert!(before.iter().all(|&b| b == 0));
        let mut after = DmaBuf::new(512);
        dev.read_at(region.offset_bytes + region.len_bytes, &mut after)
            .await
            .unwrap();
        assert!(after.iter().all(|&b| b == 0));
        let mut inside = DmaBuf::new(region.len_bytes as usize);
        dev.read_at(region.offset_bytes, &mut inside).await.unwrap();
        // Random payload: no 512-byte block of zeroes survives.
        assert!(inside.chunks(512).all(|c| c.iter().any(|&b| b != 0)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn short_run_is_sane() {
        let dev = malloc(64).await;
        let region = Region {
            offset_bytes: 0,
            len_bytes: 64 << 20,
        };
        for w in [Workload::RandRead4kQd32, Workload::SeqWrite128kQd8] {
            let s = run_workload(
                &dev,
                region,
                w,
                Duration::from_millis(300),
                1,
                None,
                &ProgressBar::hidden(),
            )
            .await
            .unwrap();
            assert!(s.ops > 0, "{w}: {s:?}");
            assert_eq!(s.bytes, s.ops * w.io_size_bytes() as u64);
            assert!(s.elapsed >= Duration::from_millis(300));
            assert!(s.iops() > 0.0 && s.mib_per_s() > 0.0);
            assert!(s.latency.p50_us > 0.0 && s.latency.p50_us <= s.latency.p99_us);
            assert!(s.latency.p99_us <= s.latency.max_us);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_shapes_are_refused() {
        let dev = malloc(1).await;
        let tiny = Region {
            offset_bytes: 0,
            len_bytes: 512,
        };
        let err = run_workload(
            &dev,
            tiny,
            Workload::RandRead4kQd1,
            Duration::from_millis(10),
            1,
            None,
            &ProgressBar::hidden(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, BenchError::Config(_)), "{err}");
        let beyond = Region {
            offset_bytes: 1 << 20,
            len_bytes: 1 << 20,
        };
        let err = run_workload(
            &dev,
            beyond,
            Workload::RandRead4kQd1,
            Duration::from_millis(10),
            1,
            None,
            &ProgressBar::hidden(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, BenchError::Io { .. }), "{err}");
    }
}
