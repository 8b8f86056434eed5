//! Handlers of the versions and upgrade-status endpoints (the contract is
//! in `openapi::models::upgrade`). The REST server that answers reports its
//! own version in `rest`, whatever the core agent behind it runs.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use openapi::models::{UpgradeStatus, Versions};

use super::{Answer, Api};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::spec::ErrorResponses;

/// Longest version string accepted in an upgrade record.
const MAX_VERSION_LEN: usize = 128;

/// Versions of the REST server, the core agent and the store.
#[utoipa::path(
    get, path = "/v0/versions", tag = "upgrade",
    responses((status = 200, description = "The versions", body = Versions), ErrorResponses),
)]
pub async fn get_versions(State(api): State<Api>) -> Answer<Versions> {
    let mut versions = api.get_versions().await?;
    versions.rest = mayastor_version::version().to_string();
    Ok(Json(versions))
}

/// The record of the current or last upgrade (404 when none).
#[utoipa::path(
    get, path = "/v0/upgrade-status", tag = "upgrade",
    responses((status = 200, description = "The upgrade record", body = UpgradeStatus), ErrorResponses),
)]
pub async fn get_upgrade_status(State(api): State<Api>) -> Answer<UpgradeStatus> {
    Ok(Json(api.get_upgrade_status().await?))
}

/// Write the upgrade record (the upgrade tool does, after every step).
#[utoipa::path(
    put, path = "/v0/upgrade-status", tag = "upgrade",
    request_body = UpgradeStatus,
    responses((status = 200, description = "The upgrade record", body = UpgradeStatus), ErrorResponses),
)]
pub async fn put_upgrade_status(
    State(api): State<Api>,
    JsonBody(body): JsonBody<UpgradeStatus>,
) -> Answer<UpgradeStatus> {
    for (what, version) in [
        ("from_version", &body.from_version),
        ("to_version", &body.to_version),
    ] {
        if version.trim().is_empty() || version.len() > MAX_VERSION_LEN {
            return Err(ApiError::invalid(format!(
                "{what} must be 1 to {MAX_VERSION_LEN} characters"
            )));
        }
    }
    Ok(Json(api.put_upgrade_status(body).await?))
}

/// Delete the upgrade record.
#[utoipa::path(
    delete, path = "/v0/upgrade-status", tag = "upgrade",
    responses((status = 204, description = "Deleted"), ErrorResponses),
)]
pub async fn del_upgrade_status(State(api): State<Api>) -> Result<StatusCode, ApiError> {
    api.del_upgrade_status().await?;
    Ok(StatusCode::NO_CONTENT)
}
