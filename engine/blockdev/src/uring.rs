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

use std::{
    cell::UnsafeCell,
    collections::VecDeque,
    fmt,
    fs::File,
    future::Future,
    io,
    marker::PhantomPinned,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll, Waker},
    thread::JoinHandle,
    time::Duration,
};

use io_uring::{opcode, register::Probe, squeue, types, IoUring};
use parking_lot::{Condvar, Mutex};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::{
    check_io,
    disk::{self, OpenedDisk},
    Backend, BlockDevError, BlockDevice, DeviceInfo, DiskUri, DmaBuf, OpenOptions, Result,
};

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

/// Requests waiting for the ring thread, and its state flags.
struct Queue {
    pending: VecDeque<squeue::Entry>,
    /// The ring thread found the queue empty and is about to sleep: the
    /// next submitter must write the eventfd (and clears the flag).
    ring_sleeping: bool,
    /// The device is being dropped.
    stop: bool,
    /// The ring thread has exited: nothing can be submitted any more.
    closed: bool,
}

/// The eventfd read target; written only by the kernel, never read.
struct WakeBuf(UnsafeCell<u64>);

// SAFETY: Rust code never reads or writes through the cell; only the
// kernel writes it (the eventfd read), so there is no data race to guard.
unsafe impl Sync for WakeBuf {}

/// State shared by the device handle, its I/O futures and its ring thread.
struct Shared {
    queue: Mutex<Queue>,
    eventfd: OwnedFd,
    wake_buf: WakeBuf,
    permits: Semaphore,
    file: File,
    submitted: AtomicU64,
    completed: AtomicU64,
    errors: AtomicU64,
    /// Free staging buffers (sizes are powers of two, 4 KiB..=1 MiB).
    stage_pool: Mutex<Vec<DmaBuf>>,
}

impl Shared {
    /// A staging buffer of at least `len` (<= [`STAGE_MAX_BYTES`]) bytes:
    /// from the pool, or freshly allocated (warm-up, or more transfers in
    /// flight than the pool keeps).
    fn stage(&self, len: usize) -> DmaBuf {
        let class = len.next_power_of_two().max(DmaBuf::ALIGN);
        let reused = {
            let mut pool = self.stage_pool.lock();
            pool.iter()
                .rposition(|b| b.len() == class)
                .map(|i| pool.swap_remove(i))
        };
        reused.unwrap_or_else(|| DmaBuf::new(class))
    }

    /// Returns a staging buffer the kernel is done with.
    fn unstage(&self, buf: DmaBuf) {
        let mut pool = self.stage_pool.lock();
        if pool.len() < STAGE_POOL_MAX {
            pool.push(buf);
        }
    }

    /// Queues `entry` for the ring thread; `false` when it has exited.
    fn push(&self, entry: squeue::Entry) -> bool {
        let wake = {
            let mut q = self.queue.lock();
            if q.closed || q.stop {
                return false;
            }
            // Never reallocates: the semaphore bounds the length to the
            // reserved capacity.
            q.pending.push_back(entry);
            std::mem::replace(&mut q.ring_sleeping, false)
        };
        if wake {
            self.kick();
        }
        true
    }

    /// Removes a not yet submitted SQE; `false` if the ring thread already
    /// took it.
    fn unqueue(&self, user_data: u64) -> bool {
        let mut q = self.queue.lock();
        match q
            .pending
            .iter()
            .position(|e| e.get_user_data() == user_data)
        {
            Some(i) => {
                q.pending.remove(i);
                true
            }
            None => false,
        }
    }

