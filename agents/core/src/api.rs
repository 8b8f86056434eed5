//! [`CoreApi`] over the core agent: the REST server routes here.

use std::sync::Arc;

use async_trait::async_trait;
use openapi::{models::*, CoreApi, RestError, Result};

use crate::core::Core;

/// The core agent as a [`CoreApi`].
#[derive(Clone)]
pub struct CoreService(pub Arc<Core>);

fn nf(what: String) -> RestError {
    RestError::not_found(what)
}

#[async_trait]
impl CoreApi for CoreService {
    async fn get_volumes(&self, max_entries: u64, starting_token: Option<u64>) -> Result<Volumes> {
        let all = self.0.volumes_view();
        let start = starting_token.unwrap_or(0) as usize;
        if start > all.len() {
            return Err(RestError::invalid(format!(
                "starting_token {start} is beyond the {} volumes",
                all.len()
            )));
        }
        let take = if max_entries == 0 {
            all.len()
        } else {
            max_entries as usize
        };
        let entries: Vec<Volume> = all.iter().skip(start).take(take).cloned().collect();
        let end = start + entries.len();
        Ok(Volumes {
            entries,
            next_token: (end < all.len()).then_some(end as u64),
        })
    }
    async fn get_volume(&self, id: &str) -> Result<Volume> {
        self.0
            .volume_view(id)
            .ok_or_else(|| nf(format!("volume {id}")))
    }
    async fn put_volume(&self, id: &str, body: CreateVolumeBody) -> Result<Volume> {
        Ok(self.0.create_volume(id, body).await?)
    }
    async fn del_volume(&self, id: &str) -> Result<()> {
        Ok(self.0.destroy_volume(id).await?)
    }
    async fn put_volume_replica_count(&self, id: &str, count: u8) -> Result<Volume> {
        Ok(self.0.set_replica_count(id, count).await?)
    }
    async fn put_volume_size(&self, id: &str, body: ResizeVolumeBody) -> Result<Volume> {
        Ok(self.0.resize_volume(id, body.size).await?)
    }
    async fn put_volume_target(&self, id: &str, body: PublishVolumeBody) -> Result<Volume> {
        Ok(self.0.publish_volume(id, body).await?)
    }
    async fn put_volume_republish(&self, id: &str, body: RepublishVolumeBody) -> Result<Volume> {
        Ok(self.0.republish_volume(id, body).await?)
    }
    async fn del_volume_retired_targets(&self, id: &str) -> Result<Volume> {
        Ok(self.0.destroy_retired_targets(id).await?)
    }
    async fn del_volume_target(&self, id: &str, force: bool) -> Result<Volume> {
        Ok(self.0.unpublish_volume(id, force).await?)
    }
    async fn get_rebuild_history(&self, id: &str) -> Result<RebuildHistory> {
        Ok(self.0.rebuild_history(id).await?)
    }
    async fn get_volume_stats(&self, id: &str) -> Result<VolumeIoStats> {
        Ok(self.0.volume_stats(id).await?)
    }
    async fn get_pool_stats(&self, node: Option<&str>, id: &str) -> Result<PoolIoStats> {
        Ok(self.0.pool_stats(node, id).await?)
    }
    async fn get_pools(&self) -> Result<Vec<Pool>> {
        Ok(self.0.pools_view())
    }
    async fn get_pool(&self, id: &str) -> Result<Pool> {
        self.0.pool_view(id).ok_or_else(|| nf(format!("pool {id}")))
    }
    async fn del_pool(&self, id: &str) -> Result<()> {
        Ok(self.0.destroy_pool(id, None).await?)
    }
    async fn get_node_pools(&self, node: &str) -> Result<Vec<Pool>> {
        if self.0.node_view(node).is_none() {
            return Err(nf(format!("node {node}")));
        }
        Ok(self
            .0
            .pools_view()
            .into_iter()
            .filter(|p| {
                p.spec.as_ref().map(|s| s.node.as_str()) == Some(node)
                    || p.state.as_ref().map(|s| s.node.as_str()) == Some(node)
            })
            .collect())
    }
    async fn put_node_pool(&self, node: &str, pool: &str, body: CreatePoolBody) -> Result<Pool> {
        Ok(self.0.create_pool(node, pool, body).await?)
    }
    async fn del_node_pool(&self, node: &str, pool: &str) -> Result<()> {
        Ok(self.0.destroy_pool(pool, Some(node)).await?)
    }
    async fn label_pool(&self, id: &str, key: &str, value: Option<&str>) -> Result<Pool> {
        Ok(self.0.label_pool(id, key, value).await?)
    }
    async fn get_replicas(&self) -> Result<Vec<Replica>> {
        Ok(self.0.replicas_view())
    }
    async fn get_replica(&self, id: &str) -> Result<Replica> {
        self.0
            .replicas_view()
            .into_iter()
            .find(|r| r.uuid == id)
            .ok_or_else(|| nf(format!("replica {id}")))
    }
    async fn get_nexuses(&self) -> Result<Vec<Nexus>> {
        Ok(self.0.nexuses_view())
    }
    async fn get_nexus(&self, id: &str) -> Result<Nexus> {
        self.0
            .nexuses_view()
            .into_iter()
            .find(|n| n.uuid == id)
            .ok_or_else(|| nf(format!("nexus {id}")))
    }
    async fn get_nodes(&self) -> Result<Vec<Node>> {
        Ok(self.0.nodes_view())
    }
    async fn get_node(&self, id: &str) -> Result<Node> {
        self.0.node_view(id).ok_or_else(|| nf(format!("node {id}")))
    }
    async fn put_node_cordon(&self, id: &str, label: &str) -> Result<Node> {
        Ok(self.0.cordon(id, label, true).await?)
    }
    async fn del_node_cordon(&self, id: &str, label: &str) -> Result<Node> {
        Ok(self.0.cordon(id, label, false).await?)
    }
    async fn put_node_drain(&self, id: &str, label: &str) -> Result<Node> {
        Ok(self.0.drain(id, label).await?)
    }
    async fn label_node(&self, id: &str, key: &str, value: Option<&str>) -> Result<Node> {
        Ok(self.0.label_node(id, key, value).await?)
    }
    async fn get_specs(&self) -> Result<Specs> {
        Ok(self.0.specs_view())
    }
    async fn get_versions(&self) -> Result<Versions> {
        Ok(crate::upgrade::versions(&self.0.specs).await?)
    }
    async fn get_upgrade_status(&self) -> Result<UpgradeStatus> {
        Ok(crate::upgrade::get_status(&self.0.specs).await?)
    }
    async fn put_upgrade_status(&self, body: UpgradeStatus) -> Result<UpgradeStatus> {
        Ok(crate::upgrade::put_status(&self.0.specs, body).await?)
    }
    async fn del_upgrade_status(&self) -> Result<()> {
        Ok(crate::upgrade::delete_status(&self.0.specs).await?)
    }
}
