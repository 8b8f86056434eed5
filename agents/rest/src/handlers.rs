//! One handler per endpoint, in one module per resource. Each checks its
//! input (see [`crate::extract`]), makes one [`CoreApi`] call and answers
//! its result as JSON. The `#[utoipa::path]` attribute on each is its entry
//! in the OpenAPI document: paths, parameters, bodies and answers are stated
//! once, beside the handler.

use std::sync::Arc;

use axum::Json;
use openapi::CoreApi;

use crate::error::ApiError;

mod labels;
mod nodes;
mod params;
mod pools;
mod probes;
mod replicas;
mod specs;
mod stats;
mod upgrade;
mod volumes;

pub use labels::*;
pub use nodes::*;
pub use params::*;
pub use pools::*;
pub use probes::*;
pub use replicas::*;
pub use specs::*;
pub use stats::*;
pub use upgrade::*;
pub use volumes::*;

/// What every handler calls.
pub type Api = Arc<dyn CoreApi>;

type Answer<T> = Result<Json<T>, ApiError>;
