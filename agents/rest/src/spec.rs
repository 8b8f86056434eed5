//! The OpenAPI 3 document of the REST API, generated from the code: the
//! paths from the `#[utoipa::path]` attribute of each handler, the schemas
//! from the `openapi` models' `ToSchema` derives, and the error answers from
//! [`ErrorKind`] itself (every status a [`RestError`] can carry, each
//! listing its kinds). Served at `GET /v0/api/spec`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use openapi::models::*;
use openapi::{ErrorKind, RestError};
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ArrayItems, Object, Schema};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::{IntoResponses, Modify, OpenApi, PartialSchema};

use crate::extract::{MAX_NAME_CHARS, NAME_PATTERN};
use crate::handlers;

/// Name of the bearer-token security scheme in the document.
pub const BEARER_SCHEME: &str = "bearer";

/// Paths that answer without credentials.
pub const UNAUTHENTICATED_PATHS: [&str; 3] = ["/v0/api/spec", "/live", "/ready"];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Mayastor control plane REST API",
        description = "Volumes, pools, replicas, nexuses and nodes of the control plane. \
            Every failed request answers a JSON RestError with a stable `kind`."
    ),
    paths(
        handlers::get_volumes,
        handlers::get_volume,
        handlers::put_volume,
        handlers::del_volume,
        handlers::put_volume_replica_count,
        handlers::put_volume_size,
        handlers::put_volume_target,
        handlers::put_volume_republish,
        handlers::del_volume_retired_targets,
        handlers::del_volume_target,
        handlers::get_rebuild_history,
        handlers::get_volume_stats,
        handlers::get_pools,
        handlers::get_pool,
        handlers::del_pool,
        handlers::get_node_pools,
        handlers::put_node_pool,
        handlers::del_node_pool,
        handlers::get_pool_stats,
        handlers::get_node_pool_stats,
        handlers::put_pool_label,
        handlers::del_pool_label,
        handlers::get_replicas,
        handlers::get_replica,
        handlers::get_nexuses,
        handlers::get_nexus,
        handlers::get_nodes,
        handlers::get_node,
        handlers::put_node_cordon,
        handlers::del_node_cordon,
        handlers::put_node_drain,
        handlers::put_node_label,
        handlers::del_node_label,
        handlers::get_specs,
        handlers::get_versions,
        handlers::get_upgrade_status,
        handlers::put_upgrade_status,
        handlers::del_upgrade_status,
        handlers::get_api_spec,
        handlers::live,
        handlers::ready,
    ),
    components(schemas(
        RestError, ErrorKind, handlers::Health,
        Volume, Volumes, VolumeSpec, VolumeState, VolumeStatus, VolumeTarget, VolumePolicy,
        Topology, LabelledTopology, AffinityGroup, ReplicaTopology,
        CreateVolumeBody, ResizeVolumeBody, PublishVolumeBody, RepublishVolumeBody,
        RebuildHistory, RebuildRecord,
        Pool, PoolSpec, PoolState, PoolStatus, CreatePoolBody,
        Replica, ReplicaSpec, ReplicaStatus, ReplicaOwners,
        Nexus, NexusSpec, NexusStatus, Child, ChildState,
        Node, NodeSpec, NodeState, NodeStatus, CordonDrainState, DrainStatus,
        Specs, SpecStatus, Protocol,
        Versions, UpgradeStatus, UpgradeStage, NodeUpgradeStatus, NodeUpgradeState,
        IoStats, VolumeIoStats, ReplicaIoStats, PoolIoStats,
    )),
    modifiers(&BearerAuth, &RouterRules),
    tags(
        (name = "volumes", description = "Volumes: create, scale, resize, publish"),
        (name = "pools", description = "Pools and their labels"),
        (name = "replicas", description = "Replicas"),
        (name = "nexuses", description = "Nexuses (volume targets)"),
        (name = "nodes", description = "Nodes: cordon, drain, labels"),
        (name = "specs", description = "Desired state"),
        (name = "upgrade", description = "Component versions and the guided upgrade's record"),
        (name = "api", description = "This document and the probes"),
    )
)]
struct ApiDoc;

/// The OpenAPI document of this API.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as JSON, built once.
pub fn openapi_json() -> &'static serde_json::Value {
    static DOCUMENT: OnceLock<serde_json::Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        serde_json::to_value(openapi_document())
            .expect("invariant: the generated OpenAPI document serialises to JSON")
    })
}

