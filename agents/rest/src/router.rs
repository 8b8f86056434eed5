//! The axum router of the REST API: the routes of [`crate::handlers`],
//! JSON answers for unknown routes (404) and methods (405), the optional
//! bearer-token check, a body size limit and one log line per request.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, put};
use axum::Router;
use openapi::{CoreApi, ErrorKind, RestError};

use crate::error::ApiError;
use crate::extract::MAX_BODY_BYTES;
use crate::handlers as h;
use crate::spec::UNAUTHENTICATED_PATHS;

/// Settings of [`router`].
#[derive(Clone, Default)]
pub struct RouterOptions {
    /// When set, every request but the spec and the probes must carry
    /// `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
    /// With a token set, the spec and the probes need it too: for the core
    /// agent's HTTP API, which only `api-rest` calls, so that no route of
    /// it answers without the token.
    pub guard_every_route: bool,
}

impl std::fmt::Debug for RouterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterOptions")
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("guard_every_route", &self.guard_every_route)
            .finish()
    }
}

/// The REST API over `api`: every `/v0` endpoint, `GET /v0/api/spec`,
/// `GET /live` and `GET /ready`.
pub fn router(api: Arc<dyn CoreApi>, opts: RouterOptions) -> Router {
    let routes = Router::new()
        .route("/v0/volumes", get(h::get_volumes))
        .route(
            "/v0/volumes/{id}",
            get(h::get_volume).put(h::put_volume).delete(h::del_volume),
        )
        .route(
            "/v0/volumes/{id}/replica_count/{n}",
            put(h::put_volume_replica_count),
        )
        .route("/v0/volumes/{id}/size", put(h::put_volume_size))
        .route(
            "/v0/volumes/{id}/target",
            put(h::put_volume_target).delete(h::del_volume_target),
        )
        .route(
            "/v0/volumes/{id}/target/republish",
            put(h::put_volume_republish),
        )
        .route(
            "/v0/volumes/{id}/target/retired",
            delete(h::del_volume_retired_targets),
        )
        .route(
            "/v0/volumes/{id}/rebuild-history",
            get(h::get_rebuild_history),
        )
        .route("/v0/volumes/{id}/stats", get(h::get_volume_stats))
        .route("/v0/pools", get(h::get_pools))
        .route("/v0/pools/{id}", get(h::get_pool).delete(h::del_pool))
        .route("/v0/pools/{id}/stats", get(h::get_pool_stats))
        .route("/v0/pools/{id}/label/{label}", any(h::pool_label))
        .route("/v0/nodes/{node}/pools", get(h::get_node_pools))
        .route(
            "/v0/nodes/{node}/pools/{pool}",
            put(h::put_node_pool).delete(h::del_node_pool),
        )
        .route(
            "/v0/nodes/{node}/pools/{pool}/stats",
            get(h::get_node_pool_stats),
        )
        .route("/v0/replicas", get(h::get_replicas))
        .route("/v0/replicas/{id}", get(h::get_replica))
        .route("/v0/nexuses", get(h::get_nexuses))
        .route("/v0/nexuses/{id}", get(h::get_nexus))
        .route("/v0/nodes", get(h::get_nodes))
        .route("/v0/nodes/{id}", get(h::get_node))
        .route(
            "/v0/nodes/{id}/cordon/{label}",
            put(h::put_node_cordon).delete(h::del_node_cordon),
        )
        .route("/v0/nodes/{id}/drain/{label}", put(h::put_node_drain))
        .route("/v0/nodes/{id}/label/{label}", any(h::node_label))
        .route("/v0/specs", get(h::get_specs))
        .route("/v0/versions", get(h::get_versions))
        .route(
            "/v0/upgrade-status",
            get(h::get_upgrade_status)
                .put(h::put_upgrade_status)
                .delete(h::del_upgrade_status),
        )
        .route("/v0/api/spec", get(h::get_api_spec))
        .route("/live", get(h::live))
        .route("/ready", get(h::ready))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(api);

    let routes = match opts.bearer_token {
        Some(token) => {
            let token: Arc<str> = Arc::from(token);
            let open_paths: &'static [&'static str] = if opts.guard_every_route {
                &[]
            } else {
                &UNAUTHENTICATED_PATHS
            };
            routes.layer(middleware::from_fn(move |req: Request, next: Next| {
                let token = token.clone();
                async move { check_bearer(&token, open_paths, req, next).await }
            }))
        }
        None => routes,
    };

    routes
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(log_request))
}

async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    RestError::new(
        ErrorKind::NotFound,
        format!("no such endpoint: {method} {}", uri.path()),
    )
    .into()
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::from(RestError::new(
        ErrorKind::Unimplemented,
        format!(
            "method {method} is not allowed on {} (see the Allow header)",
            uri.path()
        ),
    ))
    .with_status(StatusCode::METHOD_NOT_ALLOWED)
}

async fn check_bearer(token: &str, open_paths: &[&str], req: Request, next: Next) -> Response {
    if open_paths.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let Some(header) = req.headers().get(header::AUTHORIZATION) else {
        return unauthenticated("missing credentials: send Authorization: Bearer <token>");
    };
    let presented = header.to_str().ok().and_then(|value| {
        let value = value.trim();
        let scheme = value.get(..6)?;
        let rest = value.get(6..)?;
        (scheme.eq_ignore_ascii_case("bearer") && (rest.is_empty() || rest.starts_with(' ')))
            .then(|| rest.trim())
    });
    match presented {
        Some(presented) if same_secret(presented.as_bytes(), token.as_bytes()) => {
            next.run(req).await
        }
        _ => unauthenticated("the credentials are not a valid bearer token"),
    }
}

fn unauthenticated(message: &str) -> Response {
    ApiError::from(RestError::new(ErrorKind::Unauthenticated, message)).into_response()
}

/// Compares secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status();
    let elapsed_ms = started.elapsed().as_millis();
    if status.is_server_error() {
        tracing::warn!(%method, %path, status = status.as_u16(), elapsed_ms, "request failed");
    } else {
        tracing::debug!(%method, %path, status = status.as_u16(), elapsed_ms, "request");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }

    #[test]
    fn debug_hides_the_token() {
        let opts = RouterOptions {
            bearer_token: Some("hush".into()),
            ..Default::default()
        };
        assert!(!format!("{opts:?}").contains("hush"));
    }
}
