//! The REST API server of the control plane (DESIGN.md section 4).
//!
//! [`router`] turns any [`openapi::CoreApi`] into the `/v0` HTTP API, with
//! its OpenAPI 3 document at `GET /v0/api/spec` (generated from the
//! handlers in [`handlers`] and the models of the `openapi` crate, see
//! [`spec`]) and `GET /live` / `GET /ready` probes. The core agent serves it
//! over its own registry; the `api-rest` binary ([`server`]) serves it over
//! an [`openapi::RestClient`] that forwards to the core agent.
//!
//! Invariants of the HTTP layer:
//! - every answer that is not a success is a JSON [`openapi::RestError`]
//!   whose status is its kind's status (405 for a method a path does not
//!   take is the one exception), including unknown routes, bad bodies and
//!   missing credentials;
//! - input checks (JSON shape, ids, sizes, counts) happen before the
//!   [`openapi::CoreApi`] is called: a refused request changes nothing.

#![forbid(unsafe_code)]

pub mod error;
pub mod extract;
pub mod handlers;
pub mod router;
pub mod server;
pub mod spec;
pub mod token;

pub use error::ApiError;
pub use router::{router, RouterOptions};
pub use spec::openapi_document;
