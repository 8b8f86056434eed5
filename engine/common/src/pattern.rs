//! Self-checking data blocks for writers that verify what they read back.
//!
//! A block holds its own index and a generation number, a pseudo-random
//! payload derived from both (xorshift), and a CRC-32C of all that in its
//! last 4 bytes; so a block read back is checked for corruption (the
//! checksum), for being misplaced (the index) and for being stale (the
//! generation). Generation 0 is the all-zero block (never written).

/// The smallest block a pattern fits in (index, generation, CRC).
pub const MIN_BLOCK_BYTES: usize = 24;

/// Fills `out` (the whole block, at least [`MIN_BLOCK_BYTES`]) with the
/// contents of block `index` at generation `generation`.
///
/// # Panics
/// When `out` is shorter than [`MIN_BLOCK_BYTES`] (a caller's bug, never
/// input).
pub fn fill(index: u64, generation: u64, out: &mut [u8]) {
    assert!(
        out.len() >= MIN_BLOCK_BYTES,
        "invariant: pattern blocks are at least {MIN_BLOCK_BYTES} bytes"
    );
    if generation == 0 {
        out.fill(0);
        return;
    }
    let end = out.len() - 4;
    out[0..8].copy_from_slice(&index.to_le_bytes());
    out[8..16].copy_from_slice(&generation.to_le_bytes());
    let mut x = index
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(generation.wrapping_mul(0xbf58_476d_1ce4_e5b9))
        | 1;
    for word in out[16..end].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        word.copy_from_slice(&bytes[..word.len()]);
    }
    let crc = crc32c::crc32c(&out[..end]);
    out[end..].copy_from_slice(&crc.to_le_bytes());
}

/// Block `index` at generation `generation`, `block_bytes` long.
pub fn block(index: u64, generation: u64, block_bytes: usize) -> Vec<u8> {
    let mut b = vec![0u8; block_bytes.max(MIN_BLOCK_BYTES)];
    fill(index, generation, &mut b);
    b
}

/// Why a block read back is wrong, or `None` when it is block `index` at
/// `generation` exactly.
pub fn check(index: u64, generation: u64, got: &[u8]) -> Option<String> {
    if got.len() < MIN_BLOCK_BYTES {
        return Some(format!("block {index}: only {} bytes", got.len()));
    }
    if generation == 0 {
        return match got.iter().all(|&b| b == 0) {
            true => None,
            false => Some(format!("block {index}: data where none was written")),
        };
    }
    let end = got.len() - 4;
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&got[end..]);
    if crc32c::crc32c(&got[..end]) != u32::from_le_bytes(crc) {
        return Some(format!(
            "block {index}: checksum mismatch (expected generation {generation})"
        ));
    }
    let (i, g) = header(got)?;
    if i != index {
        return Some(format!("block {index}: holds block {i} (misplaced write)"));
    }
    if g != generation {
        return Some(format!(
            "block {index}: generation {g}, expected {generation} (stale or lost write)"
        ));
    }
    if got != block(index, generation, got.len()) {
        return Some(format!("block {index}: contents differ"));
    }
    None
}

/// The index and generation a checksummed block claims, if its checksum
/// holds.
pub fn decode(got: &[u8]) -> Option<(u64, u64)> {
    if got.len() < MIN_BLOCK_BYTES {
        return None;
    }
    let end = got.len() - 4;
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&got[end..]);
    if crc32c::crc32c(&got[..end]) != u32::from_le_bytes(crc) {
        return None;
    }
    header(got)
}

fn header(got: &[u8]) -> Option<(u64, u64)> {
    let mut i = [0u8; 8];
    let mut g = [0u8; 8];
    i.copy_from_slice(got.get(0..8)?);
    g.copy_from_slice(got.get(8..16)?);
    Some((u64::from_le_bytes(i), u64::from_le_bytes(g)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_checks_only_as_itself() {
        let b = block(7, 3, 4096);
        assert_eq!(check(7, 3, &b), None);
        assert_eq!(decode(&b), Some((7, 3)));
        assert!(check(8, 3, &b).unwrap_or_default().contains("misplaced"));
        assert!(check(7, 4, &b).unwrap_or_default().contains("stale"));
        let mut torn = b.clone();
        torn[100] ^= 1;
        assert!(check(7, 3, &torn).unwrap_or_default().contains("checksum"));
        assert_eq!(decode(&torn), None);
        assert_eq!(check(7, 0, &vec![0u8; 512]), None);
        assert!(check(7, 0, &b).is_some());
        assert_ne!(block(7, 3, 4096), block(7, 4, 4096));
        assert_ne!(block(7, 3, 4096), block(8, 3, 4096));
    }
}
