//! `io-bench`: a benchmark of the engine's data path.
//!
//! It drives a block device with a fixed set of fio-like workloads
//! ([`Workload`]) and reports IOPS, MiB/s, p50/p99 latency and the CPU time
//! of the process per I/O. Two modes:
//! - [`Target::Device`]: any `blockdev` URI, driven raw;
//! - [`Target::ReplicaVsRaw`]: a pool with one thick replica on a backing
//!   file, compared against the same file opened raw through the same
//!   device layer over the same bytes (see [`setup`]). The two targets run
//!   each workload back to back, alternating which goes first, so both see
//!   the same machine state; the report adds replica/raw ratios (and, over
//!   several rounds, their median);
//! - [`Target::ReplicaVsRawMalloc`]: the same on RAM disks, to isolate the
//!   replica layer's CPU cost from disk noise;
//! - [`Target::NexusVsReplica`]: a 1-child nexus against the bare replica
//!   under it, and [`Target::Nexus2Vs1`]: a 2-child nexus against a 1-child
//!   one (see [`nexus`]), compared the same way;
//! - [`Target::RebuildVsCopy`]: the throughput of a full rebuild of a new
//!   nexus child against a plain copy of the same bytes between the two
//!   backing devices;
//! - [`Target::StatsCost`]: the same replica (or 1-child nexus) with the
//!   engine's I/O statistics off and on, to show what they cost;
//! - [`Target::NvmfVsRaw`], [`Target::RemoteNexus2Vs1`],
//!   [`Target::NvmfIdle`]: a real `io-engine` (started and pinned by this
//!   process, see [`engine`]) shares replicas over NVMe/TCP and our
//!   initiator drives them; the engine's CPU per I/O is measured with ours
//!   (see [`nvmf`]). `--device nvmf://...` with a target PID does the same
//!   for any target.
//!
//! The working set is written once (untimed) before the first
//! measurement, so reads hit real data and writes overwrite allocated
//! blocks. Each result also records how busy the machine's CPUs were with
//! other work during the run (`/proc/stat`), since a shared machine is the
//! main source of noise.
//!
//! This is a benchmark tool, not a timed test: nothing here asserts on
//! speed. The binary (`src/main.rs`) only parses flags and calls [`run`].
//!
//! Dependency note: `libc` is used for `getrusage` and `statfs` only
//! (process CPU time and the backing file's file system), outside the I/O
//! path.
//!
//! Threading model: [`run`] must be called on a multi-thread tokio runtime;
//! each queue slot of a workload is its own task (see [`runner`]).

pub mod engine;
pub mod nexus;
pub mod nvmf;
pub mod report;
pub mod runner;
pub mod setup;
pub mod stats;
pub mod workload;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use blockdev::{BlockDevice, DiskUri, OpenOptions};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub use engine::{pin_process, pin_thread, EngineSpec};
pub use nexus::BackingSpec;
pub use report::{Pairing, Report};
pub use runner::{Region, Sample};
pub use workload::Workload;

use report::{MachineInfo, SessionInfo, TargetInfo, WorkloadResult};

mod compare;

use compare::*;

/// Errors of a benchmark session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot open {uri}: {source}")]
    Open {
        uri: String,
        #[source]
        source: blockdev::BlockDevError,
    },
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pool setup failed: {0}")]
    Pool(#[source] io_engine::pool::PoolError),
    #[error("{0}")]
    Layout(String),
    #[error("{op} at offset {offset_bytes} failed: {source}")]
    Io {
        op: &'static str,
        offset_bytes: u64,
        #[source]
        source: blockdev::BlockDevError,
    },
    #[error("benchmark task failed: {0}")]
    Task(String),
    #[error("cannot use NVMe/TCP target {uri}: {message}")]
    Nvmf { uri: String, message: String },
    #[error("nexus setup failed: {0}")]
    Nexus(#[source] io_engine::nexus::NexusError),
    #[error("{0}")]
    Rebuild(String),
    #[error("io-engine: {0}")]
    Engine(String),
}

/// What to measure.
#[derive(Debug, Clone)]
pub enum Target {
    /// Any blockdev URI (`aio:///dev/nvme0n1`, `malloc:///m0?size_mb=64`).
    Device(String),
    /// A pool replica against the same backing file opened raw.
    ReplicaVsRaw(PathBuf),
    /// A pool replica on a RAM disk against a second RAM disk driven raw
    /// (isolates the replica layer's CPU cost).
    ReplicaVsRawMalloc,
    /// A 1-child nexus against the bare replica it is built on.
    NexusVsReplica(BackingSpec),
    /// A 2-child nexus against a 1-child nexus (two pools: FILE and
    /// FILE.2, or two RAM disks).
    Nexus2Vs1(BackingSpec),
    /// A full rebuild of a new nexus child against a raw copy of the same
    /// bytes between the two backings (`rounds` of each, alternating).
    RebuildVsCopy(BackingSpec),
    /// The cost of the engine's I/O statistics: the same replica, or the
    /// same 1-child nexus over it, with statistics off and on (the
    /// process-wide switch flipped between runs, alternating).
    StatsCost(BackingSpec, StatsLayer),
    /// A replica shared over NVMe/TCP by an engine this process starts,
    /// through our initiator, against the raw backing through the device
    /// layer (see [`nvmf`]).
    NvmfVsRaw(BackingSpec),
    /// A nexus with one remote child against one with two (replicas on
    /// two engines this process starts).
    RemoteNexus2Vs1(BackingSpec),
    /// An engine with this many shared replicas and one connected host
    /// each, idle for the runtime: CPU of both sides.
    NvmfIdle(usize),
}

/// Which layer [`Target::StatsCost`] measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsLayer {
    Replica,
    Nexus,
}

