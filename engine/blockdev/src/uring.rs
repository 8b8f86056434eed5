//! Files and block devices through io_uring.
//!
//! I/O path: no allocation per I/O in the steady state (staging buffers
//! come from a bounded per-device pool), no info logs, no global locks
//! (short per-device queue and pool locks), no blocking syscalls on the
//! submitting thread (the eventfd write that wakes the ring thread never
//! blocks). The slow path is marked: the write-zeroes fallback that writes
//! zero buffers.
//!
//! Buffer ownership. The kernel never sees a caller's buffer. Every
//! transfer goes through a staging buffer *owned by the in-flight op*
//! (aligned for O_DIRECT, taken from the device's pool): a write copies the
//! caller's bytes into it before the SQE is queued, a read copies out of
//! it after the CQE arrived. The [`BlockDevice`] methods borrow the
//! caller's buffer only while they run on the CPU, so safe code cannot
//! hand the kernel memory that is freed while the operation is in flight:
//! dropping an I/O future waits for the kernel (see below), and leaking
//! one with `mem::forget` leaks the op's own staging buffer with it (the
//! pinned op's memory is never reused without its `Drop` running), never
//! the caller's buffer. The price is one memcpy per transfer (at most
//! [`STAGE_MAX_BYTES`] per SQE).
//!
//! Threading model. Each device owns one ring thread (`uring-<file>`) that
//! owns the `IoUring`. Submitters are tokio tasks on any thread:
//! 1. an I/O future takes a permit of the device's semaphore (at most
//!    `MAX_IN_FLIGHT` requests are queued or in the kernel, so the queue
//!    never grows past its reserved capacity and the completion queue,
//!    twice the submission queue, can never overflow);
//! 2. it builds its SQE with `user_data` = the address of the
//!    [`Completion`] stored inside the (pinned) future itself, pushes the
//!    SQE into the device queue, and writes the eventfd only if the ring
//!    thread said it is about to sleep (`Queue::ring_sleeping`, read and
//!    cleared under the queue lock, so no wakeup is lost: the ring thread
//!    sets the flag under the same lock after finding the queue empty, and
//!    a read of the eventfd is always armed while it sleeps);
//! 3. the ring thread moves queued SQEs into the submission queue, calls
//!    `submit_and_wait(1)`, and for each CQE stores the result in the
//!    `Completion`, notifies its condition variable and wakes the task.
//!
//! Invariants (the soundness argument of the unsafe code):
//! - an SQE pushed by an [`Op`] points only at memory the op owns: its
//!   staging buffer (a heap allocation that does not move with the op)
//!   and its own `Completion`; the op is `!Unpin` and only submits once
//!   pinned, so the completion does not move while queued, and the pin
//!   contract guarantees the op's memory is not reused before its `Drop`
//!   ran (a leaked op stays allocated forever);
//! - [`Op`]'s `Drop` does not return while its SQE is in the kernel: it
//!   either removes the SQE from the device queue (not submitted yet) or
//!   blocks on the completion's condition variable until the ring thread
//!   has stored the result. The ring thread's last access to a
//!   `Completion` is the unlock of its mutex, and the owner can only
//!   observe completion by taking that mutex afterwards. The staging
//!   buffer goes back to the pool only after that (or is handed to the
//!   awaiting caller with the result);
//! - every `Completion` pointer handed to the kernel is completed exactly
//!   once: by its CQE, or with `-ECANCELED` when the ring thread exits
//!   while the SQE is still queued;
//! - the eventfd read buffer lives in `Shared`, which outlives the ring;
//!   the ring thread exits only when nothing it submitted is in flight
//!   (and leaks `Shared` if it panics, rather than free memory the kernel
//!   may still write).
//!
//! Modules: this one holds the device and its [`BlockDevice`] methods;
//! `op` the request in flight, `ring` the ring thread and the state it
//! shares.

