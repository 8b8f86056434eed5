//! Versions of the control plane and the guided upgrade's durable record.
//!
//! The record (`UpgradeStatus`, one JSON document at
//! `<prefix>/UpgradeStatus/upgrade`) is written by the upgrade tool through
//! the REST API after every step; the core agent only keeps it. It is read
//! from the store on every call (no cached copy), so a record written
//! before a core agent restart is seen at once by the new one.

use openapi::models::{UpgradeStatus, Versions};
use openapi::RestError;
use store::keys::Kind;

use crate::specs::SpecStore;
use crate::CoreError;

/// Id of the one upgrade record.
const RECORD_ID: &str = "upgrade";

fn key(specs: &SpecStore) -> String {
    specs.keys().key(Kind::UpgradeStatus, RECORD_ID)
}

fn store_err(e: impl std::fmt::Display) -> CoreError {
    CoreError::Store(e.to_string())
}

/// The core agent's and the store's versions (`rest` is filled in by the
/// REST server that answers).
pub async fn versions(specs: &SpecStore) -> Result<Versions, CoreError> {
    let store = specs.store().server_version().await.map_err(store_err)?;
    Ok(Versions {
        rest: String::new(),
        core: mayastor_version::version().to_string(),
        store,
    })
}

/// The upgrade record; NotFound when none is stored.
pub async fn get_status(specs: &SpecStore) -> Result<UpgradeStatus, CoreError> {
    let kv = specs
        .store()
        .get(key(specs).as_bytes())
        .await
        .map_err(store_err)?
        .ok_or_else(|| RestError::not_found("upgrade status"))?;
    serde_json::from_slice(&kv.value)
        .map_err(|e| CoreError::Internal(format!("the stored upgrade status is unreadable: {e}")))
}

/// Stores the upgrade record whole.
pub async fn put_status(
    specs: &SpecStore,
    status: UpgradeStatus,
) -> Result<UpgradeStatus, CoreError> {
    let bytes = serde_json::to_vec(&status).map_err(|e| CoreError::Internal(e.to_string()))?;
    specs
        .store()
        .put(key(specs).as_bytes(), bytes, None)
        .await
        .map_err(store_err)?;
    Ok(status)
}

/// Deletes the upgrade record; NotFound when none is stored.
pub async fn delete_status(specs: &SpecStore) -> Result<(), CoreError> {
    let existed = specs
        .store()
        .delete(key(specs).as_bytes())
        .await
        .map_err(store_err)?;
    if existed {
        Ok(())
    } else {
        Err(RestError::not_found("upgrade status").into())
    }
}
