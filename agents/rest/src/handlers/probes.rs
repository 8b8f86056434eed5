//! This API's own document (`/v0/api/spec`) and the probes: liveness
//! (`/live`, the server answers) and readiness (`/ready`, the control plane
//! behind it answers too).

use axum::extract::State;
use axum::Json;
use openapi::RestError;

use super::{Answer, Api};
use crate::error::ApiError;

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
