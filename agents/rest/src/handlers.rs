//! One handler per endpoint. Each checks its input (see [`crate::extract`]),
//! makes one [`CoreApi`] call and answers its result as JSON. The
//! `#[utoipa::path]` attribute on each is its entry in the OpenAPI
//! document: paths, parameters, bodies and answers are stated once, here.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use openapi::models::*;
use openapi::{CoreApi, RestError};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::ApiError;
use crate::extract::*;
use crate::spec::{ErrorResponses, MAX_INT64};

mod upgrade;
pub use upgrade::*;

/// What every handler calls.
pub type Api = Arc<dyn CoreApi>;

type Answer<T> = Result<Json<T>, ApiError>;

// ------------------------------------------------------------- parameters --

/// `GET /v0/volumes` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VolumesQuery {
    /// Most volumes in one page; 0 (the default) means all.
    #[serde(default)]
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    pub max_entries: u64,
    /// Where the page starts: the `next_token` of the previous page.
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    pub starting_token: Option<u64>,
}

/// `DELETE /v0/volumes/{id}/target` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UnpublishQuery {
    /// Tear the target down even when its node is unreachable.
    #[serde(default)]
    pub force: bool,
}

/// A volume in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct VolumePath {
    /// The volume's uuid.
    #[param(format = Uuid)]
    pub id: String,
}

/// A volume and its new replica count.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ReplicaCountPath {
    /// The volume's uuid.
    #[param(format = Uuid)]
    pub id: String,
    /// The new number of replicas (at most the number of usable nodes).
    #[param(value_type = u8, minimum = 1, maximum = 255)]
    pub n: String,
}

/// A replica in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ReplicaPath {
    /// The replica's uuid.
    #[param(format = Uuid)]
    pub id: String,
}

/// A nexus in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NexusPath {
    /// The nexus's uuid.
    #[param(format = Uuid)]
    pub id: String,
}

/// A pool in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PoolPath {
    /// The pool's name.
    #[param(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^/\u0000-\u001F\u007F-\u009F]+$"
    )]
    pub id: String,
}

/// A node in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NodePath {
    /// The node's name.
    #[param(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^/\u0000-\u001F\u007F-\u009F]+$"
    )]
    pub id: String,
}

/// The node of `/v0/nodes/{node}/pools`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NodePoolsPath {
    /// The node's name.
    #[param(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^/\u0000-\u001F\u007F-\u009F]+$"
    )]
    pub node: String,
}

/// A pool on a node.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NodePoolPath {
    /// The node's name.
    #[param(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^/\u0000-\u001F\u007F-\u009F]+$"
    )]
    pub node: String,
    /// The pool's name.
    #[param(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^/\u0000-\u001F\u007F-\u009F]+$"
    )]
    pub pool: String,
}

/// A node and a cordon or drain label.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NodeCordonPath {
    /// The node's name.
    #[param(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^/\u0000-\u001F\u007F-\u009F]+$"
    )]
    pub id: String,
    /// The cordon or drain label (who asked, e.g. `upgrade`).
    #[param(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^/\u0000-\u001F\u007F-\u009F]+$"
    )]
    pub label: String,
}

/// A node or pool and its label segment, as routed: `label` is
/// `{key}={value}` (PUT) or `{key}` (DELETE).
#[derive(Debug, Deserialize)]
pub struct LabelPath {
    pub id: String,
    pub label: String,
}

// ---------------------------------------------------------------- volumes --

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
    if let Some(node) = &body.node {
        name_id("target node", node)?;
    }
    if let Some(node) = &body.frontend_node {
        name_id("frontend node", node)?;
    }
    Ok(Json(api.put_volume_target(&id, body).await?))
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

// ------------------------------------------------------------------ pools --

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

