//! Reading back what `io_engine::stress::fill_pattern` wrote: every block
//! of a device holds the pattern of its last write, or zeroes.

use std::collections::HashMap;

use blockdev::{BlockDevice, DmaBuf};
use io_engine::stress::fill_pattern;
use uuid::Uuid;

/// Reads the whole device (1 MiB at a time) and checks every block:
/// `written` maps a block's byte offset to the seed of its last write
/// (patterns of `uuid`); blocks not in it must read as zeroes.
pub async fn verify_blocks(dev: &impl BlockDevice, uuid: &Uuid, written: &HashMap<u64, u64>) {
    let bs = u64::from(dev.info().block_size);
    let size = dev.info().size_bytes();
    let chunk = 1u64 << 20;
    let mut off = 0;
    while off < size {
        let len = chunk.min(size - off);
        let mut buf = DmaBuf::new(len as usize);
        dev.read_at(off, &mut buf)
            .await
            .unwrap_or_else(|e| panic!("read of {len} bytes at {off}: {e}"));
        for b in (0..len).step_by(bs as usize) {
            let mut want = vec![0u8; bs as usize];
            if let Some(seed) = written.get(&(off + b)) {
                fill_pattern(&mut want, bs as usize, uuid, off + b, *seed);
            }
            assert_eq!(
                &buf[b as usize..(b + bs) as usize],
                want.as_slice(),
                "block at {} differs",
                off + b
            );
        }
        off += len;
    }
}
