//! Watchers of the embedded store.
//!
//! Every durable change is published once, as a batch of events of one
//! revision, to a bounded in-memory [`History`] and to a broadcast channel,
//! both under the store's state lock. A watcher subscribes under the same
//! lock, so it sees the history up to the subscription and every batch
//! after it, with no gap and no duplicate. A watcher that falls more than
//! the channel's capacity behind catches up from the history, or ends with
//! `Compacted` when the history no longer reaches back far enough.

use std::{
    collections::VecDeque,
    sync::{Arc, Weak},
};

use futures::StreamExt;
use tokio::sync::broadcast;

use super::{mvcc::KeyRange, Shared};
use crate::{StoreError, WatchEvent, WatchStream};

/// One published change.
pub(crate) type Batch = Arc<Vec<WatchEvent>>;

/// The latest events, bounded in count.
#[derive(Debug)]
pub(crate) struct History {
    events: VecDeque<WatchEvent>,
    /// Every event with a revision >= this one is in `events`.
    compact_revision: i64,
    limit: usize,
}

impl History {
    pub fn new(compact_revision: i64, limit: usize) -> Self {
        History {
            events: VecDeque::new(),
            compact_revision,
            limit: limit.max(1),
        }
    }

    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    pub fn push(&mut self, events: &[WatchEvent]) {
        self.events.extend(events.iter().cloned());
        while self.events.len() > self.limit {
            // Drop whole revisions so the invariant on compact_revision
            // holds.
            let Some(oldest) = self.events.front().map(WatchEvent::revision) else {
                break;
            };
            while self.events.front().map(WatchEvent::revision) == Some(oldest) {
                self.events.pop_front();
            }
            self.compact_revision = self.compact_revision.max(oldest + 1);
        }
    }

    /// Drops the events older than `revision`.
    pub fn compact(&mut self, revision: i64) {
        while self.events.front().is_some_and(|e| e.revision() < revision) {
            self.events.pop_front();
        }
        self.compact_revision = self.compact_revision.max(revision);
    }

    /// Events from `start` on within `range`, or `Compacted`.
    pub fn since(&self, start: i64, range: &KeyRange) -> Result<VecDeque<WatchEvent>, StoreError> {
        if start < self.compact_revision {
            return Err(StoreError::Compacted {
                requested: start,
                compact_revision: self.compact_revision,
            });
        }
        Ok(self
            .events
            .iter()
            .filter(|e| e.revision() >= start && range.contains(e.key()))
            .cloned()
            .collect())
    }
}

struct Watcher {
    shared: Weak<Shared>,
    range: KeyRange,
    backlog: VecDeque<WatchEvent>,
    rx: broadcast::Receiver<Batch>,
    /// Lowest revision not delivered yet.
    next_revision: i64,
    done: bool,
}

/// Subscribes a watcher to `range` (see [`crate::Store::watch`]).
pub(crate) fn watch(
    shared: &Arc<Shared>,
    range: KeyRange,
    start_revision: Option<i64>,
) -> WatchStream {
    let subscribed = {
        let state = shared.lock();
        let published = state.published_revision;
        let backlog = match start_revision {
            Some(start) => state.history.since(start, &range),
            None => Ok(VecDeque::new()),
        };
        match (backlog, state.events.as_ref()) {
            (Err(e), _) => Err(e),
            (Ok(_), None) => Err(StoreError::unavailable("the embedded store is closed")),
            (Ok(backlog), Some(tx)) => Ok((
                backlog,
                tx.subscribe(),
                start_revision.unwrap_or(0).max(published + 1),
            )),
        }
    };
    let (backlog, rx, next_revision) = match subscribed {
        Ok(s) => s,
        Err(e) => return futures::stream::once(async move { Err(e) }).boxed(),
    };
    let watcher = Watcher {
        shared: Arc::downgrade(shared),
        range,
        backlog,
        rx,
        next_revision,
        done: false,
    };
    futures::stream::unfold(watcher, |mut w| async move {
        let item = w.next().await?;
        Some((item, w))
    })
    .boxed()
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<WatchEvent, StoreError>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(event) = self.backlog.pop_front() {
                return Some(Ok(event));
            }
            match self.rx.recv().await {
                Ok(batch) => {
                    let Some(revision) = batch.first().map(WatchEvent::revision) else {
                        continue;
                    };
                    if revision < self.next_revision {
                        continue;
                    }
                    self.next_revision = revision + 1;
                    self.backlog.extend(
                        batch
                            .iter()
                            .filter(|e| self.range.contains(e.key()))
                            .cloned(),
                    );
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if let Err(e) = self.catch_up() {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
                Err(broadcast::error::RecvError::Closed) => {
                    self.done = true;
                    return Some(Err(StoreError::unavailable("the embedded store is closed")));
                }
            }
        }
    }

    /// Refills the backlog from the history after falling behind the
    /// channel.
    fn catch_up(&mut self) -> Result<(), StoreError> {
        let shared = self
            .shared
            .upgrade()
            .ok_or_else(|| StoreError::unavailable("the embedded store is closed"))?;
        let state = shared.lock();
        let tx = state
            .events
            .as_ref()
            .ok_or_else(|| StoreError::unavailable("the embedded store is closed"))?;
        self.backlog = state.history.since(self.next_revision, &self.range)?;
        self.rx = tx.subscribe();
        self.next_revision = state.published_revision + 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn del(key: &str, revision: i64) -> WatchEvent {
        WatchEvent::Delete {
            key: key.into(),
            revision,
        }
    }

    #[test]
    fn history_drops_whole_revisions() {
        let mut h = History::new(1, 3);
        h.push(&[del("a", 1), del("b", 1)]);
        h.push(&[del("a", 2)]);
        h.push(&[del("a", 3)]);
        assert_eq!(h.compact_revision(), 2);
        let all = KeyRange::prefix(b"");
        assert!(matches!(
            h.since(1, &all),
            Err(StoreError::Compacted {
                requested: 1,
                compact_revision: 2
            })
        ));
        assert_eq!(h.since(2, &all).map(|e| e.len()).ok(), Some(2));
        h.compact(3);
        assert_eq!(
            h.since(3, &KeyRange::single(b"a")).map(|e| e.len()).ok(),
            Some(1)
        );
    }
}
