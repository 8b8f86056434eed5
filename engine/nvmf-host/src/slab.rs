//! Command-identifier slab of one queue.
//!
//! Purpose: a fixed table of `depth` slots, one per command identifier
//! (CID = slot index). A submitter takes a free slot ([`Slab::take`]), the
//! connection task delivers data, R2Ts and the completion into it by CID
//! and wakes the submitter, which collects them ([`Slab::poll_event`]).
//!
//! Invariants:
//! - at most `depth` commands are outstanding (the queue's semaphore hands
//!   out one permit per free slot); a CID is handed out again only after
//!   the controller completed the previous command with that CID (or the
//!   connection died), so a late completion never reaches the wrong
//!   command;
//! - a submitter that gives up (its future is dropped) leaves the slot
//!   *abandoned*: data for it is discarded and the completion frees the
//!   slot. An R2T for an abandoned write cannot be answered (the data was
//!   the submitter's borrowed buffer), so it is an error that ends the
//!   association;
//! - read data is bounded: a C2HData chunk outside `[0, expected_len)` is
//!   refused (the connection is then dropped);
//! - after [`Slab::close`] every waiter fails with [`SlabError::Lost`] and
//!   no slot is handed out.
//!
//! Hot path: no allocation per I/O (the table and each slot's queues are
//! allocated once, the waker is replaced only when it changed), no logs,
//! no locks of its own: the slab is plain data behind its queue's one
//! mutex, which is never held across `.await`.
//!
//! Threading model: owned by one queue's state; used by that queue's
//! submitters and connection task under the queue's mutex.

use std::{
    collections::VecDeque,
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use nvmf::Status;

/// Completion of one command as the submitter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Completion {
    /// Command-specific dword 0.
    pub dw0: u32,
    /// Command-specific dword 1.
    pub dw1: u32,
    /// Status of the command.
    pub status: Status,
}

impl Completion {
    /// Whether the command succeeded.
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }
}

/// Why a slab operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlabError {
    #[error("connection lost")]
    Lost,
    #[error("command timed out")]
    Timeout,
    #[error("controller sent data outside the command's buffer")]
    DataOutOfBounds,
    #[error("controller referenced an unknown or idle command id {0}")]
    UnknownCid(u16),
    #[error("controller asked (R2T) for data of a command the host gave up")]
    AbandonedR2t,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Free,
    Busy,
    Abandoned,
}

/// A controller's request for write data (R2T).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct R2tRequest {
    pub ttag: u16,
    pub offset: u32,
    pub len: u32,
}

#[derive(Debug)]
struct Slot {
    phase: Phase,
    /// Bytes the controller may send back (C2HData) for this command.
    expected_len: u32,
    /// C2HData bytes received so far.
    received: u32,
    /// Watchdog tick at submission.
    tick: u64,
    /// C2HData chunks not yet copied out by the submitter.
    chunks: VecDeque<(u32, Bytes)>,
    /// R2Ts not yet answered by the submitter.
    r2t: VecDeque<R2tRequest>,
    done: Option<Completion>,
    failed: Option<SlabError>,
    waker: Option<Waker>,
}

impl Slot {
    fn new() -> Self {
        Slot {
            phase: Phase::Free,
            expected_len: 0,
            received: 0,
            tick: 0,
            chunks: VecDeque::with_capacity(4),
            r2t: VecDeque::with_capacity(2),
            done: None,
            failed: None,
            waker: None,
        }
    }

    fn reset(&mut self) {
        self.phase = Phase::Free;
        self.expected_len = 0;
        self.received = 0;
        self.chunks.clear();
        self.r2t.clear();
        self.done = None;
        self.failed = None;
        self.waker = None;
    }
}

/// What the submitter gets from its slot.
#[derive(Debug)]
pub enum Event {
    /// A C2HData chunk at this offset of the command's buffer.
    Data(u32, Bytes),
    /// The controller asks for write data.
    R2t(R2tRequest),
    /// The command completed (with the C2HData bytes received).
    Done(Completion, u32),
}

/// The slab of one queue.
#[derive(Debug)]
pub struct Slab {
    slots: Box<[Slot]>,
    free: Vec<u16>,
    closed: bool,
}

impl Slab {
    /// A slab of `depth` slots (CIDs `0..depth`), `depth` at least 1.
    pub fn new(depth: u16) -> Self {
        let depth = depth.max(1);
        Self {
            slots: (0..depth).map(|_| Slot::new()).collect(),
            // Pop from the end: lowest CIDs first.
            free: (0..depth).rev().collect(),
            closed: false,
        }
    }

    /// Number of free slots.
    #[cfg(test)]
    pub fn free_slots(&self) -> usize {
        self.free.len()
    }