/// Settings of a session.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub target: Target,
    pub workloads: Vec<Workload>,
    /// Measured time per workload and target.
    pub runtime: Duration,
    /// Untimed run of the same workload on the same target right before
    /// each measurement (like fio's `ramp_time`); zero to skip.
    pub ramp: Duration,
    /// Working set; clamped to the device size in device mode.
    pub size_bytes: u64,
    /// Logical block size of the device (`None`: the URI's or 512).
    pub block_size: Option<u32>,
    pub open: OpenOptions,
    /// Times every workload is repeated (each repetition alternates the
    /// targets again).
    pub rounds: u32,
    /// Keep a backing file that `io-bench` created.
    pub keep_file: bool,
    /// Re-run a measurement (both targets of a pair) when the CPUs were
    /// busier than this with other work (% of all CPUs, see
    /// [`report::WorkloadResult::host_other_pct`]), at most
    /// [`MAX_ATTEMPTS`] times.
    pub max_other_pct: Option<f64>,
    /// Show progress bars on stderr.
    pub progress: bool,
    pub seed: u64,
    /// PID of the NVMe/TCP target process of a `Target::Device` nvmf://
    /// URI, whose CPU per I/O is then reported too.
    pub target_pid: Option<u32>,
    /// The engines the NVMe/TCP modes start.
    pub engine: EngineSpec,
}

impl BenchConfig {
    fn validate(&self) -> Result<(), BenchError> {
        if self.workloads.is_empty() {
            return Err(BenchError::Config("no workload selected".into()));
        }
        if self.runtime.is_zero() {
            return Err(BenchError::Config("runtime must be positive".into()));
        }
        if self.size_bytes == 0 {
            return Err(BenchError::Config("size must be positive".into()));
        }
        if self.rounds == 0 {
            return Err(BenchError::Config("rounds must be at least 1".into()));
        }
        if let Some(bs) = self.block_size {
            if bs != 512 && bs != 4096 {
                return Err(BenchError::Config(format!(
                    "block size must be 512 or 4096, got {bs}"
                )));
            }
        }
        Ok(())
    }
}

/// Most times one measurement is taken when the machine is busy.
pub const MAX_ATTEMPTS: u32 = 3;

/// A device under test plus the range the workloads use.
struct Subject<D> {
    name: &'static str,
    dev: Arc<D>,
    region: Region,
    /// Engine I/O statistics on (`Some(true)`) or off while this subject
    /// runs (`None`: leave the process-wide switch as it is).
    io_stats: Option<bool>,
    /// The process serving the device (an NVMe/TCP target), whose CPU is
    /// measured with each run.
    target_pid: Option<u32>,
}

