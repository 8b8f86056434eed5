//! [`LeaseLock`]: leader election with a lease.
//!
//! The lock is a key (by convention `keys::StoreKeys::lease_lock(name)`)
//! created, only if absent, by a transaction that attaches it to a lease of
//! the holder and records the holder's name as its value. A background
//! task keeps the lease alive every third of its TTL and watches the key.
//! The holder counts the lock as lost, at once, when
//!
//! - the store says the lease is gone (revoked or expired),
//! - the key is deleted or taken over by another lease,
//! - or no keep-alive has succeeded for a whole TTL, counted from when the
//!   last successful one was sent, which is never later than the store's
//!   own expiry: a partitioned holder stops no later than the store lets a
//!   contender in.
//!
//! A contender waits by watching the key until it is deleted, then tries
//! again. [`LeaseLock::revision`] (the key's create revision) increases
//! with every new holder and can fence writes.

use std::time::Duration;

use futures::StreamExt;
use tokio::{
    sync::watch,
    task::JoinHandle,
    time::{sleep, sleep_until, timeout, Instant},
};
use tracing::{debug, info, warn};

use crate::{
    Compare, ErrorKind, LeaseId, Op, SharedStore, Store, StoreError, WatchEvent, WatchStream,
};

/// Tuning of a [`LeaseLock`].
#[derive(Debug, Clone)]
pub struct LockOptions {
    /// TTL of the holder's lease, in seconds: how long a holder that
    /// stopped without releasing keeps others out.
    pub ttl_secs: i64,
    /// Pause before trying again after the store failed.
    pub retry_delay: Duration,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            ttl_secs: 10,
            retry_delay: Duration::from_secs(1),
        }
    }
}

/// A held lock. Dropping it stops the keep-alive (the lease then expires
/// after its TTL); [`LeaseLock::release`] frees the lock at once.
pub struct LeaseLock {
    store: SharedStore,
    key: Vec<u8>,
    owner: String,
    lease: LeaseId,
    revision: i64,
    held: watch::Receiver<bool>,
    keeper: JoinHandle<()>,
}

impl std::fmt::Debug for LeaseLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseLock")
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("owner", &self.owner)
            .field("lease", &self.lease)
            .field("revision", &self.revision)
            .field("held", &self.is_held())
            .finish()
    }
}

enum Attempt {
    Acquired(LeaseLock),
    /// Someone holds it; the key was last written at this revision.
    Held {
        mod_revision: i64,
    },
    /// The key vanished between the failed transaction and the read.
    Retry,
}

