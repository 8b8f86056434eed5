//! Persisted nexus info: which children are in sync, and whether the nexus
//! was shut down cleanly.
//!
//! Stored by the engine itself under
//! `<prefix>/volume/<volume-uuid>/nexus/<nexus-uuid>/info` as
//! `{"children":[{"healthy":bool,"uuid":"..."}],"clean_shutdown":bool}`
//! (DESIGN.md section 2). Rules (section 3):
//! - a child's fault is persisted before the I/O that faulted it completes;
//! - the last healthy child is never marked unhealthy;
//! - after an unclean shutdown the nexus is recreated from one healthy
//!   child only and the others are rebuilt from it, so a child that missed
//!   writes is never used as a source.

use std::{collections::HashMap, future::Future, pin::Pin};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Default key prefix (cluster `default`, namespace `mayastor`).
pub const DEFAULT_PREFIX: &str =
    "/openebs.io/mayastor/apis/v0/clusters/default/namespaces/mayastor";

/// The key of a nexus's info under `prefix`.
pub fn info_key(prefix: &str, volume: &str, nexus: &Uuid) -> String {
    format!(
        "{}/volume/{volume}/nexus/{nexus}/info",
        prefix.trim_end_matches('/')
    )
}

/// One child in the persisted info.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildInfo {
    pub healthy: bool,
    pub uuid: String,
}

/// The persisted info of one nexus.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NexusInfo {
    pub children: Vec<ChildInfo>,
    pub clean_shutdown: bool,
}

impl NexusInfo {
    /// Whether the child with this uuid is recorded as healthy.
    pub fn is_healthy(&self, uuid: &Uuid) -> bool {
        let text = uuid.to_string();
        self.children.iter().any(|c| c.healthy && c.uuid == text)
    }
}

/// A boxed store future.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Where nexus info is kept (etcd or the embedded store in production).
pub trait InfoStore: Send + Sync {
    /// Reads a key; `None` when absent.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>>;
    /// Writes a key (durable when the future completes).
    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>) -> StoreFuture<'a, ()>;
    /// A short description for logs (endpoint).
    fn describe(&self) -> String;
}

/// An in-memory store: for engines started without a store endpoint in
/// unit tests. Nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: Mutex<HashMap<String, Vec<u8>>>,
    fail: std::sync::atomic::AtomicBool,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every later call fail (store outage drills).
    pub fn set_failing(&self, failing: bool) {
        self.fail
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), String> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            Err("store unavailable (injected)".into())
        } else {
            Ok(())
        }
    }
}

impl InfoStore for MemoryStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            self.check()?;
            Ok(self.map.lock().get(key).cloned())
        })
    }

    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.check()?;
            self.map.lock().insert(key.to_owned(), value);
            Ok(())
        })
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}

/// Reads and parses a nexus's info.
pub async fn load(store: &dyn InfoStore, key: &str) -> Result<Option<NexusInfo>, String> {
    match store.get(key).await? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("nexus info at {key} is not valid: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_shape_is_the_documented_one() {
        let info = NexusInfo {
            children: vec![ChildInfo {
                healthy: true,
                uuid: "a".into(),
            }],
            clean_shutdown: false,
        };
        assert_eq!(
            serde_json::to_string(&info).unwrap(),
            r#"{"children":[{"healthy":true,"uuid":"a"}],"clean_shutdown":false}"#
        );
        let nexus = Uuid::nil();
        assert_eq!(
            info_key("/p/", "vol", &nexus),
            format!("/p/volume/vol/nexus/{nexus}/info")
        );
    }
}
