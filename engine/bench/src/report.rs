//! What a benchmark session found, as data (serialised with `-o json`) and
//! as an aligned text table.
//!
//! A comparison session pits a *candidate* target against a *baseline*
//! ([`Pairing`]: replica against raw, nexus against replica, 2-child
//! nexus against 1-child nexus, statistics on against off) and reports candidate/baseline ratios. The
//! rebuild session reports copy throughputs instead ([`CopyResult`]).
//!
//! Threading model: plain values built after the measurements.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{runner::Region, workload::Workload};

/// Which two targets a comparison session measures against each other, and
/// the candidate/baseline IOPS ratio the project aims for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pairing {
    /// A pool replica against the raw bytes under it.
    ReplicaVsRaw,
    /// A 1-child nexus against the bare replica it is built on.
    NexusVsReplica,
    /// A 2-child nexus against a 1-child nexus.
    #[serde(rename = "nexus-2-vs-1")]
    Nexus2Vs1,
    /// The same target with the engine's I/O statistics on against off.
    StatsOnVsOff,
    /// A replica shared over NVMe/TCP (our initiator against an engine's
    /// target) against the raw backing under it.
    NvmfVsRaw,
    /// A nexus with two remote children against one with one.
    #[serde(rename = "remote-nexus-2-vs-1")]
    RemoteNexus2Vs1,
}

impl Pairing {
    /// Name of the target the ratios are relative to.
    pub fn baseline(self) -> &'static str {
        match self {
            Pairing::ReplicaVsRaw => "raw",
            Pairing::NexusVsReplica => "replica",
            Pairing::Nexus2Vs1 => "nexus-1",
            Pairing::StatsOnVsOff => "stats-off",
            Pairing::NvmfVsRaw => "raw",
            Pairing::RemoteNexus2Vs1 => "nexus-1",
        }
    }

    /// Name of the target being judged.
    pub fn candidate(self) -> &'static str {
        match self {
            Pairing::ReplicaVsRaw => "replica",
            Pairing::NexusVsReplica => "nexus",
            Pairing::Nexus2Vs1 => "nexus-2",
            Pairing::StatsOnVsOff => "stats-on",
            Pairing::NvmfVsRaw => "nvmf",
            Pairing::RemoteNexus2Vs1 => "nexus-2",
        }
    }

    /// `candidate/baseline`, as the ratio columns are titled.
    pub fn label(self) -> String {
        format!("{}/{}", self.candidate(), self.baseline())
    }

    /// The candidate/baseline IOPS ratio aimed for on `w`, if any: 97 % on
    /// reads and 95 % on writes for a layer over the one below (queue
    /// depth 1 is informational), and 92 % for the second child on 4k
    /// random writes at queue depth 32 (the other workloads are
    /// informational there); statistics may cost at most 2 % at queue
    /// depth 32; a replica over NVMe/TCP reaches 80 % of the raw backing on
    /// 4k random I/O at queue depth 32.
    pub fn target_ratio(self, w: Workload) -> Option<f64> {
        match self {
            Pairing::ReplicaVsRaw | Pairing::NexusVsReplica => w.target_ratio(),
            Pairing::Nexus2Vs1 => (w == Workload::RandWrite4kQd32).then_some(0.92),
            Pairing::StatsOnVsOff => (w.queue_depth() == 32).then_some(0.98),
            Pairing::RemoteNexus2Vs1 => (w == Workload::RandWrite4kQd32).then_some(0.80),
            Pairing::NvmfVsRaw => {
                (w == Workload::RandRead4kQd32 || w == Workload::RandWrite4kQd32).then_some(0.80)
            }
        }
    }
}

/// The machine the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub struct MachineInfo {
    pub nproc: usize,
    pub kernel: String,
    pub cpu_model: String,
    /// File system of the backing file (replica-vs-raw mode), from statfs.
    pub filesystem: Option<String>,
    /// The CPUs' idle driver and, for a guest's `haltpoll`, how long an
    /// idle CPU polls before it halts: in a virtual machine a wake-up of a
    /// halted CPU is expensive, which dominates queue-depth-1 latencies
    /// between two CPUs.
    pub cpuidle: Option<String>,
}