impl LeaseLock {
    /// Waits until the lock at `key` is acquired for `owner`. Store
    /// failures are retried; only a request the store refuses outright
    /// (e.g. an empty key) is returned as an error.
    pub async fn acquire(
        store: SharedStore,
        key: impl Into<Vec<u8>>,
        owner: impl Into<String>,
        options: LockOptions,
    ) -> Result<LeaseLock, StoreError> {
        let key = key.into();
        let owner = owner.into();
        loop {
            match Self::attempt(&store, &key, &owner, &options).await {
                Ok(Attempt::Acquired(lock)) => return Ok(lock),
                Ok(Attempt::Retry) => {}
                Ok(Attempt::Held { mod_revision }) => {
                    wait_for_delete(&store, &key, mod_revision, &options).await;
                }
                Err(e) if retryable(&e) => {
                    warn!(error = %e, "lease lock: store failed; retrying");
                    sleep(options.retry_delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Acquires the lock if it is free now; `None` when someone holds it.
    pub async fn try_acquire(
        store: SharedStore,
        key: impl Into<Vec<u8>>,
        owner: impl Into<String>,
        options: LockOptions,
    ) -> Result<Option<LeaseLock>, StoreError> {
        let key = key.into();
        let owner = owner.into();
        loop {
            match Self::attempt(&store, &key, &owner, &options).await? {
                Attempt::Acquired(lock) => return Ok(Some(lock)),
                Attempt::Held { .. } => return Ok(None),
                Attempt::Retry => {}
            }
        }
    }

    async fn attempt(
        store: &SharedStore,
        key: &[u8],
        owner: &str,
        options: &LockOptions,
    ) -> Result<Attempt, StoreError> {
        let granted_at = Instant::now();
        let lease = store.lease_grant(options.ttl_secs).await?;
        let txn = store
            .txn(
                vec![Compare::absent(key)],
                vec![Op::put_with_lease(key, owner, lease)],
                Vec::new(),
            )
            .await;
        match txn {
            Ok(result) if result.succeeded => {
                info!(owner, lease = %lease, revision = result.revision, "lease lock acquired");
                let (held_tx, held) = watch::channel(true);
                let keeper = Keeper {
                    store: store.clone(),
                    key: key.to_vec(),
                    lease,
                    ttl: Duration::from_secs(options.ttl_secs.max(1) as u64),
                    revision: result.revision,
                    last_renewed: granted_at,
                    held: held_tx,
                };
                Ok(Attempt::Acquired(LeaseLock {
                    store: store.clone(),
                    key: key.to_vec(),
                    owner: owner.to_string(),
                    lease,
                    revision: result.revision,
                    held,
                    keeper: tokio::spawn(keeper.run()),
                }))
            }
            other => {
                if let Err(e) = store.lease_revoke(lease).await {
                    debug!(error = %e, lease = %lease, "lease lock: unused lease not revoked");
                }
                other?;
                Ok(match store.get(key).await? {
                    Some(kv) => Attempt::Held {
                        mod_revision: kv.mod_revision,
                    },
                    None => Attempt::Retry,
                })
            }
        }
    }

    /// Whether the lock is still held (false from the moment the holder
    /// knows it may have lost it).
    pub fn is_held(&self) -> bool {
        *self.held.borrow()
    }

    /// Resolves when the lock is lost (at once if it already is).
    pub async fn lost(&self) {
        let mut held = self.held.clone();
        // An error means the keeper is gone: lost as well.
        let _ = held.wait_for(|h| !*h).await;
    }

    /// The lease the key is attached to.
    pub fn lease(&self) -> LeaseId {
        self.lease
    }

    /// The create revision of the key: larger for every later holder.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Gives the lock up now: stops the keep-alive and revokes the lease,
    /// which deletes the key.
    pub async fn release(self) -> Result<(), StoreError> {
        self.keeper.abort();
        match self.store.lease_revoke(self.lease).await {
            Ok(()) | Err(StoreError::LeaseNotFound { .. }) => {
                info!(owner = %self.owner, "lease lock released");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The owner recorded in the lock at `key`, if it is held.
    pub async fn current_owner(
        store: &dyn Store,
        key: &[u8],
    ) -> Result<Option<String>, StoreError> {
        Ok(store
            .get(key)
            .await?
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
    }
}

impl Drop for LeaseLock {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

fn retryable(e: &StoreError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Unavailable | ErrorKind::LeaseNotFound | ErrorKind::Compacted
    )
}

/// Returns once the key written at `mod_revision` is deleted, the watch
/// fails, or a TTL went by (then the caller simply tries again).
async fn wait_for_delete(
    store: &SharedStore,
    key: &[u8],
    mod_revision: i64,
    options: &LockOptions,
) {
    let patience = Duration::from_secs(options.ttl_secs.max(1) as u64);
    let waited = timeout(patience, async {
        let mut events = match store.watch(key, Some(mod_revision.saturating_add(1))).await {
            Ok(events) => events,
            Err(e) => {
                debug!(error = %e, "lease lock: cannot watch the key");
                sleep(options.retry_delay).await;
                return;
            }
        };
        while let Some(event) = events.next().await {
            match event {
                Ok(WatchEvent::Delete { key: deleted, .. }) if deleted == key => return,
                Ok(_) => {}
                Err(e) => {
                    debug!(error = %e, "lease lock: watch of the key ended");
                    return;
                }
            }
        }
    })
    .await;
    if waited.is_err() {
        debug!("lease lock: no change within a TTL; checking again");
    }
}

/// The holder's background task.
struct Keeper {
    store: SharedStore,
    key: Vec<u8>,
    lease: LeaseId,
    ttl: Duration,
    revision: i64,
    /// When the last successful keep-alive (or the grant) was sent.
    last_renewed: Instant,
    held: watch::Sender<bool>,
}

impl Keeper {
    async fn run(mut self) {
        let reason = self.keep().await;
        warn!(lease = %self.lease, reason, "lease lock lost");
        self.held.send_replace(false);
    }

    /// Runs until the lock is lost; returns why.
    async fn keep(&mut self) -> &'static str {
        let interval = (self.ttl / 3).max(Duration::from_millis(100));
        let mut events = self.watch().await;
        let mut next_renewal = Instant::now() + interval;
        loop {
            let event = async {
                match events.as_mut() {
                    Some(events) => events.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep_until(next_renewal) => {
                    if let Some(reason) = self.renew().await {
                        return reason;
                    }
                    if events.is_none() {
                        // Without a watch, check the key by reading it.
                        match self.store.get(&self.key).await {
                            Ok(Some(kv)) if kv.lease == Some(self.lease) => {
                                events = self.watch().await;
                            }
                            Ok(_) => return "the lock key was deleted or taken over",
                            Err(_) => {}
                        }
                    }
                    let deadline = self.last_renewed + self.ttl;
                    next_renewal = (Instant::now() + interval).min(deadline);
                }
                event = event => match event {
                    Some(Ok(WatchEvent::Delete { key, .. })) if key == self.key => {
                        return "the lock key was deleted";
                    }
                    Some(Ok(WatchEvent::Put(kv))) if kv.key == self.key && kv.lease != Some(self.lease) => {
                        return "the lock key was taken over";
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => events = None,
                }
            }
        }
    }

    async fn watch(&self) -> Option<WatchStream> {
        self.store
            .watch(&self.key, Some(self.revision.saturating_add(1)))
            .await
            .ok()
    }

    /// One keep-alive; `Some(reason)` when the lock is lost.
    async fn renew(&mut self) -> Option<&'static str> {
        let sent = Instant::now();
        let deadline = self.last_renewed + self.ttl;
        let left = deadline.saturating_duration_since(sent);
        match timeout(left, self.store.lease_keep_alive(self.lease)).await {
            Ok(Ok(_)) => {
                self.last_renewed = sent;
                None
            }
            Ok(Err(StoreError::LeaseNotFound { .. })) => Some("the lease expired or was revoked"),
            Ok(Err(e)) => {
                debug!(error = %e, "lease lock: keep-alive failed");
                (Instant::now() >= deadline).then_some("no keep-alive succeeded within the TTL")
            }
            Err(_) => Some("no keep-alive succeeded within the TTL"),
        }
    }
}
