//! The persisted switch-over: one JSON document per volume at
//! `<namespace prefix>/SwitchOverSpec/<volume-uuid>`, written whole at
//! every stage change, so the store never holds half a record.

use serde::{Deserialize, Serialize};
use store::{keys::StoreKeys, SharedStore};

use crate::HaError;

/// The stages of a switch-over, in order; `Successful` and `Errored` end
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    /// Recorded; the volume's current target is looked at.
    Init,
    /// The core moves the target to another node.
    RepublishVolume,
    /// The reporting node agent connects the new path and drops the old.
    ReplacePath,
    /// The old target is gone (or queued for the garbage collector).
    DeleteTarget,
    Successful,
    Errored,
}

impl Stage {
    /// Whether the switch-over is over.
    pub fn is_final(self) -> bool {
        matches!(self, Stage::Successful | Stage::Errored)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Init => "Init",
            Stage::RepublishVolume => "RepublishVolume",
            Stage::ReplacePath => "ReplacePath",
            Stage::DeleteTarget => "DeleteTarget",
            Stage::Successful => "Successful",
            Stage::Errored => "Errored",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a switch-over runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SwitchKind {
    /// A node agent reported the path failed: the old target is retired
    /// before the new one is published (it may be dead or cut off).
    #[default]
    Failure,
    /// The target's node is drained: make before break. The new target is
    /// published while the old one, handed over (ANA inaccessible), keeps
    /// the host's path alive; the old one goes after the host's new path is
    /// live.
    Drain,
}

impl SwitchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SwitchKind::Failure => "failure",
            SwitchKind::Drain => "drain",
        }
    }
}

/// One switch-over of one volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchOverRecord {
    pub volume: String,
    /// The volume's subsystem NQN.
    pub nqn: String,
    /// Node whose path failed (a drain: the volume's frontend node, empty
    /// when it has none).
    pub node: String,
    /// gRPC endpoint of that node's agent (a drain: empty when the node
    /// has no registered node agent; the path is then not replaced).
    pub node_endpoint: String,
    /// `IP:PORT` of the failed target (a drain: of the drained target).
    pub failed_address: String,
    pub stage: Stage,
    /// Why it runs (records written before drains were known are failures).
    #[serde(default)]
    pub kind: SwitchKind,
    /// Node of the target when the switch-over started (set by Init).
    #[serde(default)]
    pub old_target_node: Option<String>,
    /// Nexus of that target (set by Init).
    #[serde(default)]
    pub old_nexus: Option<String>,
    /// `nvmf://IP:PORT/<nqn>` of the new target (set by RepublishVolume).
    #[serde(default)]
    pub new_target: Option<String>,
    /// The last error (the reason of `Errored`).
    #[serde(default)]
    pub error: Option<String>,
    /// Failed attempts of the current stage.
    #[serde(default)]
    pub attempts: u32,
    pub started_unix_ms: i64,
    pub updated_unix_ms: i64,
}

impl SwitchOverRecord {
    /// A new record in stage `Init`.
    pub fn new(volume: &str, nqn: &str, node: &str, endpoint: &str, failed: &str) -> Self {
        let now = mayastor_common::time::now_unix_ms();
        Self {
            volume: volume.to_owned(),
            nqn: nqn.to_owned(),
            node: node.to_owned(),
            node_endpoint: endpoint.to_owned(),
            failed_address: failed.to_owned(),
            stage: Stage::Init,
            kind: SwitchKind::Failure,
            old_target_node: None,
            old_nexus: None,
            new_target: None,
            error: None,
            attempts: 0,
            started_unix_ms: now,
            updated_unix_ms: now,
        }
    }

    /// The gRPC message of this record.
    pub fn to_proto(&self) -> io_engine_api::ha::SwitchOver {
        io_engine_api::ha::SwitchOver {
            volume: self.volume.clone(),
            stage: self.stage.to_string(),
            node: self.node.clone(),
            failed_address: self.failed_address.clone(),
            new_target: self.new_target.clone().unwrap_or_default(),
            error: self.error.clone().unwrap_or_default(),
            kind: self.kind.as_str().to_owned(),
        }
    }
}

