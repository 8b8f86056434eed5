//! What one poll of the REST API returns, and how it is fetched.
//!
//! A [`Snapshot`] is plain data (the openapi models, sorted by id), so the
//! dashboard's state can be driven by hand-made snapshots in tests.

use openapi::models::{Node, Pool, Volume};
use openapi::{CoreApi, ErrorKind, RestError};

/// Upper bound on the pages of `GET /volumes` read in one poll, so that a
/// server handing out tokens forever cannot stall the poller.
const MAX_VOLUME_PAGES: usize = 1000;

/// The cluster as one poll saw it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Sorted by id.
    pub nodes: Vec<Node>,
    /// Sorted by id.
    pub pools: Vec<Pool>,
    /// Sorted by uuid.
    pub volumes: Vec<Volume>,
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
    let (nodes, pools, volumes) = tokio::try_join!(api.get_nodes(), api.get_pools(), async {
        let mut volumes = Vec::new();
        let mut token = None;
        for _ in 0..MAX_VOLUME_PAGES {
            let page = api.get_volumes(0, token).await?;
            volumes.extend(page.entries);
            match page.next_token {
                Some(next) if Some(next) != token => token = Some(next),
                Some(_) => {
                    return Err(RestError::new(
                        ErrorKind::Internal,
                        "the volume list repeats its page token",
                    ))
                }
                None => return Ok(volumes),
            }
        }
        Err(RestError::new(
            ErrorKind::Internal,
            format!("the volume list has more than {MAX_VOLUME_PAGES} pages"),
        ))
    })?;
    Ok(Snapshot::new(nodes, pools, volumes))
}
