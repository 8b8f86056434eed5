//! Handlers of the I/O statistics routes: `GET /v0/volumes/{id}/stats`,
//! `GET /v0/pools/{id}/stats` and `GET /v0/nodes/{node}/pools/{pool}/stats`
//! (the engines' counters, read when asked; see `openapi::models::IoStats`).

use axum::extract::State;
use axum::Json;
use openapi::models::*;

use super::params::*;
use super::{Answer, Api};
use crate::extract::*;
use crate::spec::ErrorResponses;

/// I/O statistics of a volume: its target's counters and its replicas'.
/// A volume that is not published has no target: 412 NotPublished.
#[utoipa::path(
    get, path = "/v0/volumes/{id}/stats", tag = "volumes",
    params(VolumePath),
    responses((status = 200, description = "The volume's I/O counters", body = VolumeIoStats), ErrorResponses),
)]
pub async fn get_volume_stats(
    State(api): State<Api>,
    PathArgs(path): PathArgs<VolumePath>,
) -> Answer<VolumeIoStats> {
    let id = uuid_id("volume", &path.id)?;
    Ok(Json(api.get_volume_stats(&id).await?))
}

/// I/O statistics of a pool: every read and write of its replicas.
#[utoipa::path(
    get, path = "/v0/pools/{id}/stats", tag = "pools",
    params(PoolPath),
    responses((status = 200, description = "The pool's I/O counters", body = PoolIoStats), ErrorResponses),
)]
pub async fn get_pool_stats(
    State(api): State<Api>,
    PathArgs(path): PathArgs<PoolPath>,
) -> Answer<PoolIoStats> {
    let id = name_id("pool", &path.id)?;
    Ok(Json(api.get_pool_stats(None, &id).await?))
}

/// I/O statistics of a pool of a node (404 when the pool is not there).
#[utoipa::path(
    get, path = "/v0/nodes/{node}/pools/{pool}/stats", tag = "pools",
    params(NodePoolPath),
    responses((status = 200, description = "The pool's I/O counters", body = PoolIoStats), ErrorResponses),
)]
pub async fn get_node_pool_stats(
    State(api): State<Api>,
    PathArgs(path): PathArgs<NodePoolPath>,
) -> Answer<PoolIoStats> {
    let node = name_id("node", &path.node)?;
    let pool = name_id("pool", &path.pool)?;
    Ok(Json(api.get_pool_stats(Some(&node), &pool).await?))
}