/// Writes `value` as one JSON document at `key`.
pub(crate) async fn put_json<T: Serialize>(
    store: &SharedStore,
    key: &str,
    value: &T,
) -> Result<(), HaError> {
    let bytes = serde_json::to_vec(value).map_err(|source| HaError::Decode {
        key: key.to_owned(),
        source,
    })?;
    store
        .put(key.as_bytes(), bytes, None)
        .await
        .map_err(HaError::Store)?;
    Ok(())
}

/// The JSON document at `key`, if any.
pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
    store: &SharedStore,
    key: &str,
) -> Result<Option<T>, HaError> {
    let Some(kv) = store.get(key.as_bytes()).await.map_err(HaError::Store)? else {
        return Ok(None);
    };
    serde_json::from_slice(&kv.value)
        .map(Some)
        .map_err(|source| HaError::Decode {
            key: key.to_owned(),
            source,
        })
}

/// Kind segment of the records' keys.
pub const KIND: &str = "SwitchOverSpec";

/// The switch-over records in the store.
#[derive(Clone)]
pub struct Records {
    store: SharedStore,
    prefix: String,
}

impl Records {
    pub fn new(store: SharedStore, keys: &StoreKeys) -> Self {
        Self {
            store,
            prefix: format!("{}/{KIND}/", keys.namespace_prefix()),
        }
    }

    /// The key of `volume`'s record.
    pub fn key(&self, volume: &str) -> String {
        format!("{}{volume}", self.prefix)
    }

    /// Writes the record whole.
    pub async fn put(&self, rec: &SwitchOverRecord) -> Result<(), HaError> {
        put_json(&self.store, &self.key(&rec.volume), rec).await
    }

    /// The record of `volume`, if any.
    pub async fn get(&self, volume: &str) -> Result<Option<SwitchOverRecord>, HaError> {
        get_json(&self.store, &self.key(volume)).await
    }

    /// Every record; one that cannot be read is skipped with a warning.
    pub async fn list(&self) -> Result<Vec<SwitchOverRecord>, HaError> {
        let kvs = self
            .store
            .list(self.prefix.as_bytes())
            .await
            .map_err(HaError::Store)?;
        Ok(kvs
            .into_iter()
            .filter_map(|kv| match serde_json::from_slice(&kv.value) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(key = %String::from_utf8_lossy(&kv.key), error = %e, "unreadable switch-over record skipped");
                    None
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_end_only_in_successful_or_errored() {
        let finals: Vec<_> = [
            Stage::Init,
            Stage::RepublishVolume,
            Stage::ReplacePath,
            Stage::DeleteTarget,
            Stage::Successful,
            Stage::Errored,
        ]
        .into_iter()
        .filter(|s| s.is_final())
        .collect();
        assert_eq!(finals, vec![Stage::Successful, Stage::Errored]);
    }

    #[test]
    fn records_written_before_drains_read_as_failures_and_drains_round_trip() {
        let mut r = SwitchOverRecord::new("v", "nqn", "n", "127.0.0.1:1", "127.0.0.2:8420");
        let mut old = serde_json::to_value(&r).expect("invariant: plain data serialises");
        old.as_object_mut()
            .expect("invariant: a record is an object")
            .remove("kind");
        let back: SwitchOverRecord = serde_json::from_value(old).expect("an older record reads");
        assert_eq!(back.kind, SwitchKind::Failure);
        r.kind = SwitchKind::Drain;
        let text = serde_json::to_string(&r).expect("invariant: plain data serialises");
        assert!(text.contains("\"kind\":\"drain\""), "{text}");
        assert_eq!(r.to_proto().kind, "drain");
    }

    #[test]
    fn records_round_trip_as_json_with_stage_names() {
        let mut r = SwitchOverRecord::new("v", "nqn", "n", "127.0.0.1:1", "127.0.0.2:8420");
        r.stage = Stage::ReplacePath;
        let text = serde_json::to_string(&r).expect("invariant: plain data serialises");
        assert!(text.contains("\"stage\":\"ReplacePath\""), "{text}");
        let back: SwitchOverRecord = serde_json::from_str(&text).expect("invariant: round trip");
        assert_eq!(back, r);
    }
}
