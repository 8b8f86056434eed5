//! The clock of the I/O statistics: the CPU's time-stamp counter where the
//! kernel itself keeps time with it, else [`Instant`].
//!
//! Why: an I/O on a RAM disk costs about a microsecond of CPU, and the
//! vDSO `clock_gettime` behind [`Instant::now`] costs some 20 ns in this
//! kind of guest (two per timed I/O), where `rdtsc` costs about 8 ns. The
//! counter is used only when the kernel's clocksource is `tsc`: the kernel
//! then has checked that it is invariant and in step across CPUs (it would
//! have switched to another clocksource otherwise), which is what makes a
//! start read on one CPU and an end read on another comparable. A coarse
//! clock (`CLOCK_MONOTONIC_COARSE`, ticking every few milliseconds) would
//! be cheap too but cannot time microsecond I/Os.
//!
//! Calibration: once per process (the first timed I/O, or [`init`] at
//! start-up), the counter is read together with [`Instant`] twice, a few
//! milliseconds apart, each pair bracketed by two counter reads and the
//! tightest of several kept; nanoseconds per tick are kept as a 32.32
//! fixed-point factor, so converting a latency is one multiplication.
//! The error is a few parts per million against `CLOCK_MONOTONIC` (which
//! NTP may slew by up to 500 ppm), far below what a latency sum needs.

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

/// How long calibration waits between its two readings.
const CALIBRATION: Duration = Duration::from_millis(5);

/// Bits after the point of [`Clock::ns_per_tick`].
const FRACTION_BITS: u32 = 32;

/// The process's clock (calibrated once).
static CLOCK: OnceLock<Clock> = OnceLock::new();

/// A monotonic tick source and its conversion to nanoseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    /// Read the time-stamp counter (else nanoseconds since `epoch`).
    tsc: bool,
    /// Nanoseconds per tick, 32.32 fixed point.
    ns_per_tick: u64,
    epoch: Instant,
    /// [`super::sample::GAP_NS`] in ticks.
    sample_gap: u64,
}

impl Clock {
    /// Nanoseconds since its epoch: one tick per nanosecond.
    fn instant() -> Self {
        Clock {
            tsc: false,
            ns_per_tick: 1 << FRACTION_BITS,
            epoch: Instant::now(),
            sample_gap: super::sample::GAP_NS,
        }
    }

    /// A counter clock of `ticks` per `ns` (`None` when the ratio is not a
    /// plausible CPU frequency: 50 MHz to 20 GHz).
    fn counter(ticks: u64, ns: u64) -> Option<Self> {
        if ticks == 0 || ns == 0 {
            return None;
        }
        let per_tick = (u128::from(ns) << FRACTION_BITS) / u128::from(ticks);
        let plausible = (1u128 << FRACTION_BITS) / 20..=(20u128 << FRACTION_BITS);
        if !plausible.contains(&per_tick) {
            return None;
        }
        let mut c = Clock {
            tsc: true,
            ns_per_tick: u64::try_from(per_tick).ok()?,
            epoch: Instant::now(),
            sample_gap: 0,
        };
        c.sample_gap = c.ticks_of_ns(super::sample::GAP_NS);
        Some(c)
    }

    /// Whether this clock reads the time-stamp counter.
    pub(crate) fn is_tsc(&self) -> bool {
        self.tsc
    }

    /// [`super::sample::GAP_NS`] in ticks.
    #[inline]
    pub(crate) fn sample_gap(&self) -> u64 {
        self.sample_gap
    }

    /// The tick count now.
    #[inline]
    pub(crate) fn ticks(&self) -> u64 {
        if self.tsc {
            read_tsc()
        } else {
            u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
        }
    }