use std::{
    cell::UnsafeCell,
    collections::VecDeque,
    fmt, io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use io_uring::{opcode, register::Probe, squeue, types, IoUring};
use parking_lot::Mutex;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::{
    check_io,
    disk::{self, OpenedDisk},
    Backend, BlockDevError, BlockDevice, DeviceInfo, DiskUri, DmaBuf, OpenOptions, Result,
};

mod op;
mod ring;
#[cfg(test)]
mod tests;

use op::Op;
use ring::{ring_main, Queue, Shared, WakeBuf};

/// Submission queue entries (the completion queue gets twice as many).
const RING_ENTRIES: u32 = 256;
/// Requests queued or in the kernel at once, per device. One SQ slot is
/// kept for the eventfd read, so in-kernel requests never exceed the CQ.
const MAX_IN_FLIGHT: usize = RING_ENTRIES as usize - 1;
/// Largest transfer in one SQE: the size of the largest staging buffer.
/// Larger requests are split.
pub const STAGE_MAX_BYTES: usize = 1 << 20;
/// Free staging buffers a device keeps for reuse.
const STAGE_POOL_MAX: usize = 64;
/// Retries of one request after EAGAIN/EINTR before giving up.
const MAX_RETRIES: u32 = 64;
/// `user_data` of the eventfd read (a `Completion` address is never 0).
const WAKE_TOKEN: u64 = 0;

/// Counters of one device (monotonic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UringStats {
    /// SQEs handed to the kernel (retries and resubmissions included).
    pub submitted: u64,
    /// CQEs reaped.
    pub completed: u64,
    /// CQEs with a negative result.
    pub errors: u64,
}

/// A file or block device served through io_uring.
pub struct UringDevice {
    info: DeviceInfo,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    is_blkdev: bool,
    /// The kernel knows IORING_OP_FALLOCATE.
    fallocate_op: bool,
    zero_range_unsupported: AtomicBool,
    punch_unsupported: AtomicBool,
}

