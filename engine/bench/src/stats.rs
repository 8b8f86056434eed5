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
