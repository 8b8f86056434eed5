//! What a benchmark session found, as data (serialised with `-o json`) and
//! as an aligned text table.
//!
//! Threading model: plain values built after the measurements.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{runner::Region, workload::Workload};

/// The machine the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub struct MachineInfo {
    pub nproc: usize,
    pub kernel: String,
    pub cpu_model: String,
    /// File system of the backing file (replica-vs-raw mode), from statfs.
    pub filesystem: Option<String>,
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
    /// Pool cluster size (replica-vs-raw mode).
    pub cluster_size_bytes: Option<u64>,
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
    /// CPU busy with other work during the run, % of all CPUs (steal
    /// included); high values mean the run was disturbed.
    pub host_other_pct: Option<f64>,
    /// CPU stolen by the hypervisor during the run, % of all CPUs.
    pub host_steal_pct: Option<f64>,
    /// Measurements taken for this result (more than 1 when earlier ones
    /// were disturbed, see `--max-other-pct`); the last one is kept.
    pub attempts: u32,
    /// Whether this target ran first in its replica/raw pair.
    pub ran_first: bool,
}

/// replica / raw for one workload of one round.
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
    /// Compares `replica` against `raw` (same workload and round).
    pub fn new(replica: &WorkloadResult, raw: &WorkloadResult) -> Self {
        use crate::stats::ratio;
        let iops_ratio = ratio(replica.iops, raw.iops);
        let target = replica.workload.target_ratio();
        Comparison {
            round: replica.round,
            workload: replica.workload,
            iops_ratio,
            p50_ratio: ratio(replica.p50_us, raw.p50_us),
            p99_ratio: ratio(replica.p99_us, raw.p99_us),
            cpu_per_io_ratio: ratio(replica.cpu_us_per_io, raw.cpu_us_per_io),
            target_iops_ratio: target,
            meets_target: target.zip(iops_ratio).map(|(t, r)| r >= t),
        }
    }
}

/// replica / raw for one workload over all rounds.
#[derive(Debug, Clone, Serialize)]
pub struct RatioSummary {
    pub workload: Workload,
    pub rounds: usize,
    pub raw_iops_median: f64,
    pub replica_iops_median: f64,
    pub iops_ratio_median: Option<f64>,
    pub iops_ratio_min: Option<f64>,
    pub iops_ratio_max: Option<f64>,
    pub p50_ratio_median: Option<f64>,
    pub p99_ratio_median: Option<f64>,
    pub cpu_per_io_ratio_median: Option<f64>,
    pub target_iops_ratio: Option<f64>,
    /// Judged on the median ratio.
    pub meets_target: Option<bool>,
}