/// Every error kind with the status it is answered with, read from the
/// kind's own schema so that a new kind shows up without a change here.
pub fn error_statuses() -> BTreeMap<u16, Vec<ErrorKind>> {
    let schema =
        serde_json::to_value(ErrorKind::schema()).expect("invariant: a schema serialises to JSON");
    let mut statuses: BTreeMap<u16, Vec<ErrorKind>> = BTreeMap::new();
    let names = schema
        .get("enum")
        .and_then(|names| names.as_array())
        .cloned()
        .unwrap_or_default();
    for name in names {
        if let Ok(kind) = serde_json::from_value::<ErrorKind>(name) {
            statuses.entry(kind.http_status()).or_default().push(kind);
        }
    }
    statuses
}

/// The error answers of every `/v0` endpoint: each status a [`RestError`]
/// can carry, with the kinds behind it.
pub struct ErrorResponses;

impl IntoResponses for ErrorResponses {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_statuses()
            .into_iter()
            .map(|(status, kinds)| {
                let kinds: Vec<String> = kinds.iter().map(ToString::to_string).collect();
                let response = ResponseBuilder::new()
                    .description(format!("Error, kind: {}", kinds.join(", ")))
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                                "RestError",
                            ))))
                            .build(),
                    )
                    .build();
                (status.to_string(), RefOr::T(response))
            })
            .collect()
    }
}

/// Declares the optional bearer token: the `/v0` endpoints take it (the
/// server may or may not require it), the spec and the probes never do.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER_SCHEME,
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            if UNAUTHENTICATED_PATHS.contains(&path.as_str()) {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                operation.security = Some(vec![
                    SecurityRequirement::default(),
                    SecurityRequirement::new(BEARER_SCHEME, Vec::<String>::new()),
                ]);
            }
        }
    }
}

/// States in the request-body schemas the checks the router makes beyond
/// the models' types (see [`crate::handlers`]), so that a body valid by the
/// document is one the router accepts.
struct RouterRules;

/// Largest size or count a body may carry: the document's `int64`.
pub const MAX_INT64: u64 = i64::MAX as u64;

impl Modify for RouterRules {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        let schemas = &mut components.schemas;
        let mut property = |schema: &str, field: &str, edit: &dyn Fn(&mut Schema)| {
            if let Some(RefOr::T(Schema::Object(object))) = schemas.get_mut(schema) {
                if let Some(RefOr::T(property)) = object.properties.get_mut(field) {
                    edit(property);
                }
            }
        };
        let positive_int64 = |schema: &mut Schema| {
            if let Schema::Object(object) = schema {
                object.minimum = Some(utoipa::Number::Int(1));
                object.maximum = Some(utoipa::Number::Int(i64::MAX as isize));
            }
        };
        let name = |schema: &mut Schema| {
            if let Schema::Object(object) = schema {
                name_rules(object);
            }
        };
        property("CreateVolumeBody", "size", &positive_int64);
        property("CreateVolumeBody", "replicas", &|schema| {
            if let Schema::Object(object) = schema {
                object.minimum = Some(utoipa::Number::Int(1));
                object.maximum = Some(utoipa::Number::Int(255));
            }
        });
        property("ResizeVolumeBody", "size", &positive_int64);
        property("PublishVolumeBody", "node", &name);
        property("PublishVolumeBody", "frontend_node", &name);
        property("CreatePoolBody", "disks", &|schema| {
            if let Schema::Array(array) = schema {
                array.min_items = Some(1);
                array.max_items = Some(1);
                if let ArrayItems::RefOrSchema(item) = &mut array.items {
                    if let RefOr::T(Schema::Object(object)) = item.as_mut() {
                        object.min_length = Some(1);
                    }
                }
            }
        });
    }
}

fn name_rules(object: &mut Object) {
    object.min_length = Some(1);
    object.max_length = Some(MAX_NAME_CHARS);
    object.pattern = Some(NAME_PATTERN.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_documented_status() {
        let statuses = error_statuses();
        let kinds: usize = statuses.values().map(Vec::len).sum();
        assert!(kinds >= 20, "{statuses:?}");
        assert_eq!(
            statuses.get(&404).map(Vec::as_slice),
            Some(&[ErrorKind::NotFound][..])
        );
    }
}
