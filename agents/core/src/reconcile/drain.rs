//! The drain reconciler: targets move off draining nodes; a node with
//! none left is Drained.
//!
//! Two ways, chosen at each pass:
//! - with HA (an HA cluster agent holds its leader lease in the store,
//!   [`store::keys::StoreKeys::ha_cluster_lease`]): the cluster agent
//!   moves each target by a switch-over that hands the host over to the
//!   new target before the old one goes (no I/O error on the host); this
//!   reconciler only waits, and the node is Drained once no nexus of any
//!   volume (current or retired) is left on it;
//! - without: this reconciler moves each target itself, the old nexus
//!   destroyed before the new one is published (a kernel host loses its
//!   path meanwhile, as upstream without HA).

use super::*;

/// How soon a drain handed to the HA cluster agent is looked at again.
const HA_DRAIN_REQUEUE: Duration = Duration::from_secs(2);

/// Whether an HA cluster agent runs (it holds its leader lease).
async fn ha_cluster_agent_runs(core: &Core) -> bool {
    let key = core.specs.keys().ha_cluster_lease();
    match core.specs.store().get(key.as_bytes()).await {
        Ok(found) => found.is_some(),
        Err(e) => {
            warn!(error = %e, "cannot read the HA cluster agent's lease: draining without it");
            false
        }
    }
}

/// Moves targets off draining nodes; a node with none left is Drained.
pub async fn drain(core: &Core) -> ReconcileResult {
    let mut out = Outcome::default();
    let draining: Vec<_> = core
        .specs
        .nodes
        .read()
        .values()
        .filter(|n| n.cordon_drain_state.drain_status == Some(DrainStatus::Draining))
        .cloned()
        .collect();
    if draining.is_empty() {
        return out.finish();
    }
    let ha = ha_cluster_agent_runs(core).await;
    for node in draining {
        if ha {
            // The cluster agent moves the targets; the node is drained once
            // no nexus (current or retired) is left on it, but for those
            // left to the garbage collector (their engine did not answer).
            let left = core
                .specs
                .nexuses
                .read()
                .values()
                .filter(|n| n.node == node.id && n.status != SpecStatus::Deleting)
                .count();
            if left > 0 {
                out.requeue(HA_DRAIN_REQUEUE);
                continue;
            }
        }
        let volumes: Vec<_> = core
            .specs
            .volumes
            .read()
            .values()
            .filter(|r| r.spec.target.as_ref().is_some_and(|t| t.node == node.id))
            .cloned()
            .collect();
        let mut left = 0;
        for rec in volumes.into_iter().filter(|_| !ha) {
            let id = rec.spec.uuid.clone();
            let Some(_volume) = core.locks.try_lock(Resource::Volume, &id) else {
                // An operation holds it: the next pass moves it.
                left += 1;
                out.requeue(BUSY_REQUEUE);
                continue;
            };
            let Some(mut rec) = core
                .specs
                .volume(&id)
                .filter(|r| r.spec.target.as_ref().is_some_and(|t| t.node == node.id))
            else {
                continue;
            };
            let frontend = rec
                .spec
                .target
                .as_ref()
                .and_then(|t| t.frontend_nodes.first().cloned());
            // Only move a target that has somewhere to go: otherwise the
            // volume keeps its target and the node stays Draining.
            let replica_nodes: Vec<String> = core
                .specs
                .volume_replicas(&rec.spec.uuid)
                .into_iter()
                .map(|r| r.node)
                .collect();
            if let Err(e) = scheduler::target_node(
                &core.cluster(),
                &rec.spec.uuid,
                None,
                &replica_nodes,
                std::slice::from_ref(&node.id),
            ) {
                warn!(volume = %rec.spec.uuid, node = %node.id, error = %e, "drain: no node can take the target");
                left += 1;
                continue;
            }
            let span = tracing::info_span!("move_target", volume = %id, node = %node.id);
            info!(parent: &span, volume = %rec.spec.uuid, node = %node.id, "drain: moving the target");
            let moved = async {
                core.unpublish_locked(&mut rec)
                    .await
                    .map_err(|e| ("drain: cannot remove the old target", e))?;
                core.publish_locked(
                    rec.clone(),
                    None,
                    frontend.as_deref(),
                    std::slice::from_ref(&node.id),
                )
                .await
                .map_err(|e| ("drain: cannot publish elsewhere", e))
            }
            .instrument(span)
            .await;
            if let Err((what, e)) = moved {
                out.fail(format!("volume {id}: {what}"), e);
                left += 1;
            }
        }
        if left == 0 {
            let mut spec = node.clone();
            spec.cordon_drain_state.drain_status = Some(DrainStatus::Drained);
            match core.specs.put_node(spec).await {
                Ok(()) => info!(node = %node.id, "node drained"),
                Err(e) => out.fail(format!("node {}: cannot record Drained", node.id), e),
            }
        }
    }
    out.finish()
}