/// One device that was measured.
#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    /// `raw` or `replica`.
    pub name: String,
    pub uri: String,
    pub backend: String,
    /// Whether the page cache was bypassed (O_DIRECT).
    pub direct_io: bool,
    pub block_size: u32,
    /// The byte range of the device the workloads used.
    pub region: Region,
}

/// Settings of the session.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    pub mode: String,
    pub runtime_s: f64,
    pub ramp_s: f64,
    pub rounds: u32,
    pub runtime_threads: usize,
    pub seed: u64,
    /// Pool cluster size (pool-based modes).
    pub cluster_size_bytes: Option<u64>,
    /// Bytes copied per step (rebuild-vs-copy mode).
    pub segment_bytes: Option<u64>,
}

/// One workload on one target.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadResult {
    pub round: u32,
    pub target: String,
    pub workload: Workload,
    pub io_size_bytes: usize,
    pub queue_depth: usize,
    pub ops: u64,
    pub bytes: u64,
    pub elapsed_s: f64,
    pub iops: f64,
    pub mib_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    pub max_us: f64,
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    pub cpu_us_per_io: f64,
    /// CPU per I/O of the target process (an NVMe/TCP target whose PID is
    /// known), measured over the same span.
    pub target_cpu_us_per_io: Option<f64>,
    /// CPU busy with other work during the run, % of all CPUs (steal
    /// included); high values mean the run was disturbed.
    pub host_other_pct: Option<f64>,
    /// CPU stolen by the hypervisor during the run, % of all CPUs.
    pub host_steal_pct: Option<f64>,
    /// Measurements taken for this result (more than 1 when earlier ones
    /// were disturbed, see `--max-other-pct`); the last one is kept.
    pub attempts: u32,
    /// Whether this target ran first in its pair.
    pub ran_first: bool,
}

/// candidate / baseline for one workload of one round.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub round: u32,
    pub workload: Workload,
    pub iops_ratio: Option<f64>,
    pub p50_ratio: Option<f64>,
    pub p99_ratio: Option<f64>,
    pub cpu_per_io_ratio: Option<f64>,
    /// The IOPS ratio the project aims for, when it sets one.
    pub target_iops_ratio: Option<f64>,
    pub meets_target: Option<bool>,
}

impl Comparison {
    /// Compares `candidate` against `baseline` (same workload and round),
    /// judged against `target`.
    pub fn new(candidate: &WorkloadResult, baseline: &WorkloadResult, target: Option<f64>) -> Self {
        use crate::stats::ratio;
        let (c, b) = (candidate, baseline);
        let iops_ratio = ratio(c.iops, b.iops);
        Comparison {
            round: c.round,
            workload: c.workload,
            iops_ratio,
            p50_ratio: ratio(c.p50_us, b.p50_us),
            p99_ratio: ratio(c.p99_us, b.p99_us),
            cpu_per_io_ratio: ratio(c.cpu_us_per_io, b.cpu_us_per_io),
            target_iops_ratio: target,
            meets_target: target.zip(iops_ratio).map(|(t, r)| r >= t),
        }
    }
}

/// candidate / baseline for one workload over all rounds.
#[derive(Debug, Clone, Serialize)]
pub struct RatioSummary {
    pub workload: Workload,
    pub rounds: usize,
    pub baseline_iops_median: f64,
    pub candidate_iops_median: f64,
    pub iops_ratio_median: Option<f64>,
    pub iops_ratio_min: Option<f64>,
    pub iops_ratio_max: Option<f64>,
    pub p50_ratio_median: Option<f64>,
    pub p99_ratio_median: Option<f64>,
    pub cpu_per_io_ratio_median: Option<f64>,
    /// The candidate's own medians: p50 and p99 latency, CPU per I/O of
    /// this process and of the target process (when measured).
    pub candidate_p50_us_median: Option<f64>,
    pub candidate_p99_us_median: Option<f64>,
    pub candidate_cpu_us_per_io_median: Option<f64>,
    pub candidate_target_cpu_us_per_io_median: Option<f64>,
    pub target_iops_ratio: Option<f64>,
    /// Judged on the median ratio.
    pub meets_target: Option<bool>,
}

