//! Request extractors and input checks. Each extractor turns axum's
//! plain-text rejections into [`ApiError`]s, and the `*_id` checks refuse
//! malformed ids before any [`openapi::CoreApi`] call.
//!
//! Id rules (the OpenAPI document states the same as formats and patterns):
//! - volumes, replicas and nexuses: hyphenated uuids (case-insensitive,
//!   passed on in lower case);
//! - nodes, pools, cordon and drain labels: 1 to [`MAX_NAME_CHARS`]
//!   characters, no `/`, no control characters;
//! - label keys: the same but `/` is allowed (`openebs.io/x`) and `=` is
//!   not; label values may be empty.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::error::ApiError;

/// Longest node, pool or label name, in characters.
pub const MAX_NAME_CHARS: usize = 255;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Pattern of a node, pool, cordon or drain label name (for the spec).
pub const NAME_PATTERN: &str = r"^[^/\u0000-\u001F\u007F-\u009F]+$";

/// Pattern of a label key (for the spec).
pub const LABEL_KEY_PATTERN: &str = r"^[^=\u0000-\u001F\u007F-\u009F]+$";

/// Pattern of a label value (for the spec).
pub const LABEL_VALUE_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";

/// A JSON request body: `content-type: application/json`, not empty, of
/// the shape its schema in the OpenAPI document states (see [`conform`]),
/// and of the endpoint's type exactly (unknown fields are refused by the
/// models).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + ToSchema> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match req.headers().get(CONTENT_TYPE) {
            None => {
                return Err(ApiError::deserialize(
                    "missing content-type: this endpoint takes an application/json body",
                ))
            }
            Some(value) => {
                let is_json = value.to_str().map(is_json_content_type).unwrap_or(false);
                if !is_json {
                    return Err(ApiError::deserialize(format!(
                        "content-type {value:?} is not application/json"
                    )));
                }
            }
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::deserialize(
                "missing request body: this endpoint takes a JSON object",
            ));
        }
        let mut value: Value = serde_json::from_slice(&bytes)
            .map_err(|error| ApiError::deserialize(format!("invalid request body: {error}")))?;
        let schemas = &crate::spec::openapi_json()["components"]["schemas"];
        let schema = json!({ "$ref": format!("#/components/schemas/{}", T::name()) });
        conform(&mut value, &schema, schemas, "")
            .map_err(|error| ApiError::deserialize(format!("invalid request body: {error}")))?;
        let value = serde_path_to_error::deserialize(value).map_err(|error| {
            let path = error.path().to_string();
            if path == "." {
                ApiError::deserialize(format!("invalid request body: {}", error.inner()))
            } else {
                ApiError::deserialize(format!(
                    "invalid request body at '{path}': {}",
                    error.inner()
                ))
            }
        })?;
        Ok(Self(value))
    }
}