/// Everything a session measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: MachineInfo,
    pub session: SessionInfo,
    pub targets: Vec<TargetInfo>,
    pub results: Vec<WorkloadResult>,
    pub comparisons: Vec<Comparison>,
    /// One line per workload, over all rounds (replica-vs-raw only).
    pub summary: Vec<RatioSummary>,
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
    /// Fills `comparisons` from `results` (pairs of `replica` and `raw`
    /// with the same round and workload) and `summary` from those.
    pub fn compare(&mut self) {
        use crate::stats::median;
        self.comparisons = self
            .results
            .iter()
            .filter(|r| r.target == "replica")
            .filter_map(|rep| {
                self.results
                    .iter()
                    .find(|raw| {
                        raw.target == "raw"
                            && raw.round == rep.round
                            && raw.workload == rep.workload
                    })
                    .map(|raw| Comparison::new(rep, raw))
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
                let target = w.target_ratio();
                RatioSummary {
                    workload: w,
                    rounds: cs.len(),
                    raw_iops_median: median(&iops_of("raw")).unwrap_or(0.0),
                    replica_iops_median: median(&iops_of("replica")).unwrap_or(0.0),
                    iops_ratio_median,
                    iops_ratio_min: iops.iter().copied().reduce(f64::min),
                    iops_ratio_max: iops.iter().copied().reduce(f64::max),
                    p50_ratio_median: median(&of(|c| c.p50_ratio)),
                    p99_ratio_median: median(&of(|c| c.p99_ratio)),
                    cpu_per_io_ratio_median: median(&of(|c| c.cpu_per_io_ratio)),
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
            "machine: {} CPUs ({}), kernel {}{}",
            m.nproc,
            m.cpu_model,
            m.kernel,
            m.filesystem
                .as_deref()
                .map(|f| format!(", file system {f}"))
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
        let _ = writeln!(
            s,
            "runtime {}s per workload (after {}s untimed ramp), {} round(s), {} runtime threads\n",
            self.session.runtime_s,
            self.session.ramp_s,
            self.session.rounds,
            self.session.runtime_threads
        );
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
        round_col(&mut s, None);
        let _ = writeln!(
            s,
            "{:<9} {:<18} {:>9} {:>9} {:>9} {:>9} {:>11} {:>8}",
            "TARGET", "WORKLOAD", "IOPS", "MiB/s", "p50(us)", "p99(us)", "CPU/IO(us)", "OTHER%"
        );
        for r in &self.results {
            round_col(&mut s, Some(r.round));
            let _ = writeln!(
                s,
                "{:<9} {:<18} {:>9.0} {:>9.1} {:>9} {:>9} {:>11} {:>8}",
                r.target,
                r.workload.name(),
                r.iops,
                r.mib_per_s,
                us(r.p50_us),
                us(r.p99_us),
                us(r.cpu_us_per_io),
                match (r.host_other_pct, r.attempts) {
                    (None, _) => "-".to_string(),
                    (Some(p), 1) => format!("{p:.0}"),
                    (Some(p), n) => format!("{p:.0} x{n}"),
                }
            );
        }
        if !self.comparisons.is_empty() {
            s.push('\n');
            round_col(&mut s, None);
            let _ = writeln!(
                s,
                "{:<18} {:>18} {:>9} {:>9} {:>10} {:>14}",
                "WORKLOAD", "replica/raw IOPS", "p50", "p99", "CPU/IO", "TARGET"
            );
            for c in &self.comparisons {
                round_col(&mut s, Some(c.round));
                let _ = writeln!(
                    s,
                    "{:<18} {:>18} {:>9} {:>9} {:>10} {:>14}",
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
                "\nMEDIAN OVER {} ROUNDS\n{:<18} {:>10} {:>10} {:>18} {:>16} {:>9} {:>9} {:>10} {:>14}",
                self.session.rounds,
                "WORKLOAD",
                "raw IOPS",
                "rep IOPS",
                "replica/raw IOPS",
                "(min..max)",
                "p50",
                "p99",
                "CPU/IO",
                "TARGET"
            );
            for m in &self.summary {
                let _ = writeln!(
                    s,
                    "{:<18} {:>10.0} {:>10.0} {:>18} {:>16} {:>9} {:>9} {:>10} {:>14}",
                    m.workload.name(),
                    m.raw_iops_median,
                    m.replica_iops_median,
                    pct(m.iops_ratio_median),
                    format!("({}..{})", pct(m.iops_ratio_min), pct(m.iops_ratio_max)),
                    pct(m.p50_ratio_median),
                    pct(m.p99_ratio_median),
                    pct(m.cpu_per_io_ratio_median),
                    verdict(m.target_iops_ratio, m.meets_target)
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(target: &str, iops: f64, p50: f64) -> WorkloadResult {
        WorkloadResult {
            round: 1,
            target: target.into(),
            workload: Workload::RandRead4kQd32,
            io_size_bytes: 4096,
            queue_depth: 32,
            ops: 100,
            bytes: 409_600,
            elapsed_s: 1.0,
            iops,
            mib_per_s: iops * 4096.0 / 1048576.0,
            p50_us: p50,
            p99_us: p50 * 2.0,
            mean_us: p50,
            max_us: p50 * 3.0,
            cpu_user_s: 0.1,
            cpu_system_s: 0.1,
            cpu_us_per_io: 4.0,
            host_other_pct: Some(3.0),
            host_steal_pct: Some(0.0),
            attempts: 1,
            ran_first: target == "raw",
        }
    }

    fn report(results: Vec<WorkloadResult>) -> Report {
        Report {
            machine: MachineInfo {
                nproc: 2,
                kernel: "6.1".into(),
                cpu_model: "test".into(),
                filesystem: Some("ext4".into()),
            },
            session: SessionInfo {
                mode: "replica-vs-raw".into(),
                runtime_s: 1.0,
                ramp_s: 0.0,
                rounds: 1,
                runtime_threads: 2,
                seed: 1,
                cluster_size_bytes: Some(4 << 20),
            },
            targets: Vec::new(),
            results,
            comparisons: Vec::new(),
            summary: Vec::new(),
        }
    }

    #[test]
    fn ratios_and_table() {
        let mut r = report(vec![
            result("raw", 1000.0, 100.0),
            result("replica", 980.0, 101.0),
        ]);
        r.compare();
        assert_eq!(r.comparisons.len(), 1);
        let c = &r.comparisons[0];
        assert!((c.iops_ratio.unwrap() - 0.98).abs() < 1e-9);
        assert!((c.p50_ratio.unwrap() - 1.01).abs() < 1e-9);
        assert_eq!(c.meets_target, Some(true));
        let t = r.render_table();
        assert!(t.contains("replica/raw IOPS"), "{t}");
        assert!(t.contains("98.0%"), "{t}");
        assert!(t.contains(">=97% ok"), "{t}");
        assert!(t.contains("randread-4k-qd32"), "{t}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["results"][0]["workload"], "randread-4k-qd32");
        assert_eq!(json["comparisons"][0]["meets_target"], true);
    }

    #[test]
    fn summary_takes_medians_over_rounds() {
        let mut rs = Vec::new();
        for (round, raw, rep) in [(1, 1000.0, 990.0), (2, 1000.0, 900.0), (3, 1000.0, 1010.0)] {
            let mut a = result("raw", raw, 100.0);
            a.round = round;
            let mut b = result("replica", rep, 100.0);
            b.round = round;
            rs.extend([a, b]);
        }
        let mut r = report(rs);
        r.session.rounds = 3;
        r.compare();
        assert_eq!(r.summary.len(), 1);
        let m = &r.summary[0];
        assert_eq!(m.rounds, 3);
        assert!((m.iops_ratio_median.unwrap() - 0.99).abs() < 1e-9);
        assert!((m.iops_ratio_min.unwrap() - 0.90).abs() < 1e-9);
        assert!((m.iops_ratio_max.unwrap() - 1.01).abs() < 1e-9);
        assert_eq!(m.replica_iops_median, 990.0);
        assert_eq!(m.meets_target, Some(true));
        let t = r.render_table();
        assert!(t.contains("MEDIAN OVER 3 ROUNDS"), "{t}");
        assert!(t.contains("(90.0%..101.0%)"), "{t}");
    }

    #[test]
    fn below_target_is_flagged() {
        let mut r = report(vec![
            result("raw", 1000.0, 100.0),
            result("replica", 900.0, 111.0),
        ]);
        r.compare();
        assert_eq!(r.comparisons[0].meets_target, Some(false));
        assert!(r.render_table().contains("BELOW"));
    }
}
