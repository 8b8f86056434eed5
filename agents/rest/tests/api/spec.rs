//! The OpenAPI document served at `GET /v0/api/spec`: valid JSON, OpenAPI
//! 3.x, every route with its methods, every error status with the
//! RestError schema, every reference resolvable.

use std::collections::BTreeSet;

use api_rest::extract::{LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN, NAME_PATTERN};
use serde_json::Value;

use super::support::TestServer;

/// Every documented path and its methods.
const ROUTES: &[(&str, &[&str])] = &[
    ("/v0/volumes", &["get"]),
    ("/v0/volumes/{id}", &["get", "put", "delete"]),
    ("/v0/volumes/{id}/replica_count/{n}", &["put"]),
    ("/v0/volumes/{id}/size", &["put"]),
    ("/v0/volumes/{id}/target", &["put", "delete"]),
    ("/v0/volumes/{id}/target/republish", &["put"]),
    ("/v0/volumes/{id}/target/retired", &["delete"]),
    ("/v0/volumes/{id}/rebuild-history", &["get"]),
    ("/v0/volumes/{id}/stats", &["get"]),
    ("/v0/pools", &["get"]),
    ("/v0/pools/{id}", &["get", "delete"]),
    ("/v0/pools/{id}/stats", &["get"]),
    ("/v0/pools/{id}/label/{key}={value}", &["put"]),
    ("/v0/pools/{id}/label/{key}", &["delete"]),
    ("/v0/nodes/{node}/pools", &["get"]),
    ("/v0/nodes/{node}/pools/{pool}", &["put", "delete"]),
    ("/v0/nodes/{node}/pools/{pool}/stats", &["get"]),
    ("/v0/replicas", &["get"]),
    ("/v0/replicas/{id}", &["get"]),
    ("/v0/nexuses", &["get"]),
    ("/v0/nexuses/{id}", &["get"]),
    ("/v0/nodes", &["get"]),
    ("/v0/nodes/{id}", &["get"]),
    ("/v0/nodes/{id}/cordon/{label}", &["put", "delete"]),
    ("/v0/nodes/{id}/drain/{label}", &["put"]),
    ("/v0/nodes/{id}/label/{key}={value}", &["put"]),
    ("/v0/nodes/{id}/label/{key}", &["delete"]),
    ("/v0/specs", &["get"]),
    ("/v0/versions", &["get"]),
    ("/v0/upgrade-status", &["get", "put", "delete"]),
    ("/v0/api/spec", &["get"]),
    ("/live", &["get"]),
    ("/ready", &["get"]),
];

const ERROR_STATUSES: &[&str] = &[
    "400", "401", "403", "404", "406", "409", "412", "500", "501", "503", "504", "507",
];

async fn served_spec() -> Value {
    let server = TestServer::open().await;
    server.client().get_spec_json().await.expect("spec")
}

