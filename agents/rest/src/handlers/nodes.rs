//! Handlers of `/v0/nodes`: list, get, cordon, uncordon and drain.

use axum::extract::State;
use axum::Json;
use openapi::models::*;

use super::params::*;
use super::{Answer, Api};
use crate::extract::*;
use crate::spec::ErrorResponses;

/// List nodes.
#[utoipa::path(
    get, path = "/v0/nodes", tag = "nodes",
    responses((status = 200, description = "Every node", body = Vec<Node>), ErrorResponses),
)]
pub async fn get_nodes(State(api): State<Api>) -> Answer<Vec<Node>> {
    Ok(Json(api.get_nodes().await?))
}

/// Get one node.
#[utoipa::path(
    get, path = "/v0/nodes/{id}", tag = "nodes",
    params(NodePath),
    responses((status = 200, description = "The node", body = Node), ErrorResponses),
)]
pub async fn get_node(State(api): State<Api>, PathArgs(path): PathArgs<NodePath>) -> Answer<Node> {
    let id = name_id("node", &path.id)?;
    Ok(Json(api.get_node(&id).await?))
}

/// Cordon a node under a label: it takes no new replicas or targets.
#[utoipa::path(
    put, path = "/v0/nodes/{id}/cordon/{label}", tag = "nodes",
    params(NodeCordonPath),
    responses((status = 200, description = "The node", body = Node), ErrorResponses),
)]
pub async fn put_node_cordon(
    State(api): State<Api>,
    PathArgs(path): PathArgs<NodeCordonPath>,
) -> Answer<Node> {
    let id = name_id("node", &path.id)?;
    let label = name_id("cordon label", &path.label)?;
    Ok(Json(api.put_node_cordon(&id, &label).await?))
}

/// Remove a cordon (or drain) label of a node.
#[utoipa::path(
    delete, path = "/v0/nodes/{id}/cordon/{label}", tag = "nodes",
    params(NodeCordonPath),
    responses((status = 200, description = "The node", body = Node), ErrorResponses),
)]
pub async fn del_node_cordon(
    State(api): State<Api>,
    PathArgs(path): PathArgs<NodeCordonPath>,
) -> Answer<Node> {
    let id = name_id("node", &path.id)?;
    let label = name_id("cordon label", &path.label)?;
    Ok(Json(api.del_node_cordon(&id, &label).await?))
}

/// Drain a node under a label: cordon it and move its volume targets off.
#[utoipa::path(
    put, path = "/v0/nodes/{id}/drain/{label}", tag = "nodes",
    params(NodeCordonPath),
    responses((status = 200, description = "The node", body = Node), ErrorResponses),
)]
pub async fn put_node_drain(
    State(api): State<Api>,
    PathArgs(path): PathArgs<NodeCordonPath>,
) -> Answer<Node> {
    let id = name_id("node", &path.id)?;
    let label = name_id("drain label", &path.label)?;
    Ok(Json(api.put_node_drain(&id, &label).await?))
}
