//! Replicas of volumes: reserved under the placement lock, made on their
//! engine, shared to a remote target, added to and removed from a volume
//! (and its nexus), and the replica count. The caller holds the volume's
//! lock.

use super::*;

impl Core {
    /// The spec of a new replica of `volume` on `node`/`pool`, `Creating`.
    pub(crate) fn replica_spec(volume: &VolumeSpec, node: &str, pool: &str) -> ReplicaSpec {
        ReplicaSpec {
            uuid: Uuid::new_v4().to_string(),
            size: volume.size,
            pool: pool.to_owned(),
            node: node.to_owned(),
            thin: volume.thin,
            share: Protocol::None,
            owners: ReplicaOwners {
                volume: Some(volume.uuid.clone()),
            },
            status: SpecStatus::Creating,
        }
    }

    /// Reserves one replica of a volume on `node`/`pool`: its spec,
    /// `Creating`, which placements count from now on. Called under the
    /// placement lock; [`Core::make_replica`] then creates it.
    pub(crate) async fn reserve_replica(
        &self,
        volume: &VolumeSpec,
        node: &str,
        pool: &str,
    ) -> CoreResult<ReplicaSpec> {
        let spec = Self::replica_spec(volume, node, pool);
        self.specs.put_replica(spec.clone()).await?;
        Ok(spec)
    }

    /// Creates a reserved replica on its engine; on failure its spec is
    /// dropped again.
    pub(crate) async fn make_replica(&self, spec: ReplicaSpec) -> CoreResult<ReplicaSpec> {
        let spec = self.create_on_engine(spec).await?;
        self.specs.put_replica(spec.clone()).await?;
        Ok(spec)
    }

    /// Creates a reserved replica on its engine and records it as
    /// observed; returns its spec `Created`, which the caller stores. On
    /// failure its reserved spec is dropped again.
    pub(crate) async fn create_on_engine(&self, spec: ReplicaSpec) -> CoreResult<ReplicaSpec> {
        let created = match self.client(&spec.node) {
            Ok(client) => client
                .replica
                .clone()
                .create_replica(v1::CreateReplicaRequest {
                    name: spec.uuid.clone(),
                    uuid: spec.uuid.clone(),
                    pool: spec.pool.clone(),
                    size: spec.size,
                    thin: spec.thin,
                    share: v1::ShareProtocol::None as i32,
                    allowed_hosts: vec![],
                })
                .await
                .map_err(engine_err(&spec.node)),
            Err(e) => Err(e),
        };
        match created {
            Ok(r) => self.registry.replica_created(&spec.node, r.into_inner()),
            Err(e) => {
                self.specs.delete_replica(&spec.uuid).await?;
                return Err(e);
            }
        }
        info!(replica = %spec.uuid, volume = ?spec.owners.volume, node = %spec.node, pool = %spec.pool, "replica created");
        Ok(ReplicaSpec {
            status: SpecStatus::Created,
            ..spec
        })
    }

