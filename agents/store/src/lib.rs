//! The control plane's key-value store.
//!
//! One trait, [`Store`], with two implementations:
//!
//! - [`EtcdStore`]: a client of the etcd v3 gRPC API (the subset in
//!   `engine/api/proto/etcd`), for clusters backed by a real etcd;
//! - [`EmbeddedStore`]: an in-process store for a single machine, with
//!   etcd's revision model, persisted to an append-only checksummed log and
//!   snapshots in a directory. [`serve_embedded`] serves it over the same
//!   etcd API (the `mayastor-store` binary), so several processes on one
//!   machine can share it through [`EtcdStore`].
//!
//! On top of the trait: [`LeaseLock`] (leader election with a lease),
//! [`keys`] (the key layout of the control plane) and [`StoreArgs`] (the
//! store flags of every agent).
//!
//! Semantics shared by every implementation (one test suite checks them
//! against all of them, `tests/suite.rs`):
//!
//! - every change bumps one global revision; a transaction is one change;
//!   a write is acknowledged only once it is durable;
//! - listings are sorted by key; watches deliver events in revision order
//!   and can replay history from a start revision, unless that revision has
//!   been compacted ([`ErrorKind::Compacted`]);
//! - keys attached to a lease disappear when the lease expires or is
//!   revoked.
//!
//! Dependency rule: this crate depends on the wire contract crate
//! (`io-engine-api`) for the etcd messages and on nothing else of the
//! project.

#![forbid(unsafe_code)]

mod args;
mod error;
mod types;

pub mod daemon;
pub mod embedded;
pub mod etcd;
pub mod keys;
pub mod lock;
pub mod server;

use async_trait::async_trait;

pub use args::StoreArgs;
pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use error::{ErrorKind, StoreError};
pub use etcd::EtcdStore;
pub use lock::{LeaseLock, LockOptions};
pub use server::serve_embedded;
pub use types::{
    Compare, CompareOp, CompareTarget, Expect, KeyValue, LeaseId, Listing, Op, TxnResult,
    WatchEvent, WatchStream,
};

/// Short for results of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A store shared between tasks.
pub type SharedStore = std::sync::Arc<dyn Store>;

/// A key-value store with etcd's model: revisions, prefix listings,
/// watches, leases and compare-and-swap transactions.
///
/// Keys are non-empty byte strings; a prefix selects every key that starts
/// with it (an empty prefix selects every key). The trait is object safe:
/// hold it as [`SharedStore`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The key, if it exists.
    async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>>;

    /// Writes the key (attached to `lease` when given) and returns the
    /// revision of the write.
    async fn put(&self, key: &[u8], value: Vec<u8>, lease: Option<LeaseId>) -> Result<i64>;

    /// Deletes the key; `true` when it existed.
    async fn delete(&self, key: &[u8]) -> Result<bool>;

    /// Deletes every key with the prefix; returns how many there were.
    async fn delete_prefix(&self, prefix: &[u8]) -> Result<u64>;

    /// Every key with the prefix, sorted by key, and the revision they were
    /// read at.
    async fn list_with_revision(&self, prefix: &[u8]) -> Result<Listing>;

    /// Every key with the prefix, sorted by key.
    async fn list(&self, prefix: &[u8]) -> Result<Vec<KeyValue>> {
        Ok(self.list_with_revision(prefix).await?.kvs)
    }

    /// Changes to keys with the prefix, in revision order: from
    /// `start_revision` (inclusive) when given, else from now on. A start
    /// revision that has been compacted ends the stream with
    /// [`StoreError::Compacted`] as its first item.
    async fn watch(&self, prefix: &[u8], start_revision: Option<i64>) -> Result<WatchStream>;

    /// If every compare holds, applies `on_success`, else `on_failure`,
    /// atomically at one revision. One key may be written only once per
    /// branch.
    async fn txn(
        &self,
        compares: Vec<Compare>,
        on_success: Vec<Op>,
        on_failure: Vec<Op>,
    ) -> Result<TxnResult>;

    /// Writes `new` (or deletes the key when `None`) if the key is as
    /// `expected`; `true` when it did.
    async fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Expect,
        new: Option<Vec<u8>>,
    ) -> Result<bool> {
        let op = match new {
            Some(value) => Op::Put {
                key: key.to_vec(),
                value,
                lease: None,
            },
            None => Op::delete(key),
        };
        let result = self
            .txn(vec![expected.to_compare(key)], vec![op], Vec::new())
            .await?;
        Ok(result.succeeded)
    }

    /// Grants a lease that lives `ttl_secs` seconds unless kept alive.
    /// Stores may raise a TTL to their minimum (etcd: about 1-2 s).
    async fn lease_grant(&self, ttl_secs: i64) -> Result<LeaseId>;

    /// Restarts the lease's full TTL and returns it, in seconds;
    /// [`StoreError::LeaseNotFound`] when it has expired or never existed.
    async fn lease_keep_alive(&self, id: LeaseId) -> Result<i64>;

    /// Seconds the lease has left, `None` when it does not exist.
    async fn lease_time_to_live(&self, id: LeaseId) -> Result<Option<i64>>;

    /// Ends the lease now and deletes its keys;
    /// [`StoreError::LeaseNotFound`] when it does not exist.
    async fn lease_revoke(&self, id: LeaseId) -> Result<()>;

    /// Drops the history of changes older than `revision` (watches can no
    /// longer start before it). The current state is kept.
    async fn compact(&self, revision: i64) -> Result<()>;

    /// The version of the store server: etcd's own, or the build version of
    /// the embedded store (also when served by `mayastor-store`).
    async fn server_version(&self) -> Result<String>;
}