fn refs(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                found.insert(target.clone());
            }
            map.values().for_each(|v| refs(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

#[tokio::test]
async fn spec_is_openapi_3_with_every_route() {
    let spec = served_spec().await;
    assert_eq!(spec, *api_rest::spec::openapi_json());
    let version = spec["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3."), "{version}");
    assert!(spec["info"]["title"].is_string());

    let paths = spec["paths"].as_object().expect("paths");
    let documented: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = ROUTES.iter().map(|(path, _)| *path).collect();
    assert_eq!(documented, expected);
    for (path, methods) in ROUTES {
        let item = paths[*path].as_object().expect("path item");
        let got: BTreeSet<&str> = item.keys().map(String::as_str).collect();
        let want: BTreeSet<&str> = methods.iter().copied().collect();
        assert_eq!(got, want, "{path}");
    }
}

#[tokio::test]
async fn every_operation_documents_its_answers() {
    let spec = served_spec().await;
    let mut operation_ids = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let responses = operation["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path}: no success answer"
            );
            assert!(
                operation_ids.insert(operation["operationId"].as_str().expect("id").to_string()),
                "{method} {path}: duplicate operationId"
            );
            // Every path parameter is declared.
            let declared: BTreeSet<&str> = operation["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let templated: BTreeSet<&str> = path.split(['{', '}']).skip(1).step_by(2).collect();
            assert_eq!(declared, templated, "{method} {path}");

            if !path.starts_with("/v0/") || path == "/v0/api/spec" {
                continue;
            }
            for status in ERROR_STATUSES {
                let schema = &responses
                    .get(*status)
                    .unwrap_or_else(|| panic!("{method} {path}: no {status}"))["content"]
                    ["application/json"]["schema"]["$ref"];
                assert_eq!(
                    schema, "#/components/schemas/RestError",
                    "{method} {path} {status}"
                );
            }
            let security = operation["security"].as_array().expect("security");
            assert!(
                security.contains(&serde_json::json!({})),
                "token is optional"
            );
            assert!(security.contains(&serde_json::json!({"bearer": []})));
        }
    }
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn schemas_and_references_resolve() {
    let spec = served_spec().await;
    let schemas = spec["components"]["schemas"].as_object().expect("schemas");
    let mut found = BTreeSet::new();
    refs(&spec, &mut found);
    assert!(!found.is_empty());
    for target in &found {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {target}"));
        assert!(schemas.contains_key(name), "{target} does not resolve");
    }
    for name in [
        "RestError",
        "ErrorKind",
        "Volume",
        "Volumes",
        "Pool",
        "Node",
        "Specs",
    ] {
        assert!(schemas.contains_key(name), "{name}");
    }
    // Request bodies refuse unknown fields, as the server does.
    for name in [
        "CreateVolumeBody",
        "ResizeVolumeBody",
        "PublishVolumeBody",
        "CreatePoolBody",
    ] {
        assert_eq!(schemas[name]["additionalProperties"], false, "{name}");
    }
    let kinds = schemas["ErrorKind"]["enum"].as_array().expect("kinds");
    assert!(kinds.contains(&Value::from("Unauthenticated")));

    let put_volume = &spec["paths"]["/v0/volumes/{id}"]["put"];
    assert_eq!(
        put_volume["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/CreateVolumeBody"
    );
}

#[tokio::test]
async fn parameter_rules_match_the_router() {
    let spec = served_spec().await;
    let param = |path: &str, method: &str, name: &str| -> Value {
        spec["paths"][path][method]["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .unwrap_or_else(|| panic!("{method} {path} {name}"))["schema"]
            .clone()
    };
    assert_eq!(param("/v0/volumes/{id}", "get", "id")["format"], "uuid");
    assert_eq!(param("/v0/replicas/{id}", "get", "id")["format"], "uuid");
    assert_eq!(param("/v0/nexuses/{id}", "get", "id")["format"], "uuid");
    let count = param("/v0/volumes/{id}/replica_count/{n}", "put", "n");
    assert_eq!(count["minimum"], 1);
    assert_eq!(count["maximum"], 255);
    for (path, method, name) in [
        ("/v0/nodes/{id}", "get", "id"),
        ("/v0/pools/{id}", "get", "id"),
        ("/v0/nodes/{node}/pools/{pool}", "put", "pool"),
        ("/v0/nodes/{id}/cordon/{label}", "put", "label"),
    ] {
        assert_eq!(
            param(path, method, name)["pattern"],
            NAME_PATTERN,
            "{path} {name}"
        );
    }
    assert_eq!(
        param("/v0/nodes/{id}/label/{key}={value}", "put", "key")["pattern"],
        LABEL_KEY_PATTERN
    );
    assert_eq!(
        param("/v0/pools/{id}/label/{key}={value}", "put", "value")["pattern"],
        LABEL_VALUE_PATTERN
    );
    let max_entries = spec["paths"]["/v0/volumes"]["get"]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "max_entries"))
        .expect("max_entries")
        .clone();
    assert_eq!(max_entries["in"], "query");
    assert_eq!(max_entries["required"], false);
}

#[tokio::test]
async fn body_rules_match_the_router() {
    let spec = served_spec().await;
    let schemas = &spec["components"]["schemas"];
    let max = Value::from(i64::MAX);
    for (schema, field) in [("CreateVolumeBody", "size"), ("ResizeVolumeBody", "size")] {
        let size = &schemas[schema]["properties"][field];
        assert_eq!(size["minimum"], 1, "{schema}.{field}");
        assert_eq!(size["maximum"], max, "{schema}.{field}");
    }
    let replicas = &schemas["CreateVolumeBody"]["properties"]["replicas"];
    assert_eq!(replicas["minimum"], 1);
    assert_eq!(replicas["maximum"], 255);
    for field in ["node", "frontend_node"] {
        let node = &schemas["PublishVolumeBody"]["properties"][field];
        assert_eq!(node["minLength"], 1, "{field}");
        assert_eq!(node["pattern"], NAME_PATTERN, "{field}");
    }
    let disks = &schemas["CreatePoolBody"]["properties"]["disks"];
    assert_eq!(disks["minItems"], 1);
    assert_eq!(disks["maxItems"], 1);
    assert_eq!(disks["items"]["minLength"], 1);
    let max_entries = spec["paths"]["/v0/volumes"]["get"]["parameters"][0]["schema"].clone();
    assert_eq!(max_entries["maximum"], max);
}