/// How one copy of the whole working set went (rebuild-vs-copy mode).
#[derive(Debug, Clone, Serialize)]
pub struct CopyResult {
    pub round: u32,
    /// `rebuild` (a full rebuild of a new nexus child) or `raw-copy` (the
    /// same bytes copied between the backing devices).
    pub method: String,
    pub bytes: u64,
    pub segment_bytes: u64,
    pub elapsed_s: f64,
    pub mib_per_s: f64,
    /// Process CPU time per MiB copied, in microseconds.
    pub cpu_us_per_mib: f64,
    pub host_other_pct: Option<f64>,
    pub ran_first: bool,
}

/// rebuild / raw-copy throughput of one round.
#[derive(Debug, Clone, Serialize)]
pub struct CopyComparison {
    pub round: u32,
    pub throughput_ratio: Option<f64>,
    pub cpu_per_mib_ratio: Option<f64>,
}

/// Method names of [`CopyResult`].
pub const REBUILD: &str = "rebuild";
pub const RAW_COPY: &str = "raw-copy";

/// CPU of an idle engine serving shared replicas to connected hosts
/// (`--nvmf-idle`).
#[derive(Debug, Clone, Serialize)]
pub struct IdleResult {
    pub replicas: usize,
    /// Hosts (our initiator, one controller each) connected.
    pub hosts: usize,
    pub elapsed_s: f64,
    pub engine_cpu_s: f64,
    /// Engine CPU in % of one core.
    pub engine_core_pct: f64,
    /// This process's CPU (the connected initiators).
    pub initiator_cpu_s: f64,
    pub initiator_core_pct: f64,
    /// Keep-alive timeout of the hosts (a Keep Alive every half of it).
    pub keep_alive_ms: u32,
}

/// Everything a session measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: MachineInfo,
    pub session: SessionInfo,
    /// The targets compared (comparison modes only).
    pub pairing: Option<Pairing>,
    pub targets: Vec<TargetInfo>,
    pub results: Vec<WorkloadResult>,
    pub comparisons: Vec<Comparison>,
    /// One line per workload, over all rounds (comparison modes only).
    pub summary: Vec<RatioSummary>,
    /// Rebuild and raw copy runs (rebuild-vs-copy mode only).
    pub copies: Vec<CopyResult>,
    pub copy_comparisons: Vec<CopyComparison>,
    /// Idle CPU (`--nvmf-idle` mode only).
    pub idle: Option<IdleResult>,
}

fn pct(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_string(), |r| format!("{:.1}%", r * 100.0))
}

