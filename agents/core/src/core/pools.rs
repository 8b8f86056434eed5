//! Pool operations: create, destroy and label. Each holds its pool's lock
//! (and a create its node's, so two pools never take one disk).

use super::*;

impl Core {
    #[tracing::instrument(skip_all, fields(pool = %id, node = %node))]
    pub async fn create_pool(
        &self,
        node: &str,
        id: &str,
        body: CreatePoolBody,
    ) -> CoreResult<Pool> {
        if body.disks.len() != 1 || body.disks[0].trim().is_empty() {
            return Err(rest(
                ErrorKind::InvalidArgument,
                "a pool takes exactly one disk",
            ));
        }
        check_label_count(
            &format!("pool {id}"),
            body.labels.as_ref().map_or(0, |l| l.len()),
        )?;
        // Held across the engine call: orders the operations on this pool;
        // the node's lock orders pool creations on one node, so two pools
        // never take the same disk.
        let _pool = self.lock(Resource::Pool, id).await;
        let _node = self.lock(Resource::Node, node).await;
        if let Some(existing) = self.specs.pools.read().get(id).cloned() {
            if existing.node == node && existing.disks == body.disks {
                return self
                    .pool_view(id)
                    .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("pool {id}"))));
            }
            return Err(rest(
                ErrorKind::AlreadyExists,
                format!(
                    "pool {id} exists on node {} with disks {:?}",
                    existing.node, existing.disks
                ),
            ));
        }
        if self.registry.node(node).is_none() {
            return Err(CoreError::Rest(RestError::not_found(format!(
                "node {node}"
            ))));
        }
        let holder = self
            .specs
            .pools
            .read()
            .values()
            .find(|p| p.node == node && p.disks.iter().any(|d| body.disks.contains(d)))
            .map(|p| p.id.clone());
        if let Some(other) = holder {
            return Err(rest(
                ErrorKind::InUse,
                format!(
                    "disk {} of node {node} is already used by pool {other}",
                    body.disks[0]
                ),
            ));
        }
        let client = self.client(node)?;
        let spec = PoolSpec {
            node: node.to_owned(),
            id: id.to_owned(),
            disks: body.disks.clone(),
            labels: body.labels.clone().unwrap_or_default(),
            status: SpecStatus::Creating,
        };
        self.specs.put_pool(spec.clone()).await?;
        let created = client
            .pool
            .clone()
            .create_pool(v1::CreatePoolRequest {
                name: id.to_owned(),
                uuid: None,
                disks: body.disks.clone(),
                cluster_size: None,
            })
            .await;
        if let Err(e) = created {
            self.specs.delete_pool(id).await?;
            return Err(CoreError::engine(node, e));
        }
        self.specs
            .put_pool(PoolSpec {
                status: SpecStatus::Created,
                ..spec
            })
            .await?;
        self.refresh(node).await;
        info!(pool = id, node, "pool created");
        self.pool_view(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("pool {id}"))))
    }

    #[tracing::instrument(skip_all, fields(pool = %id))]
    pub async fn destroy_pool(&self, id: &str, node: Option<&str>) -> CoreResult<()> {
        // Held across the engine call: orders the operations on this pool.
        let _pool = self.lock(Resource::Pool, id).await;
        let Some(spec) = self.specs.pools.read().get(id).cloned() else {
            return Err(CoreError::Rest(RestError::not_found(format!("pool {id}"))));
        };
        if let Some(n) = node {
            if n != spec.node {
                return Err(CoreError::Rest(RestError::not_found(format!(
                    "pool {id} on node {n}"
                ))));
            }
        }
        {
            // No placement may pick the pool between the check and the
            // Deleting mark (a Deleting pool is never placed on).
            let _placing = self.placement.lock().await;
            if self.specs.replicas.read().values().any(|r| r.pool == id) {
                return Err(rest(
                    ErrorKind::InUse,
                    format!("pool {id} still holds replicas of volumes"),
                ));
            }
            self.specs
                .put_pool(PoolSpec {
                    status: SpecStatus::Deleting,
                    ..spec.clone()
                })
                .await?;
        }
        let client = self.client(&spec.node)?;
        match client
            .pool
            .clone()
            .destroy_pool(v1::DestroyPoolRequest {
                name: id.to_owned(),
            })
            .await
        {
            Ok(_) => {}
            Err(e) if e.code() == tonic::Code::NotFound => {}
            Err(e) => return Err(CoreError::engine(&spec.node, e)),
        }
        self.specs.delete_pool(id).await?;
        self.refresh(&spec.node).await;
        info!(pool = id, "pool destroyed");
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(pool = %id, key))]
    pub async fn label_pool(&self, id: &str, key: &str, value: Option<&str>) -> CoreResult<Pool> {
        let _pool = self.lock(Resource::Pool, id).await;
        let Some(mut spec) = self.specs.pools.read().get(id).cloned() else {
            return Err(CoreError::Rest(RestError::not_found(format!("pool {id}"))));
        };
        match value {
            Some(v) => {
                spec.labels.insert(key.to_owned(), v.to_owned());
                check_label_count(&format!("pool {id}"), spec.labels.len())?;
            }
            None => {
                if spec.labels.remove(key).is_none() {
                    return Err(rest(
                        ErrorKind::NotFound,
                        format!("pool {id} has no label {key:?}"),
                    ));
                }
            }
        }
        self.specs.put_pool(spec).await?;
        self.pool_view(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("pool {id}"))))
    }
}
