//! The operations reconciler: finishes or rolls back the volume
//! operations a crash interrupted (create and publish are rolled back;
//! destroy, unpublish and resize finished).

use super::*;

/// Finishes or rolls back interrupted volume operations.
pub async fn recover_ops(core: &Core) -> ReconcileResult {
    let pending: Vec<String> = core
        .specs
        .volumes
        .read()
        .values()
        .filter(|r| r.op.is_some())
        .map(|r| r.spec.uuid.clone())
        .collect();
    let mut out = Outcome::default();
    for id in pending {
        // An operation in flight holds the volume: only what no one
        // holds, and still has an operation recorded, was interrupted.
        let Some(_volume) = core.locks.try_lock(Resource::Volume, &id) else {
            out.requeue(BUSY_REQUEUE);
            continue;
        };
        let span = tracing::info_span!("settle", volume = %id);
        if let Err(e) = settle(core, &id).instrument(span).await {
            out.fail(
                format!("volume {id}: interrupted operation not settled yet"),
                e,
            );
        }
    }
    out.finish()
}

/// Settles the operation recorded on one volume (its lock held).
async fn settle(core: &Core, id: &str) -> Result<(), CoreError> {
    let Some(mut rec) = core.specs.volume(id).filter(|r| r.op.is_some()) else {
        return Ok(());
    };
    match rec.op.clone() {
        Some(VolumeOp::Create) => {
            info!(volume = %id, "rolling back an interrupted create");
            let mut r = Ok(());
            for replica in core.specs.volume_replicas(id) {
                if let Err(e) = core.destroy_replica(&replica).await {
                    r = Err(e);
                }
            }
            r?;
            core.specs.delete_volume(id).await
        }
        Some(VolumeOp::Destroy) => {
            info!(volume = %id, "finishing an interrupted destroy");
            core.finish_destroy(rec.clone()).await
        }
        Some(VolumeOp::Publish { nexus, .. }) => {
            info!(volume = %id, "rolling back an interrupted publish");
            let spec = core.specs.nexuses.read().get(&nexus).cloned();
            match spec {
                Some(spec) => {
                    core.rollback_publish(&mut rec, &spec).await;
                    Ok(())
                }
                None => {
                    rec.op = None;
                    rec.nexus = None;
                    rec.spec.target = None;
                    core.specs.put_volume(rec.clone()).await
                }
            }
        }
        Some(VolumeOp::Unpublish) => {
            info!(volume = %id, "finishing an interrupted unpublish");
            core.unpublish_locked(&mut rec).await
        }
        Some(VolumeOp::Resize { size }) => {
            info!(volume = %id, size, "finishing an interrupted resize");
            core.finish_resize(&mut rec, size).await
        }
        None => Ok(()),
    }
}
