//! Per-thread counter slots: each thread that counts I/O owns one slot
//! number (`0..SLOTS`) while it lives, so the counters of that slot have a
//! single writer and are updated with a plain load and store instead of a
//! locked read-modify-write (some 20 cycles each, several per I/O). Threads
//! beyond `SLOTS` share slot [`SHARED`], updated with atomic adds.
//!
//! A slot is taken on a thread's first counted I/O and given back when the
//! thread exits; the taking (`Acquire`) and giving back (`Release`) order
//! the previous owner's last stores before the next owner's first load.

use std::{
    cell::Cell,
    sync::atomic::{AtomicU64, Ordering},
};

/// Slots with one writer each.
pub(crate) const SLOTS: usize = 16;

/// The slot of threads that found no free one (atomic adds).
pub(crate) const SHARED: usize = SLOTS;

/// Not assigned yet.
const UNASSIGNED: u8 = u8::MAX;

/// Bit `i` set: slot `i` is owned by a living thread.
static TAKEN: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's slot (`UNASSIGNED` before its first counted I/O).
    static SLOT: Cell<u8> = const { Cell::new(UNASSIGNED) };
    /// Gives the slot back when the thread exits.
    static OWNER: Owner = const { Owner(Cell::new(UNASSIGNED)) };
}

/// The owned slot of a thread, released on drop (thread exit).
struct Owner(Cell<u8>);

impl Drop for Owner {
    fn drop(&mut self) {
        let s = self.0.get();
        if usize::from(s) < SLOTS {
            // Any I/O counted later in this thread's teardown goes to the
            // shared slot.
            let _ = SLOT.try_with(|c| c.set(SHARED as u8));
            give_back(&TAKEN, usize::from(s));
        }
    }
}

/// This thread's slot: `< SLOTS` when it is the slot's only writer, else
/// [`SHARED`].
#[inline]
pub(crate) fn current() -> usize {
    let s = SLOT.try_with(Cell::get).unwrap_or(SHARED as u8);
    if s == UNASSIGNED {
        assign()
    } else {
        usize::from(s)
    }
}

/// Takes the lowest free slot for this thread, or the shared one.
#[cold]
fn assign() -> usize {
    let slot = match take(&TAKEN) {
        // A thread already tearing down cannot register the release: it
        // gives the slot back at once.
        Some(bit) if OWNER.try_with(|o| o.0.set(bit as u8)).is_err() => {
            give_back(&TAKEN, bit);
            SHARED
        }
        Some(bit) => bit,
        None => SHARED,
    };
    let _ = SLOT.try_with(|c| c.set(slot as u8));
    slot
}

/// Marks the lowest free slot of `table` taken and returns it (`None`
/// when all are).
fn take(table: &AtomicU64) -> Option<usize> {
    let all = (1u64 << SLOTS) - 1;
    let mut taken = table.load(Ordering::Relaxed);
    loop {
        let free = !taken & all;
        if free == 0 {
            return None;
        }
        let bit = free.trailing_zeros() as usize;
        match table.compare_exchange_weak(
            taken,
            taken | (1 << bit),
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => return Some(bit),
            Err(now) => taken = now,
        }
    }
}

/// Marks `slot` of `table` free.
fn give_back(table: &AtomicU64, slot: usize) {
    table.fetch_and(!(1u64 << slot), Ordering::Release);
}

/// Adds `v` to counter `c` of slot `slot`.
#[inline]
pub(crate) fn add(c: &AtomicU64, v: u64, slot: usize) {
    if slot < SLOTS {
        // Only this thread writes this slot.
        c.store(c.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
    } else {
        c.fetch_add(v, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier, Mutex};

    #[test]
    fn slots_are_taken_lowest_first_until_none_is_left() {
        let table = AtomicU64::new(0);
        let got: Vec<_> = (0..SLOTS).map(|_| take(&table).unwrap()).collect();
        assert_eq!(got, (0..SLOTS).collect::<Vec<_>>());
        assert_eq!(take(&table), None);
        give_back(&table, 5);
        give_back(&table, 2);
        assert_eq!(take(&table), Some(2));
        assert_eq!(take(&table), Some(5));
        assert_eq!(take(&table), None);
    }

    #[test]
    fn living_threads_own_distinct_slots_and_free_them_on_exit() {
        let n = 8;
        let ready = Arc::new(Barrier::new(n + 1));
        let done = Arc::new(Barrier::new(n + 1));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..n)
            .map(|_| {
                let (ready, done, seen) = (ready.clone(), done.clone(), seen.clone());
                std::thread::spawn(move || {
                    let s = current();
                    assert_eq!(current(), s, "a thread keeps its slot");
                    seen.lock().unwrap().push(s);
                    ready.wait();
                    done.wait();
                    s
                })
            })
            .collect();
        ready.wait();
        // Threads alive at once never share an owned slot (other tests'
        // threads may hold some: those that found none share SHARED).
        let mut owned: Vec<_> = seen
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|s| *s < SLOTS)
            .collect();
        let count = owned.len();
        owned.sort_unstable();
        owned.dedup();
        assert_eq!(owned.len(), count, "{:?}", seen.lock().unwrap());
        let held = TAKEN.load(Ordering::Relaxed);
        for s in &owned {
            assert!(held & (1 << s) != 0, "slot {s} marked taken");
        }
        done.wait();
        for t in threads {
            t.join().unwrap();
        }
        // Given back on exit: a new thread owns one again (threads of
        // tests running alongside may hold slots for a moment).
        let again = (0..100)
            .map(|_| {
                let s = std::thread::spawn(current).join().unwrap();
                if s == SHARED {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                s
            })
            .find(|s| *s < SLOTS);
        assert!(again.is_some(), "no slot given back");
    }

    #[test]
    fn adds_are_exact_in_owned_and_shared_slots() {
        let c = AtomicU64::new(5);
        add(&c, 7, 0);
        add(&c, 8, SHARED);
        assert_eq!(c.load(Ordering::Relaxed), 20);
        add(&c, u64::MAX, 3);
        assert_eq!(c.load(Ordering::Relaxed), 19, "wraps like fetch_add");
    }
}
