//! Handlers of `/v0/replicas` and `/v0/nexuses`: the read-only views of
//! replicas and volume targets.

use axum::extract::State;
use axum::Json;
use openapi::models::*;

use super::params::*;
use super::{Answer, Api};
use crate::extract::*;
use crate::spec::ErrorResponses;

/// List replicas.
#[utoipa::path(
    get, path = "/v0/replicas", tag = "replicas",
    responses((status = 200, description = "Every replica", body = Vec<Replica>), ErrorResponses),
)]
pub async fn get_replicas(State(api): State<Api>) -> Answer<Vec<Replica>> {
    Ok(Json(api.get_replicas().await?))
}

/// Get one replica.
#[utoipa::path(
    get, path = "/v0/replicas/{id}", tag = "replicas",
    params(ReplicaPath),
    responses((status = 200, description = "The replica", body = Replica), ErrorResponses),
)]
pub async fn get_replica(
    State(api): State<Api>,
    PathArgs(path): PathArgs<ReplicaPath>,
) -> Answer<Replica> {
    let id = uuid_id("replica", &path.id)?;
    Ok(Json(api.get_replica(&id).await?))
}

/// List nexuses.
#[utoipa::path(
    get, path = "/v0/nexuses", tag = "nexuses",
    responses((status = 200, description = "Every nexus", body = Vec<Nexus>), ErrorResponses),
)]
pub async fn get_nexuses(State(api): State<Api>) -> Answer<Vec<Nexus>> {
    Ok(Json(api.get_nexuses().await?))
}

/// Get one nexus.
#[utoipa::path(
    get, path = "/v0/nexuses/{id}", tag = "nexuses",
    params(NexusPath),
    responses((status = 200, description = "The nexus", body = Nexus), ErrorResponses),
)]
pub async fn get_nexus(
    State(api): State<Api>,
    PathArgs(path): PathArgs<NexusPath>,
) -> Answer<Nexus> {
    let id = uuid_id("nexus", &path.id)?;
    Ok(Json(api.get_nexus(&id).await?))
}
