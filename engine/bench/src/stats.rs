//! Benchmark arithmetic: latency histograms, rates, ratios and the CPU time
//! of the process.
//!
//! Latencies are recorded in nanoseconds in an HDR histogram (3 significant
//! digits, 1 ns ..= 1 h) and reported in microseconds. CPU time is the
//! user + system time of the whole process (every thread: tokio workers,
//! the device's ring thread, blocking-pool threads) from
//! `getrusage(RUSAGE_SELF)`, so "CPU per I/O" includes the cost of the
//! device layer's completion thread, not only of the submitting tasks.
//!
//! Threading model: plain values; a histogram is owned by one worker and
//! merged after the run.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency the histograms track (longer ones are clamped).
const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// A latency histogram in nanoseconds. Recording never allocates.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
        .expect("invariant: constant bounds 1..=1h with 3 digits are valid")
}

/// Records one latency, clamped into the histogram's range.
pub fn record(hist: &mut Histogram<u64>, latency: Duration) {
    let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
    hist.saturating_record(ns.max(1));
}

/// Latency percentiles of one run, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    pub max_us: f64,
}

impl LatencySummary {
    /// Summarises a nanosecond histogram (all zeroes when it is empty).
    pub fn from_histogram(hist: &Histogram<u64>) -> Self {
        if hist.is_empty() {
            return LatencySummary {
                p50_us: 0.0,
                p99_us: 0.0,
                mean_us: 0.0,
                max_us: 0.0,
            };
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        LatencySummary {
            p50_us: us(hist.value_at_quantile(0.50)),
            p99_us: us(hist.value_at_quantile(0.99)),
            mean_us: hist.mean() / 1_000.0,
            max_us: us(hist.max()),
        }
    }
}

/// Operations per second (0 when no time passed).
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 {
        count as f64 / s
    } else {
        0.0
    }
}

/// Mebibytes per second.
pub fn mib_per_second(bytes: u64, elapsed: Duration) -> f64 {
    per_second(bytes, elapsed) / f64::from(1u32 << 20)
}

/// Microseconds of CPU per operation (0 when there was none).
pub fn cpu_us_per_op(cpu: Duration, ops: u64) -> f64 {
    if ops == 0 {
        0.0
    } else {
        cpu.as_secs_f64() * 1e6 / ops as f64
    }
}

/// `num / den`, or `None` when the denominator is not positive.
pub fn ratio(num: f64, den: f64) -> Option<f64> {
    (den > 0.0 && num.is_finite()).then(|| num / den)
}

/// User and system CPU time of the process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTime {
    pub user: Duration,
    pub system: Duration,
}

impl CpuTime {
    /// CPU used by every thread of this process so far
    /// (`getrusage(RUSAGE_SELF)`); zero when the call fails.
    pub fn now() -> Self {
        // SAFETY: `rusage` is plain old data; all-zero is a valid value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is a valid, writable `rusage` that outlives the call.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        if rc != 0 {
            return CpuTime::default();
        }
        let tv = |t: libc::timeval| {
            Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
                + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
        };
        CpuTime {
            user: tv(ru.ru_utime),
            system: tv(ru.ru_stime),
        }
    }

    /// CPU used between `earlier` and `self`.
    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }

    /// User + system.
    pub fn total(self) -> Duration {
        self.user + self.system
    }

    /// CPU used so far by every thread of process `pid` (live and exited
    /// threads, from `/proc/PID/stat`, in clock ticks: 10 ms resolution at
    /// the usual 100 Hz); `None` when the process is gone or unreadable.
    pub fn of_pid(pid: u32) -> Option<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Self::parse_proc_stat(&text, clock_ticks_per_second())
    }

    /// Parses the `utime` and `stime` fields (14 and 15) of a
    /// `/proc/PID/stat` line; the command name (field 2) may hold spaces
    /// and parentheses, so fields are counted after its last `)`.
    pub fn parse_proc_stat(line: &str, ticks_per_s: u64) -> Option<Self> {
        let rest = &line[line.rfind(')')? + 1..];
        let mut f = rest.split_ascii_whitespace().skip(11);
        let utime: u64 = f.next()?.parse().ok()?;
        let stime: u64 = f.next()?.parse().ok()?;
        let hz = ticks_per_s.max(1);
        let d = |t: u64| Duration::from_nanos(t.saturating_mul(1_000_000_000 / hz));
        Some(CpuTime {
            user: d(utime),
            system: d(stime),
        })
    }
}

/// CPUs online in the machine (`/proc/stat`'s per-CPU lines count all of
/// them, whatever this process's affinity).
pub fn online_cpus() -> usize {
    // SAFETY: `sysconf` has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(v)
        .ok()
        .filter(|v| *v > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `sysconf(_SC_CLK_TCK)` (100 when it fails).
fn clock_ticks_per_second() -> u64 {
    // SAFETY: `sysconf` has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(v).ok().filter(|v| *v > 0).unwrap_or(100)
}

/// Cumulative CPU counters of the whole machine (`/proc/stat`, first line),
/// to tell how busy the CPUs were with work other than the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostCpu {
    /// user + nice + system + irq + softirq + steal, in clock ticks.
    pub busy: u64,
    /// steal alone (time the hypervisor gave to someone else).
    pub steal: u64,
    /// busy + idle + iowait.
    pub total: u64,
}

/// How the machine's CPUs were used during a run, in % of all CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct HostLoad {
    /// Busy time of every process and the kernel (steal included).
    pub busy_pct: f64,
    /// Busy time not spent by this process (steal included): interference.
    pub other_pct: f64,
    /// Time stolen by the hypervisor.
    pub steal_pct: f64,
}