/// Microseconds with the precision that matters at that magnitude.
fn us(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn verdict(target: Option<f64>, meets: Option<bool>) -> String {
    match (target, meets) {
        (Some(t), Some(true)) => format!(">={:.0}% ok", t * 100.0),
        (Some(t), _) => format!(">={:.0}% BELOW", t * 100.0),
        (None, _) => "-".to_string(),
    }
}

impl Report {
    /// Fills `comparisons` from `results` (pairs of the pairing's candidate
    /// and baseline with the same round and workload) and `summary` from
    /// those, and `copy_comparisons` from `copies`.
    pub fn compare(&mut self) {
        use crate::stats::{median, ratio};
        self.copy_comparisons = self
            .copies
            .iter()
            .filter(|c| c.method == REBUILD)
            .filter_map(|rb| {
                self.copies
                    .iter()
                    .find(|raw| raw.method == RAW_COPY && raw.round == rb.round)
                    .map(|raw| CopyComparison {
                        round: rb.round,
                        throughput_ratio: ratio(rb.mib_per_s, raw.mib_per_s),
                        cpu_per_mib_ratio: ratio(rb.cpu_us_per_mib, raw.cpu_us_per_mib),
                    })
            })
            .collect();
        let Some(pairing) = self.pairing else {
            return;
        };
        let (cand, base) = (pairing.candidate(), pairing.baseline());
        self.comparisons = self
            .results
            .iter()
            .filter(|r| r.target == cand)
            .filter_map(|c| {
                self.results
                    .iter()
                    .find(|b| b.target == base && b.round == c.round && b.workload == c.workload)
                    .map(|b| Comparison::new(c, b, pairing.target_ratio(c.workload)))
            })
            .collect();
        let mut workloads: Vec<Workload> = Vec::new();
        for c in &self.comparisons {
            if !workloads.contains(&c.workload) {
                workloads.push(c.workload);
            }
        }
        self.summary = workloads
            .into_iter()
            .map(|w| {
                let cs: Vec<&Comparison> = self
                    .comparisons
                    .iter()
                    .filter(|c| c.workload == w)
                    .collect();
                let of = |f: fn(&Comparison) -> Option<f64>| -> Vec<f64> {
                    cs.iter().filter_map(|c| f(c)).collect()
                };
                let iops = of(|c| c.iops_ratio);
                let iops_of = |target: &str| -> Vec<f64> {
                    self.results
                        .iter()
                        .filter(|r| r.workload == w && r.target == target)
                        .map(|r| r.iops)
                        .collect()
                };
                let iops_ratio_median = median(&iops);
                let cand_of = |f: fn(&WorkloadResult) -> Option<f64>| -> Option<f64> {
                    let v: Vec<f64> = self
                        .results
                        .iter()
                        .filter(|r| r.workload == w && r.target == cand)
                        .filter_map(f)
                        .collect();
                    median(&v)
                };
                let target = pairing.target_ratio(w);
                RatioSummary {
                    workload: w,
                    rounds: cs.len(),
                    baseline_iops_median: median(&iops_of(base)).unwrap_or(0.0),
                    candidate_iops_median: median(&iops_of(cand)).unwrap_or(0.0),
                    iops_ratio_median,
                    iops_ratio_min: iops.iter().copied().reduce(f64::min),
                    iops_ratio_max: iops.iter().copied().reduce(f64::max),
                    p50_ratio_median: median(&of(|c| c.p50_ratio)),
                    p99_ratio_median: median(&of(|c| c.p99_ratio)),
                    cpu_per_io_ratio_median: median(&of(|c| c.cpu_per_io_ratio)),
                    candidate_p50_us_median: cand_of(|r| Some(r.p50_us)),
                    candidate_p99_us_median: cand_of(|r| Some(r.p99_us)),
                    candidate_cpu_us_per_io_median: cand_of(|r| Some(r.cpu_us_per_io)),
                    candidate_target_cpu_us_per_io_median: cand_of(|r| r.target_cpu_us_per_io),
                    target_iops_ratio: target,
                    meets_target: target.zip(iops_ratio_median).map(|(t, r)| r >= t),
                }
            })
            .collect();
    }

    /// The report as aligned text.
    pub fn render_table(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let _ = writeln!(
            s,
            "machine: {} CPUs ({}), kernel {}{}{}",
            m.nproc,
            m.cpu_model,
            m.kernel,
            m.filesystem
                .as_deref()
                .map(|f| format!(", file system {f}"))
                .unwrap_or_default(),
            m.cpuidle
                .as_deref()
                .map(|c| format!(", cpuidle {c}"))
                .unwrap_or_default()
        );
        for t in &self.targets {
            let _ = writeln!(
                s,
                "{:<8} {} backend={} block_size={} direct_io={} region={}+{} bytes",
                t.name,
                t.uri,
                t.backend,
                t.block_size,
                if t.direct_io {
                    "yes (O_DIRECT)"
                } else {
                    "no (page cache)"
                },
                t.region.offset_bytes,
                t.region.len_bytes
            );
        }
        if let Some(seg) = self.session.segment_bytes {
            let _ = writeln!(
                s,
                "{} byte segments, one in flight, {} round(s), {} runtime threads\n",
                seg, self.session.rounds, self.session.runtime_threads
            );
        } else {
            let _ = writeln!(
                s,
                "runtime {}s per workload (after {}s untimed ramp), {} round(s), {} runtime threads\n",
                self.session.runtime_s,
                self.session.ramp_s,
                self.session.rounds,
                self.session.runtime_threads
            );
        }
        let rounds = self.session.rounds > 1;
        let round_col = |s: &mut String, r: Option<u32>| {
            if rounds {
                match r {
                    Some(r) => {
                        let _ = write!(s, "{r:<6}");
                    }
                    None => s.push_str("ROUND "),
                }
            }
        };
        // The target's CPU column only when some target was measured, so
        // the other modes' tables stay as they were.
        let tgt = self
            .results
            .iter()
            .any(|r| r.target_cpu_us_per_io.is_some());
        if !self.results.is_empty() {
            round_col(&mut s, None);
            let _ = write!(
                s,
                "{:<9} {:<18} {:>9} {:>9} {:>9} {:>9} {:>11}",
                "TARGET", "WORKLOAD", "IOPS", "MiB/s", "p50(us)", "p99(us)", "CPU/IO(us)"
            );
            if tgt {
                let _ = write!(s, " {:>14}", "TGT-CPU/IO(us)");
            }
            let _ = writeln!(s, " {:>8}", "OTHER%");
        }
        for r in &self.results {
            round_col(&mut s, Some(r.round));
            let _ = write!(
                s,
                "{:<9} {:<18} {:>9.0} {:>9.1} {:>9} {:>9} {:>11}",
                r.target,
                r.workload.name(),
                r.iops,
                r.mib_per_s,
                us(r.p50_us),
                us(r.p99_us),
                us(r.cpu_us_per_io),
            );
            if tgt {
                let t = r.target_cpu_us_per_io.map_or_else(|| "-".to_string(), us);
                let _ = write!(s, " {t:>14}");
            }
            let _ = writeln!(s, " {:>8}", other(r.host_other_pct, r.attempts));
        }
        let pairing = self.pairing.unwrap_or(Pairing::ReplicaVsRaw);
        let ratio_head = format!("{} IOPS", pairing.label());
        if !self.comparisons.is_empty() {
            s.push('\n');
            round_col(&mut s, None);
            let _ = writeln!(
                s,
                "{:<18} {:>20} {:>9} {:>9} {:>10} {:>14}",
                "WORKLOAD", ratio_head, "p50", "p99", "CPU/IO", "TARGET"
            );
            for c in &self.comparisons {
                round_col(&mut s, Some(c.round));
                let _ = writeln!(
                    s,
                    "{:<18} {:>20} {:>9} {:>9} {:>10} {:>14}",
                    c.workload.name(),
                    pct(c.iops_ratio),
                    pct(c.p50_ratio),
                    pct(c.p99_ratio),
                    pct(c.cpu_per_io_ratio),
                    verdict(c.target_iops_ratio, c.meets_target)
                );
            }
        }
        if rounds && !self.summary.is_empty() {
            let _ = writeln!(
                s,
                "\nMEDIAN OVER {} ROUNDS\n{:<18} {:>12} {:>12} {:>20} {:>16} {:>9} {:>9} {:>10} {:>14}",
                self.session.rounds,
                "WORKLOAD",
                format!("{} IOPS", pairing.baseline()),
                format!("{} IOPS", pairing.candidate()),
                ratio_head,
                "(min..max)",
                "p50",
                "p99",
                "CPU/IO",
                "TARGET"
            );
            for m in &self.summary {
                let _ = writeln!(
                    s,
                    "{:<18} {:>12.0} {:>12.0} {:>20} {:>16} {:>9} {:>9} {:>10} {:>14}",
                    m.workload.name(),
                    m.baseline_iops_median,
                    m.candidate_iops_median,
                    pct(m.iops_ratio_median),
                    format!("({}..{})", pct(m.iops_ratio_min), pct(m.iops_ratio_max)),
                    pct(m.p50_ratio_median),
                    pct(m.p99_ratio_median),
                    pct(m.cpu_per_io_ratio_median),
                    verdict(m.target_iops_ratio, m.meets_target)
                );
            }
        }
        if let Some(i) = &self.idle {
            let _ = writeln!(
                s,
                "{:<9} {:>6} {:>10} {:>16} {:>18}",
                "REPLICAS", "HOSTS", "SECONDS", "ENGINE %CORE", "INITIATOR %CORE"
            );
            let _ = writeln!(
                s,
                "{:<9} {:>6} {:>10.1} {:>16.3} {:>18.3}",
                i.replicas, i.hosts, i.elapsed_s, i.engine_core_pct, i.initiator_core_pct
            );
        }
        if rounds && tgt && !self.summary.is_empty() {
            let _ = writeln!(
                s,
                "\nMEDIANS OF {} OVER {} ROUNDS\n{:<18} {:>10} {:>9} {:>9} {:>11} {:>15} {:>15}",
                pairing.candidate(),
                self.session.rounds,
                "WORKLOAD",
                "IOPS",
                "p50(us)",
                "p99(us)",
                "CPU/IO(us)",
                "TGT-CPU/IO(us)",
                "BOTH-CPU/IO(us)"
            );
            let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), us);
            for m in &self.summary {
                let both = m
                    .candidate_cpu_us_per_io_median
                    .zip(m.candidate_target_cpu_us_per_io_median)
                    .map(|(a, b)| a + b);
                let _ = writeln!(
                    s,
                    "{:<18} {:>10.0} {:>9} {:>9} {:>11} {:>15} {:>15}",
                    m.workload.name(),
                    m.candidate_iops_median,
                    opt(m.candidate_p50_us_median),
                    opt(m.candidate_p99_us_median),
                    opt(m.candidate_cpu_us_per_io_median),
                    opt(m.candidate_target_cpu_us_per_io_median),
                    opt(both)
                );
            }
        }
        if !self.copies.is_empty() {
            round_col(&mut s, None);
            let _ = writeln!(
                s,
                "{:<9} {:>12} {:>9} {:>9} {:>13} {:>8}",
                "METHOD", "BYTES", "SECONDS", "MiB/s", "CPU/MiB(us)", "OTHER%"
            );
            for c in &self.copies {
                round_col(&mut s, Some(c.round));
                let _ = writeln!(
                    s,
                    "{:<9} {:>12} {:>9.2} {:>9.1} {:>13} {:>8}",
                    c.method,
                    c.bytes,
                    c.elapsed_s,
                    c.mib_per_s,
                    us(c.cpu_us_per_mib),
                    other(c.host_other_pct, 1)
                );
            }
        }
        if !self.copy_comparisons.is_empty() {
            s.push('\n');
            round_col(&mut s, None);
            let _ = writeln!(s, "{:<24} {:>14}", "rebuild/raw-copy MiB/s", "CPU/MiB");
            for c in &self.copy_comparisons {
                round_col(&mut s, Some(c.round));
                let _ = writeln!(
                    s,
                    "{:<24} {:>14}",
                    pct(c.throughput_ratio),
                    pct(c.cpu_per_mib_ratio)
                );
            }
            if self.copy_comparisons.len() > 1 {
                let of = |f: fn(&CopyComparison) -> Option<f64>| -> Vec<f64> {
                    self.copy_comparisons.iter().filter_map(f).collect()
                };
                let _ = writeln!(
                    s,
                    "median over {} rounds: rebuild/raw-copy MiB/s {}, CPU/MiB {}",
                    self.copy_comparisons.len(),
                    pct(crate::stats::median(&of(|c| c.throughput_ratio))),
                    pct(crate::stats::median(&of(|c| c.cpu_per_mib_ratio)))
                );
            }
        }
        s
    }
}

/// The OTHER% cell: CPU use of other work, with the attempts when a
/// measurement was repeated.
fn other(pct: Option<f64>, attempts: u32) -> String {
    match (pct, attempts) {
        (None, _) => "-".to_string(),
        (Some(p), 1) => format!("{p:.0}"),
        (Some(p), n) => format!("{p:.0} x{n}"),
    }
}

#[cfg(test)]
mod tests;
