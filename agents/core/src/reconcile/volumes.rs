//! The volume reconciler: faulted children (onlined again within the
//! faulted-child wait, else retired and replaced) and replica counts.

use super::*;

fn age_ms(ms: i64) -> Duration {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Duration::from_millis(u64::try_from(now - ms).unwrap_or(0))
}

/// Faulted children of published volumes, and the replica count of every
/// volume. Children that ran out of space are left to [`thin_space`], and
/// a volume with a replica move in progress keeps its extra replica.
pub async fn self_heal(core: &Core, state: &ReconcileState) -> ReconcileResult {
    let volumes = core.specs.settled_volumes();
    let mut out = Outcome::default();
    for rec in volumes {
        let id = rec.spec.uuid.clone();
        let Some(_volume) = core.locks.try_lock(Resource::Volume, &id) else {
            out.requeue(BUSY_REQUEUE);
            continue;
        };
        let span = tracing::info_span!("heal", volume = %id);
        heal(core, state, &id, &mut out).instrument(span).await;
    }
    out.finish()
}

/// Heals one volume (its lock held).
async fn heal(core: &Core, state: &ReconcileState, id: &str, out: &mut Outcome) {
    let Some(rec) = core.specs.settled_volume(id) else {
        return;
    };
    let moving = state.moves.lock().contains_key(id);
    if rec.spec.target.is_none() && rec.nexus.is_none() {
        // Unpublished: only the replica count (a scale that stopped
        // half way, e.g. by a crash, is finished here).
        if !moving {
            replica_count(core, &rec, out).await;
        }
        return;
    }
    let Some((target, nexus)) = core.observed_nexus(&rec) else {
        return;
    };
    let client = match core.registry.online_client(&target) {
        Some(c) => c,
        None => return,
    };
    let replicas = core.specs.volume_replicas(id);
    let mut acted = false;
    for child in &nexus.children {
        if child.state != v1::ChildState::ChildFaulted as i32 {
            continue;
        }
        acted = true;
        let Some(replica) = replicas.iter().find(|r| r.uuid == child.uuid) else {
            // A child no spec knows: drop it.
            let _ = client
                .nexus
                .clone()
                .remove_child_nexus(v1::RemoveChildNexusRequest {
                    uuid: nexus.uuid.clone(),
                    uri: child.uri.clone(),
                })
                .await;
            continue;
        };
        // Reachable: its engine reports it and its pool is healthy (a
        // pool whose disk returned errors must not take it back). Ask
        // the engine now: the last poll may predate the fault.
        core.refresh(&replica.node).await;
        let reachable = core.registry.replica(&replica.uuid).is_some()
            && core.registry.pools().iter().any(|(node, p)| {
                *node == replica.node
                    && p.name == replica.pool
                    && p.state == v1::PoolState::PoolOnline as i32
            });
        let waited =
            child.faulted_at_ms > 0 && age_ms(child.faulted_at_ms) >= core.args.faulted_child_wait;
        if child.reason == v1::ChildStateReason::ChildReasonNoSpace as i32 {
            // Its pool is full: the space reconciler frees room first.
            continue;
        }
        if reachable && !waited {
            // Back in time: online it (partial rebuild when it can).
            if let Err(e) = client
                .nexus
                .clone()
                .child_operation(v1::ChildOperationRequest {
                    nexus_uuid: nexus.uuid.clone(),
                    uri: child.uri.clone(),
                    action: v1::ChildAction::Online as i32,
                })
                .await
            {
                out.fail(
                    format!("volume {id}: cannot online child {} yet", child.uri),
                    CoreError::engine(&target, e),
                );
            } else {
                info!(volume = %id, child = %child.uri, "child back: onlined for a rebuild");
            }
            continue;
        }
        if !waited {
            // Look again when the wait ends.
            out.requeue(
                core.args
                    .faulted_child_wait
                    .saturating_sub(age_ms(child.faulted_at_ms)),
            );
            continue;
        }
        // Retire it, but only when a replacement can be placed.
        let cluster = core.cluster();
        let others: Vec<_> = cluster
            .replicas
            .iter()
            .filter(|r| r.volume.as_deref() == Some(id) && r.uuid != replica.uuid)
            .cloned()
            .collect();
        let mut req = crate::core::Core::request_for(&rec.spec);
        req.replicas = rec.spec.num_replicas;
        if scheduler::place_additional_replica(&cluster, &req, &others).is_err() {
            continue;
        }
        info!(volume = %id, child = %child.uri, "retiring a faulted replica");
        if let Err(e) = core.remove_replica(&rec, &replica.uuid).await {
            out.fail(format!("volume {id}: cannot retire the replica"), e);
        }
    }
    if !moving {
        replica_count(core, &rec, out).await;
    }
    // Replicas that are reachable but not in the nexus (their node was
    // away when the nexus was made): add them back (full rebuild).
    if let Some((_, nexus)) = core.observed_nexus(&rec) {
        for r in core.specs.volume_replicas(id) {
            if r.status != SpecStatus::Created || child_of(&nexus, &r.uuid).is_some() {
                continue;
            }
            if core.registry.replica(&r.uuid).is_none() {
                continue;
            }
            let Ok(uri) = core.child_uri(&r, &target).await else {
                continue;
            };
            acted = true;
            match client
                .nexus
                .clone()
                .add_child_nexus(v1::AddChildNexusRequest {
                    uuid: nexus.uuid.clone(),
                    uri,
                    norebuild: false,
                })
                .await
            {
                Ok(_) => {
                    info!(volume = %id, replica = %r.uuid, "replica added back to the target")
                }
                Err(e) => out.fail(
                    format!("volume {id}: cannot add replica {} back", r.uuid),
                    CoreError::engine(&target, e),
                ),
            }
        }
    }
    if acted {
        core.refresh(&target).await;
    }
}

/// Brings a volume's replicas to its replica count: one replica added or
/// one removed per step.
async fn replica_count(core: &Core, rec: &crate::specs::VolumeRecord, out: &mut Outcome) {
    let id = &rec.spec.uuid;
    let current = core
        .specs
        .volume_replicas(id)
        .into_iter()
        .filter(|r| r.status != SpecStatus::Deleting)
        .count();
    let want = usize::from(rec.spec.num_replicas);
    if current < want {
        match core.add_replica(rec).await {
            Ok(r) => info!(volume = %id, replica = %r.uuid, node = %r.node, "replica added"),
            // No room anywhere is a state, not a failure of the pass.
            Err(CoreError::Rest(e)) if e.kind == openapi::ErrorKind::ResourceExhausted => {
                warn!(volume = %id, error = %e, "volume stays degraded: no replacement possible")
            }
            Err(e) => out.fail(format!("volume {id}: cannot add a replica"), e),
        }
    } else if current > want {
        if let Some(victim) = scheduler::replica_to_remove(&core.cluster(), id) {
            if let Err(e) = core.remove_replica(rec, &victim).await {
                out.fail(format!("volume {id}: cannot remove a surplus replica"), e);
            }
        }
    }
}
