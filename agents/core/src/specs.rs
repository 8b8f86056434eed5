//! Specs (desired state) in the store, with an in-memory copy.
//!
//! Every spec is one key (`.../<Kind>/<id>`, DESIGN.md section 2) holding
//! one JSON document, written whole: the store never holds a half-written
//! spec. A volume's record also carries the operation in flight, written
//! before the operation's first side effect, so that a core agent that dies
//! mid-operation finds it on restart and rolls it back or finishes it.
//!
//! Writes go to the store first and to memory only when the store accepted
//! them, so memory never claims what the store does not hold.

use std::collections::BTreeMap;

use openapi::models::{NexusSpec, NodeSpec, PoolSpec, ReplicaSpec, VolumeSpec};
use parking_lot::RwLock;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use store::{
    keys::{Kind, StoreKeys},
    SharedStore,
};

use crate::CoreError;

/// An operation on a volume that was started and not finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeOp {
    Create,
    Destroy,
    Publish {
        nexus: String,
        node: String,
    },
    Unpublish,
    /// Growing to `size` bytes: rolled forward (replicas that are not
    /// grown yet are grown, then the spec takes the size).
    Resize {
        size: u64,
    },
}

/// What is stored for a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub spec: VolumeSpec,
    /// Bumped by every publish: it selects the target's controller-ID
    /// window and reservation key, so each new target fences the previous
    /// one.
    #[serde(default)]
    pub target_gen: u64,
    /// The current nexus, while published.
    #[serde(default)]
    pub nexus: Option<String>,
    #[serde(default)]
    pub op: Option<VolumeOp>,
}

/// The specs of the cluster.
pub struct SpecStore {
    store: SharedStore,
    keys: StoreKeys,
    pub volumes: RwLock<BTreeMap<String, VolumeRecord>>,
    pub replicas: RwLock<BTreeMap<String, ReplicaSpec>>,
    pub pools: RwLock<BTreeMap<String, PoolSpec>>,
    pub nexuses: RwLock<BTreeMap<String, NexusSpec>>,
    pub nodes: RwLock<BTreeMap<String, NodeSpec>>,
}

async fn load_kind<T: DeserializeOwned>(
    store: &SharedStore,
    keys: &StoreKeys,
    kind: Kind,
) -> Result<BTreeMap<String, T>, CoreError> {
    let prefix = keys.kind_prefix(kind);
    let mut out = BTreeMap::new();
    for kv in store
        .list(prefix.as_bytes())
        .await
        .map_err(|e| CoreError::Store(e.to_string()))?
    {
        let key = String::from_utf8_lossy(&kv.key).into_owned();
        let id = key.strip_prefix(&prefix).unwrap_or(&key).to_owned();
        match serde_json::from_slice::<T>(&kv.value) {
            Ok(v) => {
                out.insert(id, v);
            }
            Err(e) => {
                tracing::error!(key = %key, error = %e, "ignoring an unreadable spec");
            }
        }
    }
    Ok(out)
}

impl SpecStore {
    /// Loads every spec from the store.
    pub async fn load(store: SharedStore, keys: StoreKeys) -> Result<Self, CoreError> {
        let volumes = load_kind(&store, &keys, Kind::VolumeSpec).await?;
        let replicas = load_kind(&store, &keys, Kind::ReplicaSpec).await?;
        let pools = load_kind(&store, &keys, Kind::PoolSpec).await?;
        let nexuses = load_kind(&store, &keys, Kind::NexusSpec).await?;
        let nodes = load_kind(&store, &keys, Kind::NodeSpec).await?;
        Ok(Self {
            store,
            keys,
            volumes: RwLock::new(volumes),
            replicas: RwLock::new(replicas),
            pools: RwLock::new(pools),
            nexuses: RwLock::new(nexuses),
            nodes: RwLock::new(nodes),
        })
    }

    pub fn keys(&self) -> &StoreKeys {
        &self.keys
    }

    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    async fn put<T: Serialize>(&self, kind: Kind, id: &str, value: &T) -> Result<(), CoreError> {
        let bytes = serde_json::to_vec(value).map_err(|e| CoreError::Internal(e.to_string()))?;
        self.store
            .put(self.keys.key(kind, id).as_bytes(), bytes, None)
            .await
            .map_err(|e| CoreError::Store(e.to_string()))?;
        Ok(())
    }

    async fn delete(&self, kind: Kind, id: &str) -> Result<(), CoreError> {
        self.store
            .delete(self.keys.key(kind, id).as_bytes())
            .await
            .map_err(|e| CoreError::Store(e.to_string()))?;
        Ok(())
    }

    pub async fn put_volume(&self, rec: VolumeRecord) -> Result<(), CoreError> {
        self.put(Kind::VolumeSpec, &rec.spec.uuid, &rec).await?;
        self.volumes.write().insert(rec.spec.uuid.clone(), rec);
        Ok(())
    }

    pub async fn delete_volume(&self, id: &str) -> Result<(), CoreError> {
        self.delete(Kind::VolumeSpec, id).await?;
        self.volumes.write().remove(id);
        // The nexus info of every target the volume had.
        let prefix = self.keys.volume_nexus_prefix(id);
        if let Err(e) = self.store.delete_prefix(prefix.as_bytes()).await {
            tracing::warn!(volume = id, error = %e, "cannot delete the nexus info");
        }
        Ok(())
    }

    pub fn volume(&self, id: &str) -> Option<VolumeRecord> {
        self.volumes.read().get(id).cloned()
    }

    pub async fn put_replica(&self, spec: ReplicaSpec) -> Result<(), CoreError> {
        self.put(Kind::ReplicaSpec, &spec.uuid, &spec).await?;
        self.replicas.write().insert(spec.uuid.clone(), spec);
        Ok(())
    }

    pub async fn delete_replica(&self, id: &str) -> Result<(), CoreError> {
        self.delete(Kind::ReplicaSpec, id).await?;
        self.replicas.write().remove(id);
        Ok(())
    }

    /// The replicas of a volume.
    pub fn volume_replicas(&self, volume: &str) -> Vec<ReplicaSpec> {
        self.replicas
            .read()
            .values()
            .filter(|r| r.owners.volume.as_deref() == Some(volume))
            .cloned()
            .collect()
    }

    pub async fn put_pool(&self, spec: PoolSpec) -> Result<(), CoreError> {
        self.put(Kind::PoolSpec, &spec.id, &spec).await?;
        self.pools.write().insert(spec.id.clone(), spec);
        Ok(())
    }

    pub async fn delete_pool(&self, id: &str) -> Result<(), CoreError> {
        self.delete(Kind::PoolSpec, id).await?;
        self.pools.write().remove(id);
        Ok(())
    }

    pub async fn put_nexus(&self, spec: NexusSpec) -> Result<(), CoreError> {
        self.put(Kind::NexusSpec, &spec.uuid, &spec).await?;
        self.nexuses.write().insert(spec.uuid.clone(), spec);
        Ok(())
    }

    pub async fn delete_nexus(&self, id: &str) -> Result<(), CoreError> {
        self.delete(Kind::NexusSpec, id).await?;
        self.nexuses.write().remove(id);
        Ok(())
    }

    pub async fn put_node(&self, spec: NodeSpec) -> Result<(), CoreError> {
        self.put(Kind::NodeSpec, &spec.id, &spec).await?;
        self.nodes.write().insert(spec.id.clone(), spec);
        Ok(())
    }

    pub fn node(&self, id: &str) -> Option<NodeSpec> {
        self.nodes.read().get(id).cloned()
    }
}
