//! Handlers of `/v0/pools` and `/v0/nodes/{node}/pools`: list, get, create
//! and delete pools.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use openapi::models::*;

use super::params::*;
use super::{Answer, Api};
use crate::error::ApiError;
use crate::extract::*;
use crate::spec::ErrorResponses;

/// List pools.
#[utoipa::path(
    get, path = "/v0/pools", tag = "pools",
    responses((status = 200, description = "Every pool", body = Vec<Pool>), ErrorResponses),
)]
pub async fn get_pools(State(api): State<Api>) -> Answer<Vec<Pool>> {
    Ok(Json(api.get_pools().await?))
}

/// Get one pool.
#[utoipa::path(
    get, path = "/v0/pools/{id}", tag = "pools",
    params(PoolPath),
    responses((status = 200, description = "The pool", body = Pool), ErrorResponses),
)]
pub async fn get_pool(State(api): State<Api>, PathArgs(path): PathArgs<PoolPath>) -> Answer<Pool> {
    let id = name_id("pool", &path.id)?;
    Ok(Json(api.get_pool(&id).await?))
}

/// Delete a pool (it must hold no replicas).
#[utoipa::path(
    delete, path = "/v0/pools/{id}", tag = "pools",
    params(PoolPath),
    responses((status = 204, description = "Deleted"), ErrorResponses),
)]
pub async fn del_pool(
    State(api): State<Api>,
    PathArgs(path): PathArgs<PoolPath>,
) -> Result<StatusCode, ApiError> {
    let id = name_id("pool", &path.id)?;
    api.del_pool(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List the pools of a node.
#[utoipa::path(
    get, path = "/v0/nodes/{node}/pools", tag = "pools",
    params(NodePoolsPath),
    responses((status = 200, description = "The node's pools", body = Vec<Pool>), ErrorResponses),
)]
pub async fn get_node_pools(
    State(api): State<Api>,
    PathArgs(path): PathArgs<NodePoolsPath>,
) -> Answer<Vec<Pool>> {
    let node = name_id("node", &path.node)?;
    Ok(Json(api.get_node_pools(&node).await?))
}

/// Create a pool on a node.
#[utoipa::path(
    put, path = "/v0/nodes/{node}/pools/{pool}", tag = "pools",
    params(NodePoolPath),
    request_body = CreatePoolBody,
    responses((status = 200, description = "The new pool", body = Pool), ErrorResponses),
)]
pub async fn put_node_pool(
    State(api): State<Api>,
    PathArgs(path): PathArgs<NodePoolPath>,
    JsonBody(body): JsonBody<CreatePoolBody>,
) -> Answer<Pool> {
    let node = name_id("node", &path.node)?;
    let pool = name_id("pool", &path.pool)?;
    match body.disks.as_slice() {
        [disk] if disk.is_empty() => {
            return Err(ApiError::invalid("the disk URI must not be empty"))
        }
        [_] => {}
        disks => {
            return Err(ApiError::invalid(format!(
                "a pool takes exactly one disk, not {}",
                disks.len()
            )))
        }
    }
    Ok(Json(api.put_node_pool(&node, &pool, body).await?))
}

/// Delete a pool of a node.
#[utoipa::path(
    delete, path = "/v0/nodes/{node}/pools/{pool}", tag = "pools",
    params(NodePoolPath),
    responses((status = 204, description = "Deleted"), ErrorResponses),
)]
pub async fn del_node_pool(
    State(api): State<Api>,
    PathArgs(path): PathArgs<NodePoolPath>,
) -> Result<StatusCode, ApiError> {
    let node = name_id("node", &path.node)?;
    let pool = name_id("pool", &path.pool)?;
    api.del_node_pool(&node, &pool).await?;
    Ok(StatusCode::NO_CONTENT)
}
