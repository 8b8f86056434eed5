//! Volume targets: publish (a nexus with a fresh controller-ID window and
//! a reservation preempting the previous target's), republish (the target
//! moves off its node for a switch-over; make before break for a drain:
//! the old target is handed over, kept published but ANA inaccessible, and
//! destroyed later as a retired target), unpublish, and the pieces the
//! reconcilers reuse. The caller holds the volume's lock.
//!
//! A retired target is a nexus spec of the volume that is not its current
//! nexus (`VolumeRecord::nexus`): published, inaccessible, so its hosts
//! keep a live path (their I/O queued) until they connected the new one.

use super::*;

/// How long a republish waits for the old target's engine to destroy it,
/// and a publish for an engine to share a replica.
pub const RETIRE_LIMIT: Duration = Duration::from_secs(3);

/// How long a make-before-break republish waits for the old target's
/// engine to set it inaccessible (the engine waits up to 5 s for the
/// writes in flight).
pub const HANDOVER_LIMIT: Duration = Duration::from_secs(8);

impl Core {
    #[tracing::instrument(skip_all, fields(volume = %id, node = ?body.node))]
    pub async fn publish_volume(&self, id: &str, body: PublishVolumeBody) -> CoreResult<Volume> {
        if body.protocol != Protocol::Nvmf {
            return Err(rest(
                ErrorKind::InvalidArgument,
                "only the nvmf protocol can be published",
            ));
        }
        // Held across the engine calls: orders the operations on this
        // volume; other volumes go on.
        let _volume = self.lock(Resource::Volume, id).await;
        let mut rec = self.volume_record(id)?;
        if let Some(VolumeOp::Resize { size }) = rec.op {
            // A grow that stopped half way ends before a target of the
            // old size is made.
            self.finish_resize(&mut rec, size).await?;
        }
        if rec.spec.status != SpecStatus::Created {
            return Err(rest(
                ErrorKind::FailedPrecondition,
                format!("volume {id} is {:?}", rec.spec.status),
            ));
        }
        if let Some(t) = &rec.spec.target {
            if body.node.as_ref().is_none_or(|n| n == &t.node) {
                drop(_volume);
                return self
                    .volume_view(id)
                    .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("volume {id}"))));
            }
            return Err(rest(
                ErrorKind::AlreadyPublished,
                format!("volume {id} is published on node {}", t.node),
            ));
        }
        self.publish_locked(
            rec,
            body.node.as_deref(),
            body.frontend_node.as_deref(),
            &[],
        )
        .await?;
        drop(_volume);
        self.volume_view(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("volume {id}"))))
    }

    /// Moves a volume's target off its node (a switch-over): the old
    /// target is retired (destroyed, or left `Deleting` to the garbage
    /// collector when its engine cannot be reached within
    /// [`RETIRE_LIMIT`]), then a new nexus is published elsewhere. The new
    /// nexus has the next controller-ID window and its reservation
    /// preempts the old target's key on every replica it opens, so the old
    /// target, alive or not, can never complete another write. A volume
    /// that is not published is published (its target was lost mid-way).
    #[tracing::instrument(skip_all, fields(volume = %id, node = ?body.node))]
    pub async fn republish_volume(
        &self,
        id: &str,
        body: RepublishVolumeBody,
    ) -> CoreResult<Volume> {
        // Held across the engine calls: orders the operations on this
        // volume; other volumes go on.
        let _volume = self.lock(Resource::Volume, id).await;
        let mut rec = self.volume_record(id)?;
        if rec.spec.status != SpecStatus::Created {
            return Err(rest(
                ErrorKind::FailedPrecondition,
                format!("volume {id} is {:?}", rec.spec.status),
            ));
        }
        let old = rec.spec.target.clone();
        let exclude: Vec<String> = old.iter().map(|t| t.node.clone()).collect();
        if let (Some(n), Some(t)) = (&body.node, &old) {
            if n == &t.node {
                return Err(rest(
                    ErrorKind::InvalidArgument,
                    format!("volume {id} is already published on node {n}"),
                ));
            }
        }
        let frontend = body
            .frontend_node
            .clone()
            .or_else(|| old.as_ref().and_then(|t| t.frontend_nodes.first().cloned()));
        // Somewhere to go first: a volume whose target cannot move keeps
        // it.
        let replica_nodes: Vec<String> = self
            .specs
            .volume_replicas(id)
            .into_iter()
            .map(|r| r.node)
            .collect();
        scheduler::target_node(
            &self.target_cluster(),
            id,
            body.node.as_deref(),
            &replica_nodes,
            &exclude,
        )
        .map_err(|e| rest(ErrorKind::FailedPrecondition, e.to_string()))?;
        let handed_over =
            body.make_before_break && old.is_some() && self.hand_over_target(&rec).await;
        if handed_over {
            // The old target stays (inaccessible) as a retired target.
            let kept = rec.clone();
            rec.nexus = None;
            rec.spec.target = None;
            let published = self
                .publish_locked(rec, body.node.as_deref(), frontend.as_deref(), &exclude)
                .await;
            if let Err(e) = published {
                // Back to the old target, serving again.
                self.specs.put_volume(kept.clone()).await?;
                self.set_targets_ana(&kept, v1::NvmeAnaState::NvmeAnaOptimized)
                    .await;
                return Err(e);
            }
        } else {
            if old.is_some() || rec.nexus.is_some() {
                self.retire_target(&mut rec).await?;
            }
            self.publish_locked(rec, body.node.as_deref(), frontend.as_deref(), &exclude)
                .await?;
        }
        info!(volume = %id, from = ?exclude.first(), handed_over, "volume republished");
        drop(_volume);
        self.volume_view(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("volume {id}"))))
    }

    /// Hands the volume's targets over (make before break): each is set ANA
    /// inaccessible (its engine returns once the writes in flight ended),
    /// so its hosts' I/O waits for another path instead of failing. False
    /// when a target's engine cannot do it within [`HANDOVER_LIMIT`] (the
    /// caller then retires the targets the old way).
    async fn hand_over_target(&self, rec: &VolumeRecord) -> bool {
        let done = self
            .set_targets_ana(rec, v1::NvmeAnaState::NvmeAnaInaccessible)
            .await;
        if !done {
            warn!(volume = %rec.spec.uuid, "the old target cannot be handed over: it is retired first");
        }
        done
    }

    /// Sets the ANA state of every published nexus of the volume; whether
    /// every engine did within [`HANDOVER_LIMIT`].
    async fn set_targets_ana(&self, rec: &VolumeRecord, state: v1::NvmeAnaState) -> bool {
        let mut all = true;
        for n in self.volume_nexus_specs(&rec.spec.uuid) {
            let Some(client) = self.registry.online_client(&n.node) else {
                all = false;
                continue;
            };
            let mut nexus_client = client.nexus.clone();
            let call = nexus_client.publish_nexus(v1::PublishNexusRequest {
                uuid: n.uuid.clone(),
                allowed_hosts: n.allowed_hosts.clone(),
                ana_state: Some(state.into()),
                ..Default::default()
            });
            match tokio::time::timeout(HANDOVER_LIMIT, call).await {
                Ok(Ok(r)) => {
                    info!(nexus = %n.uuid, node = %n.node, ana_state = ?state, "target ANA state set");
                    self.registry.nexus_changed(&n.node, r.into_inner());
                }
                Ok(Err(e)) => {
                    warn!(nexus = %n.uuid, node = %n.node, error = %e, "cannot set the target's ANA state");
                    all = false;
                }
                Err(_) => {
                    warn!(nexus = %n.uuid, node = %n.node, "the target's engine did not answer");
                    all = false;
                }
            }
        }
        all
    }

    /// Destroys the volume's retired targets (see the module header): each
    /// engine call bounded by [`RETIRE_LIMIT`]; one that cannot be
    /// destroyed now is left `Deleting` for the garbage collector.
    #[tracing::instrument(skip_all, fields(volume = %id))]
    pub async fn destroy_retired_targets(&self, id: &str) -> CoreResult<Volume> {
        // Held across the engine calls: orders the operations on this
        // volume; other volumes go on.
        let _volume = self.lock(Resource::Volume, id).await;
        let rec = self.volume_record(id)?;
        let retired: Vec<NexusSpec> = self
            .volume_nexus_specs(id)
            .into_iter()
            .filter(|n| rec.nexus.as_deref() != Some(n.uuid.as_str()))
            .filter(|n| n.status == SpecStatus::Created)
            .collect();
        for n in retired {
            self.destroy_or_leave(n).await?;
        }
        drop(_volume);
        self.volume_view(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("volume {id}"))))
    }

    /// Destroys one nexus within [`RETIRE_LIMIT`] and forgets its spec, or
    /// leaves the spec `Deleting` for the garbage collector.
    async fn destroy_or_leave(&self, n: NexusSpec) -> CoreResult<()> {
        let destroyed = match self.registry.online_client(&n.node) {
            Some(client) => {
                let mut nexus_client = client.nexus.clone();
                let call = nexus_client.destroy_nexus(v1::DestroyNexusRequest {
                    uuid: n.uuid.clone(),
                });
                match tokio::time::timeout(RETIRE_LIMIT, call).await {
                    Ok(Ok(_)) => true,
                    Ok(Err(e)) => {
                        warn!(nexus = %n.uuid, node = %n.node, error = %e, "cannot destroy the old target");
                        false
                    }
                    Err(_) => {
                        warn!(nexus = %n.uuid, node = %n.node, "the old target's engine did not answer");
                        false
                    }
                }
            }
            None => false,
        };
        if destroyed {
            info!(nexus = %n.uuid, node = %n.node, "old target destroyed");
            self.registry.nexus_destroyed(&n.node, &n.uuid);
            self.specs.delete_nexus(&n.uuid).await
        } else {
            // The garbage collector destroys it when the node answers.
            self.specs
                .put_nexus(NexusSpec {
                    status: SpecStatus::Deleting,
                    ..n
                })
                .await
        }
    }

    /// Removes a volume's targets for a republish, each engine call bounded
    /// by [`RETIRE_LIMIT`] (a frozen engine must not hold the switch-over):
    /// a nexus that cannot be destroyed now is left `Deleting` for the
    /// garbage collector; the next target's reservation fences it
    /// meanwhile. The intent is recorded first.
    async fn retire_target(&self, rec: &mut VolumeRecord) -> CoreResult<()> {
        rec.op = Some(VolumeOp::Unpublish);
        self.specs.put_volume(rec.clone()).await?;
        for n in self.volume_nexus_specs(&rec.spec.uuid) {
            self.destroy_or_leave(n).await?;
        }
        rec.op = None;
        rec.nexus = None;
        rec.spec.target = None;
        self.specs.put_volume(rec.clone()).await
    }

    /// Publishes a volume whose lock the caller holds.
    pub(crate) async fn publish_locked(
        &self,
        mut rec: VolumeRecord,
        node: Option<&str>,
        frontend: Option<&str>,
        exclude: &[String],
    ) -> CoreResult<()> {
        let id = rec.spec.uuid.clone();
        let replicas = self.specs.volume_replicas(&id);
        let replica_nodes: Vec<String> = replicas.iter().map(|r| r.node.clone()).collect();
        // The target's node is chosen and its nexus spec written under the
        // placement lock (store writes only), so that concurrent publishes
        // see each other's targets and spread.
        let placing = self.placement.lock().await;
        let target =
            scheduler::target_node(&self.target_cluster(), &id, node, &replica_nodes, exclude)
                .map_err(|e| rest(ErrorKind::FailedPrecondition, e.to_string()))?;
        let nexus = Uuid::new_v4().to_string();
        let prev_gen = rec.target_gen;
        rec.target_gen += 1;
        rec.op = Some(VolumeOp::Publish {
            nexus: nexus.clone(),
            node: target.clone(),
        });
        let mut allowed: Vec<String> = match frontend {
            Some(f) => vec![host_nqn(f)],
            None => self.registry.node_nqns(),
        };
        allowed.dedup();
        let spec = NexusSpec {
            uuid: nexus.clone(),
            node: target.clone(),
            size: rec.spec.size,
            children: replicas.iter().map(|r| r.uuid.clone()).collect(),
            owner: Some(id.clone()),
            share: Protocol::Nvmf,
            allowed_hosts: allowed.clone(),
            status: SpecStatus::Creating,
        };
        // The intent and the reservation in one store write: both or
        // neither.
        self.specs
            .apply(vec![
                SpecWrite::Volume(Box::new(rec.clone())),
                SpecWrite::Nexus(spec.clone()),
            ])
            .await?;
        drop(placing);
        let result = self.start_nexus(&rec, &spec, prev_gen, &replicas).await;
        match result {
            Ok(()) => {
                rec.nexus = Some(nexus.clone());
                rec.spec.target = Some(VolumeTarget {
                    node: target.clone(),
                    protocol: Protocol::Nvmf,
                    frontend_nodes: frontend.map(|f| vec![f.to_owned()]).unwrap_or_default(),
                });
                rec.op = None;
                self.specs
                    .apply(vec![
                        SpecWrite::Nexus(NexusSpec {
                            status: SpecStatus::Created,
                            ..spec
                        }),
                        SpecWrite::Volume(Box::new(rec)),
                    ])
                    .await?;
                info!(volume = %id, node = %target, nexus = %nexus, "volume published");
                Ok(())
            }
            Err(e) => {
                warn!(volume = %id, error = %e, "publish failed; rolling back");
                self.rollback_publish(&mut rec, &spec).await;
                Err(e)
            }
        }
    }

    /// Creates and publishes the nexus of `spec` on its node.
    pub(crate) async fn start_nexus(
        &self,
        rec: &VolumeRecord,
        spec: &NexusSpec,
        prev_gen: u64,
        replicas: &[ReplicaSpec],
    ) -> CoreResult<()> {
        let client = self.client(&spec.node)?;
        // The replicas on other nodes are shared at once, each by its own
        // engine.
        let reachable: Vec<&ReplicaSpec> = replicas
            .iter()
            .filter(|r| self.registry.is_online(&r.node))
            .collect();
        // Each share bounded like a retire: an engine that is registered
        // but does not answer (frozen, cut off, not yet seen offline) must
        // not hold the publish past its caller's deadline; its replica is
        // left out and comes back later through a full rebuild.
        let uris = futures::future::join_all(reachable.iter().map(|r| async move {
            tokio::time::timeout(RETIRE_LIMIT, self.child_uri(r, &spec.node))
                .await
                .unwrap_or_else(|_| {
                    Err(rest(
                        ErrorKind::Unavailable,
                        format!(
                            "the engine on node {} did not share replica {} within {RETIRE_LIMIT:?}",
                            r.node, r.uuid
                        ),
                    ))
                })
        }))
        .await;
        let mut children = Vec::new();
        for (r, uri) in reachable.iter().zip(uris) {
            match uri {
                Ok(u) => children.push(u),
                Err(e) => warn!(replica = %r.uuid, error = %e, "replica left out of the target"),
            }
        }
        if children.is_empty() {
            return Err(rest(
                ErrorKind::FailedPrecondition,
                format!("no replica of volume {} is reachable", rec.spec.uuid),
            ));
        }
        let key = self.specs.keys().nexus_info(&rec.spec.uuid, &spec.uuid);
        let created = client
            .nexus
            .clone()
            .create_nexus(v1::CreateNexusRequest {
                uuid: spec.uuid.clone(),
                name: rec.spec.uuid.clone(),
                size: rec.spec.size,
                children,
                resv_key: rec.target_gen,
                preempt_key: prev_gen,
                resv_type: v1::NvmeReservation::ExclusiveAccess as i32,
                nexus_info_key: Some(key),
            })
            .await
            .map_err(engine_err(&spec.node))?
            .into_inner();
        self.registry.nexus_changed(&spec.node, created);
        let (min, max) = cntlid_window(rec.target_gen);
        let published = client
            .nexus
            .clone()
            .publish_nexus(v1::PublishNexusRequest {
                uuid: spec.uuid.clone(),
                allowed_hosts: spec.allowed_hosts.clone(),
                min_cntlid: Some(min),
                max_cntlid: Some(max),
                resv_key: None,
                resv_type: None,
                preempt_key: None,
                ana_state: None,
            })
            .await
            .map_err(engine_err(&spec.node))?
            .into_inner();
        self.registry.nexus_changed(&spec.node, published);
        Ok(())
    }

    pub(crate) async fn rollback_publish(&self, rec: &mut VolumeRecord, spec: &NexusSpec) {
        if let Some(client) = self.registry.online_client(&spec.node) {
            let destroyed = client
                .nexus
                .clone()
                .destroy_nexus(v1::DestroyNexusRequest {
                    uuid: spec.uuid.clone(),
                })
                .await;
            if destroyed.is_ok() {
                self.registry.nexus_destroyed(&spec.node, &spec.uuid);
            }
        }
        if let Err(e) = self.specs.delete_nexus(&spec.uuid).await {
            warn!(nexus = %spec.uuid, error = %e, "rollback: cannot delete the nexus spec");
        }
        rec.op = None;
        rec.nexus = None;
        rec.spec.target = None;
        if let Err(e) = self.specs.put_volume(rec.clone()).await {
            warn!(volume = %rec.spec.uuid, error = %e, "rollback: cannot clear the publish");
        }
        self.refresh(&spec.node).await;
    }

    #[tracing::instrument(skip_all, fields(volume = %id, force))]
    pub async fn unpublish_volume(&self, id: &str, force: bool) -> CoreResult<Volume> {
        // Held across the engine calls: orders the operations on this
        // volume; other volumes go on.
        let _volume = self.lock(Resource::Volume, id).await;
        let mut rec = self.volume_record(id)?;
        if rec.spec.target.is_none() && rec.nexus.is_none() {
            drop(_volume);
            return self
                .volume_view(id)
                .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("volume {id}"))));
        }
        rec.op = Some(VolumeOp::Unpublish);
        self.specs.put_volume(rec.clone()).await?;
        self.remove_target(&rec, force).await?;
        rec.op = None;
        rec.nexus = None;
        rec.spec.target = None;
        self.specs.put_volume(rec).await?;
        info!(volume = id, "volume unpublished");
        drop(_volume);
        self.volume_view(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("volume {id}"))))
    }

    /// Removes a volume's target (forcing past offline nodes) with the
    /// intent recorded first.
    pub(crate) async fn unpublish_locked(&self, rec: &mut VolumeRecord) -> CoreResult<()> {
        rec.op = Some(VolumeOp::Unpublish);
        self.specs.put_volume(rec.clone()).await?;
        self.remove_target(rec, true).await?;
        rec.op = None;
        rec.nexus = None;
        rec.spec.target = None;
        self.specs.put_volume(rec.clone()).await
    }

    /// The observed nexus of a published volume.
    pub(crate) fn observed_nexus(&self, rec: &VolumeRecord) -> Option<(String, EngineNexus)> {
        self.registry.nexus(rec.nexus.as_ref()?)
    }
}
