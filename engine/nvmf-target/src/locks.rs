//! Lock access for the target's tables that never mistakes a poisoned lock
//! for an empty table.
//!
//! A `std::sync` lock is poisoned when a thread panicked while holding it.
//! Reading that as "absent" (`lock().ok()?`, `unwrap_or_default()`) turned
//! one panic into wrong answers everywhere after it: a live subsystem
//! looked unknown at Connect, `remove_subsystem` said "not found", the
//! discovery log came back empty, controller ids looked exhausted.
//!
//! The tables locked through these helpers (subsystem map, controller map,
//! I/O queue set, allow-list, controller-ID allocators, the listener slot)
//! are only ever changed by one self-contained operation per critical
//! section (an insert, a remove, a replace, an allocation step), so a
//! panic elsewhere cannot leave them half-updated: the data is taken back
//! from the poison error and used, and the event is counted in the log.
//! The reservation state is a multi-step state machine and is *not* read
//! through here: a poisoned reservation lock fails the command with an
//! internal error (fail closed) in `io`.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

fn poisoned<G>(what: &'static str, e: PoisonError<G>) -> G {
    tracing::warn!(
        lock = what,
        "nvmf target: lock poisoned by an earlier panic; data kept"
    );
    e.into_inner()
}

/// Locks `m`, recovering the data of a poisoned lock.
pub(crate) fn lock<'a, T>(what: &'static str, m: &'a Mutex<T>) -> MutexGuard<'a, T> {
    m.lock().unwrap_or_else(|e| poisoned(what, e))
}

/// Read-locks `l`, recovering the data of a poisoned lock.
pub(crate) fn read<'a, T>(what: &'static str, l: &'a RwLock<T>) -> RwLockReadGuard<'a, T> {
    l.read().unwrap_or_else(|e| poisoned(what, e))
}

/// Write-locks `l`, recovering the data of a poisoned lock.
pub(crate) fn write<'a, T>(what: &'static str, l: &'a RwLock<T>) -> RwLockWriteGuard<'a, T> {
    l.write().unwrap_or_else(|e| poisoned(what, e))
}
