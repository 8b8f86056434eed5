//! Handlers of `/v0/volumes`: list, get, create, delete, scale, resize,
//! publish, unpublish and the rebuild history of a volume's target.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use openapi::models::*;

use super::params::*;
use super::{Answer, Api};
use crate::error::ApiError;
use crate::extract::*;
use crate::spec::{ErrorResponses, MAX_INT64};

/// List volumes, one page at a time.
#[utoipa::path(
    get, path = "/v0/volumes", tag = "volumes",
    params(VolumesQuery),
    responses((status = 200, description = "One page of volumes", body = Volumes), ErrorResponses),
)]
pub async fn get_volumes(
    State(api): State<Api>,
    QueryArgs(query): QueryArgs<VolumesQuery>,
) -> Answer<Volumes> {
    check_int64("max_entries", query.max_entries)?;
    if let Some(token) = query.starting_token {
        check_int64("starting_token", token)?;
    }
    Ok(Json(
        api.get_volumes(query.max_entries, query.starting_token)
            .await?,
    ))
}

/// Get one volume.
#[utoipa::path(
    get, path = "/v0/volumes/{id}", tag = "volumes",
    params(VolumePath),
    responses((status = 200, description = "The volume", body = Volume), ErrorResponses),
)]
pub async fn get_volume(
    State(api): State<Api>,
    PathArgs(path): PathArgs<VolumePath>,
) -> Answer<Volume> {
    let id = uuid_id("volume", &path.id)?;
    Ok(Json(api.get_volume(&id).await?))
}

/// Create a volume (its replicas are placed now; see the body).
#[utoipa::path(
    put, path = "/v0/volumes/{id}", tag = "volumes",
    params(VolumePath),
    request_body = CreateVolumeBody,
    responses((status = 200, description = "The new volume", body = Volume), ErrorResponses),
)]
pub async fn put_volume(
    State(api): State<Api>,
    PathArgs(path): PathArgs<VolumePath>,
    JsonBody(body): JsonBody<CreateVolumeBody>,
) -> Answer<Volume> {
    let id = uuid_id("volume", &path.id)?;
    check_size(body.size)?;
    if body.replicas == 0 {
        return Err(ApiError::invalid("a volume needs at least 1 replica"));
    }
    Ok(Json(api.put_volume(&id, body).await?))
}

/// Delete a volume with its replicas and target.
#[utoipa::path(
    delete, path = "/v0/volumes/{id}", tag = "volumes",
    params(VolumePath),
    responses((status = 204, description = "Deleted"), ErrorResponses),
)]
pub async fn del_volume(
    State(api): State<Api>,
    PathArgs(path): PathArgs<VolumePath>,
) -> Result<StatusCode, ApiError> {
    let id = uuid_id("volume", &path.id)?;
    api.del_volume(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Scale a volume to `n` replicas.
#[utoipa::path(
    put, path = "/v0/volumes/{id}/replica_count/{n}", tag = "volumes",
    params(ReplicaCountPath),
    responses((status = 200, description = "The volume", body = Volume), ErrorResponses),
)]
pub async fn put_volume_replica_count(
    State(api): State<Api>,
    PathArgs(path): PathArgs<ReplicaCountPath>,
) -> Answer<Volume> {
    let id = uuid_id("volume", &path.id)?;
    let count = replica_count(&path.n)?;
    Ok(Json(api.put_volume_replica_count(&id, count).await?))
}

/// Grow a volume.
#[utoipa::path(
    put, path = "/v0/volumes/{id}/size", tag = "volumes",
    params(VolumePath),
    request_body = ResizeVolumeBody,
    responses((status = 200, description = "The volume", body = Volume), ErrorResponses),
)]
pub async fn put_volume_size(
    State(api): State<Api>,
    PathArgs(path): PathArgs<VolumePath>,
    JsonBody(body): JsonBody<ResizeVolumeBody>,
) -> Answer<Volume> {
    let id = uuid_id("volume", &path.id)?;
    check_size(body.size)?;
    Ok(Json(api.put_volume_size(&id, body).await?))
}