    /// Wakes the ring thread.
    fn kick(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to an eventfd we own.
        // It cannot block in practice (the counter would have to reach
        // u64::MAX - 1) and a failure only costs a wakeup that a later
        // kick or completion provides.
        let _ = unsafe { libc::write(self.eventfd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

/// Completion state of one request, stored inside its [`Op`].
struct Completion {
    state: Mutex<CompletionState>,
    done_cv: Condvar,
}

struct CompletionState {
    done: bool,
    result: i32,
    waker: Option<Waker>,
}

impl Completion {
    fn new() -> Self {
        Completion {
            state: Mutex::new(CompletionState {
                done: false,
                result: 0,
                waker: None,
            }),
            done_cv: Condvar::new(),
        }
    }

    /// Stores `result` and wakes the owner.
    ///
    /// # Safety
    /// `ptr` must be the `user_data` of an SQE pushed by an [`Op`] that
    /// has not been completed yet. That op cannot be freed before `done`
    /// is set (its `Drop` waits for it), and this function touches the
    /// completion for the last time when it unlocks the mutex.
    unsafe fn complete(ptr: *const Completion, result: i32) {
        // SAFETY: see the function contract: the completion is alive until
        // the guard below is released.
        let c = unsafe { &*ptr };
        let waker = {
            let mut st = c.state.lock();
            st.done = true;
            st.result = result;
            c.done_cv.notify_one();
            st.waker.take()
        };
        // `c` is not used past this point: the owner may free it now.
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// One request in flight: a future that owns its completion state and
/// the only buffer its SQE points at.
///
/// `'a` covers the device only: no caller memory is reachable from the
/// SQE.
struct Op<'a> {
    shared: &'a Shared,
    /// The SQE, until the first poll pushes it.
    entry: Option<squeue::Entry>,
    /// Pushed and not yet seen completed.
    queued: bool,
    completion: Completion,
    /// The staging buffer of a read or write; handed out with the result
    /// once the kernel is done with it, else returned to the pool on drop.
    staged: Option<DmaBuf>,
    _pin: PhantomPinned,
}

impl<'a> Op<'a> {
    fn new(shared: &'a Shared, entry: squeue::Entry, staged: Option<DmaBuf>) -> Self {
        Op {
            shared,
            entry: Some(entry),
            queued: false,
            completion: Completion::new(),
            staged,
            _pin: PhantomPinned,
        }
    }

    /// Reads `len` (<= [`STAGE_MAX_BYTES`]) bytes at `offset` into a
    /// staging buffer of the op.
    fn read(shared: &'a Shared, len: usize, offset: u64) -> Self {
        debug_assert!(len <= STAGE_MAX_BYTES);
        let mut staged = shared.stage(len);
        let fd = types::Fd(shared.file.as_raw_fd());
        // Fits: at most STAGE_MAX_BYTES.
        let entry = opcode::Read::new(fd, staged.as_mut_ptr(), len as u32)
            .offset(offset)
            .build();
        Self::new(shared, entry, Some(staged))
    }

    /// Writes a copy of `data` (<= [`STAGE_MAX_BYTES`] bytes) at `offset`:
    /// `data` is not referenced once this returns.
    fn write(shared: &'a Shared, data: &[u8], offset: u64) -> Self {
        debug_assert!(data.len() <= STAGE_MAX_BYTES);
        let mut staged = shared.stage(data.len());
        staged[..data.len()].copy_from_slice(data);
        let fd = types::Fd(shared.file.as_raw_fd());
        let entry = opcode::Write::new(fd, staged.as_ptr(), data.len() as u32)
            .offset(offset)
            .build();
        Self::new(shared, entry, Some(staged))
    }

    fn completion_addr(&self) -> u64 {
        &self.completion as *const Completion as u64
    }
}

impl Future for Op<'_> {
    /// The CQE result and the staging buffer (the kernel is done with it),
    /// or `None` when the ring thread has exited.
    type Output = Option<(i32, Option<DmaBuf>)>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: nothing is moved out of `this`; the address of
        // `this.completion` stays valid until `Drop`, which is what the
        // pinning contract (and `PhantomPinned`) guarantees.
        let this = unsafe { self.get_unchecked_mut() };
        if let Some(entry) = this.entry.take() {
            let user_data = this.completion_addr();
            if !this.shared.push(entry.user_data(user_data)) {
                return Poll::Ready(None);
            }
            this.queued = true;
        }
        let mut st = this.completion.state.lock();
        if st.done {
            this.queued = false;
            return Poll::Ready(Some((st.result, this.staged.take())));
        }
        match &st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Op<'_> {
    fn drop(&mut self) {
        // Not submitted yet, or submitted and taken back before the ring
        // thread saw it: nobody will touch us.
        if self.queued && !self.shared.unqueue(self.completion_addr()) {
            // In the kernel (or being completed): wait until the ring
            // thread has stored the result; only then may the staging
            // buffer and the completion be freed. Blocking is rare (a
            // cancelled I/O) and short (one device round trip).
            let mut st = self.completion.state.lock();
            while !st.done {
                self.completion.done_cv.wait(&mut st);
            }
        }
        if let Some(buf) = self.staged.take() {
            self.shared.unstage(buf);
        }
    }
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

/// On ring thread exit: refuse new requests, fail the queued ones, and if
/// the thread panicked, leak `Shared` (the kernel may still write the wake
/// buffer).
struct RingExit {
    shared: Arc<Shared>,
}

impl Drop for RingExit {
    fn drop(&mut self) {
        let pending = {
            let mut q = self.shared.queue.lock();
            q.closed = true;
            std::mem::take(&mut q.pending)
        };
        for entry in pending {
            // SAFETY: a queued SQE carries the address of its op's live
            // completion, never completed before (it never reached the
            // kernel).
            unsafe {
                Completion::complete(entry.get_user_data() as *const Completion, -libc::ECANCELED)
            };
        }
        if std::thread::panicking() {
            std::mem::forget(self.shared.clone());
            tracing::error!("io_uring thread panicked: requests in flight will never complete");
        }
    }
}

/// The ring thread: moves queued SQEs into the ring, waits, completes.
fn ring_main(mut ring: IoUring, shared: Arc<Shared>) {
    let exit = RingExit { shared };
    let shared = &*exit.shared;
    let eventfd = types::Fd(shared.eventfd.as_raw_fd());
    // SQEs submitted whose CQE has not been reaped, the wake read included.
    let mut in_kernel = 0usize;
    let mut wake_armed = false;
    loop {
        let (stopping, more_pending) = {
            let mut q = shared.queue.lock();
            q.ring_sleeping = false;
            let mut sq = ring.submission();
            // Keep one slot for the wake read.
            while sq.len() + 1 < sq.capacity() {
                let Some(entry) = q.pending.pop_front() else {
                    break;
                };
                // SAFETY: the entry points at a buffer and a completion
                // owned by an op that cannot release them before this
                // entry's CQE is reaped (see the module invariants).
                if unsafe { sq.push(&entry) }.is_err() {
                    q.pending.push_front(entry);
                    break;
                }
                in_kernel += 1;
                shared.submitted.fetch_add(1, Ordering::Relaxed);
            }
            let more = !q.pending.is_empty();
            if !more && !q.stop {
                q.ring_sleeping = true;
            }
            (q.stop, more)
        };
        // The stop flag is read before arming, so once the device asked to
        // stop no new read is armed and its eventfd write completes the
        // last one.
        if !stopping && !wake_armed {
            let entry = opcode::Read::new(eventfd, shared.wake_buf.0.get().cast::<u8>(), 8)
                .build()
                .user_data(WAKE_TOKEN);
            // SAFETY: the wake buffer lives in `Shared`, which outlives
            // this ring (leaked if this thread panics); only the kernel
            // touches it. A slot was kept free above.
            if unsafe { ring.submission().push(&entry) }.is_ok() {
                wake_armed = true;
                in_kernel += 1;
            }
        }
        if stopping && !more_pending && in_kernel == 0 {
            break;
        }
        match ring.submit_and_wait(usize::from(!more_pending)) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                ) => {}
            Err(e) => {
                tracing::error!(error = %e, "io_uring_enter failed");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        for cqe in ring.completion() {
            in_kernel = in_kernel.saturating_sub(1);
            let user_data = cqe.user_data();
            if user_data == WAKE_TOKEN {
                wake_armed = false;
                continue;
            }
            let res = cqe.result();
            shared.completed.fetch_add(1, Ordering::Relaxed);
            if res < 0 {
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
            // SAFETY: every non-wake CQE carries the address of a live,
            // not yet completed `Completion` (module invariants).
            unsafe { Completion::complete(user_data as *const Completion, res) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn open_tmp(
        size: u64,
        uri_extra: &str,
    ) -> Option<(tempfile::NamedTempFile, UringDevice)> {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(size).unwrap();
        let uri: DiskUri = format!("uring://{}{uri_extra}", f.path().display())
            .parse()
            .unwrap();
        match UringDevice::open(&uri, &OpenOptions::default()).await {
            Ok(d) => Some((f, d)),
            Err(BlockDevError::UringUnavailable(e)) => {
                eprintln!("skipping: io_uring unavailable: {e}");
                None
            }
            Err(e) => panic!("open failed: {e}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn read_write_and_stats() {
        let Some((_f, d)) = open_tmp(1 << 20, "").await else {
            return;
        };
        let data = vec![0x5au8; 8192];
        d.write_at(4096, &data).await.unwrap();
        let mut back = vec![0u8; 8192];
        d.read_at(4096, &mut back).await.unwrap();
        assert_eq!(back, data);
        d.flush().await.unwrap();
        let s = d.stats();
        assert!(s.submitted >= 3, "{s:?}");
        assert_eq!(s.submitted, s.completed);
        assert_eq!(s.errors, 0);
    }

    /// Waits until the device completed one more SQE than `before`.
    async fn one_more_completion(d: &UringDevice, before: UringStats) {
        for _ in 0..500 {
            if d.stats().completed > before.completed {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "the leaked i/o did not complete within 5 s: {:?}",
            d.stats()
        );
    }

    /// Safe code that leaks a submitted I/O future (`mem::forget`) ends
    /// the borrow of its buffer while the kernel still works: the kernel
    /// must never read or write that buffer afterwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leaked_io_future_never_touches_the_callers_buffer() {
        let Some((_f, d)) = open_tmp(1 << 20, "").await else {
            return;
        };
        const LEN: usize = 256 << 10;
        d.write_at(0, &vec![0x55u8; LEN]).await.unwrap();
        let mut cx = Context::from_waker(Waker::noop());

        // Aligned buffers: nothing would need a bounce copy, so the
        // kernel gets the caller's memory unless the device stages it.
        let mut buf = DmaBuf::new(LEN);
        buf.fill(0xaa);
        let before = d.stats();
        let mut read = Box::pin(d.read_at(0, &mut buf));
        assert!(read.as_mut().poll(&mut cx).is_pending(), "read submitted");
        std::mem::forget(read);
        one_more_completion(&d, before).await;
        assert!(
            buf.iter().all(|&b| b == 0xaa),
            "the kernel wrote into a buffer the caller got back"
        );

        let mut data = DmaBuf::new(LEN);
        data.fill(0x11);
        let before = d.stats();
        let mut write = Box::pin(d.write_at(LEN as u64, &data));
        assert!(write.as_mut().poll(&mut cx).is_pending(), "write submitted");
        std::mem::forget(write);
        // The caller reuses its buffer at once.
        data.fill(0x22);
        one_more_completion(&d, before).await;
        let mut back = vec![0u8; LEN];
        d.read_at(LEN as u64, &mut back).await.unwrap();
        assert!(
            back.iter().all(|&b| b == 0x11),
            "the kernel read a buffer after the caller got it back"
        );
    }

    #[tokio::test]
    async fn misaligned_buffers_are_copied() {
        let Some((_f, d)) = open_tmp(1 << 20, "?blk_size=512").await else {
            return;
        };
        // A buffer that starts 1 byte past an aligned address.
        let mut backing = DmaBuf::new(4096 + 1);
        backing[1..].fill(0x42);
        d.write_at(512, &backing[1..1025]).await.unwrap();
        let mut out = DmaBuf::new(1024 + 1);
        d.read_at(512, &mut out[1..]).await.unwrap();
        assert!(out[1..].iter().all(|&b| b == 0x42));
    }

    #[tokio::test]
    async fn zeroing_falls_back_to_writing_zero_buffers() {
        let Some((_f, d)) = open_tmp(4 << 20, "?blk_size=4096").await else {
            return;
        };
        d.write_at(0, &vec![0xaau8; 4 << 20]).await.unwrap();
        d.zero_range_unsupported.store(true, Ordering::Relaxed);
        d.punch_unsupported.store(true, Ordering::Relaxed);
        let before = d.stats().submitted;
        // 2 MiB + 8 KiB: more than one zero buffer.
        d.write_zeroes(4096, (2 << 20) + 8192).await.unwrap();
        d.unmap(3 << 20, 4096).await.unwrap();
        assert!(
            d.stats().submitted - before >= 4,
            "zero buffers were written"
        );
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
    fn progress_classifies_results() {
        let mut r = 0;
        assert_eq!(
            progress("read", 0, 0, 0, 4096, 4096, 4096, &mut r).unwrap(),
            4096
        );
        assert_eq!(
            progress("read", 0, 0, 0, 4096, 4096, 512, &mut r).unwrap(),
            512
        );
        assert_eq!(
            progress("read", 0, 0, 0, 4096, 4096, -libc::EAGAIN, &mut r).unwrap(),
            0
        );
        assert_eq!(r, 1);
        assert!(matches!(
            progress("read", 0, 512, 512, 4096, 3584, 0, &mut r),
            Err(BlockDevError::Short {
                done_bytes: 512,
                ..
            })
        ));
        let e = progress("write", 0, 8192, 0, 4096, 4096, -libc::EIO, &mut r).unwrap_err();
        assert!(
            matches!(
                e,
                BlockDevError::Io {
                    op: "write",
                    offset_bytes: 8192,
                    ..
                }
            ),
            "{e}"
        );
        r = MAX_RETRIES;
        assert!(progress("read", 0, 0, 0, 4096, 4096, -libc::EINTR, &mut r).is_err());
    }
}