/// Checks `value` against the JSON types `schema` states (following
/// `$ref`, `oneOf`/`anyOf`, `properties`, `additionalProperties` and
/// `items`), so that a body is accepted only in the shape the document
/// publishes: serde alone would also take a struct written as an array.
/// Integral floats (`3.0`) where an integer is stated become integers, as
/// JSON Schema counts them as such. Errors name the path of the value.
pub fn conform(
    value: &mut Value,
    schema: &Value,
    schemas: &Value,
    path: &str,
) -> Result<(), String> {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or(reference);
        return match schemas.get(name) {
            Some(target) => conform(value, target, schemas, path),
            None => Ok(()),
        };
    }
    for combinator in ["oneOf", "anyOf"] {
        if let Some(branches) = schema.get(combinator).and_then(Value::as_array) {
            let mut errors = Vec::new();
            for branch in branches {
                let mut candidate = value.clone();
                match conform(&mut candidate, branch, schemas, path) {
                    Ok(()) => {
                        *value = candidate;
                        return Ok(());
                    }
                    Err(error) => errors.push(error),
                }
            }
            // A branch whose type fitted failed deeper down: that says most.
            // Otherwise no type fitted here: list them all.
            let here = format!("{} must be of type ", at(path));
            let (mismatches, deeper): (Vec<String>, Vec<String>) = errors
                .into_iter()
                .partition(|error| error.starts_with(&here));
            if let Some(error) = deeper.into_iter().next() {
                return Err(error);
            }
            let types: Vec<&str> = mismatches
                .iter()
                .map(|error| &error[here.len()..])
                .collect();
            return Err(format!("{here}{}", types.join(" or ")));
        }
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !types.is_empty() && !types.iter().any(|ty| has_type(value, ty)) {
            return Err(format!(
                "{} must be of type {}",
                at(path),
                types.join(" or ")
            ));
        }
    }
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties");
            let additional = schema.get("additionalProperties").filter(|s| s.is_object());
            for (key, item) in map.iter_mut() {
                let item_path = format!("{path}.{key}");
                match properties.and_then(|p| p.get(key)) {
                    Some(property) => conform(item, property, schemas, &item_path)?,
                    None => {
                        if let Some(additional) = additional {
                            conform(item, additional, schemas, &item_path)?;
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items").filter(|s| s.is_object()) {
                for (index, item) in items.iter_mut().enumerate() {
                    conform(item, item_schema, schemas, &format!("{path}[{index}]"))?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether `value` is of JSON Schema type `ty`, making an integral float
/// an integer when `ty` is `integer`.
fn has_type(value: &mut Value, ty: &str) -> bool {
    match ty {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "number" => value.is_number(),
        "integer" => {
            if value.is_i64() || value.is_u64() {
                return true;
            }
            match value.as_f64() {
                Some(float) if float.fract() == 0.0 && float.abs() < 9.0e15 => {
                    // Exact below 2^53: the conversion loses nothing.
                    *value = if float >= 0.0 {
                        Value::from(float as u64)
                    } else {
                        Value::from(float as i64)
                    };
                    true
                }
                _ => false,
            }
        }
        _ => true,
    }
}

fn at(path: &str) -> String {
    if path.is_empty() {
        "the body".to_string()
    } else {
        format!("'{}'", path.trim_start_matches('.'))
    }
}

fn is_json_content_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::invalid(format!("request body larger than {MAX_BODY_BYTES} bytes"))
    } else {
        ApiError::deserialize(format!(
            "cannot read the request body: {}",
            rejection.body_text()
        ))
    }
}

/// Path parameters, with a JSON error when they do not decode.
#[derive(Debug)]
pub struct PathArgs<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathArgs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| Self(value))
            .map_err(|rejection| {
                ApiError::invalid(format!("invalid path: {}", rejection.body_text()))
            })
    }
}

/// Query parameters, with a JSON error when they do not decode.
#[derive(Debug)]
pub struct QueryArgs<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryArgs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|rejection| {
                ApiError::invalid(format!("invalid query: {}", rejection.body_text()))
            })
    }
}

/// A volume, replica or nexus id: a hyphenated uuid, returned lower case.
pub fn uuid_id(what: &str, raw: &str) -> Result<String, ApiError> {
    match uuid::Uuid::try_parse(raw) {
        Ok(uuid) if raw.len() == 36 => Ok(uuid.hyphenated().to_string()),
        _ => Err(ApiError::invalid(format!(
            "{what} id {raw:?} is not a uuid (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
        ))),
    }
}

/// A node, pool, cordon or drain label name (see the module header).
pub fn name_id(what: &str, raw: &str) -> Result<String, ApiError> {
    check_text(what, raw, false)?;
    if raw.contains('/') {
        return Err(ApiError::invalid(format!(
            "{what} {raw:?} must not contain '/'"
        )));
    }
    Ok(raw.to_string())
}

/// A label key (may hold `/`, not `=`).
pub fn label_key(raw: &str) -> Result<String, ApiError> {
    check_text("label key", raw, false)?;
    if raw.contains('=') {
        return Err(ApiError::invalid(format!(
            "label key {raw:?} must not contain '='"
        )));
    }
    Ok(raw.to_string())
}

/// A label value (may be empty).
pub fn label_value(raw: &str) -> Result<String, ApiError> {
    check_text("label value", raw, true)?;
    Ok(raw.to_string())
}

/// `key=value` of a label PUT.
pub fn label_pair(raw: &str) -> Result<(String, String), ApiError> {
    let Some((key, value)) = raw.split_once('=') else {
        return Err(ApiError::invalid(format!(
            "label {raw:?} is not of the form key=value"
        )));
    };
    Ok((label_key(key)?, label_value(value)?))
}