    /// `ticks` in nanoseconds (rounded to the nearest).
    #[inline]
    pub(crate) fn ns(&self, ticks: u64) -> u64 {
        let half = 1u128 << (FRACTION_BITS - 1);
        let ns = (u128::from(ticks) * u128::from(self.ns_per_tick) + half) >> FRACTION_BITS;
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// The ticks of `ns` nanoseconds (rounded to the nearest; for spans
    /// given in nanoseconds, off the I/O path).
    pub(crate) fn ticks_of_ns(&self, ns: u64) -> u64 {
        let per_tick = u128::from(self.ns_per_tick.max(1));
        let ticks = ((u128::from(ns) << FRACTION_BITS) + per_tick / 2) / per_tick;
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// Nanoseconds from tick `start` to tick `end` (0 when `end` is not
    /// later: two CPUs' counters a few ticks apart).
    #[cfg(test)]
    pub(crate) fn ns_between(&self, start: u64, end: u64) -> u64 {
        self.ns(end.saturating_sub(start))
    }
}

/// The process's clock, calibrated on first use.
#[inline]
pub(crate) fn clock() -> &'static Clock {
    CLOCK.get_or_init(calibrate)
}

/// Calibrates the clock now rather than on the first timed I/O (the
/// calibration sleeps a few milliseconds).
pub fn init() {
    clock();
}

/// Whether the kernel keeps `CLOCK_MONOTONIC` with the time-stamp counter.
fn kernel_uses_tsc() -> bool {
    std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .is_ok_and(|s| s.trim() == "tsc")
}

/// The counter clock when the kernel trusts the counter and calibration
/// gives a plausible frequency, else [`Instant`].
fn calibrate() -> Clock {
    if cfg!(target_arch = "x86_64") && kernel_uses_tsc() {
        let (i0, t0) = paired_reading();
        std::thread::sleep(CALIBRATION);
        let (i1, t1) = paired_reading();
        let ns = u64::try_from(i1.duration_since(i0).as_nanos()).unwrap_or(u64::MAX);
        if let Some(c) = Clock::counter(t1.saturating_sub(t0), ns) {
            return c;
        }
    }
    Clock::instant()
}

/// An [`Instant`] and the counter at the same moment: the middle of the
/// tightest of a few `counter, Instant, counter` brackets.
fn paired_reading() -> (Instant, u64) {
    let mut best = (Instant::now(), 0u64, u64::MAX);
    for _ in 0..16 {
        let a = read_tsc();
        let i = Instant::now();
        let b = read_tsc();
        let width = b.saturating_sub(a);
        if width < best.2 {
            best = (i, a + width / 2, width);
        }
    }
    (best.0, best.1)
}

/// The time-stamp counter (0 where there is none; [`calibrate`] then never
/// chooses it).
#[inline]
#[allow(unsafe_code)]
fn read_tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `rdtsc` exists on every x86_64 CPU, takes no operand and
        // touches no memory; it only returns the counter.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counter_conversion_is_exact_for_round_frequencies() {
        // 2.5 GHz: 0.4 ns per tick.
        let c = Clock::counter(2_500_000_000, 1_000_000_000).unwrap();
        assert!(c.is_tsc());
        assert_eq!(c.ns(0), 0);
        assert_eq!(c.ns(1), 0);
        assert_eq!(c.ns(3), 1);
        assert_eq!(c.ns(1000), 400);
        assert_eq!(c.ns(1_000_000_000), 400_000_000);
        // 1 GHz: one tick per nanosecond, exactly.
        let c = Clock::counter(1_000, 1_000).unwrap();
        assert_eq!(c.ns(123_456_789), 123_456_789);
        // 3 GHz: a second of ticks is a second.
        let c = Clock::counter(3_000_000, 1_000_000).unwrap();
        assert_eq!(c.ns(3_000_000_000), 1_000_000_000);
        assert_eq!(c.ns(3_000), 1_000);
        // An end before the start (two CPUs) is no time, not 584 years.
        assert_eq!(c.ns_between(5_000, 4_000), 0);
        assert_eq!(c.ns_between(4_000, 7_000), 1_000);
        // Back from nanoseconds: what rounds to the same nanoseconds.
        assert_eq!(c.ns(c.ticks_of_ns(1_000)), 1_000);
        assert_eq!(c.ns(c.ticks_of_ns(999)), 999);
        assert_eq!(Clock::instant().ticks_of_ns(12_345), 12_345);
    }

    #[test]
    fn implausible_frequencies_are_refused() {
        assert!(Clock::counter(0, 1_000).is_none());
        assert!(Clock::counter(1_000, 0).is_none());
        // 10 MHz and 100 GHz.
        assert!(Clock::counter(10, 1_000).is_none());
        assert!(Clock::counter(100_000, 1_000).is_none());
        assert!(Clock::counter(50, 1_000).is_some());
        assert!(Clock::counter(20_000, 1_000).is_some());
    }

    #[test]
    fn instant_clock_counts_nanoseconds() {
        let c = Clock::instant();
        assert!(!c.is_tsc());
        assert_eq!(c.ns(1_234), 1_234);
        let t0 = c.ticks();
        std::thread::sleep(Duration::from_millis(3));
        let t1 = c.ticks();
        assert!(c.ns_between(t0, t1) >= 3_000_000);
    }

    #[test]
    fn calibrated_clock_agrees_with_instant() {
        let c = clock();
        // The counter is used exactly when the kernel times with it.
        assert_eq!(
            c.is_tsc(),
            cfg!(target_arch = "x86_64") && kernel_uses_tsc()
        );
        // A 30 ms interval measured both ways, each clock read bracketed
        // by two Instant reads (the thread may be preempted in between on
        // a busy machine): the clock's figure lies between the inner and
        // the outer Instant interval, within 1 % and 20 µs.
        let a = Instant::now();
        let t0 = c.ticks();
        let b = Instant::now();
        std::thread::sleep(Duration::from_millis(30));
        let d = Instant::now();
        let t1 = c.ticks();
        let e = Instant::now();
        let inner = d.duration_since(b).as_nanos() as f64;
        let outer = e.duration_since(a).as_nanos() as f64;
        let by_clock = c.ns_between(t0, t1) as f64;
        assert!(inner >= 30e6);
        assert!(
            by_clock >= inner * 0.99 - 20_000.0 && by_clock <= outer * 1.01 + 20_000.0,
            "clock {by_clock} ns, Instant between {inner} and {outer} ns"
        );
    }
}
