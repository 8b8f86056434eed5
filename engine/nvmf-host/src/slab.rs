//! Command-identifier slab of one queue.
//!
//! Purpose: a fixed table of `depth` slots, one per command identifier
//! (CID = slot index). A submitter takes a free slot ([`Slab::acquire`]),
//! the connection's reader task delivers data and the completion into it
//! by CID, and the submitter waits on it ([`SlotGuard::wait`]).
//!
//! Invariants:
//! - at most `depth` commands are outstanding; a CID is handed out again
//!   only after the controller completed the previous command with that
//!   CID (or the connection died), so a late completion can never be
//!   delivered to the wrong command;
//! - a submitter that gives up (its future is dropped, e.g. on a timeout)
//!   leaves the slot *abandoned*: data for it is discarded and the reader
//!   frees the slot when the completion arrives;
//! - read data is bounded: a C2HData chunk outside `[0, expected_len)` is
//!   refused (the connection is then dropped);
//! - after [`Slab::close`] every waiter and every later `acquire` fails
//!   with [`SlabError::Lost`].
//!
//! Hot path: no allocation per I/O (the table and each slot's chunk queue
//! are allocated once), no logs, only per-slot locks held for a few
//! instructions and never across `.await`.
//!
//! Threading model: shared (`Arc`) between the submitters of one queue and
//! its reader task.

use std::{
    collections::VecDeque,
    sync::{Mutex, MutexGuard, PoisonError},
};

use bytes::Bytes;
use nvmf::Status;
use tokio::sync::{Notify, Semaphore};

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
    #[error("controller sent data outside the command's buffer")]
    DataOutOfBounds,
    #[error("controller referenced an unknown or idle command id {0}")]
    UnknownCid(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Free,
    Busy,
    Abandoned,
}

#[derive(Debug)]
struct SlotState {
    phase: Phase,
    /// Bytes the controller may send back (C2HData) for this command.
    expected_len: u32,
    /// C2HData bytes received so far.
    received: u32,
    /// Data for R2T-driven writes (shared, not copied, when sent).
    write_data: Option<Bytes>,
    /// C2HData chunks not yet copied out by the submitter.
    chunks: VecDeque<(u32, Bytes)>,
    done: Option<Completion>,
    lost: bool,
}

impl SlotState {
    fn reset(&mut self) {
        self.phase = Phase::Free;
        self.expected_len = 0;
        self.received = 0;
        self.write_data = None;
        self.chunks.clear();
        self.done = None;
        self.lost = false;
    }
}

#[derive(Debug)]
struct Slot {
    state: Mutex<SlotState>,
    notify: Notify,
}

/// The slab of one queue.
#[derive(Debug)]
pub struct Slab {
    slots: Box<[Slot]>,
    free: Mutex<Vec<u16>>,
    permits: Semaphore,
    closed: Mutex<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves plain data
    // behind; keep going rather than poison every later I/O.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Slab {
    /// A slab of `depth` slots (CIDs `0..depth`), `depth` at least 1.
    pub fn new(depth: u16) -> Self {
        let depth = depth.max(1);
        let slots = (0..depth)
            .map(|_| Slot {
                state: Mutex::new(SlotState {
                    phase: Phase::Free,
                    expected_len: 0,
                    received: 0,
                    write_data: None,
                    chunks: VecDeque::with_capacity(4),
                    done: None,
                    lost: false,
                }),
                notify: Notify::new(),
            })
            .collect();
        // Pop from the end: lowest CIDs first.
        let free = (0..depth).rev().collect();
        Self {
            slots,
            free: Mutex::new(free),
            permits: Semaphore::new(usize::from(depth)),
            closed: Mutex::new(false),
        }
    }

    /// Number of free slots.
    #[cfg(test)]
    pub fn free_slots(&self) -> usize {
        lock(&self.free).len()
    }

