//! `io-bench`: parses flags, starts tracing and a multi-thread runtime, and
//! calls [`io_bench::run`]. See the library for what is measured.

#![forbid(unsafe_code)]

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Context};
use clap::{ArgGroup, Parser, ValueEnum};
use io_bench::{BackingSpec, BenchConfig, EngineSpec, StatsLayer, Target, Workload};
use mayastor_common::log::{init_tracing_with_default, LogFormat};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

/// Benchmark of the engine's data path: IOPS, MiB/s, p50/p99 latency and
/// CPU per I/O of a raw device, of a pool replica against the same file
/// opened raw, or of a nexus against what it is built on; and the
/// throughput of a full rebuild against a raw copy.
#[derive(Debug, Parser)]
#[command(name = "io-bench", version)]
#[command(group(
    ArgGroup::new("mode")
        .required(true)
        .args(["device", "replica_vs_raw", "nexus_vs_replica", "nexus_2_vs_1", "rebuild_vs_copy",
            "stats_cost_replica", "stats_cost_nexus", "nvmf_vs_raw", "remote_nexus_2_vs_1",
            "nvmf_idle"])
))]
struct Args {
    /// Drive this blockdev URI raw (aio:///path, uring:///path,
    /// malloc:///name?size_mb=M), or any NVMe/TCP namespace through our
    /// initiator (nvmf://IP:PORT/<subsystem-nqn>?hostnqn=<nqn>).
    #[arg(long, value_name = "URI")]
    device: Option<String>,

    /// Create FILE (or use an existing file or device, overwriting it), put
    /// a pool and a thick replica on it, and compare the replica with the
    /// same bytes opened raw. `malloc:` instead of a file compares on RAM
    /// disks (the replica layer's CPU cost without disk noise).
    #[arg(long, value_name = "FILE")]
    replica_vs_raw: Option<PathBuf>,

    /// Put a pool and a thick replica on FILE (as --replica-vs-raw) and
    /// compare a 1-child nexus over the replica with the bare replica.
    /// `malloc:` uses a RAM disk.
    #[arg(long, value_name = "FILE")]
    nexus_vs_replica: Option<PathBuf>,

    /// Put a pool and a replica on FILE and on FILE.2 and compare a 2-child
    /// nexus (both replicas) with a 1-child nexus (the first). `malloc:`
    /// uses two RAM disks.
    #[arg(long = "nexus-2-vs-1", value_name = "FILE")]
    nexus_2_vs_1: Option<PathBuf>,

    /// Put a pool and a replica on FILE and on FILE.2, and time a full
    /// rebuild of the second replica into a nexus over the first against a
    /// raw copy of the same bytes from FILE to FILE.2 (1 MiB segments, one
    /// in flight; --rounds of each, alternating). `malloc:` uses RAM disks.
    #[arg(long, value_name = "FILE")]
    rebuild_vs_copy: Option<PathBuf>,

    /// Put a pool and a thick replica on FILE and compare the replica with
    /// the engine's I/O statistics off and on (the same build, the switch
    /// flipped between runs). `malloc:` uses a RAM disk.
    #[arg(long, value_name = "FILE")]
    stats_cost_replica: Option<PathBuf>,

    /// As --stats-cost-replica, through a 1-child nexus over the replica
    /// (statistics counted at the nexus and the replica).
    #[arg(long, value_name = "FILE")]
    stats_cost_nexus: Option<PathBuf>,

    /// Start an io-engine, let it share a thick replica on FILE over
    /// NVMe/TCP, and compare that replica through our initiator with FILE
    /// driven raw through the device layer (the same bytes), reporting
    /// both sides' CPU per I/O. `malloc:` puts the replica on a RAM disk
    /// and compares with a RAM disk of this process. Target and client are
    /// pinned to CPUs 0 and 1 unless --target-cpu/--client-cpu say
    /// otherwise.
    #[arg(long, value_name = "FILE")]
    nvmf_vs_raw: Option<PathBuf>,

