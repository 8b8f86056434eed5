//! Splitting of large I/Os into commands the controller accepts.
//!
//! Purpose: a block-layer request may be larger than the controller's
//! Maximum Data Transfer Size (MDTS) or than the 16-bit NLB field of one
//! Read/Write command; [`Chunks`] cuts it into consecutive pieces.
//!
//! Invariants: the pieces cover `[slba, slba + nlb)` exactly, in order,
//! without overlap; each has `1..=max_blocks` blocks; no allocation.
//!
//! Threading model: plain values.

/// Largest NLB of one Read/Write/Write Zeroes command (16-bit, 0-based).
pub const MAX_NLB_PER_COMMAND: u32 = 1 << 16;

/// Maximum blocks per command for a controller.
///
/// `mdts_bytes` is `None` when the controller sets no limit (MDTS = 0);
/// `cap_bytes` is the host's own upper bound per command.
pub fn max_blocks_per_command(mdts_bytes: Option<u64>, cap_bytes: u64, block_size: u32) -> u32 {
    let bs = u64::from(block_size.max(1));
    let limit = mdts_bytes.map_or(cap_bytes, |m| m.min(cap_bytes));
    let blocks = (limit / bs).clamp(1, u64::from(MAX_NLB_PER_COMMAND));
    u32::try_from(blocks).unwrap_or(MAX_NLB_PER_COMMAND)
}

/// One piece of a split request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// First logical block of the piece.
    pub slba: u64,
    /// Number of blocks (1-based count).
    pub nlb: u32,
    /// Offset of the piece within the caller's buffer, in blocks.
    pub index_blocks: u64,
}

/// Iterator over the pieces of `[slba, slba + nlb)`.
#[derive(Debug, Clone)]
pub struct Chunks {
    next_slba: u64,
    remaining: u64,
    done_blocks: u64,
    max_blocks: u32,
}

impl Chunks {
    /// Pieces of at most `max_blocks` (at least 1) blocks.
    pub fn new(slba: u64, nlb: u64, max_blocks: u32) -> Self {
        Self {
            next_slba: slba,
            remaining: nlb,
            done_blocks: 0,
            max_blocks: max_blocks.max(1),
        }
    }
}

impl Iterator for Chunks {
    type Item = Chunk;

    fn next(&mut self) -> Option<Chunk> {
        if self.remaining == 0 {
            return None;
        }
        let n = self.remaining.min(u64::from(self.max_blocks));
        let chunk = Chunk {
            slba: self.next_slba,
            nlb: u32::try_from(n).expect("invariant: n <= max_blocks, a u32"),
            index_blocks: self.done_blocks,
        };
        self.next_slba += n;
        self.remaining -= n;
        self.done_blocks += n;
        Some(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_blocks_respects_mdts_cap_and_nlb() {
        assert_eq!(max_blocks_per_command(None, 1 << 20, 512), 2048);
        assert_eq!(max_blocks_per_command(Some(128 << 10), 1 << 20, 512), 256);
        assert_eq!(max_blocks_per_command(Some(128 << 10), 1 << 20, 4096), 32);
        assert_eq!(
            max_blocks_per_command(None, 1 << 40, 512),
            MAX_NLB_PER_COMMAND
        );
        assert_eq!(max_blocks_per_command(Some(100), 1 << 20, 4096), 1);
    }

    #[test]
    fn chunks_cover_the_range_exactly() {
        let v: Vec<Chunk> = Chunks::new(10, 5, 2).collect();
        assert_eq!(
            v,
            vec![
                Chunk {
                    slba: 10,
                    nlb: 2,
                    index_blocks: 0
                },
                Chunk {
                    slba: 12,
                    nlb: 2,
                    index_blocks: 2
                },
                Chunk {
                    slba: 14,
                    nlb: 1,
                    index_blocks: 4
                },
            ]
        );
        assert_eq!(Chunks::new(0, 0, 8).count(), 0);
        assert_eq!(
            Chunks::new(7, 8, 8).collect::<Vec<_>>(),
            vec![Chunk {
                slba: 7,
                nlb: 8,
                index_blocks: 0
            }]
        );
    }

    #[test]
    fn chunks_property() {
        use rand::Rng;
        let mut rng = rand::rng();
        for _ in 0..2000 {
            let slba = rng.random_range(0..1u64 << 40);
            let nlb = rng.random_range(0..5000u64);
            let max = rng.random_range(0..300u32);
            let mut expect_slba = slba;
            let mut total = 0;
            for c in Chunks::new(slba, nlb, max) {
                assert_eq!(c.slba, expect_slba);
                assert_eq!(c.index_blocks, total);
                assert!(c.nlb >= 1 && c.nlb <= max.max(1));
                expect_slba += u64::from(c.nlb);
                total += u64::from(c.nlb);
            }
            assert_eq!(total, nlb);
        }
    }
}