    /// Takes a free slot, waiting while all are busy.
    ///
    /// `expected_len` bounds the data the controller may return;
    /// `write_data` is kept for R2T requests.
    pub async fn acquire(
        &self,
        expected_len: u32,
        write_data: Option<Bytes>,
    ) -> Result<SlotGuard<'_>, SlabError> {
        let permit = self.permits.acquire().await.map_err(|_| SlabError::Lost)?;
        permit.forget();
        let cid = lock(&self.free)
            .pop()
            .expect("invariant: a permit guarantees a free cid");
        {
            let mut st = lock(&self.slots[usize::from(cid)].state);
            st.phase = Phase::Busy;
            st.expected_len = expected_len;
            st.write_data = write_data;
        }
        let guard = SlotGuard { slab: self, cid };
        if *lock(&self.closed) {
            // Closed between the permit and now: fail without submitting.
            return Err(SlabError::Lost);
        }
        Ok(guard)
    }

    fn release(&self, cid: u16) {
        lock(&self.slots[usize::from(cid)].state).reset();
        lock(&self.free).push(cid);
        self.permits.add_permits(1);
    }

    fn slot(&self, cid: u16) -> Result<&Slot, SlabError> {
        self.slots
            .get(usize::from(cid))
            .ok_or(SlabError::UnknownCid(cid))
    }

    /// Reader: data of a C2HData PDU for `cid` at `offset`.
    pub fn push_data(&self, cid: u16, offset: u32, data: Bytes) -> Result<(), SlabError> {
        let slot = self.slot(cid)?;
        let mut st = lock(&slot.state);
        match st.phase {
            Phase::Free => return Err(SlabError::UnknownCid(cid)),
            Phase::Abandoned => return Ok(()),
            Phase::Busy => {}
        }
        let len = u32::try_from(data.len()).map_err(|_| SlabError::DataOutOfBounds)?;
        match offset.checked_add(len) {
            Some(end) if end <= st.expected_len => {}
            _ => return Err(SlabError::DataOutOfBounds),
        }
        st.received = st.received.saturating_add(len);
        st.chunks.push_back((offset, data));
        drop(st);
        slot.notify.notify_one();
        Ok(())
    }

    /// Reader: the data an R2T asks for (`offset..offset+len` of the
    /// command's write buffer).
    pub fn write_data(&self, cid: u16, offset: u32, len: u32) -> Result<Bytes, SlabError> {
        let slot = self.slot(cid)?;
        let st = lock(&slot.state);
        if st.phase == Phase::Free {
            return Err(SlabError::UnknownCid(cid));
        }
        let data = st.write_data.as_ref().ok_or(SlabError::DataOutOfBounds)?;
        let start = usize::try_from(offset).map_err(|_| SlabError::DataOutOfBounds)?;
        let len = usize::try_from(len).map_err(|_| SlabError::DataOutOfBounds)?;
        match start.checked_add(len) {
            Some(end) if end <= data.len() && len > 0 => Ok(data.slice(start..end)),
            _ => Err(SlabError::DataOutOfBounds),
        }
    }

    /// Reader: the completion of `cid`.
    pub fn complete(&self, cid: u16, completion: Completion) -> Result<(), SlabError> {
        let slot = self.slot(cid)?;
        let mut st = lock(&slot.state);
        match st.phase {
            Phase::Free => Err(SlabError::UnknownCid(cid)),
            Phase::Abandoned => {
                drop(st);
                self.release(cid);
                Ok(())
            }
            Phase::Busy => {
                st.done = Some(completion);
                drop(st);
                slot.notify.notify_one();
                Ok(())
            }
        }
    }

    /// The connection is gone: fail every waiter and every later acquire.
    pub fn close(&self) {
        *lock(&self.closed) = true;
        self.permits.close();
        for slot in self.slots.iter() {
            let mut st = lock(&slot.state);
            if st.phase != Phase::Free {
                st.lost = true;
                drop(st);
                slot.notify.notify_one();
            }
        }
    }
}

/// What the submitter gets from its slot.
#[derive(Debug)]
pub enum Event {
    /// A C2HData chunk at this offset of the command's buffer.
    Data(u32, Bytes),
    /// The command completed.
    Done(Completion),
}

/// A busy slot owned by one submitter; frees (or abandons) it on drop.
#[derive(Debug)]
pub struct SlotGuard<'a> {
    slab: &'a Slab,
    cid: u16,
}

