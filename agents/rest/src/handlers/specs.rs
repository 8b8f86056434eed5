//! Handler of `/v0/specs`: every spec (desired state) the core agent
//! holds.

use axum::extract::State;
use axum::Json;
use openapi::models::*;

use super::{Answer, Api};
use crate::spec::ErrorResponses;

/// Every spec (desired state) the core agent holds.
#[utoipa::path(
    get, path = "/v0/specs", tag = "specs",
    responses((status = 200, description = "Every spec", body = Specs), ErrorResponses),
)]
pub async fn get_specs(State(api): State<Api>) -> Answer<Specs> {
    Ok(Json(api.get_specs().await?))
}
