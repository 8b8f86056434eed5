//! The nexus reconciler: targets an engine lost (a restart) are made
//! again; the engine's nexus info decides which children come back.

use super::*;

/// Targets back on engines that lost them (restarts): the engine's nexus
/// info decides which children come back online.
pub async fn restore_nexuses(core: &Core) -> ReconcileResult {
    let mut out = Outcome::default();
    for node in core.registry.nodes().into_iter().filter(|n| n.online) {
        let nexuses: Vec<_> = core
            .specs
            .nexuses
            .read()
            .values()
            .filter(|n| n.node == node.id && n.status == SpecStatus::Created)
            .cloned()
            .collect();
        for spec in nexuses {
            if core.registry.has_nexus(&node.id, &spec.uuid) {
                continue;
            }
            let Some(owner) = spec.owner.clone() else {
                continue;
            };
            let Some(_volume) = core.locks.try_lock(Resource::Volume, &owner) else {
                out.requeue(BUSY_REQUEUE);
                continue;
            };
            let Some(rec) = core.specs.volume(&owner) else {
                continue;
            };
            if rec.nexus.as_deref() != Some(spec.uuid.as_str()) {
                continue;
            }
            let span = tracing::info_span!("recreate", volume = %owner, nexus = %spec.uuid, node = %node.id);
            info!(parent: &span, nexus = %spec.uuid, node = %node.id, volume = %rec.spec.uuid, "recreating a nexus the engine lost");
            let replicas = core.specs.volume_replicas(&rec.spec.uuid);
            if let Err(e) = core
                .start_nexus(&rec, &spec, 0, &replicas)
                .instrument(span)
                .await
            {
                out.fail(
                    format!("volume {owner}: cannot recreate nexus {} yet", spec.uuid),
                    e,
                );
            }
        }
    }
    out.finish()
}
