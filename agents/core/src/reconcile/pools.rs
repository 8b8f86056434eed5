//! The pool reconciler: pools an engine lost (a restart) are imported
//! again from their disks.

use super::*;

/// Pools back on engines that lost them (restarts): imported from their
/// disks.
pub async fn restore_pools(core: &Core) -> ReconcileResult {
    let mut out = Outcome::default();
    for node in core.registry.nodes().into_iter().filter(|n| n.online) {
        let pools: Vec<_> = core
            .specs
            .pools
            .read()
            .values()
            .filter(|p| p.node == node.id && p.status == SpecStatus::Created)
            .cloned()
            .collect();
        let mut changed = false;
        for p in pools {
            if core.registry.has_pool(&node.id, &p.id) {
                continue;
            }
            let Some(_pool) = core.locks.try_lock(Resource::Pool, &p.id) else {
                out.requeue(BUSY_REQUEUE);
                continue;
            };
            let span = tracing::info_span!("import", pool = %p.id, node = %node.id);
            info!(parent: &span, pool = %p.id, node = %node.id, "importing a pool the engine lost");
            match node
                .client
                .pool
                .clone()
                .create_pool(v1::CreatePoolRequest {
                    name: p.id.clone(),
                    uuid: None,
                    disks: p.disks.clone(),
                    cluster_size: None,
                })
                .instrument(span)
                .await
            {
                Ok(_) => changed = true,
                Err(e) => out.fail(
                    format!("pool {}: cannot import the pool", p.id),
                    CoreError::engine(&node.id, e),
                ),
            }
        }
        if changed {
            core.refresh(&node.id).await;
        }
    }
    out.finish()
}
