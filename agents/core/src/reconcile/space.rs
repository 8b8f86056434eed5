//! The thin-space reconciler: a thin pool that ran out of space gets its
//! largest replica moved elsewhere, then its out-of-space children are
//! onlined again.

use super::*;

/// A child that ran out of space, waiting for room on its pool.
struct OutOfSpace {
    volume: String,
    target: String,
    nexus: String,
    uri: String,
    /// Bytes its replica still lacks to be fully allocated.
    lacks: u64,
}

/// Thin pools that ran out of space. A child faulted `no_space` marks its
/// replica's pool as full. For each such pool:
/// 1. a move already under way from it is finished first ([`finish_moves`]);
/// 2. when the pool has room again (free space of at least the
///    volume-commitment share of what each waiting child still lacks), its
///    out-of-space children are onlined: a partial rebuild copies what
///    they missed;
/// 3. otherwise the largest replica that can go elsewhere moves
///    ([`scheduler::relieve_pool`]): a faulted one is retired and replaced
///    at once, a healthy one gets its successor first and is removed once
///    the successor is rebuilt, so its volume never loses a copy.
pub async fn thin_space(core: &Core, state: &ReconcileState) -> ReconcileResult {
    let mut out = Outcome::default();
    finish_moves(core, state, &mut out).await;
    let volumes = core.specs.settled_volumes();
    let cluster = core.cluster();
    let mut full: BTreeMap<String, Vec<OutOfSpace>> = BTreeMap::new();
    for rec in &volumes {
        let Some((target, nexus)) = core.observed_nexus(rec) else {
            continue;
        };
        for child in &nexus.children {
            if child.state != v1::ChildState::ChildFaulted as i32
                || child.reason != v1::ChildStateReason::ChildReasonNoSpace as i32
            {
                continue;
            }
            let Some(replica) = cluster.replicas.iter().find(|r| r.uuid == child.uuid) else {
                continue;
            };
            full.entry(replica.pool.clone())
                .or_default()
                .push(OutOfSpace {
                    volume: rec.spec.uuid.clone(),
                    target: target.clone(),
                    nexus: nexus.uuid.clone(),
                    uri: child.uri.clone(),
                    lacks: replica.size.saturating_sub(replica.allocated),
                });
        }
    }
    let requests: BTreeMap<String, scheduler::VolumeRequest> = volumes
        .iter()
        .map(|r| (r.spec.uuid.clone(), Core::request_for(&r.spec)))
        .collect();
    for (pool, waiting) in full {
        if state.moves.lock().values().any(|m| m.pool == pool) {
            // Room is on its way.
            continue;
        }
        let cluster = core.cluster();
        let Some(p) = cluster.pools.iter().find(|p| p.id == pool) else {
            continue;
        };
        let mut free = p.capacity.saturating_sub(p.used);
        let mut stuck = 0;
        for w in &waiting {
            let need = (w.lacks.saturating_mul(cluster.limits.volume_commitment_pct) / 100).max(1);
            if free < need {
                stuck += 1;
                continue;
            }
            free -= need;
            let Some(client) = core.registry.online_client(&w.target) else {
                continue;
            };
            match client
                .nexus
                .clone()
                .child_operation(v1::ChildOperationRequest {
                    nexus_uuid: w.nexus.clone(),
                    uri: w.uri.clone(),
                    action: v1::ChildAction::Online as i32,
                })
                .await
            {
                Ok(_) => {
                    info!(volume = %w.volume, child = %w.uri, pool = %pool, "pool has room again: child onlined for a rebuild")
                }
                Err(e) => out.fail(
                    format!("volume {}: cannot online child {} yet", w.volume, w.uri),
                    CoreError::engine(&w.target, e),
                ),
            }
        }
        if stuck == 0 {
            continue;
        }
        let Some(relief) = scheduler::relieve_pool(&cluster, &pool, &requests) else {
            warn!(pool = %pool, "thin pool out of space and no replica on it can move elsewhere");
            continue;
        };
        let Some(_volume) = core.locks.try_lock(Resource::Volume, &relief.volume) else {
            out.requeue(BUSY_REQUEUE);
            continue;
        };
        let Some(rec) = core.specs.settled_volume(&relief.volume) else {
            continue;
        };
        let rec = &rec;
        let id = &rec.spec.uuid;
        if relief.faulted {
            info!(volume = %id, replica = %relief.replica, pool = %pool, to = %relief.to.pool, "thin pool out of space: replacing its largest replica elsewhere");
            if let Err(e) = core.remove_replica(rec, &relief.replica).await {
                out.fail(format!("volume {id}: cannot retire the replica"), e);
                continue;
            }
            if let Err(e) = core.add_replica_on(rec, &relief.to).await {
                out.fail(
                    format!(
                        "volume {id}: cannot place the successor (the volume reconciler retries)"
                    ),
                    e,
                );
            }
        } else {
            info!(volume = %id, replica = %relief.replica, pool = %pool, to = %relief.to.pool, "thin pool out of space: moving its largest replica");
            match core.add_replica_on(rec, &relief.to).await {
                Ok(new) => {
                    state.moves.lock().insert(
                        id.clone(),
                        Move {
                            from: relief.replica,
                            to: new.uuid,
                            pool,
                            started: Instant::now(),
                        },
                    );
                }
                Err(e) => out.fail(format!("volume {id}: cannot start the move"), e),
            }
        }
    }
    out.finish()
}

/// Moves under way: once the successor is an Online child (rebuilt), the
/// old replica is removed. A successor that faulted, or a volume that lost
/// its target, ends the move; the volume reconciler then brings the replica
/// count back (faulted replicas go first).
pub async fn finish_moves(core: &Core, state: &ReconcileState, out: &mut Outcome) {
    for (volume, mv) in state.moves() {
        let end = || {
            state.moves.lock().remove(&volume);
        };
        let Some(_volume) = core.locks.try_lock(Resource::Volume, &volume) else {
            out.requeue(BUSY_REQUEUE);
            continue;
        };
        let Some(rec) = core.specs.volume(&volume) else {
            end();
            continue;
        };
        let Some((_, nexus)) = core.observed_nexus(&rec) else {
            if rec.nexus.is_none() {
                end();
            }
            continue;
        };
        match child_of(&nexus, &mv.to) {
            Some(c) if c.state == v1::ChildState::ChildOnline as i32 => {
                match core.remove_replica(&rec, &mv.from).await {
                    Ok(()) => {
                        info!(volume = %volume, from = %mv.from, to = %mv.to, pool = %mv.pool, secs = mv.started.elapsed().as_secs(), "replica moved off the full pool");
                        end();
                    }
                    Err(e) => out.fail(
                        format!("volume {volume}: cannot remove the moved replica yet"),
                        e,
                    ),
                }
            }
            Some(c) if c.state == v1::ChildState::ChildFaulted as i32 => {
                warn!(volume = %volume, replica = %mv.to, "the successor faulted: move abandoned");
                end();
            }
            Some(_) => {}
            None => {
                if !core.specs.replicas.read().contains_key(&mv.to) {
                    end();
                }
            }
        }
    }
}
