//! Per-resource serialisation of the core's operations.
//!
//! Operations on one volume (or pool, or node) are ordered: each takes that
//! resource's lock for its whole run, engine calls included, since that is
//! what orders them. Operations on different resources never wait for each
//! other, so a slow engine only delays the resources it holds. Waiters are
//! served first come, first served (tokio's mutex is fair).
//!
//! Lock order, to never deadlock: volume, then pool, then node, then the
//! core's placement lock (held only around a placement decision and the
//! store writes that reserve it, never across an engine call). Reconcilers
//! take resource locks with [`ResourceLocks::try_lock`] and skip a busy
//! resource until their next pass.

use std::{collections::HashMap, fmt, sync::Arc};

use parking_lot::Mutex;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// A kind of resource with its own lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Volume,
    Pool,
    Node,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Volume => "volume",
            Resource::Pool => "pool",
            Resource::Node => "node",
        })
    }
}

/// The lock of one resource.
type Slot = Arc<AsyncMutex<()>>;

/// Held while one operation runs on one resource.
pub type ResourceGuard = OwnedMutexGuard<()>;

/// The locks of every resource, made on first use and dropped when no one
/// holds or waits for them.
#[derive(Default)]
pub struct ResourceLocks {
    locks: Mutex<HashMap<(Resource, String), Slot>>,
}

/// Unused entries are dropped whenever the map reaches a multiple of this.
const PRUNE_EVERY: usize = 1024;

impl ResourceLocks {
    fn slot(&self, kind: Resource, id: &str) -> Slot {
        let mut locks = self.locks.lock();
        if locks.len() >= PRUNE_EVERY && locks.len().is_multiple_of(PRUNE_EVERY) {
            locks.retain(|_, m| Arc::strong_count(m) > 1);
        }
        locks
            .entry((kind, id.to_owned()))
            .or_insert_with(|| Arc::new(AsyncMutex::new(())))
            .clone()
    }

    /// Waits for the resource, then holds it until the guard drops.
    pub async fn lock(&self, kind: Resource, id: &str) -> ResourceGuard {
        self.slot(kind, id).lock_owned().await
    }

    /// The resource if no one holds it now.
    pub fn try_lock(&self, kind: Resource, id: &str) -> Option<ResourceGuard> {
        self.slot(kind, id).try_lock_owned().ok()
    }

    /// How many resources have a lock entry (held, awaited or idle).
    pub fn len(&self) -> usize {
        self.locks.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_resource_is_ordered_others_are_not() {
        let locks = Arc::new(ResourceLocks::default());
        let a = locks.lock(Resource::Volume, "a").await;
        assert!(locks.try_lock(Resource::Volume, "a").is_none());
        // Another volume, and a pool of the same name, are free.
        let b = locks.try_lock(Resource::Volume, "b");
        assert!(b.is_some());
        assert!(locks.try_lock(Resource::Pool, "a").is_some());
        // Waiters on "a" run in arrival order once it is released.
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for i in 0..3 {
            let (locks, order) = (locks.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let _g = locks.lock(Resource::Volume, "a").await;
                order.lock().push(i);
            }));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(a);
        for w in waiters {
            w.await.expect("waiter");
        }
        assert_eq!(*order.lock(), vec![0, 1, 2]);
    }

    #[tokio::test]
    async fn idle_entries_are_pruned() {
        let locks = ResourceLocks::default();
        let held = locks.lock(Resource::Volume, "kept").await;
        for i in 0..(2 * PRUNE_EVERY) {
            drop(locks.lock(Resource::Volume, &i.to_string()).await);
        }
        assert!(locks.len() <= PRUNE_EVERY + 1, "{} entries", locks.len());
        assert!(locks.try_lock(Resource::Volume, "kept").is_none());
        drop(held);
    }
}
