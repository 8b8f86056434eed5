//! RAM block device (`malloc:///name?size_mb=M`).
//!
//! Purpose: a fast, volatile disk for tests and for pools that do not need
//! to survive a restart.
//!
//! Storage is split into 1 MiB chunks, each behind its own `RwLock` and
//! allocated on first write, so a 10 GiB malloc disk costs only its chunk
//! table (24 bytes per MiB) until it is written, and I/O to different
//! chunks never contends. Invariants:
//! - an unallocated chunk reads as zeroes;
//! - `write_zeroes` and `unmap` free the chunks they cover completely and
//!   zero the covered part of the others, so both read back as zeroes;
//! - every chunk is `CHUNK_BYTES` long except possibly the last one, which
//!   ends at the end of the device.
//!
//! Threading model: `Sync`; any number of tasks on any threads may run I/O
//! concurrently. A request spanning several chunks locks them one at a
//! time, so it is not atomic against a concurrent overlapping request (no
//! disk gives that guarantee either).
//!
//! I/O path: no global locks, no logs, no blocking syscalls; the only
//! allocation is the first write to a chunk.

use parking_lot::RwLock;

use crate::DmaBuf;
use crate::{check_io, Backend, BlockDevError, BlockDevice, DeviceInfo, DiskUri, Result};

/// Size of one storage chunk.
const CHUNK_BYTES: u64 = 1 << 20;

/// A RAM disk.
pub struct MallocDevice {
    info: DeviceInfo,
    /// Page-aligned chunks: copies into unaligned heap memory are several
    /// times slower on some CPUs.
    chunks: Vec<RwLock<Option<DmaBuf>>>,
}

impl std::fmt::Debug for MallocDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MallocDevice")
            .field("info", &self.info)
            .field("allocated_chunks", &self.allocated_chunks())
            .finish()
    }
}

impl MallocDevice {
    /// Creates the RAM disk described by a `malloc:///` URI.
    pub fn new(uri: &DiskUri) -> Result<Self> {
        let DiskUri::Malloc {
            name,
            size,
            blk_size,
        } = uri
        else {
            return Err(BlockDevError::Open {
                path: uri.path().map(Into::into).unwrap_or_default(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a malloc:/// uri",
                ),
            });
        };
        let invalid = |what: &str| BlockDevError::Open {
            path: name.into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_string()),
        };
        if *blk_size != 512 && *blk_size != 4096 {
            return Err(invalid("block size must be 512 or 4096"));
        }
        let num_blocks = size
            .num_blocks(*blk_size)
            .ok_or_else(|| invalid("size is zero or overflows 64 bits"))?;
        let size_bytes = num_blocks * u64::from(*blk_size);
        // RAM disks are allocated lazily, but one larger than the machine's
        // memory can only end in the engine being killed: refuse it now.
        if let Some(total) = mem_total_bytes() {
            if size_bytes > total {
                return Err(invalid(&format!(
                    "size {size_bytes} bytes exceeds this machine's memory ({total} bytes)"
                )));
            }
        }
        let num_chunks = usize::try_from(size_bytes.div_ceil(CHUNK_BYTES))
            .map_err(|_| invalid("size does not fit in the address space"))?;
        let mut chunks = Vec::new();
        chunks
            .try_reserve_exact(num_chunks)
            .map_err(|_| invalid("not enough memory for the chunk table"))?;
        chunks.resize_with(num_chunks, || RwLock::new(None));
        Ok(MallocDevice {
            info: DeviceInfo {
                uri: uri.to_string(),
                block_size: *blk_size,
                num_blocks,
                backend: Backend::Malloc,
                direct_io: false,
            },
            chunks,
        })
    }

    /// Number of chunks that hold memory (for tests and stats).
    pub fn allocated_chunks(&self) -> usize {
        self.chunks.iter().filter(|c| c.read().is_some()).count()
    }

    /// Length of chunk `index`.
    fn chunk_len(&self, index: usize) -> usize {
        let start = index as u64 * CHUNK_BYTES;
        // Fits: at most CHUNK_BYTES.
        (self.info.size_bytes() - start).min(CHUNK_BYTES) as usize
    }

    /// Calls `f(chunk index, offset in chunk, range in request)` for each
    /// chunk that `[offset, offset+len)` touches. The range was checked by
    /// `check_io`, so it lies inside the device.
    fn for_each_chunk(
        &self,
        offset: u64,
        len: u64,
        mut f: impl FnMut(usize, usize, std::ops::Range<usize>),
    ) {
        let mut done = 0u64;
        while done < len {
            let pos = offset + done;
            let index = (pos / CHUNK_BYTES) as usize;
            let in_chunk = (pos % CHUNK_BYTES) as usize;
            let n = (len - done).min(CHUNK_BYTES - in_chunk as u64);
            f(index, in_chunk, done as usize..(done + n) as usize);
            done += n;
        }
    }

    fn zero_range(&self, offset: u64, len: u64) {
        self.for_each_chunk(offset, len, |index, in_chunk, range| {
            let chunk_len = self.chunk_len(index);
            let mut chunk = self.chunks[index].write();
            if in_chunk == 0 && range.len() == chunk_len {
                *chunk = None;
            } else if let Some(data) = chunk.as_mut() {
                data[in_chunk..in_chunk + range.len()].fill(0);
            }
        });
    }
}