    /// Start two io-engines, each sharing a replica on FILE and FILE.2
    /// (`malloc:`: RAM disks), and compare an in-process nexus with both
    /// remote children against one with the first only. Pinned as
    /// --nvmf-vs-raw (both engines on the target CPU).
    #[arg(long = "remote-nexus-2-vs-1", value_name = "FILE")]
    remote_nexus_2_vs_1: Option<PathBuf>,

    /// Start an io-engine with N shared RAM replicas, connect one host
    /// (our initiator) to each, stay idle for --runtime seconds and report
    /// the CPU of the engine and of the hosts.
    #[arg(long, value_name = "N")]
    nvmf_idle: Option<usize>,

    /// PID of the NVMe/TCP target of --device nvmf://...: its CPU per I/O
    /// is reported too (TGT-CPU/IO).
    #[arg(long, value_name = "PID")]
    target_pid: Option<u32>,

    /// Pin the target (the engines io-bench starts, or --target-pid's
    /// threads) to this CPU.
    #[arg(long, value_name = "CPU")]
    target_cpu: Option<usize>,

    /// Pin io-bench itself (every thread, including the runtime's) to this
    /// CPU; the runtime then has one worker unless --threads says more.
    #[arg(long, value_name = "CPU")]
    client_cpu: Option<usize>,

    /// Do not pin in the NVMe/TCP modes (default there: target on CPU 0,
    /// io-bench on CPU 1).
    #[arg(long)]
    no_pin: bool,

    /// io-engine binary for the NVMe/TCP modes (default: next to io-bench).
    #[arg(long, value_name = "PATH")]
    engine_bin: Option<PathBuf>,

    /// io-engine-client binary (default: next to io-bench).
    #[arg(long, value_name = "PATH")]
    client_bin: Option<PathBuf>,

    /// Loopback IP the started engines listen on.
    #[arg(long, value_name = "IP", default_value = "127.0.170.1")]
    engine_ip: std::net::IpAddr,

    /// Run with the engine's I/O statistics off (in any mode; the
    /// --stats-cost-* modes flip them themselves).
    #[arg(long)]
    stats_off: bool,

    /// Poll instead of sleeping: io-bench's runtime threads and the
    /// engines it starts (`io-engine --poll`) stay busy checking their
    /// sockets (each takes a whole core; see `docs/performance.md`)
    #[arg(long)]
    poll: bool,

    /// Workload to run (repeatable), or `all`: randread-4k-qd1,
    /// randread-4k-qd32, randwrite-4k-qd1, randwrite-4k-qd32,
    /// seqread-128k-qd8, seqwrite-128k-qd8.
    #[arg(long, short, value_name = "NAME", default_value = "all")]
    workload: Vec<String>,

    /// Measured seconds per workload and target.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    runtime: f64,

    /// Untimed seconds of the same workload on the same target before each
    /// measurement (warms device and host caches for both targets alike).
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    ramp: f64,

    /// Working set in MiB (the replica's size in the pool modes, the bytes
    /// copied in rebuild-vs-copy mode).
    #[arg(long, value_name = "MiB", default_value_t = 1024)]
    size: u64,

    /// Logical block size of the device: 512 or 4096 (default: the URI's,
    /// else 512).
    #[arg(long, value_name = "BYTES")]
    block_size: Option<u32>,

    /// Repeat every workload this many times (targets alternate again).
    #[arg(long, default_value_t = 1)]
    rounds: u32,

    /// Open through the page cache instead of O_DIRECT.
    #[arg(long)]
    buffered: bool,

    /// Use the portable pread/pwrite backend instead of io_uring.
    #[arg(long)]
    force_pread: bool,

    /// Keep the backing file io-bench created.
    #[arg(long)]
    keep_file: bool,