/// Set a pool label.
#[utoipa::path(
    put, path = "/v0/pools/{id}/label/{key}={value}", tag = "pools",
    params(
        PoolPath,
        ("key" = String, Path, description = "Label key (may hold '/', not '=')",
            min_length = 1, max_length = 255, pattern = r"^[^=\u0000-\u001F\u007F-\u009F]+$"),
        ("value" = String, Path, description = "Label value",
            max_length = 255, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"),
    ),
    responses((status = 200, description = "The pool", body = Pool), ErrorResponses),
)]
pub async fn put_pool_label(
    State(api): State<Api>,
    PathArgs(path): PathArgs<LabelPath>,
) -> Answer<Pool> {
    let id = name_id("pool", &path.id)?;
    let (key, value) = label_pair(&path.label)?;
    Ok(Json(api.label_pool(&id, &key, Some(&value)).await?))
}

/// Remove a pool label.
#[utoipa::path(
    delete, path = "/v0/pools/{id}/label/{key}", tag = "pools",
    params(
        PoolPath,
        ("key" = String, Path, description = "Label key",
            min_length = 1, max_length = 255, pattern = r"^[^=\u0000-\u001F\u007F-\u009F]+$"),
    ),
    responses(
        (status = 200, description = "The pool", body = Pool),
        (status = 405, description = "The path names a key=value pair, which takes PUT", body = RestError),
        ErrorResponses,
    ),
)]
pub async fn del_pool_label(
    State(api): State<Api>,
    PathArgs(path): PathArgs<LabelPath>,
) -> Answer<Pool> {
    let id = name_id("pool", &path.id)?;
    let key = label_key(&path.label)?;
    Ok(Json(api.label_pool(&id, &key, None).await?))
}

// ------------------------------------------------------- replicas, nexus --

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

// ------------------------------------------------------------------ nodes --

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

/// Set a node label.
#[utoipa::path(
    put, path = "/v0/nodes/{id}/label/{key}={value}", tag = "nodes",
    params(
        NodePath,
        ("key" = String, Path, description = "Label key (may hold '/', not '=')",
            min_length = 1, max_length = 255, pattern = r"^[^=\u0000-\u001F\u007F-\u009F]+$"),
        ("value" = String, Path, description = "Label value",
            max_length = 255, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"),
    ),
    responses((status = 200, description = "The node", body = Node), ErrorResponses),
)]
pub async fn put_node_label(
    State(api): State<Api>,
    PathArgs(path): PathArgs<LabelPath>,
) -> Answer<Node> {
    let id = name_id("node", &path.id)?;
    let (key, value) = label_pair(&path.label)?;
    Ok(Json(api.label_node(&id, &key, Some(&value)).await?))
}

/// Remove a node label.
#[utoipa::path(
    delete, path = "/v0/nodes/{id}/label/{key}", tag = "nodes",
    params(
        NodePath,
        ("key" = String, Path, description = "Label key",
            min_length = 1, max_length = 255, pattern = r"^[^=\u0000-\u001F\u007F-\u009F]+$"),
    ),
    responses(
        (status = 200, description = "The node", body = Node),
        (status = 405, description = "The path names a key=value pair, which takes PUT", body = RestError),
        ErrorResponses,
    ),
)]
pub async fn del_node_label(
    State(api): State<Api>,
    PathArgs(path): PathArgs<LabelPath>,
) -> Answer<Node> {
    let id = name_id("node", &path.id)?;
    let key = label_key(&path.label)?;
    Ok(Json(api.label_node(&id, &key, None).await?))
}

/// `/v0/nodes/{id}/label/{label}`: one route, two documented resources
/// (`.../label/{key}={value}` takes PUT, `.../label/{key}` takes DELETE).
pub async fn node_label(
    State(api): State<Api>,
    method: Method,
    path: PathArgs<LabelPath>,
) -> Response {
    match LabelOperation::of(&method, &path.0.label) {
        LabelOperation::Set => put_node_label(State(api), path).await.into_response(),
        LabelOperation::Remove => del_node_label(State(api), path).await.into_response(),
        refused => refused.not_allowed(&method),
    }
}

