//! Files and block devices through positional reads and writes: the
//! portable fallback used when io_uring is unavailable (old kernels,
//! seccomp policies that forbid it) or when `OpenOptions::force_pread` is
//! set.
//!
//! Purpose: correctness everywhere, not speed. Each request runs on
//! tokio's blocking pool (inline when called outside a runtime) on an
//! owned, aligned copy of the caller's buffer, so a dropped future never
//! leaves the kernel writing into caller memory: the blocking task owns
//! everything it touches.
//!
//! Invariants: same open logic as the uring backend (`disk.rs`); every op
//! validates the request with [`check_io`] first; `write_zeroes` and
//! `unmap` leave the range reading as zeroes (fallocate zero-range, then
//! `BLKZEROOUT` or punch-hole, then writing zero buffers).
//!
//! Threading model: `Sync`; requests from any thread run concurrently on
//! the blocking pool. I/O path: no global locks, no logs; allocation (the
//! copy) per I/O is accepted on this fallback path.

use std::{
    fs::File,
    io,
    os::{fd::AsRawFd, unix::fs::FileExt},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use crate::{
    check_io,
    disk::{self, OpenedDisk},
    Backend, BlockDevError, BlockDevice, DeviceInfo, DiskUri, DmaBuf, OpenOptions, Result,
};

/// A file or block device served by blocking positional I/O.
#[derive(Debug)]
pub struct PreadDevice {
    info: DeviceInfo,
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    file: File,
    is_blkdev: bool,
    zero_range_unsupported: AtomicBool,
    punch_unsupported: AtomicBool,
}

impl PreadDevice {
    /// Opens a file or block device named by an `aio://` or `uring://` URI.
    pub async fn open(uri: &DiskUri, opts: &OpenOptions) -> Result<Self> {
        let disk = disk::open(uri, opts).await?;
        Ok(Self::from_disk(disk))
    }

    fn from_disk(disk: OpenedDisk) -> Self {
        PreadDevice {
            info: DeviceInfo {
                uri: disk.uri,
                block_size: disk.block_size,
                num_blocks: disk.num_blocks,
                backend: Backend::Pread,
                direct_io: disk.direct_io,
            },
            inner: Arc::new(Inner {
                file: disk.file,
                is_blkdev: disk.is_blkdev,
                zero_range_unsupported: AtomicBool::new(false),
                punch_unsupported: AtomicBool::new(false),
            }),
        }
    }

    /// Runs `f(inner)` on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        op: &'static str,
        offset_bytes: u64,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(move || f(&inner))
                    .await
                    .map_err(|e| BlockDevError::Io {
                        op,
                        offset_bytes,
                        source: io::Error::other(format!("blocking task failed: {e}")),
                    })?
            }
            Err(_) => f(&inner),
        }
    }
}