/// A replica count in a path: 1 to 255.
pub fn replica_count(raw: &str) -> Result<u8, ApiError> {
    match raw.parse::<u8>() {
        Ok(0) => Err(ApiError::invalid("replica count must be at least 1")),
        Ok(count) => Ok(count),
        Err(_) => Err(ApiError::invalid(format!(
            "replica count {raw:?} is not a number from 1 to 255"
        ))),
    }
}

fn check_text(what: &str, raw: &str, may_be_empty: bool) -> Result<(), ApiError> {
    if raw.is_empty() && !may_be_empty {
        return Err(ApiError::invalid(format!("{what} must not be empty")));
    }
    if raw.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid(format!(
            "{what} is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    if raw.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "{what} {raw:?} contains control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids() {
        let id = "0C6E6D5A-1B2C-4D3E-8F90-A1B2C3D4E5F6";
        assert_eq!(
            uuid_id("volume", id).expect("uuid"),
            id.to_ascii_lowercase()
        );
        for bad in [
            "",
            "nope",
            "0c6e6d5a1b2c4d3e8f90a1b2c3d4e5f6",
            "{0c6e6d5a-1b2c-4d3e-8f90-a1b2c3d4e5f6}",
            "urn:uuid:0c6e6d5a-1b2c-4d3e-8f90-a1b2c3d4e5f6",
        ] {
            assert!(uuid_id("volume", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_labels() {
        assert!(name_id("node", "node-1").is_ok());
        assert!(name_id("node", "").is_err());
        assert!(name_id("node", "a/b").is_err());
        assert!(name_id("node", "a\u{7}b").is_err());
        assert!(name_id("node", &"x".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert_eq!(
            label_pair("openebs.io/engine=mayastor").expect("pair"),
            ("openebs.io/engine".to_string(), "mayastor".to_string())
        );
        assert_eq!(
            label_pair("k=a=b").expect("pair"),
            ("k".to_string(), "a=b".to_string())
        );
        assert_eq!(
            label_pair("k=").expect("pair"),
            ("k".to_string(), String::new())
        );
        assert!(label_pair("=v").is_err());
        assert!(label_pair("novalue").is_err());
        assert!(label_key("a=b").is_err());
    }

    #[test]
    fn replica_counts() {
        assert_eq!(replica_count("3").expect("count"), 3);
        for bad in ["0", "-1", "256", "x", ""] {
            assert!(replica_count(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bodies_conform_to_their_schema() {
        let schemas = &crate::spec::openapi_json()["components"]["schemas"];
        let body = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });

        let mut ok = json!({"size": 1, "replicas": 3.0, "topology": null, "labels": {"a": "b"}});
        conform(&mut ok, &body("CreateVolumeBody"), schemas, "").expect("valid body");
        assert_eq!(ok["replicas"], json!(3));
        assert!(ok["replicas"].is_u64());

        for (bad, needle) in [
            (json!([1, 2]), "the body must be of type object"),
            (
                json!({"size": 1, "replicas": 1, "topology": [null, null]}),
                "'topology'",
            ),
            (
                json!({"size": 1.5, "replicas": 1}),
                "'size' must be of type integer",
            ),
            (
                json!({"size": 1, "replicas": 1, "labels": {"a": 1}}),
                "'labels.a'",
            ),
            (
                json!({"size": 1, "replicas": 1, "topology": {"node_topology": {"inclusion": []}}}),
                "'topology",
            ),
        ] {
            let mut value = bad.clone();
            let error = conform(&mut value, &body("CreateVolumeBody"), schemas, "")
                .expect_err("wrong shape");
            assert!(error.contains(needle), "{bad}: {error}");
        }

        let mut disks = json!({"disks": ["a", 2]});
        let error = conform(&mut disks, &body("CreatePoolBody"), schemas, "").expect_err("item");
        assert!(error.contains("'disks[1]'"), "{error}");
    }

    #[test]
    fn content_types() {
        assert!(is_json_content_type("application/json"));
        assert!(is_json_content_type("Application/JSON; charset=utf-8"));
        assert!(is_json_content_type("application/merge-patch+json"));
        assert!(!is_json_content_type("text/plain"));
        assert!(!is_json_content_type(""));
    }
}
