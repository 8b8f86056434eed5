//! Which I/Os read the clock: every one while an entity is quiet, one in
//! up to [`MAX_STRIDE`] (chosen at random) while it is busy.
//!
//! Why: the two clock reads of a timed I/O are about 15 ns, 2 % of a
//! RAM-disk I/O, the whole budget of the statistics on their own
//! (`docs/performance.md`, "Cost of the I/O statistics"). Ops and bytes are
//! always exact; only the latency sums are estimated while busy.
//!
//! How: each entity keeps, per counting thread and direction, a stride
//! (a power of two). An I/O is timed with probability 1/stride, decided
//! before it starts from a per-thread random generator (never by
//! position, so interleaved I/O of different kinds cannot alias with the
//! choice), and its span counts `stride` times. The sum is then an
//! unbiased estimate of the true sum (each I/O contributes its latency
//! times stride with probability 1/stride), and exact while the stride is
//! one. The stride adapts at each timed I/O to the time since the previous
//! one of the same entity, thread and direction: below [`GAP_NS`] it
//! doubles, above four times that it halves, above 64 times that it is
//! one again. So an entity doing fewer
//! than about 250,000 I/Os a second per thread and direction is timed on
//! every I/O, and a busy one on about one I/O per 4-16 µs: hundreds of
//! thousands of samples a minute, far more than a mean over a scrape
//! interval needs.

use std::{
    cell::Cell,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

/// The largest stride (one timed I/O in 16).
pub(crate) const MAX_STRIDE_LOG2: u64 = 4;

/// Below this time between two timed I/Os the stride doubles; above four
/// times this it halves.
pub(crate) const GAP_NS: u64 = 4_000;

thread_local! {
    /// This thread's random generator (xorshift64, never 0).
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// A random 64-bit value from this thread's generator.
#[inline]
fn random() -> u64 {
    RNG.try_with(|r| {
        let mut x = r.get();
        if x == 0 {
            x = seed();
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        x
    })
    .unwrap_or(0)
}

/// A non-zero seed that differs between threads.
#[cold]
fn seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::thread::current().id()) | 1
}

/// The sampling state of one direction of one entity on one thread:
/// the tick of its last timed I/O in the high bits, the stride's log2 in
/// the low three (a tick's lowest bits are far below what the gap needs).
/// Written only by the thread owning the slot.
#[derive(Debug, Default)]
pub(crate) struct Sampler(AtomicU64);

/// Bits of [`Sampler`] holding the stride's log2.
const LOG2_BITS: u64 = 0b111;

impl Sampler {
    /// Whether the next I/O is timed (`Some(stride)`, its weight) or only
    /// counted (`None`).
    #[inline]
    pub(crate) fn pick(&self) -> Option<u64> {
        let log2 = self.0.load(Relaxed) & LOG2_BITS;
        let stride = 1u64 << log2;
        (random() & (stride - 1) == 0).then_some(stride)
    }

    /// Records a timed I/O starting at `now`; `gap_ticks` is [`GAP_NS`] in
    /// clock ticks.
    #[inline]
    pub(crate) fn timed(&self, now: u64, gap_ticks: u64) {
        let v = self.0.load(Relaxed);
        let (last, log2) = (v & !LOG2_BITS, v & LOG2_BITS);
        let gap = now.saturating_sub(last);
        let log2 = if gap < gap_ticks {
            (log2 + 1).min(MAX_STRIDE_LOG2)
        } else if gap > gap_ticks.saturating_mul(64) {
            // Gone quiet (the next timed I/O of a stride of 16 may come
            // much later): every I/O is timed again at once.
            0
        } else if gap > gap_ticks.saturating_mul(4) {
            log2.saturating_sub(1)
        } else {
            log2
        };
        self.0.store((now & !LOG2_BITS) | log2, Relaxed);
    }

    /// The current stride (for tests).
    #[cfg(test)]
    pub(crate) fn stride(&self) -> u64 {
        1 << (self.0.load(Relaxed) & LOG2_BITS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_entity_times_every_io_and_a_busy_one_samples() {
        let s = Sampler::default();
        let gap = 1000;
        // One I/O every 5 gaps: never sampled.
        for i in 1..100u64 {
            assert_eq!(s.pick(), Some(1));
            s.timed(i * 5 * gap, gap);
        }
        // Back to back: the stride climbs to the maximum and stays there.
        let mut now = 1_000_000;
        for _ in 0..100 {
            now += 8;
            s.timed(now, gap);
        }
        assert_eq!(s.stride(), 1 << MAX_STRIDE_LOG2);
        // Slower: it comes back down step by step.
        for want in [8, 4, 2, 1, 1] {
            now += 10 * gap;
            s.timed(now, gap);
            assert_eq!(s.stride(), want);
        }
        // Quiet after busy: back to every I/O at once.
        for _ in 0..10 {
            now += 8;
            s.timed(now, gap);
        }
        now += 100 * gap;
        s.timed(now, gap);
        assert_eq!(s.stride(), 1);
    }

    #[test]
    fn picks_about_one_in_stride_with_that_weight() {
        let s = Sampler::default();
        let mut now = 0;
        for _ in 0..50 {
            now += 8;
            s.timed(now, 1000);
        }
        let stride = s.stride();
        let n = 160_000u64;
        let picked: Vec<_> = (0..n).filter_map(|_| s.pick()).collect();
        assert!(picked.iter().all(|w| *w == stride));
        let expected = n / stride;
        assert!(
            picked.len().abs_diff(expected as usize) < expected as usize / 10,
            "{} picked of {n}, stride {stride}",
            picked.len()
        );
    }
}