    /// Re-measure a workload (both targets) when other work used more than
    /// PCT % of all CPUs during it (at most 3 attempts; the last is kept).
    /// Kernel work for our own I/O (interrupts, kworkers) counts as other
    /// work, so keep this well above the idle baseline (~5-10 %).
    #[arg(long, value_name = "PCT")]
    max_other_pct: Option<f64>,

    /// Runtime worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,

    /// Seed of the offset generators.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    output: Output,

    /// Also write the JSON report to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
}

/// The mode the flags select (clap lets exactly one through).
fn target(args: &Args) -> anyhow::Result<Target> {
    let spec = |p: &PathBuf| BackingSpec::from_arg(p.clone());
    Ok(match args {
        Args {
            device: Some(uri), ..
        } => Target::Device(uri.clone()),
        Args {
            replica_vs_raw: Some(path),
            ..
        } => match spec(path) {
            BackingSpec::Malloc => Target::ReplicaVsRawMalloc,
            BackingSpec::File(path) => Target::ReplicaVsRaw(path),
        },
        Args {
            nexus_vs_replica: Some(path),
            ..
        } => Target::NexusVsReplica(spec(path)),
        Args {
            nexus_2_vs_1: Some(path),
            ..
        } => Target::Nexus2Vs1(spec(path)),
        Args {
            rebuild_vs_copy: Some(path),
            ..
        } => Target::RebuildVsCopy(spec(path)),
        Args {
            stats_cost_replica: Some(path),
            ..
        } => Target::StatsCost(spec(path), StatsLayer::Replica),
        Args {
            stats_cost_nexus: Some(path),
            ..
        } => Target::StatsCost(spec(path), StatsLayer::Nexus),
        Args {
            nvmf_vs_raw: Some(path),
            ..
        } => Target::NvmfVsRaw(spec(path)),
        Args {
            remote_nexus_2_vs_1: Some(path),
            ..
        } => Target::RemoteNexus2Vs1(spec(path)),
        Args {
            nvmf_idle: Some(n), ..
        } => Target::NvmfIdle(*n),
        _ => bail!("give one of --device, --replica-vs-raw, --nexus-vs-replica, --nexus-2-vs-1, --rebuild-vs-copy, --stats-cost-replica, --stats-cost-nexus, --nvmf-vs-raw, --remote-nexus-2-vs-1 and --nvmf-idle"),
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing_with_default("io-bench", LogFormat::Pretty, "warn");

    let workloads = Workload::parse_list(&args.workload)?;
    if !(args.runtime.is_finite() && args.runtime > 0.0) {
        bail!("--runtime must be a positive number of seconds");
    }
    if !(args.ramp.is_finite() && args.ramp >= 0.0) {
        bail!("--ramp must be zero or a positive number of seconds");
    }
    let size_bytes = args
        .size
        .checked_mul(1 << 20)
        .context("--size is too large")?;
    let target = target(&args)?;
    let starts_engines = matches!(
        target,
        Target::NvmfVsRaw(_) | Target::RemoteNexus2Vs1(_) | Target::NvmfIdle(_)
    );
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let default_pin = starts_engines && !args.no_pin && ncpu >= 2;
    let target_cpu = args.target_cpu.or(default_pin.then_some(0));
    let client_cpu = args.client_cpu.or(default_pin.then_some(1));
    if args.target_pid.is_some()
        && !matches!(&target, Target::Device(u) if u.starts_with("nvmf://"))
    {
        bail!("--target-pid goes with --device nvmf://...");
    }
    if let (Some(pid), Some(cpu)) = (args.target_pid, target_cpu) {
        io_bench::pin_process(pid, cpu)
            .with_context(|| format!("cannot pin process {pid} to CPU {cpu}"))?;
    }
    if let Some(cpu) = client_cpu {
        // Before the runtime exists: its threads inherit the mask.
        io_bench::pin_thread(0, cpu)
            .with_context(|| format!("cannot pin io-bench to CPU {cpu}"))?;
    }
    if args.stats_off {
        io_engine::stats::set_enabled(false);
    }
    let cfg = BenchConfig {
        target,
        workloads,
        runtime: Duration::from_secs_f64(args.runtime),
        ramp: Duration::from_secs_f64(args.ramp),
        size_bytes,
        block_size: args.block_size,
        open: blockdev::OpenOptions {
            force_pread: args.force_pread,
            buffered: args.buffered,
        },
        rounds: args.rounds,
        keep_file: args.keep_file,
        max_other_pct: args.max_other_pct,
        progress: !args.quiet,
        seed: args.seed,
        target_pid: args.target_pid,
        engine: EngineSpec {
            engine_bin: args.engine_bin.clone(),
            client_bin: args.client_bin.clone(),
            ip: args.engine_ip,
            cpu: target_cpu,
            poll: args.poll,
        },
    };

    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = args.threads {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        rt.worker_threads(n);
    }
    let poll = args.poll;
    let report = rt
        .build()
        .context("cannot start the tokio runtime")?
        .block_on(async {
            let stop = tokio_util::sync::CancellationToken::new();
            if poll {
                io_engine::poll::spawn_pollers(stop.clone());
            }
            let report = io_bench::run(&cfg).await;
            stop.cancel();
            report
        })?;
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    match args.output {
        Output::Table => print!("{}", report.render_table()),
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(args: &[&str]) -> Result<Target, String> {
        let a = Args::try_parse_from(std::iter::once("io-bench").chain(args.iter().copied()))
            .map_err(|e| e.kind().to_string())?;
        target(&a).map_err(|e| e.to_string())
    }

    #[test]
    fn modes_from_flags() {
        assert!(matches!(
            parse(&["--device", "malloc:///m?size_mb=8"]),
            Ok(Target::Device(_))
        ));
        assert!(matches!(
            parse(&["--replica-vs-raw", "malloc:"]),
            Ok(Target::ReplicaVsRawMalloc)
        ));
        assert!(matches!(
            parse(&["--nexus-vs-replica", "/tmp/x.img"]),
            Ok(Target::NexusVsReplica(BackingSpec::File(p))) if p == std::path::Path::new("/tmp/x.img")
        ));
        assert!(matches!(
            parse(&["--nexus-2-vs-1", "malloc:"]),
            Ok(Target::Nexus2Vs1(BackingSpec::Malloc))
        ));
        assert!(matches!(
            parse(&["--rebuild-vs-copy", "malloc:", "--rounds", "2"]),
            Ok(Target::RebuildVsCopy(BackingSpec::Malloc))
        ));
        assert!(matches!(
            parse(&["--stats-cost-replica", "malloc:"]),
            Ok(Target::StatsCost(BackingSpec::Malloc, StatsLayer::Replica))
        ));
        assert!(matches!(
            parse(&["--stats-cost-nexus", "malloc:", "--stats-off"]),
            Ok(Target::StatsCost(BackingSpec::Malloc, StatsLayer::Nexus))
        ));
        assert!(matches!(
            parse(&["--nvmf-vs-raw", "malloc:"]),
            Ok(Target::NvmfVsRaw(BackingSpec::Malloc))
        ));
        assert!(matches!(
            parse(&["--remote-nexus-2-vs-1", "/tmp/y.img"]),
            Ok(Target::RemoteNexus2Vs1(BackingSpec::File(_)))
        ));
        assert!(matches!(
            parse(&["--nvmf-idle", "10"]),
            Ok(Target::NvmfIdle(10))
        ));
    }

    #[test]
    fn exactly_one_mode() {
        assert!(parse(&[]).is_err());
        assert!(parse(&[
            "--nexus-vs-replica",
            "malloc:",
            "--rebuild-vs-copy",
            "malloc:"
        ])
        .is_err());
        assert!(parse(&["--device", "x", "--nexus-2-vs-1", "malloc:"]).is_err());
    }
}