/// The target and frontend node names of a publish or republish body.
fn check_target_nodes(node: Option<&str>, frontend: Option<&str>) -> Result<(), ApiError> {
    if let Some(node) = node {
        name_id("target node", node)?;
    }
    if let Some(node) = frontend {
        name_id("frontend node", node)?;
    }
    Ok(())
}

/// Publish a volume: create its target (nexus) and share it.
#[utoipa::path(
    put, path = "/v0/volumes/{id}/target", tag = "volumes",
    params(VolumePath),
    request_body = PublishVolumeBody,
    responses((status = 200, description = "The published volume", body = Volume), ErrorResponses),
)]
pub async fn put_volume_target(
    State(api): State<Api>,
    PathArgs(path): PathArgs<VolumePath>,
    JsonBody(body): JsonBody<PublishVolumeBody>,
) -> Answer<Volume> {
    let id = uuid_id("volume", &path.id)?;
    check_target_nodes(body.node.as_deref(), body.frontend_node.as_deref())?;
    Ok(Json(api.put_volume_target(&id, body).await?))
}

/// Republish a published volume on another node (switch-over): a new
/// target with a fresh controller-ID window, whose reservation preempts the
/// old target's on every replica; the old target is destroyed (or left to
/// the garbage collector when its node cannot be reached).
#[utoipa::path(
    put, path = "/v0/volumes/{id}/target/republish", tag = "volumes",
    params(VolumePath),
    request_body = RepublishVolumeBody,
    responses((status = 200, description = "The volume on its new target", body = Volume), ErrorResponses),
)]
pub async fn put_volume_republish(
    State(api): State<Api>,
    PathArgs(path): PathArgs<VolumePath>,
    JsonBody(body): JsonBody<RepublishVolumeBody>,
) -> Answer<Volume> {
    let id = uuid_id("volume", &path.id)?;
    check_target_nodes(body.node.as_deref(), body.frontend_node.as_deref())?;
    Ok(Json(api.put_volume_republish(&id, body).await?))
}

/// Destroy the old targets a make-before-break republish kept published
/// (ANA inaccessible) until the hosts had their new path.
#[utoipa::path(
    delete, path = "/v0/volumes/{id}/target/retired", tag = "volumes",
    params(VolumePath),
    responses((status = 200, description = "The volume with its current target only", body = Volume), ErrorResponses),
)]
pub async fn del_volume_retired_targets(
    State(api): State<Api>,
    PathArgs(path): PathArgs<VolumePath>,
) -> Answer<Volume> {
    let id = uuid_id("volume", &path.id)?;
    Ok(Json(api.del_volume_retired_targets(&id).await?))
}

/// Unpublish a volume: tear its target down.
#[utoipa::path(
    delete, path = "/v0/volumes/{id}/target", tag = "volumes",
    params(VolumePath, UnpublishQuery),
    responses((status = 200, description = "The unpublished volume", body = Volume), ErrorResponses),
)]
pub async fn del_volume_target(
    State(api): State<Api>,
    PathArgs(path): PathArgs<VolumePath>,
    QueryArgs(query): QueryArgs<UnpublishQuery>,
) -> Answer<Volume> {
    let id = uuid_id("volume", &path.id)?;
    Ok(Json(api.del_volume_target(&id, query.force).await?))
}

/// The rebuilds of a volume's target, oldest first.
#[utoipa::path(
    get, path = "/v0/volumes/{id}/rebuild-history", tag = "volumes",
    params(VolumePath),
    responses((status = 200, description = "The rebuild history", body = RebuildHistory), ErrorResponses),
)]
pub async fn get_rebuild_history(
    State(api): State<Api>,
    PathArgs(path): PathArgs<VolumePath>,
) -> Answer<RebuildHistory> {
    let id = uuid_id("volume", &path.id)?;
    Ok(Json(api.get_rebuild_history(&id).await?))
}

fn check_size(size: u64) -> Result<(), ApiError> {
    if size == 0 {
        return Err(ApiError::invalid(
            "volume size must be greater than 0 bytes",
        ));
    }
    check_int64("volume size", size)
}

fn check_int64(what: &str, value: u64) -> Result<(), ApiError> {
    if value > MAX_INT64 {
        return Err(ApiError::invalid(format!(
            "{what} must be at most {MAX_INT64}"
        )));
    }
    Ok(())
}
