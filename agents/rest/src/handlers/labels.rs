//! Labels of pools and nodes: set (`PUT .../label/{key}={value}`) and
//! remove (`DELETE .../label/{key}`), one route each, dispatched by method
//! and segment (a wrong pair is a 405 with its `Allow` header).

use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use openapi::models::*;
use openapi::RestError;

use super::params::*;
use super::{Answer, Api};
use crate::error::ApiError;
use crate::extract::*;
use crate::spec::ErrorResponses;

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