    /// Takes a free slot for a command that may receive `expected_len`
    /// bytes, submitted at watchdog tick `tick`. `None` when closed or
    /// full (the caller holds a permit, so full means closed).
    pub fn take(&mut self, expected_len: u32, tick: u64) -> Option<u16> {
        if self.closed {
            return None;
        }
        let cid = self.free.pop()?;
        let s = &mut self.slots[usize::from(cid)];
        s.phase = Phase::Busy;
        s.expected_len = expected_len;
        s.tick = tick;
        Some(cid)
    }

    fn release(&mut self, cid: u16) {
        self.slots[usize::from(cid)].reset();
        self.free.push(cid);
    }

    fn slot(&mut self, cid: u16) -> Result<&mut Slot, SlabError> {
        match self.slots.get_mut(usize::from(cid)) {
            Some(s) if s.phase != Phase::Free => Ok(s),
            _ => Err(SlabError::UnknownCid(cid)),
        }
    }

    /// Connection task: data of a C2HData PDU for `cid` at `offset`.
    /// Returns the waker to wake (after the queue's lock is released).
    pub fn push_data(
        &mut self,
        cid: u16,
        offset: u32,
        data: Bytes,
    ) -> Result<Option<Waker>, SlabError> {
        let s = self.slot(cid)?;
        if s.phase == Phase::Abandoned {
            return Ok(None);
        }
        let len = u32::try_from(data.len()).map_err(|_| SlabError::DataOutOfBounds)?;
        match offset.checked_add(len) {
            Some(end) if end <= s.expected_len => {}
            _ => return Err(SlabError::DataOutOfBounds),
        }
        s.received = s.received.saturating_add(len);
        s.chunks.push_back((offset, data));
        Ok(s.waker.take())
    }

    /// Connection task: an R2T for `cid`.
    pub fn push_r2t(&mut self, cid: u16, r: R2tRequest) -> Result<Option<Waker>, SlabError> {
        let s = self.slot(cid)?;
        if s.phase == Phase::Abandoned {
            return Err(SlabError::AbandonedR2t);
        }
        s.r2t.push_back(r);
        Ok(s.waker.take())
    }

    /// Connection task: the completion of `cid`. Returns the waker to wake
    /// and whether the slot was freed (an abandoned command: the caller
    /// gives its permit back).
    pub fn complete(
        &mut self,
        cid: u16,
        completion: Completion,
    ) -> Result<(Option<Waker>, bool), SlabError> {
        let s = self.slot(cid)?;
        if s.phase == Phase::Abandoned {
            self.release(cid);
            return Ok((None, true));
        }
        s.done = Some(completion);
        Ok((s.waker.take(), false))
    }

    /// Watchdog: fails the busy commands submitted at or before tick
    /// `deadline_tick` with [`SlabError::Timeout`]; returns how many, and
    /// pushes their wakers to `wake`.
    pub fn expire(&mut self, deadline_tick: u64, wake: &mut Vec<Waker>) -> usize {
        let mut n = 0;
        for s in self.slots.iter_mut() {
            if s.phase == Phase::Busy
                && s.done.is_none()
                && s.failed.is_none()
                && s.tick <= deadline_tick
            {
                s.failed = Some(SlabError::Timeout);
                wake.extend(s.waker.take());
                n += 1;
            }
        }
        n
    }

    /// The connection is gone: fail every waiter (their wakers go to
    /// `wake`) and every later `take`.
    pub fn close(&mut self, wake: &mut Vec<Waker>) {
        self.closed = true;
        for s in self.slots.iter_mut() {
            if s.phase == Phase::Busy && s.failed.is_none() {
                s.failed = Some(SlabError::Lost);
                wake.extend(s.waker.take());
            }
        }
    }