/// `/v0/pools/{id}/label/{label}`, as [`node_label`].
pub async fn pool_label(
    State(api): State<Api>,
    method: Method,
    path: PathArgs<LabelPath>,
) -> Response {
    match LabelOperation::of(&method, &path.0.label) {
        LabelOperation::Set => put_pool_label(State(api), path).await.into_response(),
        LabelOperation::Remove => del_pool_label(State(api), path).await.into_response(),
        refused => refused.not_allowed(&method),
    }
}

/// What a request on a label path asks for.
enum LabelOperation {
    /// PUT `.../label/{key}={value}`.
    Set,
    /// DELETE `.../label/{key}`.
    Remove,
    /// Another method on a `{key}={value}` path.
    PairTakesPut,
    /// Another method on a `{key}` path.
    KeyTakesDelete,
}

impl LabelOperation {
    fn of(method: &Method, segment: &str) -> Self {
        match (method, segment.contains('=')) {
            (&Method::PUT, true) => Self::Set,
            (&Method::DELETE, false) => Self::Remove,
            (_, true) => Self::PairTakesPut,
            (_, false) => Self::KeyTakesDelete,
        }
    }

    /// The 405 answer, with its Allow header.
    fn not_allowed(self, method: &Method) -> Response {
        let (allow, hint) = match self {
            Self::PairTakesPut | Self::Set => (
                "PUT",
                "a label key=value path takes PUT; remove a label with DELETE .../label/{key}",
            ),
            Self::KeyTakesDelete | Self::Remove => (
                "DELETE",
                "a label key path takes DELETE; set a label with PUT .../label/{key}={value}",
            ),
        };
        let mut response = ApiError::from(RestError::new(
            openapi::ErrorKind::Unimplemented,
            format!("method {method} is not allowed here: {hint}"),
        ))
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
        .into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        response
    }
}

// ------------------------------------------------------------------ specs --

/// Every spec (desired state) the core agent holds.
#[utoipa::path(
    get, path = "/v0/specs", tag = "specs",
    responses((status = 200, description = "Every spec", body = Specs), ErrorResponses),
)]
pub async fn get_specs(State(api): State<Api>) -> Answer<Specs> {
    Ok(Json(api.get_specs().await?))
}

// ------------------------------------------------------ spec, liveness --

/// This API's OpenAPI 3 document.
#[utoipa::path(
    get, path = "/v0/api/spec", tag = "api",
    responses((status = 200, description = "The OpenAPI document", body = Object, content_type = "application/json")),
)]
pub async fn get_api_spec() -> Json<&'static serde_json::Value> {
    Json(crate::spec::openapi_json())
}

/// Health of a probe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// `live` or `ready`.
    pub status: String,
}

/// Liveness: the server answers.
#[utoipa::path(
    get, path = "/live", tag = "api",
    responses((status = 200, description = "The server is up", body = Health)),
)]
pub async fn live() -> Json<Health> {
    Json(Health {
        status: "live".to_string(),
    })
}

/// Readiness: the server answers and the control plane behind it does.
#[utoipa::path(
    get, path = "/ready", tag = "api",
    responses(
        (status = 200, description = "Ready to serve", body = Health),
        (status = 503, description = "The control plane does not answer", body = RestError),
    ),
)]
pub async fn ready(State(api): State<Api>) -> Answer<Health> {
    match api.get_nodes().await {
        Ok(_) => Ok(Json(Health {
            status: "ready".to_string(),
        })),
        Err(error) => match error.kind {
            openapi::ErrorKind::Unavailable | openapi::ErrorKind::Timeout => Err(ApiError::from(
                RestError::new(
                    openapi::ErrorKind::Unavailable,
                    "not ready: the control plane does not answer",
                )
                .with_details(error.to_string()),
            )),
            // It answered, even if with an error.
            _ => Ok(Json(Health {
                status: "ready".to_string(),
            })),
        },
    }
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