impl<D: BlockDevice + 'static> Subject<D> {
    fn info(&self) -> TargetInfo {
        let i = self.dev.info();
        TargetInfo {
            name: self.name.to_string(),
            uri: i.uri.clone(),
            backend: i.backend.to_string(),
            direct_io: i.direct_io,
            block_size: i.block_size,
            region: self.region,
        }
    }

    /// Sets the engine's statistics switch for this subject's runs.
    fn apply_stats_switch(&self) {
        if let Some(on) = self.io_stats {
            io_engine::stats::set_enabled(on);
        }
    }

    /// Writes the whole working set once (untimed).
    async fn fill(&self, cfg: &BenchConfig) -> Result<(), BenchError> {
        self.apply_stats_switch();
        let bar = new_bar(cfg, "bytes", format!("{:<8} fill", self.name));
        let s = runner::fill(&self.dev, self.region, cfg.seed, &bar).await?;
        bar.finish_with_message(format!("{:.0} MiB/s", s.mib_per_s()));
        Ok(())
    }

    /// Runs `w` once.
    async fn measure(
        &self,
        cfg: &BenchConfig,
        w: Workload,
        round: u32,
    ) -> Result<WorkloadResult, BenchError> {
        let seed = cfg.seed ^ u64::from(round) << 32;
        self.apply_stats_switch();
        if !cfg.ramp.is_zero() {
            let bar = new_bar(cfg, "ms", format!("{:<8} {:<18} ramp", self.name, w.name()));
            runner::run_workload(&self.dev, self.region, w, cfg.ramp, !seed, None, &bar).await?;
            bar.finish_and_clear();
        }
        let bar = new_bar(cfg, "ms", format!("{:<8} {:<18}", self.name, w.name()));
        let s = runner::run_workload(
            &self.dev,
            self.region,
            w,
            cfg.runtime,
            seed,
            self.target_pid,
            &bar,
        )
        .await?;
        bar.finish_with_message(format!(
            "{:>9.0} IOPS  p50 {:.0}us  p99 {:.0}us",
            s.iops(),
            s.latency.p50_us,
            s.latency.p99_us
        ));
        Ok(WorkloadResult {
            round,
            target: self.name.to_string(),
            workload: w,
            io_size_bytes: w.io_size_bytes(),
            queue_depth: w.queue_depth(),
            ops: s.ops,
            bytes: s.bytes,
            elapsed_s: s.elapsed.as_secs_f64(),
            iops: s.iops(),
            mib_per_s: s.mib_per_s(),
            p50_us: s.latency.p50_us,
            p99_us: s.latency.p99_us,
            mean_us: s.latency.mean_us,
            max_us: s.latency.max_us,
            cpu_user_s: s.cpu.user.as_secs_f64(),
            cpu_system_s: s.cpu.system.as_secs_f64(),
            cpu_us_per_io: s.cpu_us_per_io(),
            target_cpu_us_per_io: s.target_cpu_us_per_io(),
            host_other_pct: s.host.map(|h| h.other_pct),
            host_steal_pct: s.host.map(|h| h.steal_pct),
            attempts: 1,
            ran_first: false,
        })
    }
}

fn new_bar(cfg: &BenchConfig, unit: &str, prefix: String) -> ProgressBar {
    if !cfg.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stderr());
    let template = if unit == "bytes" {
        "{prefix} [{bar:30}] {bytes}/{total_bytes} {msg}"
    } else {
        "{prefix} [{bar:30}] {elapsed:>4} {msg}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(prefix);
    bar
}

/// Runs a whole session and returns its report.
/// Fills and measures one device on its own (device and NVMe/TCP modes).
async fn measure_alone<D: BlockDevice + 'static>(
    cfg: &BenchConfig,
    subject: &Subject<D>,
    report: &mut Report,
) -> Result<(), BenchError> {
    report.targets.push(subject.info());
    subject.fill(cfg).await?;
    for round in 1..=cfg.rounds {
        for &w in &cfg.workloads {
            let mut attempt = 1;
            loop {
                let mut r = subject.measure(cfg, w, round).await?;
                r.ran_first = true;
                if !disturbed(cfg, &[&r]) || attempt == MAX_ATTEMPTS {
                    r.attempts = attempt;
                    report.results.push(r);
                    break;
                }
                attempt += 1;
            }
        }
    }
    Ok(())
}