impl BlockDevice for MallocDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    async fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> Result<()> {
        check_io(&self.info, "read", offset_bytes, buf.len() as u64)?;
        self.for_each_chunk(offset_bytes, buf.len() as u64, |index, in_chunk, range| {
            let dst = &mut buf[range];
            match self.chunks[index].read().as_ref() {
                Some(data) => dst.copy_from_slice(&data[in_chunk..in_chunk + dst.len()]),
                None => dst.fill(0),
            }
        });
        Ok(())
    }

    async fn write_at(&self, offset_bytes: u64, buf: &[u8]) -> Result<()> {
        check_io(&self.info, "write", offset_bytes, buf.len() as u64)?;
        self.for_each_chunk(offset_bytes, buf.len() as u64, |index, in_chunk, range| {
            let src = &buf[range];
            let mut chunk = self.chunks[index].write();
            let data = chunk.get_or_insert_with(|| DmaBuf::new(self.chunk_len(index)));
            data[in_chunk..in_chunk + src.len()].copy_from_slice(src);
        });
        Ok(())
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    async fn write_zeroes(&self, offset_bytes: u64, len_bytes: u64) -> Result<()> {
        check_io(&self.info, "write_zeroes", offset_bytes, len_bytes)?;
        self.zero_range(offset_bytes, len_bytes);
        Ok(())
    }

    async fn unmap(&self, offset_bytes: u64, len_bytes: u64) -> Result<()> {
        check_io(&self.info, "unmap", offset_bytes, len_bytes)?;
        self.zero_range(offset_bytes, len_bytes);
        Ok(())
    }
}

/// `MemTotal` of /proc/meminfo, in bytes.
fn mem_total_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(uri: &str) -> MallocDevice {
        MallocDevice::new(&uri.parse().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn huge_disk_is_lazy() {
        let d = dev("malloc:///m0?size_mb=10240");
        assert_eq!(d.info().size_bytes(), 10 << 30);
        assert_eq!(d.allocated_chunks(), 0);
        let mut buf = vec![1u8; 4096];
        d.read_at(5 << 30, &mut buf).await.unwrap();
        assert!(buf.iter().all(|&b| b == 0));
        assert_eq!(d.allocated_chunks(), 0);
        d.write_at((10 << 30) - 4096, &[7u8; 4096]).await.unwrap();
        assert_eq!(d.allocated_chunks(), 1);
    }

    #[tokio::test]
    async fn writes_across_chunks_and_partial_last_chunk() {
        // 3 MiB + 1536 bytes: the last chunk is short.
        let d = dev("malloc:///m1?num_blocks=6147");
        assert_eq!(d.chunks.len(), 4);
        let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        let off = CHUNK_BYTES - 2048;
        d.write_at(off, &data).await.unwrap();
        let mut back = vec![0u8; 4096];
        d.read_at(off, &mut back).await.unwrap();
        assert_eq!(back, data);
        let end = d.info().size_bytes();
        d.write_at(end - 1024, &data[..1024]).await.unwrap();
        let mut tail = vec![0u8; 1024];
        d.read_at(end - 1024, &mut tail).await.unwrap();
        assert_eq!(tail, data[..1024]);

        // Zero a range covering all of chunk 1 and part of chunk 0.
        d.write_zeroes(CHUNK_BYTES - 1024, CHUNK_BYTES + 1024)
            .await
            .unwrap();
        assert!(d.chunks[1].read().is_none());
        d.read_at(off, &mut back).await.unwrap();
        assert_eq!(back[..1024], data[..1024]);
        assert!(back[1024..].iter().all(|&b| b == 0));
        d.unmap(end - 1024, 1024).await.unwrap();
        d.read_at(end - 1024, &mut tail).await.unwrap();
        assert!(tail.iter().all(|&b| b == 0));
    }

    #[tokio::test]
    async fn refuses_bad_requests() {
        let d = dev("malloc:///m2?size_mb=1&blk_size=4096");
        let mut buf = vec![0u8; 512];
        assert!(matches!(
            d.read_at(0, &mut buf).await,
            Err(BlockDevError::Unaligned { .. })
        ));
        let mut buf = vec![0u8; 4096];
        assert!(matches!(
            d.read_at(1 << 20, &mut buf).await,
            Err(BlockDevError::OutOfRange { .. })
        ));
        assert!(matches!(
            d.write_zeroes(u64::MAX - 4095, 4096).await,
            Err(BlockDevError::Unaligned { .. }) | Err(BlockDevError::OutOfRange { .. })
        ));
        d.flush().await.unwrap();
    }

    #[test]
    fn refuses_non_malloc_uris() {
        assert!(MallocDevice::new(&"/tmp/x".parse().unwrap()).is_err());
    }
}
