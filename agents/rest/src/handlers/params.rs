//! The path and query parameters of the endpoints, each documented for the
//! OpenAPI document (`IntoParams`); their values are checked by the
//! handlers (see [`crate::extract`]).

use serde::Deserialize;
use utoipa::IntoParams;

/// `GET /v0/volumes` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VolumesQuery {
    /// Most volumes in one page; 0 (the default) means all.
    #[serde(default)]
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    pub max_entries: u64,
    /// Where the page starts: the `next_token` of the previous page.
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    pub starting_token: Option<u64>,
}

/// `DELETE /v0/volumes/{id}/target` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UnpublishQuery {
    /// Tear the target down even when its node is unreachable.
    #[serde(default)]
    pub force: bool,
}

/// A volume in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct VolumePath {
    /// The volume's uuid.
    #[param(format = Uuid)]
    pub id: String,
}

/// A volume and its new replica count.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ReplicaCountPath {
    /// The volume's uuid.
    #[param(format = Uuid)]
    pub id: String,
    /// The new number of replicas (at most the number of usable nodes).
    #[param(value_type = u8, minimum = 1, maximum = 255)]
    pub n: String,
}

/// A replica in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ReplicaPath {
    /// The replica's uuid.
    #[param(format = Uuid)]
    pub id: String,
}

/// A nexus in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NexusPath {
    /// The nexus's uuid.
    #[param(format = Uuid)]
    pub id: String,
}

/// A pool in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PoolPath {
    /// The pool's name.
    #[param(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^/\u0000-\u001F\u007F-\u009F]+$"
    )]
    pub id: String,
}

/// A node in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NodePath {
    /// The node's name.
    #[param(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^/\u0000-\u001F\u007F-\u009F]+$"
    )]
    pub id: String,
}

/// The node of `/v0/nodes/{node}/pools`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NodePoolsPath {
    /// The node's name.
    #[param(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^/\u0000-\u001F\u007F-\u009F]+$"
    )]
    pub node: String,
}

/// A pool on a node.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NodePoolPath {
    /// The node's name.
    #[param(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^/\u0000-\u001F\u007F-\u009F]+$"
    )]
    pub node: String,
    /// The pool's name.
    #[param(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^/\u0000-\u001F\u007F-\u009F]+$"
    )]
    pub pool: String,
}

/// A node and a cordon or drain label.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NodeCordonPath {
    /// The node's name.
    #[param(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^/\u0000-\u001F\u007F-\u009F]+$"
    )]
    pub id: String,
    /// The cordon or drain label (who asked, e.g. `upgrade`).
    #[param(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^/\u0000-\u001F\u007F-\u009F]+$"
    )]
    pub label: String,
}

/// A node or pool and its label segment, as routed: `label` is
/// `{key}={value}` (PUT) or `{key}` (DELETE).
#[derive(Debug, Deserialize)]
pub struct LabelPath {
    pub id: String,
    pub label: String,
}