pub async fn run(cfg: &BenchConfig) -> Result<Report, BenchError> {
    cfg.validate()?;
    let threads = tokio::runtime::Handle::try_current()
        .map(|h| h.metrics().num_workers())
        .unwrap_or(1);
    let mut report = Report {
        machine: machine_info(None),
        session: SessionInfo {
            mode: String::new(),
            runtime_s: cfg.runtime.as_secs_f64(),
            ramp_s: cfg.ramp.as_secs_f64(),
            rounds: cfg.rounds,
            runtime_threads: threads,
            seed: cfg.seed,
            cluster_size_bytes: None,
            segment_bytes: None,
        },
        pairing: None,
        targets: Vec::new(),
        results: Vec::new(),
        comparisons: Vec::new(),
        summary: Vec::new(),
        copies: Vec::new(),
        copy_comparisons: Vec::new(),
        idle: None,
    };
    match &cfg.target {
        Target::Device(uri) if uri.starts_with("nvmf://") => {
            // Any NVMe/TCP target (ours or the kernel's) through our
            // initiator.
            report.session.mode = "nvmf".into();
            let (ctrl, ns) = nvmf::connect(uri).await?;
            let size = ns.info().size_bytes();
            let subject = Subject {
                io_stats: None,
                target_pid: cfg.target_pid,
                name: "nvmf",
                dev: Arc::new(ns),
                region: Region {
                    offset_bytes: 0,
                    len_bytes: cfg.size_bytes.min(size),
                },
            };
            let result = measure_alone(cfg, &subject, &mut report).await;
            if let Err(e) = ctrl.disconnect().await {
                tracing::warn!(error = %e, "disconnect failed");
            }
            result?;
        }
        Target::NvmfVsRaw(spec) => {
            report.session.mode = mode_name("nvmf-vs-raw", spec);
            nvmf::nvmf_vs_raw(cfg, spec, &mut report).await?;
        }
        Target::RemoteNexus2Vs1(spec) => {
            report.session.mode = mode_name("remote-nexus-2-vs-1", spec);
            nvmf::remote_nexus_2_vs_1(cfg, spec, &mut report).await?;
        }
        Target::NvmfIdle(count) => {
            report.session.mode = "nvmf-idle".into();
            nvmf::idle_cpu(cfg, *count, &mut report).await?;
        }
        Target::Device(uri) => {
            report.session.mode = "device".into();
            let uri = with_block_size(uri, cfg.block_size)?;
            let dev = blockdev::open_uri(&uri, &cfg.open)
                .await
                .map_err(|source| BenchError::Open {
                    uri: uri.clone(),
                    source,
                })?;
            let size = dev.info().size_bytes();
            let raw = Subject {
                io_stats: None,
                target_pid: None,
                name: "raw",
                dev: Arc::new(dev),
                region: Region {
                    offset_bytes: 0,
                    len_bytes: cfg.size_bytes.min(size),
                },
            };
            if let Ok(parsed) = uri.parse::<DiskUri>() {
                report.machine.filesystem = parsed.path().and_then(filesystem_of);
            }
            measure_alone(cfg, &raw, &mut report).await?;
        }
        Target::ReplicaVsRaw(path) => {
            report.session.mode = "replica-vs-raw".into();
            let bs = cfg.block_size.unwrap_or(512);
            let setup =
                setup::ReplicaVsRaw::prepare_file(path, cfg.size_bytes, bs, &cfg.open).await?;
            if let setup::Backing::File { path, .. } = &setup.backing {
                report.machine.filesystem = filesystem_of(path);
            }
            finish_comparison(cfg, setup, &mut report).await?;
        }
        Target::ReplicaVsRawMalloc => {
            report.session.mode = "replica-vs-raw-malloc".into();
            let bs = cfg.block_size.unwrap_or(512);
            pin_mmap_threshold();
            let setup = setup::ReplicaVsRaw::prepare_malloc(cfg.size_bytes, bs, &cfg.open).await?;
            finish_comparison(cfg, setup, &mut report).await?;
        }
        Target::NexusVsReplica(spec) => {
            report.session.mode = mode_name("nexus-vs-replica", spec);
            let setup = prepare_nexus_setup(cfg, spec, 1, &mut report).await?;
            let result = nexus_vs_replica(cfg, &mut report, &setup).await;
            finish_nexus(cfg, setup, result, &mut report).await?;
        }
        Target::Nexus2Vs1(spec) => {
            report.session.mode = mode_name("nexus-2-vs-1", spec);
            let setup = prepare_nexus_setup(cfg, spec, 2, &mut report).await?;
            let result = nexus_2_vs_1(cfg, &mut report, &setup).await;
            finish_nexus(cfg, setup, result, &mut report).await?;
        }
        Target::StatsCost(spec, layer) => {
            let name = match layer {
                StatsLayer::Replica => "stats-cost-replica",
                StatsLayer::Nexus => "stats-cost-nexus",
            };
            report.session.mode = mode_name(name, spec);
            let setup = prepare_nexus_setup(cfg, spec, 1, &mut report).await?;
            let result = stats_cost(cfg, &mut report, &setup, *layer).await;
            // Leave the process as it was found: statistics on.
            io_engine::stats::set_enabled(true);
            finish_nexus(cfg, setup, result, &mut report).await?;
        }
        Target::RebuildVsCopy(spec) => {
            report.session.mode = mode_name("rebuild-vs-copy", spec);
            let setup = prepare_nexus_setup(cfg, spec, 2, &mut report).await?;
            let result = rebuild_vs_copy(cfg, &mut report, &setup).await;
            finish_nexus(cfg, setup, result, &mut report).await?;
        }
    }
    Ok(report)
}

