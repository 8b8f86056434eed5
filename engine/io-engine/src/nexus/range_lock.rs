//! Byte-range locks between application writes and rebuild copies.
//!
//! While a child is rebuilt, a segment being copied must not change under
//! the copy: otherwise the copy could read the old data from the source,
//! the application's write could land on both children, and the copy could
//! then overwrite the destination with the old data. Writes therefore take
//! a shared lock on their range and the rebuild an exclusive lock on its
//! segment.
//!
//! Fairness: requests are granted in arrival order among those that
//! conflict (a shared request never overtakes an earlier exclusive one that
//! overlaps it), so a rebuild is not starved by a stream of writes.
//!
//! Cancellation: dropping a waiting or granted lock releases it.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::Notify;

#[derive(Debug)]
struct Entry {
    id: u64,
    start: u64,
    end: u64,
    exclusive: bool,
    granted: bool,
}

/// A table of byte-range locks.
#[derive(Debug, Default)]
pub struct RangeLocks {
    entries: Mutex<Vec<Entry>>,
    next_id: AtomicU64,
    notify: Notify,
}

/// A held (or, while the lock future runs, requested) range.
#[derive(Debug)]
pub struct RangeGuard<'a> {
    locks: &'a RangeLocks,
    id: u64,
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        self.locks.entries.lock().retain(|e| e.id != self.id);
        self.locks.notify.notify_waiters();
    }
}

impl RangeLocks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Locks `[offset, offset + len)` shared (writes).
    pub async fn shared(&self, offset: u64, len: u64) -> RangeGuard<'_> {
        self.lock(offset, len, false).await
    }

    /// Locks `[offset, offset + len)` exclusively (rebuild copies).
    pub async fn exclusive(&self, offset: u64, len: u64) -> RangeGuard<'_> {
        self.lock(offset, len, true).await
    }

    /// Number of entries (held or waiting).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn lock(&self, offset: u64, len: u64, exclusive: bool) -> RangeGuard<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let end = offset.saturating_add(len.max(1));
        self.entries.lock().push(Entry {
            id,
            start: offset,
            end,
            exclusive,
            granted: false,
        });
        // From here on the guard removes the entry, whatever happens.
        let guard = RangeGuard { locks: self, id };
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.try_grant(id) {
                return guard;
            }
            notified.await;
        }
    }

    fn try_grant(&self, id: u64) -> bool {
        let mut entries = self.entries.lock();
        let Some(me) = entries.iter().position(|e| e.id == id) else {
            return false;
        };
        let (start, end, exclusive) = (entries[me].start, entries[me].end, entries[me].exclusive);
        let blocked = entries.iter().any(|e| {
            e.id != id
                && e.start < end
                && start < e.end
                && (e.exclusive || exclusive)
                && (e.granted || e.id < id)
        });
        if !blocked {
            entries[me].granted = true;
        }
        !blocked
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;

    #[tokio::test]
    async fn shared_locks_coexist_and_exclusive_waits() {
        let locks = Arc::new(RangeLocks::new());
        let a = locks.shared(0, 4096).await;
        let _b = locks.shared(0, 4096).await;
        let l2 = locks.clone();
        let ex = tokio::spawn(async move {
            let _g = l2.exclusive(2048, 4096).await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!ex.is_finished());
        // Disjoint ranges are not blocked.
        drop(locks.exclusive(8192, 4096).await);
        drop(a);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!ex.is_finished());
        drop(_b);
        tokio::time::timeout(Duration::from_secs(1), ex)
            .await
            .unwrap()
            .unwrap();
        assert!(locks.is_empty());
    }

    #[tokio::test]
    async fn a_waiting_exclusive_lock_is_not_overtaken() {
        let locks = Arc::new(RangeLocks::new());
        let first = locks.shared(0, 4096).await;
        let l2 = locks.clone();
        let ex = tokio::spawn(async move {
            let _g = l2.exclusive(0, 4096).await;
            tokio::time::sleep(Duration::from_millis(30)).await;
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let l3 = locks.clone();
        let later = tokio::spawn(async move {
            let _g = l3.shared(0, 512).await;
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            !later.is_finished(),
            "a later shared lock overtook the exclusive one"
        );
        drop(first);
        ex.await.unwrap();
        later.await.unwrap();
    }

    #[tokio::test]
    async fn a_dropped_waiter_releases_its_place() {
        let locks = RangeLocks::new();
        let held = locks.exclusive(0, 4096).await;
        let waiting = tokio::time::timeout(Duration::from_millis(10), locks.shared(0, 4096)).await;
        assert!(waiting.is_err());
        assert_eq!(locks.len(), 1);
        drop(held);
        drop(locks.shared(0, 4096).await);
    }
}