impl SlotGuard<'_> {
    /// The command identifier to put in the SQE.
    pub fn cid(&self) -> u16 {
        self.cid
    }

    /// C2HData bytes received for this command so far.
    pub fn received(&self) -> u32 {
        lock(&self.slab.slots[usize::from(self.cid)].state).received
    }

    /// Waits for the next data chunk or the completion.
    pub async fn next_event(&self) -> Result<Event, SlabError> {
        let slot = &self.slab.slots[usize::from(self.cid)];
        loop {
            {
                let mut st = lock(&slot.state);
                if let Some((off, data)) = st.chunks.pop_front() {
                    return Ok(Event::Data(off, data));
                }
                if let Some(c) = st.done {
                    return Ok(Event::Done(c));
                }
                if st.lost {
                    return Err(SlabError::Lost);
                }
            }
            slot.notify.notified().await;
        }
    }

    /// Waits for the completion, copying C2HData into `buf` (if any).
    pub async fn wait(&self, mut buf: Option<&mut [u8]>) -> Result<Completion, SlabError> {
        loop {
            match self.next_event().await? {
                Event::Done(c) => return Ok(c),
                Event::Data(off, data) => {
                    let Some(buf) = buf.as_deref_mut() else {
                        return Err(SlabError::DataOutOfBounds);
                    };
                    let start = usize::try_from(off).map_err(|_| SlabError::DataOutOfBounds)?;
                    let dst = start
                        .checked_add(data.len())
                        .and_then(|end| buf.get_mut(start..end))
                        .ok_or(SlabError::DataOutOfBounds)?;
                    dst.copy_from_slice(&data);
                }
            }
        }
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let slot = &self.slab.slots[usize::from(self.cid)];
        let mut st = lock(&slot.state);
        if st.done.is_some() || st.lost || *lock(&self.slab.closed) {
            drop(st);
            self.slab.release(self.cid);
        } else {
            // Still owned by the controller: the reader frees it on completion.
            st.phase = Phase::Abandoned;
            st.chunks.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;

    fn ok() -> Completion {
        Completion::default()
    }

    #[tokio::test]
    async fn cids_are_unique_and_recycled() {
        let slab = Slab::new(3);
        let a = slab.acquire(0, None).await.unwrap();
        let b = slab.acquire(0, None).await.unwrap();
        let c = slab.acquire(0, None).await.unwrap();
        let mut cids = vec![a.cid(), b.cid(), c.cid()];
        cids.sort();
        assert_eq!(cids, vec![0, 1, 2]);
        assert_eq!(slab.free_slots(), 0);
        // A fourth waits until one completes.
        let pending = tokio::time::timeout(Duration::from_millis(20), slab.acquire(0, None)).await;
        assert!(pending.is_err());
        slab.complete(b.cid(), ok()).unwrap();
        assert_eq!(b.wait(None).await.unwrap(), ok());
        let freed = b.cid();
        drop(b);
        let d = slab.acquire(0, None).await.unwrap();
        assert_eq!(d.cid(), freed);
    }

    #[tokio::test]
    async fn data_is_copied_and_bounded() {
        let slab = Slab::new(2);
        let g = slab.acquire(8, None).await.unwrap();
        slab.push_data(g.cid(), 4, Bytes::from_static(b"efgh"))
            .unwrap();
        slab.push_data(g.cid(), 0, Bytes::from_static(b"abcd"))
            .unwrap();
        assert_eq!(
            slab.push_data(g.cid(), 6, Bytes::from_static(b"xyz")),
            Err(SlabError::DataOutOfBounds)
        );
        slab.complete(g.cid(), Completion { dw0: 7, ..ok() })
            .unwrap();
        let mut buf = [0u8; 8];
        let c = g.wait(Some(&mut buf)).await.unwrap();
        assert_eq!(c.dw0, 7);
        assert_eq!(&buf, b"abcdefgh");
        // Unknown and idle cids are refused.
        assert_eq!(slab.complete(9, ok()), Err(SlabError::UnknownCid(9)));
        let idle = 1 - g.cid();
        assert_eq!(slab.complete(idle, ok()), Err(SlabError::UnknownCid(idle)));
    }

    #[tokio::test]
    async fn abandoned_slot_is_freed_by_its_completion() {
        let slab = Slab::new(1);
        let g = slab
            .acquire(4, Some(Bytes::from_static(b"wxyz")))
            .await
            .unwrap();
        let cid = g.cid();
        drop(g);
        assert_eq!(slab.free_slots(), 0, "still owned by the controller");
        // R2T for an abandoned write still finds its data.
        assert_eq!(&slab.write_data(cid, 1, 2).unwrap()[..], b"xy");
        assert_eq!(slab.write_data(cid, 3, 2), Err(SlabError::DataOutOfBounds));
        slab.push_data(cid, 0, Bytes::from_static(b"ab")).unwrap();
        slab.complete(cid, ok()).unwrap();
        assert_eq!(slab.free_slots(), 1);
        let g = slab.acquire(0, None).await.unwrap();
        assert_eq!(g.cid(), cid);
    }

    #[tokio::test]
    async fn close_fails_waiters_and_acquirers() {
        let slab = Arc::new(Slab::new(1));
        let g = slab.acquire(0, None).await.unwrap();
        let s2 = slab.clone();
        let waiter = tokio::spawn(async move { s2.acquire(0, None).await.map(|g| g.cid()) });
        tokio::task::yield_now().await;
        slab.close();
        assert_eq!(g.wait(None).await, Err(SlabError::Lost));
        assert_eq!(waiter.await.unwrap(), Err(SlabError::Lost));
        drop(g);
        assert!(slab.acquire(0, None).await.is_err());
    }

    #[tokio::test]
    async fn completion_wakes_a_waiting_submitter() {
        let slab = Arc::new(Slab::new(4));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let s = slab.clone();
            tasks.push(tokio::spawn(async move {
                let g = s.acquire(0, None).await.unwrap();
                let cid = g.cid();
                let s2 = s.clone();
                tokio::spawn(async move {
                    tokio::task::yield_now().await;
                    s2.complete(
                        cid,
                        Completion {
                            dw0: u32::from(cid),
                            ..ok()
                        },
                    )
                    .unwrap();
                });
                let c = g.wait(None).await.unwrap();
                assert_eq!(c.dw0, u32::from(cid));
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(slab.free_slots(), 4);
    }
}