    /// Submitter: the next event of `cid`, or `Pending` with the waker
    /// registered.
    pub fn poll_event(&mut self, cid: u16, cx: &mut Context<'_>) -> Poll<Result<Event, SlabError>> {
        let s = &mut self.slots[usize::from(cid)];
        if let Some(r) = s.r2t.pop_front() {
            return Poll::Ready(Ok(Event::R2t(r)));
        }
        if let Some((off, data)) = s.chunks.pop_front() {
            return Poll::Ready(Ok(Event::Data(off, data)));
        }
        if let Some(c) = s.done {
            return Poll::Ready(Ok(Event::Done(c, s.received)));
        }
        if let Some(e) = s.failed {
            return Poll::Ready(Err(e));
        }
        match &mut s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            other => *other = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Submitter is done with `cid` (or gave up): frees the slot when the
    /// controller will not refer to it again, else abandons it. Returns
    /// whether it was freed (the caller gives its permit back).
    pub fn finish(&mut self, cid: u16) -> bool {
        let closed = self.closed;
        let s = &mut self.slots[usize::from(cid)];
        if s.done.is_some() || s.failed.is_some() || closed {
            self.release(cid);
            true
        } else {
            s.phase = Phase::Abandoned;
            s.chunks.clear();
            s.r2t.clear();
            s.waker = None;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        future::poll_fn,
        sync::{Arc, Mutex},
    };

    use super::*;

    fn ok() -> Completion {
        Completion::default()
    }

    fn noop_cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    #[test]
    fn cids_are_unique_and_recycled() {
        let mut slab = Slab::new(3);
        let mut cids: Vec<u16> = (0..3).map(|_| slab.take(0, 0).unwrap()).collect();
        cids.sort();
        assert_eq!(cids, vec![0, 1, 2]);
        assert_eq!(slab.take(0, 0), None);
        slab.complete(1, ok()).unwrap();
        let mut cx = noop_cx();
        assert!(matches!(
            slab.poll_event(1, &mut cx),
            Poll::Ready(Ok(Event::Done(_, 0)))
        ));
        assert!(slab.finish(1));
        assert_eq!(slab.take(0, 0), Some(1));
    }

    #[test]
    fn data_is_bounded_and_in_order() {
        let mut slab = Slab::new(2);
        let cid = slab.take(8, 0).unwrap();
        slab.push_data(cid, 4, Bytes::from_static(b"efgh")).unwrap();
        assert!(matches!(
            slab.push_data(cid, 6, Bytes::from_static(b"xyz")),
            Err(SlabError::DataOutOfBounds)
        ));
        slab.complete(cid, Completion { dw0: 7, ..ok() }).unwrap();
        let mut cx = noop_cx();
        match slab.poll_event(cid, &mut cx) {
            Poll::Ready(Ok(Event::Data(4, d))) => assert_eq!(&d[..], b"efgh"),
            other => panic!("{other:?}"),
        }
        match slab.poll_event(cid, &mut cx) {
            Poll::Ready(Ok(Event::Done(c, 4))) => assert_eq!(c.dw0, 7),
            other => panic!("{other:?}"),
        }
        // Unknown and idle cids are refused.
        assert!(matches!(
            slab.complete(9, ok()),
            Err(SlabError::UnknownCid(9))
        ));
        let idle = 1 - cid;
        assert!(matches!(
            slab.complete(idle, ok()),
            Err(SlabError::UnknownCid(c)) if c == idle
        ));
    }

    #[test]
    fn abandoned_slot_is_freed_by_its_completion() {
        let mut slab = Slab::new(1);
        let cid = slab.take(4, 0).unwrap();
        assert!(!slab.finish(cid), "still owned by the controller");
        assert_eq!(slab.free_slots(), 0);
        // Data for it is dropped; an R2T cannot be answered.
        assert!(slab
            .push_data(cid, 0, Bytes::from_static(b"ab"))
            .unwrap()
            .is_none());
        assert!(matches!(
            slab.push_r2t(
                cid,
                R2tRequest {
                    ttag: 1,
                    offset: 0,
                    len: 4
                }
            ),
            Err(SlabError::AbandonedR2t)
        ));
        assert!(slab.complete(cid, ok()).unwrap().1);
        assert_eq!(slab.free_slots(), 1);
    }

    #[test]
    fn close_and_expire_fail_waiters() {
        let mut slab = Slab::new(3);
        let a = slab.take(0, 1).unwrap();
        let b = slab.take(0, 5).unwrap();
        let mut wake = Vec::new();
        assert_eq!(slab.expire(2, &mut wake), 1);
        let mut cx = noop_cx();
        assert!(matches!(
            slab.poll_event(a, &mut cx),
            Poll::Ready(Err(SlabError::Timeout))
        ));
        assert!(slab.poll_event(b, &mut cx).is_pending());
        slab.close(&mut wake);
        assert!(matches!(
            slab.poll_event(b, &mut cx),
            Poll::Ready(Err(SlabError::Lost))
        ));
        assert_eq!(slab.take(0, 0), None);
        assert!(slab.finish(a) && slab.finish(b));
    }

    #[tokio::test]
    async fn completion_wakes_a_waiting_submitter() {
        let slab = Arc::new(Mutex::new(Slab::new(4)));
        let cid = slab.lock().unwrap().take(0, 0).unwrap();
        let s2 = slab.clone();
        let waiter = tokio::spawn(async move {
            poll_fn(|cx| s2.lock().unwrap().poll_event(cid, cx))
                .await
                .map(|e| matches!(e, Event::Done(..)))
        });
        tokio::task::yield_now().await;
        let (w, freed) = slab.lock().unwrap().complete(cid, ok()).unwrap();
        assert!(!freed);
        if let Some(w) = w {
            w.wake();
        }
        assert_eq!(waiter.await.unwrap(), Ok(true));
    }
}
