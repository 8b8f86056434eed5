//! What one poll of the REST API returns, and how it is fetched.
//!
//! A [`Snapshot`] is plain data (the openapi models, sorted by id), so the
//! dashboard's state can be driven by hand-made snapshots in tests. The
//! I/O counters of the pools and of the published volumes are read in the
//! same poll, and so is the guided upgrade's record; a counter or record
//! that cannot be read is left out (the views show no rate, no upgrade
//! line for it), never an error of the whole poll.

use std::collections::BTreeMap;

use openapi::models::{IoStats, Node, Pool, UpgradeStatus, Volume, VolumeIoStats};
use openapi::{CoreApi, RestError};

/// Published volumes whose counters are read in one poll (the first ones
/// by uuid), so that a large cluster costs a bounded number of requests.
pub const MAX_VOLUME_STATS: usize = 256;

/// The cluster as one poll saw it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Sorted by id.
    pub nodes: Vec<Node>,
    /// Sorted by id.
    pub pools: Vec<Pool>,
    /// Sorted by uuid.
    pub volumes: Vec<Volume>,
    /// The counters of published volumes' targets, by volume uuid.
    pub volume_stats: BTreeMap<String, VolumeIoStats>,
    /// The counters of pools, by pool id.
    pub pool_stats: BTreeMap<String, IoStats>,
    /// The guided upgrade's record, when one is stored.
    pub upgrade: Option<Box<UpgradeStatus>>,
}

impl Snapshot {
    /// A snapshot of these resources, sorted by id.
    pub fn new(mut nodes: Vec<Node>, mut pools: Vec<Pool>, mut volumes: Vec<Volume>) -> Self {
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        pools.sort_by(|a, b| a.id.cmp(&b.id));
        volumes.sort_by(|a, b| a.spec.uuid.cmp(&b.spec.uuid));
        Self {
            nodes,
            pools,
            volumes,
            volume_stats: BTreeMap::new(),
            pool_stats: BTreeMap::new(),
            upgrade: None,
        }
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    pub fn volume(&self, uuid: &str) -> Option<&Volume> {
        self.volumes.iter().find(|v| v.spec.uuid == uuid)
    }
}

/// Reads nodes, pools and every page of volumes.
pub async fn fetch(api: &dyn CoreApi) -> Result<Snapshot, RestError> {
    let (nodes, pools, volumes) =
        tokio::try_join!(api.get_nodes(), api.get_pools(), api.all_volumes(0))?;
    let mut snapshot = Snapshot::new(nodes, pools, volumes);
    let (_, upgrade) = tokio::join!(read_stats(api, &mut snapshot), api.get_upgrade_status());
    // No record (404) or an unreadable one: no upgrade line.
    snapshot.upgrade = upgrade.ok().map(Box::new);
    Ok(snapshot)
}

/// Reads the counters of every pool and of the published volumes, all at
/// once; failures leave the entry out.
async fn read_stats(api: &dyn CoreApi, snapshot: &mut Snapshot) {
    let pools = futures::future::join_all(snapshot.pools.iter().map(|p| async move {
        let node = crate::model::pool_node(p);
        let node = (node != crate::model::NONE).then_some(node);
        let stats = api.get_pool_stats(node, &p.id).await.ok()?;
        Some((p.id.clone(), stats.stats))
    }));
    let volumes = futures::future::join_all(
        snapshot
            .volumes
            .iter()
            .filter(|v| crate::model::target_node(v).is_some())
            .take(MAX_VOLUME_STATS)
            .map(|v| async move {
                let stats = api.get_volume_stats(&v.spec.uuid).await.ok()?;
                Some((v.spec.uuid.clone(), stats))
            }),
    );
    let (pools, volumes) = tokio::join!(pools, volumes);
    snapshot.pool_stats = pools.into_iter().flatten().collect();
    snapshot.volume_stats = volumes.into_iter().flatten().collect();
}