impl fmt::Debug for UringDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UringDevice")
            .field("info", &self.info)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl UringDevice {
    /// Opens a file or block device named by an `aio://` or `uring://` URI.
    ///
    /// Returns [`BlockDevError::UringUnavailable`] when the kernel (or a
    /// seccomp policy) refuses io_uring or lacks the read/write/fsync ops.
    pub async fn open(uri: &DiskUri, opts: &OpenOptions) -> Result<Self> {
        let disk = disk::open(uri, opts).await?;
        Self::start(disk)
    }

    fn start(disk: OpenedDisk) -> Result<Self> {
        let ring = IoUring::new(RING_ENTRIES).map_err(BlockDevError::UringUnavailable)?;
        let mut probe = Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(BlockDevError::UringUnavailable)?;
        for code in [opcode::Read::CODE, opcode::Write::CODE, opcode::Fsync::CODE] {
            if !probe.is_supported(code) {
                return Err(BlockDevError::UringUnavailable(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("the kernel lacks io_uring opcode {code}"),
                )));
            }
        }
        let fallocate_op = probe.is_supported(opcode::Fallocate::CODE);

        let open_err = |source: io::Error| BlockDevError::Open {
            path: disk.path.clone(),
            source,
        };
        // SAFETY: eventfd takes plain integers.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(open_err(io::Error::last_os_error()));
        }
        // SAFETY: `efd` is a fresh descriptor that nothing else owns.
        let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };

        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                pending: VecDeque::with_capacity(MAX_IN_FLIGHT),
                ring_sleeping: false,
                stop: false,
                closed: false,
            }),
            eventfd,
            wake_buf: WakeBuf(UnsafeCell::new(0)),
            permits: Semaphore::new(MAX_IN_FLIGHT),
            file: disk.file,
            submitted: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            stage_pool: Mutex::new(Vec::with_capacity(STAGE_POOL_MAX)),
        });
        let name = match disk.path.file_name() {
            Some(n) => format!("uring-{}", n.to_string_lossy()),
            None => "uring".to_string(),
        };
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn({
                let shared = shared.clone();
                move || ring_main(ring, shared)
            })
            .map_err(open_err)?;

        Ok(UringDevice {
            info: DeviceInfo {
                uri: disk.uri,
                block_size: disk.block_size,
                num_blocks: disk.num_blocks,
                backend: Backend::Uring,
                direct_io: disk.direct_io,
            },
            shared,
            thread: Some(thread),
            is_blkdev: disk.is_blkdev,
            fallocate_op,
            zero_range_unsupported: AtomicBool::new(false),
            punch_unsupported: AtomicBool::new(false),
        })
    }

    /// Counters since open.
    pub fn stats(&self) -> UringStats {
        UringStats {
            submitted: self.shared.submitted.load(Ordering::Relaxed),
            completed: self.shared.completed.load(Ordering::Relaxed),
            errors: self.shared.errors.load(Ordering::Relaxed),
        }
    }

    async fn permit(&self) -> Result<SemaphorePermit<'_>> {
        self.shared
            .permits
            .acquire()
            .await
            .map_err(|_| BlockDevError::Closed)
    }

    /// Reads exactly `buf.len()` bytes at `offset` (request validated, a
    /// permit held), resubmitting after short reads.
    async fn read_exact(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let len = buf.len();
        let mut done = 0usize;
        let mut retries = 0u32;
        while done < len {
            let n = (len - done).min(STAGE_MAX_BYTES);
            let pos = offset + done as u64;
            let (res, staged) = Op::read(&self.shared, n, pos)
                .await
                .ok_or(BlockDevError::Closed)?;
            let staged = staged.expect("invariant: a read op carries its staging buffer");
            let got = progress("read", offset, pos, done, len, n, res, &mut retries);
            if let Ok(&got) = got.as_ref() {
                buf[done..done + got].copy_from_slice(&staged[..got]);
            }
            self.shared.unstage(staged);
            done += got?;
        }
        Ok(())
    }

    /// Writes all of `buf` at `offset` (request validated, a permit held),
    /// resubmitting after short writes.
    async fn write_all(&self, offset: u64, buf: &[u8]) -> Result<()> {
        let len = buf.len();
        let mut done = 0usize;
        let mut retries = 0u32;
        while done < len {
            let n = (len - done).min(STAGE_MAX_BYTES);
            let pos = offset + done as u64;
            let (res, staged) = Op::write(&self.shared, &buf[done..done + n], pos)
                .await
                .ok_or(BlockDevError::Closed)?;
            if let Some(staged) = staged {
                self.shared.unstage(staged);
            }
            done += progress("write", offset, pos, done, len, n, res, &mut retries)?;
        }
        Ok(())
    }

    /// Runs an SQE that carries no buffer, retrying EAGAIN/EINTR; returns
    /// the final result (negative errno on failure).
    async fn run_retrying(&self, build: impl Fn() -> squeue::Entry) -> Result<i32> {
        let mut retries = 0u32;
        loop {
            let (res, _) = Op::new(&self.shared, build(), None)
                .await
                .ok_or(BlockDevError::Closed)?;
            if (res == -libc::EAGAIN || res == -libc::EINTR) && retries < MAX_RETRIES {
                retries += 1;
                continue;
            }
            return Ok(res);
        }
    }

    /// `fallocate(mode)` through the ring: `Ok(Err(errno))` on failure.
    async fn fallocate(
        &self,
        mode: libc::c_int,
        offset: u64,
        len: u64,
    ) -> Result<std::result::Result<(), i32>> {
        let fd = types::Fd(self.shared.file.as_raw_fd());
        let res = self
            .run_retrying(|| {
                opcode::Fallocate::new(fd, len)
                    .offset(offset)
                    .mode(mode)
                    .build()
            })
            .await?;
        Ok(if res < 0 { Err(-res) } else { Ok(()) })
    }

    /// Makes `[offset, offset+len)` read as zeroes (validated, permit
    /// held): fallocate zero-range, else punch-hole (files), else writing
    /// zero buffers (slow path, allocates).
    async fn zero(&self, op: &'static str, offset: u64, len: u64) -> Result<()> {
        if self.fallocate_op && !self.zero_range_unsupported.load(Ordering::Relaxed) {
            match self.fallocate(disk::ZERO_RANGE, offset, len).await? {
                Ok(()) => return Ok(()),
                Err(errno) if disk::is_unsupported(errno) => {
                    self.zero_range_unsupported.store(true, Ordering::Relaxed);
                }
                Err(errno) => return Err(io_error(op, offset, errno)),
            }
        }
        // On a block device punch-hole only works where the device
        // guarantees zeroes, and zero-range already tried that.
        if self.fallocate_op && !self.is_blkdev && !self.punch_unsupported.load(Ordering::Relaxed) {
            match self.fallocate(disk::PUNCH_HOLE, offset, len).await? {
                Ok(()) => return Ok(()),
                Err(errno) if disk::is_unsupported(errno) => {
                    self.punch_unsupported.store(true, Ordering::Relaxed);
                }
                Err(errno) => return Err(io_error(op, offset, errno)),
            }
        }
        let zeros = DmaBuf::new(len.min(disk::ZERO_BUF_BYTES) as usize);
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(zeros.len() as u64) as usize;
            self.write_all(offset + done, &zeros[..n]).await?;
            done += n as u64;
        }
        Ok(())
    }
}

