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

use std::collections::{BTreeMap, BTreeSet, HashMap};

use openapi::models::{NexusSpec, NodeSpec, PoolSpec, ReplicaSpec, SpecStatus, VolumeSpec};
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

impl VolumeRecord {
    /// Created and with no operation in flight: what the reconcilers may
    /// act on.
    pub fn settled(&self) -> bool {
        self.spec.status == SpecStatus::Created && self.op.is_none()
    }
}

/// Replica specs by uuid, and the uuids of each volume's replicas.
#[derive(Default)]
pub struct ReplicaSpecs {
    all: BTreeMap<String, ReplicaSpec>,
    by_volume: HashMap<String, BTreeSet<String>>,
}

impl ReplicaSpecs {
    fn insert(&mut self, spec: ReplicaSpec) {
        if let Some(old) = self.all.get(&spec.uuid) {
            if old.owners.volume != spec.owners.volume {
                let (uuid, volume) = (old.uuid.clone(), old.owners.volume.clone());
                self.unindex(&uuid, volume.as_deref());
            }
        }
        if let Some(v) = &spec.owners.volume {
            self.by_volume
                .entry(v.clone())
                .or_default()
                .insert(spec.uuid.clone());
        }
        self.all.insert(spec.uuid.clone(), spec);
    }

    fn remove(&mut self, id: &str) {
        if let Some(old) = self.all.remove(id) {
            self.unindex(id, old.owners.volume.as_deref());
        }
    }

    fn unindex(&mut self, id: &str, volume: Option<&str>) {
        if let Some(v) = volume {
            if let Some(set) = self.by_volume.get_mut(v) {
                set.remove(id);
                if set.is_empty() {
                    self.by_volume.remove(v);
                }
            }
        }
    }

    /// The replicas of a volume, by uuid.
    pub fn of_volume(&self, volume: &str) -> impl Iterator<Item = &ReplicaSpec> {
        self.by_volume
            .get(volume)
            .into_iter()
            .flatten()
            .filter_map(|id| self.all.get(id))
    }
}

impl std::ops::Deref for ReplicaSpecs {
    type Target = BTreeMap<String, ReplicaSpec>;

    fn deref(&self) -> &Self::Target {
        &self.all
    }
}

impl FromIterator<(String, ReplicaSpec)> for ReplicaSpecs {
    fn from_iter<I: IntoIterator<Item = (String, ReplicaSpec)>>(iter: I) -> Self {
        let mut out = ReplicaSpecs::default();
        for (_, spec) in iter {
            out.insert(spec);
        }
        out
    }
}

/// One write of a batch ([`SpecStore::apply`]).
#[derive(Debug, Clone)]
pub enum SpecWrite {
    Volume(Box<VolumeRecord>),
    Replica(ReplicaSpec),
    DeleteReplica(String),
    Nexus(NexusSpec),
}

/// The specs of the cluster.
pub struct SpecStore {
    store: SharedStore,
    keys: StoreKeys,
    pub volumes: RwLock<BTreeMap<String, VolumeRecord>>,
    pub replicas: RwLock<ReplicaSpecs>,
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

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, CoreError> {
    serde_json::to_vec(value).map_err(|e| CoreError::Internal(e.to_string()))
}

impl SpecStore {
    /// Loads every spec from the store.
    pub async fn load(store: SharedStore, keys: StoreKeys) -> Result<Self, CoreError> {
        let volumes = load_kind(&store, &keys, Kind::VolumeSpec).await?;
        let replicas: ReplicaSpecs = load_kind::<ReplicaSpec>(&store, &keys, Kind::ReplicaSpec)
            .await?
            .into_iter()
            .collect();
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
        let bytes = json(value)?;
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

    /// The volume `id` if it is [settled](VolumeRecord::settled).
    pub fn settled_volume(&self, id: &str) -> Option<VolumeRecord> {
        self.volume(id).filter(VolumeRecord::settled)
    }

    /// Every [settled](VolumeRecord::settled) volume.
    pub fn settled_volumes(&self) -> Vec<VolumeRecord> {
        self.volumes
            .read()
            .values()
            .filter(|r| r.settled())
            .cloned()
            .collect()
    }

    pub async fn put_replica(&self, spec: ReplicaSpec) -> Result<(), CoreError> {
        self.put(Kind::ReplicaSpec, &spec.uuid, &spec).await?;
        self.replicas.write().insert(spec);
        Ok(())
    }

    pub async fn delete_replica(&self, id: &str) -> Result<(), CoreError> {
        self.delete(Kind::ReplicaSpec, id).await?;
        self.replicas.write().remove(id);
        Ok(())
    }

    /// The replicas of a volume, by uuid.
    pub fn volume_replicas(&self, volume: &str) -> Vec<ReplicaSpec> {
        self.replicas.read().of_volume(volume).cloned().collect()
    }

    /// Writes several specs in one store transaction (one round trip, all
    /// or none), then to memory. One spec may appear once per batch.
    pub async fn apply(&self, writes: Vec<SpecWrite>) -> Result<(), CoreError> {
        let mut ops = Vec::with_capacity(writes.len());
        for w in &writes {
            ops.push(match w {
                SpecWrite::Volume(r) => {
                    store::Op::put(self.keys.key(Kind::VolumeSpec, &r.spec.uuid), json(r)?)
                }
                SpecWrite::Replica(r) => {
                    store::Op::put(self.keys.key(Kind::ReplicaSpec, &r.uuid), json(r)?)
                }
                SpecWrite::DeleteReplica(id) => {
                    store::Op::delete(self.keys.key(Kind::ReplicaSpec, id))
                }
                SpecWrite::Nexus(n) => {
                    store::Op::put(self.keys.key(Kind::NexusSpec, &n.uuid), json(n)?)
                }
            });
        }
        self.store
            .txn(Vec::new(), ops, Vec::new())
            .await
            .map_err(|e| CoreError::Store(e.to_string()))?;
        for w in writes {
            match w {
                SpecWrite::Volume(r) => {
                    self.volumes.write().insert(r.spec.uuid.clone(), *r);
                }
                SpecWrite::Replica(r) => self.replicas.write().insert(r),
                SpecWrite::DeleteReplica(id) => self.replicas.write().remove(&id),
                SpecWrite::Nexus(n) => {
                    self.nexuses.write().insert(n.uuid.clone(), n);
                }
            }
        }
        Ok(())
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
