//! The dirty-region log kept for a faulted child.
//!
//! From the moment a child in sync leaves the I/O path, every write the
//! nexus acknowledges without it marks the regions it touched here. When
//! the child comes back, only the marked regions are copied (a partial
//! rebuild).
//!
//! Granularity: one bit per `granularity` bytes, where the granularity is
//! the smallest power of two that is at least 4 KiB, at least the block
//! size, and keeps the map at or below 2^24 bits (2 MiB of memory). A
//! volume of up to 64 GiB is therefore tracked in 4 KiB regions; larger
//! volumes in proportionally larger ones.

/// Smallest region tracked.
pub const MIN_GRANULARITY: u64 = 4096;

/// Most bits one log may hold.
pub const MAX_BITS: u64 = 1 << 24;

/// A bitmap of written regions.
#[derive(Debug, Clone)]
pub struct DirtyLog {
    granularity: u64,
    size: u64,
    bits: Vec<u64>,
    dirty: u64,
}

impl DirtyLog {
    /// An empty log for a device of `size` bytes with blocks of
    /// `block_size` bytes.
    pub fn new(size: u64, block_size: u32) -> Self {
        let mut granularity = MIN_GRANULARITY.max(u64::from(block_size));
        while size.div_ceil(granularity) > MAX_BITS {
            granularity *= 2;
        }
        let nbits = size.div_ceil(granularity);
        Self {
            granularity,
            size,
            bits: vec![0; nbits.div_ceil(64) as usize],
            dirty: 0,
        }
    }

    /// Bytes covered by one bit.
    pub fn granularity(&self) -> u64 {
        self.granularity
    }

    /// Number of marked regions.
    pub fn dirty_regions(&self) -> u64 {
        self.dirty
    }

    /// Bytes covered by the marked regions.
    pub fn dirty_bytes(&self) -> u64 {
        self.runs().map(|(_, len)| len).sum()
    }

    /// Marks every region that `[offset, offset + len)` touches.
    pub fn mark(&mut self, offset: u64, len: u64) {
        if len == 0 || offset >= self.size {
            return;
        }
        let end = offset.saturating_add(len).min(self.size);
        let first = offset / self.granularity;
        let last = (end - 1) / self.granularity;
        for bit in first..=last {
            let (word, mask) = ((bit / 64) as usize, 1u64 << (bit % 64));
            if let Some(w) = self.bits.get_mut(word) {
                if *w & mask == 0 {
                    *w |= mask;
                    self.dirty += 1;
                }
            }
        }
    }

    /// Whether any region overlapping `[offset, offset + len)` is marked.
    pub fn is_marked(&self, offset: u64, len: u64) -> bool {
        if len == 0 || offset >= self.size {
            return false;
        }
        let end = offset.saturating_add(len).min(self.size);
        (offset / self.granularity..=(end - 1) / self.granularity).any(|bit| {
            self.bits
                .get((bit / 64) as usize)
                .is_some_and(|w| w & (1 << (bit % 64)) != 0)
        })
    }

    /// The marked regions as maximal runs `(offset, len)` in bytes, in
    /// ascending order, clipped to the device size.
    pub fn runs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let nbits = self.size.div_ceil(self.granularity);
        let mut bit = 0u64;
        std::iter::from_fn(move || {
            // Skip clear bits, a word at a time where possible.
            while bit < nbits {
                let word = self.bits[(bit / 64) as usize];
                if bit.is_multiple_of(64) && word == 0 {
                    bit += 64;
                    continue;
                }
                if word & (1 << (bit % 64)) != 0 {
                    break;
                }
                bit += 1;
            }
            if bit >= nbits {
                return None;
            }
            let start = bit;
            while bit < nbits && self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0 {
                bit += 1;
            }
            let offset = start * self.granularity;
            let end = (bit * self.granularity).min(self.size);
            Some((offset, end - offset))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granularity_grows_with_the_size() {
        assert_eq!(DirtyLog::new(1 << 30, 512).granularity(), 4096);
        assert_eq!(DirtyLog::new(64 << 30, 512).granularity(), 4096);
        assert_eq!(DirtyLog::new(128 << 30, 512).granularity(), 8192);
        assert_eq!(DirtyLog::new(1 << 20, 16384).granularity(), 16384);
    }

    #[test]
    fn marks_coalesce_into_runs() {
        let mut log = DirtyLog::new(1 << 20, 512);
        log.mark(512, 512);
        log.mark(4096, 8192);
        log.mark(65536 + 100 * 512, 1);
        log.mark((1 << 20) - 512, 4096);
        assert_eq!(
            log.runs().collect::<Vec<_>>(),
            vec![(0, 12288), (65536 + 49152, 4096), ((1 << 20) - 4096, 4096)]
        );
        assert_eq!(log.dirty_regions(), 5);
        assert_eq!(log.dirty_bytes(), 12288 + 8192);
        assert!(log.is_marked(8192, 1));
        assert!(!log.is_marked(12288, 4096));
    }

    #[test]
    fn size_not_a_multiple_of_the_granularity_is_clipped() {
        let mut log = DirtyLog::new(10 * 1024, 512);
        log.mark(9 * 1024, 1024);
        assert_eq!(log.runs().collect::<Vec<_>>(), vec![(8192, 2048)]);
        log.mark(20 * 1024, 4096);
        assert_eq!(log.dirty_regions(), 1);
    }

    #[test]
    fn runs_cross_word_boundaries() {
        let mut log = DirtyLog::new(1 << 30, 4096);
        log.mark(60 * 4096, 10 * 4096);
        log.mark(200 * 4096, 4096);
        assert_eq!(
            log.runs().collect::<Vec<_>>(),
            vec![(60 * 4096, 10 * 4096), (200 * 4096, 4096)]
        );
    }
}