/// Interprets one CQE result of a transfer: bytes to advance by (0 means
/// "retry the same range").
#[allow(clippy::too_many_arguments)]
fn progress(
    op: &'static str,
    offset: u64,
    pos: u64,
    done: usize,
    len: usize,
    asked: usize,
    res: i32,
    retries: &mut u32,
) -> Result<usize> {
    if res > 0 {
        return Ok((res as usize).min(asked));
    }
    if res == 0 {
        return Err(BlockDevError::Short {
            op,
            offset_bytes: offset,
            done_bytes: done as u64,
            len_bytes: len as u64,
        });
    }
    if (res == -libc::EAGAIN || res == -libc::EINTR) && *retries < MAX_RETRIES {
        *retries += 1;
        return Ok(0);
    }
    Err(io_error(op, pos, -res))
}

fn io_error(op: &'static str, offset_bytes: u64, errno: i32) -> BlockDevError {
    BlockDevError::Io {
        op,
        offset_bytes,
        source: io::Error::from_raw_os_error(errno),
    }
}

impl BlockDevice for UringDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    async fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> Result<()> {
        check_io(&self.info, "read", offset_bytes, buf.len() as u64)?;
        if buf.is_empty() {
            return Ok(());
        }
        let _permit = self.permit().await?;
        self.read_exact(offset_bytes, buf).await
    }

    async fn write_at(&self, offset_bytes: u64, buf: &[u8]) -> Result<()> {
        check_io(&self.info, "write", offset_bytes, buf.len() as u64)?;
        if buf.is_empty() {
            return Ok(());
        }
        let _permit = self.permit().await?;
        self.write_all(offset_bytes, buf).await
    }

    async fn flush(&self) -> Result<()> {
        let _permit = self.permit().await?;
        let fd = types::Fd(self.shared.file.as_raw_fd());
        let res = self
            .run_retrying(|| {
                opcode::Fsync::new(fd)
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
            })
            .await?;
        if res < 0 {
            return Err(io_error("flush", 0, -res));
        }
        Ok(())
    }

    async fn write_zeroes(&self, offset_bytes: u64, len_bytes: u64) -> Result<()> {
        check_io(&self.info, "write_zeroes", offset_bytes, len_bytes)?;
        if len_bytes == 0 {
            return Ok(());
        }
        let _permit = self.permit().await?;
        self.zero("write_zeroes", offset_bytes, len_bytes).await
    }

    async fn unmap(&self, offset_bytes: u64, len_bytes: u64) -> Result<()> {
        check_io(&self.info, "unmap", offset_bytes, len_bytes)?;
        if len_bytes == 0 {
            return Ok(());
        }
        let _permit = self.permit().await?;
        // Punch-hole deallocates and reads back zeroes, on files and on
        // block devices that guarantee it (unlike BLKDISCARD, which may
        // leave stale data); otherwise zero the range.
        if self.fallocate_op && !self.punch_unsupported.load(Ordering::Relaxed) {
            match self
                .fallocate(disk::PUNCH_HOLE, offset_bytes, len_bytes)
                .await?
            {
                Ok(()) => return Ok(()),
                Err(errno) if disk::is_unsupported(errno) => {
                    self.punch_unsupported.store(true, Ordering::Relaxed);
                }
                Err(errno) => return Err(io_error("unmap", offset_bytes, errno)),
            }
        }
        self.zero("unmap", offset_bytes, len_bytes).await
    }
}

impl Drop for UringDevice {
    fn drop(&mut self) {
        // No op can be alive: each borrows the device (a leaked one keeps
        // its completion and staging buffer allocated forever; the ring
        // thread below still completes it before it exits).
        self.shared.queue.lock().stop = true;
        self.shared.kick();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!(uri = %self.info.uri, "io_uring thread panicked");
            }
        }
    }
}