/// `name`, with `-malloc` for RAM disks.
fn mode_name(name: &str, spec: &BackingSpec) -> String {
    match spec {
        BackingSpec::File(_) => name.to_string(),
        BackingSpec::Malloc => format!("{name}-malloc"),
    }
}

/// Whether any of `results` ran while other work used more CPU than
/// `cfg.max_other_pct` allows.
fn disturbed(cfg: &BenchConfig, results: &[&WorkloadResult]) -> bool {
    cfg.max_other_pct.is_some_and(|max| {
        results
            .iter()
            .any(|r| r.host_other_pct.is_some_and(|p| p > max))
    })
}

/// Makes the RAM disks' 1 MiB chunks come from the heap for both targets.
///
/// glibc serves large allocations with `mmap` until the first such block
/// is freed, then raises its threshold: without this, the disk filled first
/// gets `mmap`ed chunks (data 16 bytes past a page boundary) and the other
/// heap chunks. A 4 KiB-aligned copy into memory 16 bytes off a page is
/// 1.6x (4 KiB) to 4.5x (128 KiB) slower with glibc's `rep movsb` on this
/// AMD EPYC, which made whichever disk was filled first look 2-3x slower on
/// writes. A fixed threshold removes that order effect.
fn pin_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only changes allocator tuning; it is
        // thread-safe and every value is valid (it returns 0 on refusal,
        // which leaves the default behaviour).
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        }
    }
}

/// Applies `--block-size` to a device URI, refusing a contradiction.
fn with_block_size(uri: &str, block_size: Option<u32>) -> Result<String, BenchError> {
    let Some(bs) = block_size else {
        return Ok(uri.to_string());
    };
    let parsed: DiskUri = uri
        .parse()
        .map_err(|e: blockdev::UriError| BenchError::Config(e.to_string()))?;
    // A malloc URI always carries a block size (512 by default); only one
    // the user wrote can contradict the flag.
    let current = match &parsed {
        DiskUri::Malloc { blk_size, .. } => uri.contains("blk_size=").then_some(*blk_size),
        other => other.blk_size(),
    };
    if let Some(b) = current.filter(|b| *b != bs) {
        return Err(BenchError::Config(format!(
            "--block-size {bs} contradicts the uri's blk_size={b}"
        )));
    }
    let updated = match parsed {
        DiskUri::Aio { path, .. } => DiskUri::Aio {
            path,
            blk_size: Some(bs),
        },
        DiskUri::Uring { path, .. } => DiskUri::Uring {
            path,
            blk_size: Some(bs),
        },
        DiskUri::Malloc { name, size, .. } => DiskUri::Malloc {
            name,
            size,
            blk_size: bs,
        },
    };
    Ok(updated.to_string())
}

/// Facts about this machine, for the report.
pub fn machine_info(file: Option<&Path>) -> MachineInfo {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    MachineInfo {
        nproc: stats::online_cpus(),
        kernel,
        cpu_model,
        filesystem: file.and_then(filesystem_of),
        cpuidle: cpuidle(),
    }
}

/// The idle driver of the CPUs, with the guest halt-polling window when the
/// driver is `haltpoll` (`None` where sysfs has no cpuidle).
fn cpuidle() -> Option<String> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let driver = read("/sys/devices/system/cpu/cpuidle/current_driver")?;
    match read("/sys/module/haltpoll/parameters/guest_halt_poll_ns") {
        Some(ns) if driver == "haltpoll" => Some(format!("{driver} (guest_halt_poll_ns {ns})")),
        _ => Some(driver),
    }
}

/// Name of the file system holding `path` (from `statfs`), or `None`.
pub fn filesystem_of(path: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `statfs` is plain old data; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` is writable, both alive
    // for the duration of the call.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as i64;
    Some(
        match magic {
            0xEF53 => "ext4",
            0x5846_5342 => "xfs",
            0x9123_683E => "btrfs",
            0x0102_1994 => "tmpfs",
            0x794C_7630 => "overlayfs",
            0x2FC1_2FC1 => "zfs",
            0x6969 => "nfs",
            0x6265_6572 => "sysfs",
            0x0102_1997 => "9p",
            0x6573_5546 => "fuse",
            0x6462_6720 => "debugfs",
            0x1CD1 => "devpts",
            0x9FA0 => "proc",
            _ => return Some(format!("unknown (statfs magic {magic:#x})")),
        }
        .to_string(),
    )
}

#[cfg(test)]
mod tests;
