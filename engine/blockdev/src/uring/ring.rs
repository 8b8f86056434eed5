//! The ring thread and the state it shares with the device handle and the
//! I/O futures: the queue of SQEs waiting for the ring, the eventfd that
//! wakes it, the staging-buffer pool and the counters. The thread moves
//! queued SQEs into the ring, waits, and completes each request; on exit
//! it fails what is still queued (see the invariants in [`super`]).

use std::{
    cell::UnsafeCell,
    collections::VecDeque,
    fs::File,
    os::fd::{AsRawFd, OwnedFd},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use io_uring::{opcode, squeue, types, IoUring};
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use super::op::*;
use super::*;
use crate::DmaBuf;

/// Requests waiting for the ring thread, and its state flags.
pub(super) struct Queue {
    pub(super) pending: VecDeque<squeue::Entry>,
    /// The ring thread found the queue empty and is about to sleep: the
    /// next submitter must write the eventfd (and clears the flag).
    pub(super) ring_sleeping: bool,
    /// The device is being dropped.
    pub(super) stop: bool,
    /// The ring thread has exited: nothing can be submitted any more.
    pub(super) closed: bool,
}

/// The eventfd read target; written only by the kernel, never read.
pub(super) struct WakeBuf(pub(super) UnsafeCell<u64>);

// SAFETY: Rust code never reads or writes through the cell; only the
// kernel writes it (the eventfd read), so there is no data race to guard.
unsafe impl Sync for WakeBuf {}

/// State shared by the device handle, its I/O futures and its ring thread.
pub(super) struct Shared {
    pub(super) queue: Mutex<Queue>,
    pub(super) eventfd: OwnedFd,
    pub(super) wake_buf: WakeBuf,
    pub(super) permits: Semaphore,
    pub(super) file: File,
    pub(super) submitted: AtomicU64,
    pub(super) completed: AtomicU64,
    pub(super) errors: AtomicU64,
    /// Free staging buffers (sizes are powers of two, 4 KiB..=1 MiB).
    pub(super) stage_pool: Mutex<Vec<DmaBuf>>,
}

impl Shared {
    /// A staging buffer of at least `len` (<= [`STAGE_MAX_BYTES`]) bytes:
    /// from the pool, or freshly allocated (warm-up, or more transfers in
    /// flight than the pool keeps).
    pub(super) fn stage(&self, len: usize) -> DmaBuf {
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
    pub(super) fn unstage(&self, buf: DmaBuf) {
        let mut pool = self.stage_pool.lock();
        if pool.len() < STAGE_POOL_MAX {
            pool.push(buf);
        }
    }

    /// Queues `entry` for the ring thread; `false` when it has exited.
    pub(super) fn push(&self, entry: squeue::Entry) -> bool {
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
    pub(super) fn unqueue(&self, user_data: u64) -> bool {
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
    pub(super) fn kick(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to an eventfd we own.
        // It cannot block in practice (the counter would have to reach
        // u64::MAX - 1) and a failure only costs a wakeup that a later
        // kick or completion provides.
        let _ = unsafe { libc::write(self.eventfd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

/// On ring thread exit: refuse new requests, fail the queued ones, and if
/// the thread panicked, leak `Shared` (the kernel may still write the wake
/// buffer).
pub(super) struct RingExit {
    pub(super) shared: Arc<Shared>,
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
pub(super) fn ring_main(mut ring: IoUring, shared: Arc<Shared>) {
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