    /// Destroys a replica (engine, then spec). An offline node keeps the
    /// spec in `Deleting` for the garbage collector.
    pub(crate) async fn destroy_replica(&self, spec: &ReplicaSpec) -> CoreResult<()> {
        match self.registry.online_client(&spec.node) {
            Some(client) => {
                match client
                    .replica
                    .clone()
                    .destroy_replica(v1::DestroyReplicaRequest {
                        replica: Some(v1::destroy_replica_request::Replica::Uuid(
                            spec.uuid.clone(),
                        )),
                    })
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.code() == tonic::Code::NotFound => {}
                    Err(e) => return Err(CoreError::engine(&spec.node, e)),
                }
                self.registry.replica_destroyed(&spec.node, &spec.uuid);
                self.specs.delete_replica(&spec.uuid).await?;
            }
            None => {
                let mut s = spec.clone();
                s.status = SpecStatus::Deleting;
                self.specs.put_replica(s).await?;
            }
        }
        Ok(())
    }

    /// The URI a nexus on `target` uses for `replica`: local, or shared
    /// over NVMe/TCP with the target node allowed.
    pub(crate) async fn child_uri(
        &self,
        replica: &ReplicaSpec,
        target: &str,
    ) -> CoreResult<String> {
        if replica.node == target {
            return Ok(format!("bdev:///{0}?uuid={0}", replica.uuid));
        }
        let client = self.client(&replica.node)?;
        let observed = self.registry.replica(&replica.uuid).map(|(_, r)| r);
        let mut hosts = observed.map(|r| r.allowed_hosts).unwrap_or_default();
        let nqn = host_nqn(target);
        if !hosts.contains(&nqn) {
            hosts.push(nqn);
        }
        let shared = client
            .replica
            .clone()
            .share_replica(v1::ShareReplicaRequest {
                replica: Some(v1::share_replica_request::Replica::Uuid(
                    replica.uuid.clone(),
                )),
                protocol: v1::ShareProtocol::Nvmf as i32,
                allowed_hosts: hosts,
            })
            .await
            .map_err(engine_err(&replica.node))?
            .into_inner();
        let uri = shared.uri.clone();
        self.registry.replica_changed(&replica.node, shared);
        if replica.share != Protocol::Nvmf {
            let mut s = replica.clone();
            s.share = Protocol::Nvmf;
            self.specs.put_replica(s).await?;
        }
        Ok(uri)
    }

    /// Adds one replica to a volume (and to its nexus, which rebuilds it).
    pub(crate) async fn add_replica(&self, rec: &VolumeRecord) -> CoreResult<ReplicaSpec> {
        let reserved = {
            let _placing = self.placement.lock().await;
            let cluster = self.cluster();
            let existing: Vec<scheduler::ReplicaInfo> = cluster
                .replicas
                .iter()
                .filter(|r| r.volume.as_deref() == Some(rec.spec.uuid.as_str()))
                .cloned()
                .collect();
            let place = scheduler::place_additional_replica(
                &cluster,
                &Self::request_for(&rec.spec),
                &existing,
            )
            .map_err(|e| rest(ErrorKind::ResourceExhausted, e.to_string()))?;
            self.reserve_replica(&rec.spec, &place.node, &place.pool)
                .await?
        };
        self.attach_replica(rec, reserved).await
    }

    /// Adds one replica of a volume on `place` (and to its nexus, which
    /// rebuilds it).
    pub(crate) async fn add_replica_on(
        &self,
        rec: &VolumeRecord,
        place: &scheduler::Placement,
    ) -> CoreResult<ReplicaSpec> {
        let reserved = {
            let _placing = self.placement.lock().await;
            self.reserve_replica(&rec.spec, &place.node, &place.pool)
                .await?
        };
        self.attach_replica(rec, reserved).await
    }

    /// Makes a reserved replica and adds it to the volume's nexus.
    async fn attach_replica(
        &self,
        rec: &VolumeRecord,
        reserved: ReplicaSpec,
    ) -> CoreResult<ReplicaSpec> {
        let replica = self.make_replica(reserved).await?;
        if let Some(t) = &rec.spec.target {
            if let Some(nexus) = &rec.nexus {
                let uri = self.child_uri(&replica, &t.node).await?;
                let client = self.client(&t.node)?;
                let n = client
                    .nexus
                    .clone()
                    .add_child_nexus(v1::AddChildNexusRequest {
                        uuid: nexus.clone(),
                        uri,
                        norebuild: false,
                    })
                    .await
                    .map_err(engine_err(&t.node))?
                    .into_inner();
                self.registry.nexus_changed(&t.node, n);
                self.update_nexus_children(nexus).await?;
            }
        }
        Ok(replica)
    }

    /// Removes one replica from a volume (rule 3 picks which).
    pub(crate) async fn remove_replica(&self, rec: &VolumeRecord, uuid: &str) -> CoreResult<()> {
        let Some(spec) = self.specs.replicas.read().get(uuid).cloned() else {
            return Ok(());
        };
        if let (Some(t), Some(nexus)) = (&rec.spec.target, &rec.nexus) {
            if let Some((_, n)) = self.observed_nexus(rec) {
                if let Some(child) = child_of(&n, uuid) {
                    let client = self.client(&t.node)?;
                    client
                        .nexus
                        .clone()
                        .remove_child_nexus(v1::RemoveChildNexusRequest {
                            uuid: nexus.clone(),
                            uri: child.uri.clone(),
                        })
                        .await
                        .map_err(engine_err(&t.node))?;
                }
            }
            let nexus = nexus.clone();
            self.destroy_replica(&spec).await?;
            self.update_nexus_children(&nexus).await?;
            self.refresh(&t.node).await;
        } else {
            self.destroy_replica(&spec).await?;
        }
        self.refresh(&spec.node).await;
        info!(volume = %rec.spec.uuid, replica = uuid, "replica removed");
        Ok(())
    }

    async fn update_nexus_children(&self, nexus: &str) -> CoreResult<()> {
        let Some(mut spec) = self.specs.nexuses.read().get(nexus).cloned() else {
            return Ok(());
        };
        if let Some(owner) = &spec.owner {
            spec.children = self
                .specs
                .volume_replicas(owner)
                .into_iter()
                .filter(|r| r.status != SpecStatus::Deleting)
                .map(|r| r.uuid)
                .collect();
        }
        self.specs.put_nexus(spec).await
    }

    #[tracing::instrument(skip_all, fields(volume = %id, count))]
    pub async fn set_replica_count(&self, id: &str, count: u8) -> CoreResult<Volume> {
        // Held across the engine calls: orders the operations on this
        // volume; other volumes go on.
        let _volume = self.lock(Resource::Volume, id).await;
        let mut rec = self.volume_record(id)?;
        self.check_replica_count(&rec.spec, count)?;
        // The new count is the desired state: should this call stop half
        // way, the replica-count reconciler finishes it.
        rec.spec.num_replicas = count;
        self.specs.put_volume(rec.clone()).await?;
        loop {
            let current: Vec<ReplicaSpec> = self
                .specs
                .volume_replicas(id)
                .into_iter()
                .filter(|r| r.status != SpecStatus::Deleting)
                .collect();
            if current.len() < usize::from(count) {
                self.add_replica(&rec).await?;
            } else if current.len() > usize::from(count) {
                let victim = scheduler::replica_to_remove(&self.cluster(), id).ok_or_else(|| {
                    rest(
                        ErrorKind::FailedPrecondition,
                        format!("volume {id}: no replica can be removed without losing the last healthy one"),
                    )
                })?;
                self.remove_replica(&rec, &victim).await?;
            } else {
                break;
            }
        }
        info!(volume = id, count, "volume scaled");
        drop(_volume);
        self.volume_view(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("volume {id}"))))
    }
}
