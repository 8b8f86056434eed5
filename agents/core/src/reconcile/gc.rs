//! The garbage collector: specs left `Deleting` or `Creating`, and
//! replicas and nexuses no spec knows.

use super::*;

/// The lock of a spec's owning volume when no one holds it (`Some(None)`
/// for a spec without an owner); `None` while an operation holds it.
fn try_owner(core: &Core, owner: Option<&str>) -> Option<Option<ResourceGuard>> {
    match owner {
        Some(v) => core.locks.try_lock(Resource::Volume, v).map(Some),
        None => Some(None),
    }
}

/// The replica spec `uuid` if it still has `status`.
fn replica_with(core: &Core, uuid: &str, status: SpecStatus) -> Option<ReplicaSpec> {
    core.specs
        .replicas
        .read()
        .get(uuid)
        .filter(|r| r.status == status)
        .cloned()
}

/// Removes what specs no longer want and what no spec knows.
pub async fn gc(core: &Core, state: &ReconcileState) -> ReconcileResult {
    let mut out = Outcome::default();
    // Specs left Deleting.
    let deleting: Vec<_> = core
        .specs
        .replicas
        .read()
        .values()
        .filter(|r| r.status == SpecStatus::Deleting)
        .cloned()
        .collect();
    for r in deleting {
        let Some(_owner) = try_owner(core, r.owners.volume.as_deref()) else {
            out.requeue(BUSY_REQUEUE);
            continue;
        };
        let Some(r) = replica_with(core, &r.uuid, SpecStatus::Deleting) else {
            continue;
        };
        if core.registry.online_client(&r.node).is_some() {
            if let Err(e) = core.destroy_replica(&r).await {
                out.fail(format!("replica {}: gc cannot destroy it", r.uuid), e);
            }
        }
    }
    let nexus_deleting: Vec<_> = core
        .specs
        .nexuses
        .read()
        .values()
        .filter(|n| n.status == SpecStatus::Deleting)
        .cloned()
        .collect();
    for n in nexus_deleting {
        let Some(_owner) = try_owner(core, n.owner.as_deref()) else {
            out.requeue(BUSY_REQUEUE);
            continue;
        };
        if let Some(client) = core.registry.online_client(&n.node) {
            if client
                .nexus
                .clone()
                .destroy_nexus(v1::DestroyNexusRequest {
                    uuid: n.uuid.clone(),
                })
                .await
                .is_ok()
            {
                let _ = core.specs.delete_nexus(&n.uuid).await;
            }
        }
    }
    // Specs left Creating by a crash: an operation in flight holds the
    // volume (or pool) whose specs it is creating.
    let creating: Vec<_> = core
        .specs
        .replicas
        .read()
        .values()
        .filter(|r| r.status == SpecStatus::Creating)
        .cloned()
        .collect();
    for r in creating {
        let Some(_owner) = try_owner(core, r.owners.volume.as_deref()) else {
            out.requeue(BUSY_REQUEUE);
            continue;
        };
        let Some(r) = replica_with(core, &r.uuid, SpecStatus::Creating) else {
            continue;
        };
        info!(replica = %r.uuid, "gc: replica creation was interrupted; removing it");
        if let Err(e) = core.destroy_replica(&r).await {
            out.fail(format!("replica {}: gc cannot remove it", r.uuid), e);
        }
    }
    let pools_creating: Vec<_> = core
        .specs
        .pools
        .read()
        .values()
        .filter(|p| p.status == SpecStatus::Creating)
        .cloned()
        .collect();
    for p in pools_creating {
        let Some(_pool) = core.locks.try_lock(Resource::Pool, &p.id) else {
            out.requeue(BUSY_REQUEUE);
            continue;
        };
        let Some(p) = core
            .specs
            .pools
            .read()
            .get(&p.id)
            .filter(|s| s.status == SpecStatus::Creating)
            .cloned()
        else {
            continue;
        };
        // The engine may or may not have it: keep it when it does.
        let exists = core.registry.pools().iter().any(|(_, o)| o.name == p.id);
        let settled = if exists {
            core.specs
                .put_pool(openapi::models::PoolSpec {
                    status: SpecStatus::Created,
                    ..p.clone()
                })
                .await
        } else if core.registry.online_client(&p.node).is_some() {
            core.specs.delete_pool(&p.id).await
        } else {
            Ok(())
        };
        if let Err(e) = settled {
            out.fail(format!("pool {}: gc cannot settle its spec", p.id), e);
        }
    }
    // Orphans: replicas (named by their uuid, as the core names them) and
    // nexuses that no spec knows, seen for a whole GC period.
    let mut seen_now = Vec::new();
    for (node, r) in core.registry.replicas() {
        if r.name == r.uuid && !core.specs.replicas.read().contains_key(&r.uuid) {
            seen_now.push((format!("replica/{}", r.uuid), node, r.uuid.clone(), true));
        }
    }
    for (node, n) in core.registry.nexuses() {
        if !core.specs.nexuses.read().contains_key(&n.uuid) {
            seen_now.push((format!("nexus/{}", n.uuid), node, n.uuid.clone(), false));
        }
    }
    let mut orphans = state.orphans.lock().clone();
    orphans.retain(|k, _| seen_now.iter().any(|(key, ..)| key == k));
    for (key, node, uuid, is_replica) in seen_now {
        let first = *orphans.entry(key.clone()).or_insert_with(Instant::now);
        if first.elapsed() < core.args.gc_period {
            out.requeue(core.args.gc_period.saturating_sub(first.elapsed()));
            continue;
        }
        let Some(client) = core.registry.online_client(&node) else {
            continue;
        };
        info!(what = %key, node = %node, "gc: destroying an orphan");
        let done = if is_replica {
            client
                .replica
                .clone()
                .destroy_replica(v1::DestroyReplicaRequest {
                    replica: Some(v1::destroy_replica_request::Replica::Uuid(uuid)),
                })
                .await
                .is_ok()
        } else {
            client
                .nexus
                .clone()
                .destroy_nexus(v1::DestroyNexusRequest { uuid })
                .await
                .is_ok()
        };
        if done {
            orphans.remove(&key);
            core.refresh(&node).await;
        }
    }
    *state.orphans.lock() = orphans;
    out.finish()
}
