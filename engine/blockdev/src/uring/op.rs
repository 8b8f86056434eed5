//! One request in flight ([`Op`]): a future that owns its completion state
//! and the staging buffer its SQE points at, and whose `Drop` does not
//! return while the kernel may still use either (see the invariants in
//! [`super`]).

use std::{
    future::Future,
    marker::PhantomPinned,
    os::fd::AsRawFd,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use io_uring::{opcode, squeue, types};
use parking_lot::{Condvar, Mutex};

use super::ring::*;
use super::*;
use crate::DmaBuf;

/// Completion state of one request, stored inside its [`Op`].
pub(super) struct Completion {
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
    pub(super) unsafe fn complete(ptr: *const Completion, result: i32) {
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
pub(super) struct Op<'a> {
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
    pub(super) fn new(shared: &'a Shared, entry: squeue::Entry, staged: Option<DmaBuf>) -> Self {
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
    pub(super) fn read(shared: &'a Shared, len: usize, offset: u64) -> Self {
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
    pub(super) fn write(shared: &'a Shared, data: &[u8], offset: u64) -> Self {
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