impl HostCpu {
    /// Reads `/proc/stat`; `None` when it is unavailable or malformed.
    pub fn now() -> Option<Self> {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        Self::parse(text.lines().next()?)
    }

    /// Parses the aggregate `cpu  ...` line of `/proc/stat`.
    pub fn parse(line: &str) -> Option<Self> {
        let mut fields = line.split_whitespace();
        if fields.next()? != "cpu" {
            return None;
        }
        let v: Vec<u64> = fields
            .take(8)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let [user, nice, system, idle, iowait, irq, softirq, steal] = v[..] else {
            return None;
        };
        let busy = user + nice + system + irq + softirq + steal;
        Some(HostCpu {
            busy,
            steal,
            total: busy + idle + iowait,
        })
    }

    /// Load between `earlier` and `self`, given the CPU this process used
    /// meanwhile and the wall time; `None` when no tick elapsed.
    pub fn load_since(
        self,
        earlier: HostCpu,
        own_cpu: Duration,
        elapsed: Duration,
        ncpu: usize,
    ) -> Option<HostLoad> {
        let total = self.total.checked_sub(earlier.total).filter(|t| *t > 0)? as f64;
        let busy = self.busy.saturating_sub(earlier.busy) as f64 / total;
        let steal = self.steal.saturating_sub(earlier.steal) as f64 / total;
        let wall = elapsed.as_secs_f64() * ncpu.max(1) as f64;
        let own = if wall > 0.0 {
            own_cpu.as_secs_f64() / wall
        } else {
            0.0
        };
        Some(HostLoad {
            busy_pct: busy * 100.0,
            other_pct: ((busy - own) * 100.0).max(0.0),
            steal_pct: steal * 100.0,
        })
    }
}

/// Median of `values` (mean of the middle two for an even count); `None`
/// when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = new_histogram();
        // 1..=100 µs, once each.
        for us in 1..=100u64 {
            record(&mut h, Duration::from_micros(us));
        }
        let s = LatencySummary::from_histogram(&h);
        assert!((s.p50_us - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.p99_us - 99.0).abs() < 0.1, "{s:?}");
        assert!((s.mean_us - 50.5).abs() < 0.1, "{s:?}");
        assert!((s.max_us - 100.0).abs() < 0.1, "{s:?}");
    }

    #[test]
    fn empty_histogram_and_clamping() {
        let mut h = new_histogram();
        assert_eq!(LatencySummary::from_histogram(&h).p99_us, 0.0);
        record(&mut h, Duration::ZERO);
        record(&mut h, Duration::from_secs(10 * 3600));
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
    }

    #[test]
    fn rates_and_ratios() {
        assert_eq!(per_second(500, Duration::from_millis(500)), 1000.0);
        assert_eq!(per_second(5, Duration::ZERO), 0.0);
        assert_eq!(mib_per_second(4 << 20, Duration::from_secs(2)), 2.0);
        assert_eq!(cpu_us_per_op(Duration::from_millis(3), 1000), 3.0);
        assert_eq!(cpu_us_per_op(Duration::from_millis(3), 0), 0.0);
        assert_eq!(ratio(99.0, 100.0), Some(0.99));
        assert_eq!(ratio(1.0, 0.0), None);
    }

    #[test]
    fn host_load_from_proc_stat_lines() {
        let a = HostCpu::parse("cpu  100 0 50 1000 10 0 0 0 0 0").unwrap();
        let b = HostCpu::parse("cpu  180 0 70 1050 10 0 0 50 0 0").unwrap();
        assert_eq!(a.total, 1160);
        // 200 ticks elapsed in total: 150 busy (50 of them stolen).
        let l = b
            .load_since(a, Duration::from_millis(500), Duration::from_secs(1), 2)
            .unwrap();
        assert!((l.busy_pct - 75.0).abs() < 1e-9, "{l:?}");
        assert!((l.steal_pct - 25.0).abs() < 1e-9, "{l:?}");
        // This process used 0.5 s of 2 CPU-seconds: 25 %.
        assert!((l.other_pct - 50.0).abs() < 1e-9, "{l:?}");
        assert!(a.load_since(a, Duration::ZERO, Duration::ZERO, 2).is_none());
        assert!(HostCpu::parse("cpu0 1 2 3 4 5 6 7 8").is_none());
        assert!(HostCpu::parse("cpu 1 2 x").is_none());
        assert!(HostCpu::now().is_some());
    }

    #[test]
    fn cpu_of_a_process_from_proc_stat() {
        let line = "42 (tokio (w) x) S 1 42 42 0 -1 4194560 10 0 0 0 250 75 0 0 20 0 3 0";
        let c = CpuTime::parse_proc_stat(line, 100).unwrap();
        assert_eq!(c.user, Duration::from_millis(2500));
        assert_eq!(c.system, Duration::from_millis(750));
        assert!(CpuTime::parse_proc_stat("42 (x) S 1 2", 100).is_none());
        let me = CpuTime::of_pid(std::process::id()).unwrap();
        assert!(me.total() <= CpuTime::now().total() + Duration::from_millis(20));
        assert!(CpuTime::of_pid(u32::MAX).is_none());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn cpu_time_is_monotonic() {
        let a = CpuTime::now();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = CpuTime::now();
        let d = b.since(a);
        assert!(d.total() <= b.total());
        assert_eq!(a.since(b), CpuTime::default());
    }
}