impl Inner {
    fn read_exact(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            match self.file.read_at(&mut buf[done..], pos) {
                Ok(0) => {
                    return Err(BlockDevError::Short {
                        op: "read",
                        offset_bytes: offset,
                        done_bytes: done as u64,
                        len_bytes: buf.len() as u64,
                    })
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(BlockDevError::Io {
                        op: "read",
                        offset_bytes: pos,
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    fn write_all(&self, op: &'static str, buf: &[u8], offset: u64) -> Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            match self.file.write_at(&buf[done..], pos) {
                Ok(0) => {
                    return Err(BlockDevError::Short {
                        op,
                        offset_bytes: offset,
                        done_bytes: done as u64,
                        len_bytes: buf.len() as u64,
                    })
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(BlockDevError::Io {
                        op,
                        offset_bytes: pos,
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Tries `fallocate(mode)`; `Ok(false)` when the primitive is not
    /// available (and remembers that in `unsupported`).
    fn try_fallocate(
        &self,
        op: &'static str,
        mode: libc::c_int,
        unsupported: &AtomicBool,
        offset: u64,
        len: u64,
    ) -> Result<bool> {
        if unsupported.load(Ordering::Relaxed) {
            return Ok(false);
        }
        match disk::fallocate(self.file.as_raw_fd(), mode, offset, len) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error().is_some_and(disk::is_unsupported) => {
                unsupported.store(true, Ordering::Relaxed);
                Ok(false)
            }
            Err(source) => Err(BlockDevError::Io {
                op,
                offset_bytes: offset,
                source,
            }),
        }
    }

    /// Makes `[offset, offset+len)` read as zeroes.
    fn zero(&self, op: &'static str, offset: u64, len: u64) -> Result<()> {
        if self.try_fallocate(
            op,
            disk::ZERO_RANGE,
            &self.zero_range_unsupported,
            offset,
            len,
        )? {
            return Ok(());
        }
        if self.is_blkdev {
            match disk::blkzeroout(self.file.as_raw_fd(), offset, len) {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error().is_some_and(disk::is_unsupported) => {}
                Err(source) => {
                    return Err(BlockDevError::Io {
                        op,
                        offset_bytes: offset,
                        source,
                    })
                }
            }
        } else if self.try_fallocate(op, disk::PUNCH_HOLE, &self.punch_unsupported, offset, len)? {
            return Ok(());
        }
        let zeros = DmaBuf::new(len.min(disk::ZERO_BUF_BYTES) as usize);
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(zeros.len() as u64) as usize;
            self.write_all(op, &zeros[..n], offset + done)?;
            done += n as u64;
        }
        Ok(())
    }
}

impl BlockDevice for PreadDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    async fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> Result<()> {
        check_io(&self.info, "read", offset_bytes, buf.len() as u64)?;
        if buf.is_empty() {
            return Ok(());
        }
        let len = buf.len();
        let data = self
            .blocking("read", offset_bytes, move |inner| {
                let mut data = DmaBuf::new(len);
                inner.read_exact(&mut data, offset_bytes)?;
                Ok(data)
            })
            .await?;
        buf.copy_from_slice(&data);
        Ok(())
    }

    async fn write_at(&self, offset_bytes: u64, buf: &[u8]) -> Result<()> {
        check_io(&self.info, "write", offset_bytes, buf.len() as u64)?;
        if buf.is_empty() {
            return Ok(());
        }
        let data = DmaBuf::from_slice(buf);
        self.blocking("write", offset_bytes, move |inner| {
            inner.write_all("write", &data, offset_bytes)
        })
        .await
    }

    async fn flush(&self) -> Result<()> {
        self.blocking("flush", 0, |inner| {
            inner.file.sync_data().map_err(|source| BlockDevError::Io {
                op: "flush",
                offset_bytes: 0,
                source,
            })
        })
        .await
    }

    async fn write_zeroes(&self, offset_bytes: u64, len_bytes: u64) -> Result<()> {
        check_io(&self.info, "write_zeroes", offset_bytes, len_bytes)?;
        if len_bytes == 0 {
            return Ok(());
        }
        self.blocking("write_zeroes", offset_bytes, move |inner| {
            inner.zero("write_zeroes", offset_bytes, len_bytes)
        })
        .await
    }

    async fn unmap(&self, offset_bytes: u64, len_bytes: u64) -> Result<()> {
        check_io(&self.info, "unmap", offset_bytes, len_bytes)?;
        if len_bytes == 0 {
            return Ok(());
        }
        self.blocking("unmap", offset_bytes, move |inner| {
            // Punch-hole reads back zeroes on files and on block devices
            // that guarantee it; otherwise zero the range.
            if inner.try_fallocate(
                "unmap",
                disk::PUNCH_HOLE,
                &inner.punch_unsupported,
                offset_bytes,
                len_bytes,
            )? {
                return Ok(());
            }
            inner.zero("unmap", offset_bytes, len_bytes)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    #[tokio::test]
    async fn zeroing_falls_back_to_writing_zero_buffers() {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(4 << 20).unwrap();
        let uri: DiskUri = format!("aio://{}?blk_size=4096", f.path().display())
            .parse()
            .unwrap();
        let d = PreadDevice::open(&uri, &OpenOptions::default())
            .await
            .unwrap();
        d.write_at(0, &vec![0xaau8; 4 << 20]).await.unwrap();
        d.inner
            .zero_range_unsupported
            .store(true, Ordering::Relaxed);
        d.inner.punch_unsupported.store(true, Ordering::Relaxed);
        d.write_zeroes(4096, (2 << 20) + 8192).await.unwrap();
        d.unmap(3 << 20, 4096).await.unwrap();
        let mut back = vec![0u8; 4 << 20];
        d.read_at(0, &mut back).await.unwrap();
        let zeroed = |i: usize| {
            (4096..4096 + (2 << 20) + 8192).contains(&i) || (3 << 20..(3 << 20) + 4096).contains(&i)
        };
        for (i, &b) in back.iter().enumerate() {
            assert_eq!(b, if zeroed(i) { 0 } else { 0xaa }, "byte {i}");
        }
    }

    #[test]
    fn works_without_a_runtime() {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(64 * 1024).unwrap();
        let uri: DiskUri = format!("aio://{}", f.path().display()).parse().unwrap();
        let fut = async {
            let d = PreadDevice::open(&uri, &OpenOptions::default())
                .await
                .unwrap();
            assert_eq!(d.info().backend, Backend::Pread);
            assert_eq!(d.info().num_blocks, 128);
            d.write_at(512, &[9u8; 1024]).await.unwrap();
            let mut back = [0u8; 1024];
            d.read_at(512, &mut back).await.unwrap();
            assert_eq!(back, [9u8; 1024]);
            d.write_zeroes(1024, 512).await.unwrap();
            d.read_at(512, &mut back).await.unwrap();
            assert_eq!(back[..512], [9u8; 512]);
            assert_eq!(back[512..], [0u8; 512]);
            d.flush().await.unwrap();
        };
        // A current-thread executor that is not tokio.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut fut = std::pin::pin!(fut);
        assert!(
            fut.as_mut().poll(&mut cx).is_ready(),
            "blocking inline completes in one poll"
        );
    }
}
