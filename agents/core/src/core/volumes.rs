//! Volume operations: create, destroy, resize and the rebuild history.
//! Each holds the volume's lock for its whole run.

use super::{views::job_state, *};

impl Core {
    pub(crate) fn volume_record(&self, id: &str) -> CoreResult<VolumeRecord> {
        self.specs
            .volume(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("volume {id}"))))
    }

    pub(crate) fn check_replica_count(&self, spec: &VolumeSpec, count: u8) -> CoreResult<()> {
        self.check_replica_count_in(&self.cluster(), spec, count)
    }

    /// [`Core::check_replica_count`] against a view of the cluster.
    fn check_replica_count_in(
        &self,
        cluster: &Cluster,
        spec: &VolumeSpec,
        count: u8,
    ) -> CoreResult<()> {
        if count == 0 {
            return Err(rest(
                ErrorKind::InvalidArgument,
                "replica count must be at least 1",
            ));
        }
        let mut req = Self::request_for(spec);
        req.replicas = count;
        let usable = scheduler::usable_node_count(cluster, &req);
        // Right after a takeover, nodes the specs know may not have
        // registered yet: that is a wait, not a bad request.
        let registering = self.started.elapsed() < self.args.heartbeat_timeout
            && self
                .specs
                .nodes
                .read()
                .keys()
                .any(|id| self.registry.node(id).is_none());
        if usize::from(count) > usable && registering {
            return Err(rest(
                ErrorKind::Unavailable,
                format!(
                    "the core agent just started and nodes are still registering; retry in {} s",
                    self.args.heartbeat_timeout.as_secs().max(1)
                ),
            ));
        }
        if usize::from(count) > usable {
            return Err(rest(
                ErrorKind::InvalidArgument,
                format!(
                    "replica count {count} exceeds the {usable} nodes that can hold a replica of volume {}",
                    spec.uuid
                ),
            ));
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(volume = %id))]
    pub async fn create_volume(&self, id: &str, body: CreateVolumeBody) -> CoreResult<Volume> {
        check_volume_size(body.size)?;
        check_label_count(
            &format!("volume {id}"),
            body.labels.as_ref().map_or(0, |l| l.len()),
        )?;
        if let Some(t) = &body.topology {
            for (side, lt) in [("node", &t.node_topology), ("pool", &t.pool_topology)] {
                if let Some(lt) = lt {
                    check_label_count(
                        &format!("volume {id}'s {side} topology inclusion"),
                        lt.inclusion.len(),
                    )?;
                    check_label_count(
                        &format!("volume {id}'s {side} topology exclusion"),
                        lt.exclusion.len(),
                    )?;
                }
            }
        }
        // Held across the engine calls: orders the operations on this
        // volume; other volumes go on.
        let _volume = self.lock(Resource::Volume, id).await;
        if let Some(rec) = self.specs.volume(id) {
            let same = rec.spec.size == body.size
                && rec.spec.num_replicas == body.replicas
                && rec.spec.thin == body.thin;
            if same && rec.spec.status == SpecStatus::Created {
                return self
                    .volume_view(id)
                    .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("volume {id}"))));
            }
            return Err(rest(
                ErrorKind::AlreadyExists,
                format!("volume {id} already exists"),
            ));
        }
        let spec = VolumeSpec {
            uuid: id.to_owned(),
            size: body.size,
            num_replicas: body.replicas,
            status: SpecStatus::Creating,
            target: None,
            policy: body.policy.clone(),
            topology: body.topology.clone(),
            labels: body.labels.clone(),
            thin: body.thin,
            affinity_group: body.affinity_group.clone(),
        };
        let reserved = self.reserve_new_volume(&spec).await?;
        // The replicas are made at once, each on its own engine.
        let made =
            futures::future::join_all(reserved.into_iter().map(|r| self.create_on_engine(r))).await;
        let mut ok = Vec::new();
        let mut failed = None;
        for r in made {
            match r {
                Ok(r) => ok.push(r),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            warn!(volume = id, error = %e, "volume create failed; rolling back");
            for r in &ok {
                if let Err(e) = self.destroy_replica(r).await {
                    warn!(replica = %r.uuid, error = %e, "rollback: cannot destroy replica");
                }
            }
            self.specs.delete_volume(id).await?;
            return Err(e);
        }
        // The replicas and the volume are `Created` in one store write; if
        // it fails, the operations reconciler rolls the create back.
        let mut writes: Vec<SpecWrite> = ok.into_iter().map(SpecWrite::Replica).collect();
        writes.push(SpecWrite::Volume(Box::new(VolumeRecord {
            spec: VolumeSpec {
                status: SpecStatus::Created,
                ..spec
            },
            target_gen: 0,
            nexus: None,
            op: None,
        })));
        self.specs.apply(writes).await?;
        info!(
            volume = id,
            replicas = body.replicas,
            size = body.size,
            "volume created"
        );
        self.volume_view(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("volume {id}"))))
    }

    /// Places a new volume and reserves it: its record (intent `Create`)
    /// and its replicas' specs (`Creating`), in one store write under the
    /// placement lock (no engine call). A failure leaves nothing behind.
    async fn reserve_new_volume(&self, spec: &VolumeSpec) -> CoreResult<Vec<ReplicaSpec>> {
        let _placing = self.placement.lock().await;
        let cluster = self.cluster();
        self.check_replica_count_in(&cluster, spec, spec.num_replicas)?;
        let placements = scheduler::place_new_volume(&cluster, &Self::request_for(spec))
            .map_err(|e| rest(ErrorKind::ResourceExhausted, e.to_string()))?;
        let reserved: Vec<ReplicaSpec> = placements
            .iter()
            .map(|p| Self::replica_spec(spec, &p.node, &p.pool))
            .collect();
        // Intent first: a crash from here on is rolled back on restart.
        let mut writes = vec![SpecWrite::Volume(Box::new(VolumeRecord {
            spec: spec.clone(),
            target_gen: 0,
            nexus: None,
            op: Some(VolumeOp::Create),
        }))];
        writes.extend(reserved.iter().cloned().map(SpecWrite::Replica));
        self.specs.apply(writes).await?;
        Ok(reserved)
    }

    #[tracing::instrument(skip_all, fields(volume = %id))]
    pub async fn destroy_volume(&self, id: &str) -> CoreResult<()> {
        // Held across the engine calls: orders the operations on this
        // volume; other volumes go on.
        let _volume = self.lock(Resource::Volume, id).await;
        let mut rec = self.volume_record(id)?;
        rec.spec.status = SpecStatus::Deleting;
        rec.op = Some(VolumeOp::Destroy);
        self.specs.put_volume(rec.clone()).await?;
        self.finish_destroy(rec).await
    }

    /// Destroys a volume whose record says `Destroy` (also used after a
    /// crash).
    pub(crate) async fn finish_destroy(&self, rec: VolumeRecord) -> CoreResult<()> {
        let id = rec.spec.uuid.clone();
        self.remove_target(&rec, true).await?;
        for r in self.specs.volume_replicas(&id) {
            self.destroy_replica(&r).await?;
        }
        self.specs.delete_volume(&id).await?;
        info!(volume = %id, "volume destroyed");
        Ok(())
    }

    /// The nexus specs a volume owns.
    pub(crate) fn volume_nexus_specs(&self, volume: &str) -> Vec<NexusSpec> {
        self.specs
            .nexuses
            .read()
            .values()
            .filter(|n| n.owner.as_deref() == Some(volume))
            .cloned()
            .collect()
    }

    /// Destroys a volume's nexus (if any) and forgets it.
    pub(crate) async fn remove_target(&self, rec: &VolumeRecord, force: bool) -> CoreResult<()> {
        for n in self.volume_nexus_specs(&rec.spec.uuid) {
            match self.registry.online_client(&n.node) {
                Some(client) => {
                    client
                        .nexus
                        .clone()
                        .destroy_nexus(v1::DestroyNexusRequest {
                            uuid: n.uuid.clone(),
                        })
                        .await
                        .map_err(engine_err(&n.node))?;
                    self.registry.nexus_destroyed(&n.node, &n.uuid);
                    self.specs.delete_nexus(&n.uuid).await?;
                    self.refresh(&n.node).await;
                }
                None if force => {
                    // The garbage collector destroys it when the node returns.
                    let mut s = n.clone();
                    s.status = SpecStatus::Deleting;
                    self.specs.put_nexus(s).await?;
                }
                None => {
                    return Err(rest(
                        ErrorKind::Unavailable,
                        format!("the target's node {} is offline (use force)", n.node),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Publishes a volume: a nexus on the chosen node with a fresh
    /// controller-ID window and a reservation that preempts the previous
    /// target's.

    #[tracing::instrument(skip_all, fields(volume = %id, size))]
    pub async fn resize_volume(&self, id: &str, size: u64) -> CoreResult<Volume> {
        check_volume_size(size)?;
        // Held across the engine calls: orders the operations on this
        // volume; other volumes go on.
        let _volume = self.lock(Resource::Volume, id).await;
        let mut rec = self.volume_record(id)?;
        if size < rec.spec.size {
            return Err(rest(
                ErrorKind::InvalidArgument,
                format!(
                    "volume {id} cannot shrink from {} to {size} bytes",
                    rec.spec.size
                ),
            ));
        }
        if size == rec.spec.size {
            drop(_volume);
            return self
                .volume_view(id)
                .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("volume {id}"))));
        }
        // Every replica must be reachable before any grows: a replica that
        // cannot be asked would leave the volume half grown.
        for r in self.specs.volume_replicas(id) {
            self.client(&r.node)?;
        }
        // The intent first: should a grow fail or the agent die half way,
        // the operations reconciler finishes it.
        rec.op = Some(VolumeOp::Resize { size });
        self.specs.put_volume(rec.clone()).await?;
        self.finish_resize(&mut rec, size).await?;
        if let Some(t) = rec.spec.target.clone() {
            // A nexus does not grow: its target is made again, on the same
            // node and at the new size (as a drain moves one). Hosts
            // reconnect to the same NQN and see the new capacity.
            info!(volume = id, node = %t.node, size, "recreating the target at the new size");
            let frontend = t.frontend_nodes.first().cloned();
            self.unpublish_locked(&mut rec).await?;
            self.publish_locked(rec, Some(&t.node), frontend.as_deref(), &[])
                .await?;
        }
        drop(_volume);
        self.volume_view(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("volume {id}"))))
    }

    /// Grows every replica of a volume not yet at `size`, then records the
    /// size in the spec and clears the operation.
    pub(crate) async fn finish_resize(&self, rec: &mut VolumeRecord, size: u64) -> CoreResult<()> {
        let id = rec.spec.uuid.clone();
        for r in self.specs.volume_replicas(&id) {
            if r.size >= size {
                continue;
            }
            let client = self.client(&r.node)?;
            client
                .replica
                .clone()
                .resize_replica(v1::ResizeReplicaRequest {
                    uuid: r.uuid.clone(),
                    requested_size: size,
                })
                .await
                .map_err(engine_err(&r.node))?;
            let mut s = r.clone();
            s.size = size;
            self.specs.put_replica(s).await?;
            self.refresh(&r.node).await;
        }
        rec.spec.size = size;
        rec.op = None;
        self.specs.put_volume(rec.clone()).await?;
        info!(volume = %id, size, "volume grown");
        Ok(())
    }

    /// The rebuild history of a volume's current target.
    pub async fn rebuild_history(&self, id: &str) -> CoreResult<RebuildHistory> {
        let rec = self.volume_record(id)?;
        let mut records = Vec::new();
        if let (Some(t), Some(nexus)) = (&rec.spec.target, &rec.nexus) {
            let client = self.client(&t.node)?;
            let h = client
                .rebuild
                .clone()
                .get_rebuild_history(v1::RebuildHistoryRequest {
                    nexus_uuid: nexus.clone(),
                })
                .await
                .map_err(engine_err(&t.node))?
                .into_inner();
            for r in h.records {
                records.push(RebuildRecord {
                    child_uri: r.uri,
                    src_uri: r.src_uri,
                    rebuild_job_state: job_state(r.state).to_owned(),
                    blocks_total: r.blocks_total,
                    blocks_recovered: r.blocks_recovered,
                    blocks_transferred: r.blocks_transferred,
                    blocks_remaining: r.blocks_total.saturating_sub(r.blocks_recovered),
                    block_size: r.block_size,
                    is_partial: r.is_partial,
                    start_time: rfc3339(r.start_time_ms),
                    end_time: rfc3339(r.end_time_ms),
                });
            }
        }
        Ok(RebuildHistory {
            target_uuid: id.to_owned(),
            records,
        })
    }
}
