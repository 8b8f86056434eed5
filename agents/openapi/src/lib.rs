//! The REST API contract of the control plane (`/v0`, DESIGN.md section 4).
//!
//! - [`models`]: every resource and request body, with their OpenAPI
//!   schemas (the server's spec is generated from these types);
//! - [`RestError`]: the JSON error body with its stable [`ErrorKind`] and
//!   HTTP status;
//! - [`CoreApi`]: the operations behind the endpoints. The core agent
//!   implements it natively, the REST server routes requests to any
//!   implementation, and the HTTP client implements it against a server,
//!   so every consumer speaks one interface.

#![forbid(unsafe_code)]

pub mod client;
pub mod models;

pub use client::{RestClient, RestClientOptions};
/// The project's names (NQN builders, default ports; DESIGN.md section 2),
/// whose one home is `engine/api`: here for the tools, which link only
/// this crate.
pub use io_engine_api::names;

use models::*;

/// Stable kind of a REST error (the `kind` field of the JSON body).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub enum ErrorKind {
    Timeout,
    Deserialize,
    Internal,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    NotShared,
    NotPublished,
    AlreadyPublished,
    AlreadyShared,
    Aborted,
    OutOfRange,
    Unimplemented,
    Unavailable,
    Unauthenticated,
    Unauthorized,
    Conflict,
    FailedPersist,
    Deleting,
    InUse,
    CapacityLimitExceeded,
    NotAcceptable,
}

impl ErrorKind {
    /// The HTTP status a server answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::Deserialize | ErrorKind::InvalidArgument | ErrorKind::OutOfRange => 400,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::PermissionDenied | ErrorKind::Unauthorized => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::NotAcceptable => 406,
            ErrorKind::AlreadyExists
            | ErrorKind::Conflict
            | ErrorKind::AlreadyPublished
            | ErrorKind::AlreadyShared
            | ErrorKind::InUse
            | ErrorKind::Deleting
            | ErrorKind::Aborted => 409,
            ErrorKind::FailedPrecondition | ErrorKind::NotShared | ErrorKind::NotPublished => 412,
            ErrorKind::CapacityLimitExceeded | ErrorKind::ResourceExhausted => 507,
            ErrorKind::Unimplemented => 501,
            ErrorKind::Unavailable => 503,
            ErrorKind::Timeout | ErrorKind::DeadlineExceeded => 504,
            ErrorKind::Internal | ErrorKind::FailedPersist => 500,
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// The JSON error body of every failed request.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
    thiserror::Error,
)]
#[error("{kind}: {message}")]
pub struct RestError {
    /// Stable kind, for programs.
    pub kind: ErrorKind,
    /// One line for people.
    pub message: String,
    /// More context (may be empty).
    #[serde(default)]
    pub details: String,
}

impl RestError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::NotFound, format!("{what} not found"))
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }
}

pub type Result<T, E = RestError> = std::result::Result<T, E>;

/// Most pages [`CoreApi::all_volumes`] reads.
pub const MAX_VOLUME_PAGES: usize = 100_000;

/// The operations behind the REST endpoints (one method per endpoint).
#[async_trait::async_trait]
pub trait CoreApi: Send + Sync {
    // --- volumes
    /// `GET /volumes?max_entries=N&starting_token=T` (paged; max_entries 0
    /// means all).
    async fn get_volumes(&self, max_entries: u64, starting_token: Option<u64>) -> Result<Volumes>;
    /// Every volume, through [`get_volumes`](Self::get_volumes) `page` at
    /// a time (0: as many as the server gives in one page). A server whose
    /// page token does not move on, or that hands out more than
    /// [`MAX_VOLUME_PAGES`] pages, gets an error rather than an endless
    /// listing.
    async fn all_volumes(&self, page: u64) -> Result<Vec<Volume>> {
        let mut volumes = Vec::new();
        let mut token = None;
        for _ in 0..MAX_VOLUME_PAGES {
            let p = self.get_volumes(page, token).await?;
            volumes.extend(p.entries);
            match p.next_token {
                None => return Ok(volumes),
                Some(next) if Some(next) == token => {
                    return Err(RestError::new(
                        ErrorKind::Internal,
                        "the volume list repeats its page token",
                    ))
                }
                Some(next) => token = Some(next),
            }
        }
        Err(RestError::new(
            ErrorKind::Internal,
            format!("the volume list has more than {MAX_VOLUME_PAGES} pages"),
        ))
    }
    /// `GET /volumes/{id}`
    async fn get_volume(&self, id: &str) -> Result<Volume>;
    /// `PUT /volumes/{id}`
    async fn put_volume(&self, id: &str, body: CreateVolumeBody) -> Result<Volume>;
    /// `DELETE /volumes/{id}`
    async fn del_volume(&self, id: &str) -> Result<()>;
    /// `PUT /volumes/{id}/replica_count/{n}`
    async fn put_volume_replica_count(&self, id: &str, count: u8) -> Result<Volume>;
    /// `PUT /volumes/{id}/size`
    async fn put_volume_size(&self, id: &str, body: ResizeVolumeBody) -> Result<Volume>;
    /// `PUT /volumes/{id}/target`
    async fn put_volume_target(&self, id: &str, body: PublishVolumeBody) -> Result<Volume>;
    /// `PUT /volumes/{id}/target/republish`: the target moves off its
    /// node (switch-over). Implementations that cannot move targets answer
    /// Unimplemented.
    async fn put_volume_republish(&self, id: &str, body: RepublishVolumeBody) -> Result<Volume> {
        let _ = body;
        Err(RestError::new(
            ErrorKind::Unimplemented,
            format!("cannot republish volume {id} here"),
        ))
    }
    /// `DELETE /volumes/{id}/target/retired`: destroys the old targets a
    /// make-before-break republish kept (see [`RepublishVolumeBody`]).
    /// Implementations that cannot move targets answer Unimplemented.
    async fn del_volume_retired_targets(&self, id: &str) -> Result<Volume> {
        Err(RestError::new(
            ErrorKind::Unimplemented,
            format!("cannot retire targets of volume {id} here"),
        ))
    }
    /// `DELETE /volumes/{id}/target?force=bool`
    async fn del_volume_target(&self, id: &str, force: bool) -> Result<Volume>;
    /// `GET /volumes/{id}/rebuild-history`
    async fn get_rebuild_history(&self, id: &str) -> Result<RebuildHistory>;
    /// `GET /volumes/{id}/stats`: NotPublished when the volume has no
    /// target.
    async fn get_volume_stats(&self, id: &str) -> Result<VolumeIoStats>;

    // --- pools
    /// `GET /pools`
    async fn get_pools(&self) -> Result<Vec<Pool>>;
    /// `GET /pools/{id}`
    async fn get_pool(&self, id: &str) -> Result<Pool>;
    /// `DELETE /pools/{id}`
    async fn del_pool(&self, id: &str) -> Result<()>;
    /// `GET /nodes/{node}/pools`
    async fn get_node_pools(&self, node: &str) -> Result<Vec<Pool>>;
    /// `PUT /nodes/{node}/pools/{pool}`
    async fn put_node_pool(&self, node: &str, pool: &str, body: CreatePoolBody) -> Result<Pool>;
    /// `DELETE /nodes/{node}/pools/{pool}`
    async fn del_node_pool(&self, node: &str, pool: &str) -> Result<()>;
    /// `GET /pools/{id}/stats`, and `GET /nodes/{node}/pools/{id}/stats`
    /// with `node` set (NotFound when the pool is not on that node).
    async fn get_pool_stats(&self, node: Option<&str>, id: &str) -> Result<PoolIoStats>;
    /// `PUT /pools/{id}/label/{key}={value}` and `DELETE /pools/{id}/label/{key}`
    async fn label_pool(&self, id: &str, key: &str, value: Option<&str>) -> Result<Pool>;

    // --- replicas and nexuses
    /// `GET /replicas`
    async fn get_replicas(&self) -> Result<Vec<Replica>>;
    /// `GET /replicas/{id}`
    async fn get_replica(&self, id: &str) -> Result<Replica>;
    /// `GET /nexuses`
    async fn get_nexuses(&self) -> Result<Vec<Nexus>>;
    /// `GET /nexuses/{id}`
    async fn get_nexus(&self, id: &str) -> Result<Nexus>;

    // --- nodes
    /// `GET /nodes`
    async fn get_nodes(&self) -> Result<Vec<Node>>;
    /// `GET /nodes/{id}`
    async fn get_node(&self, id: &str) -> Result<Node>;
    /// `PUT /nodes/{id}/cordon/{label}`
    async fn put_node_cordon(&self, id: &str, label: &str) -> Result<Node>;
    /// `DELETE /nodes/{id}/cordon/{label}`
    async fn del_node_cordon(&self, id: &str, label: &str) -> Result<Node>;
    /// `PUT /nodes/{id}/drain/{label}`
    async fn put_node_drain(&self, id: &str, label: &str) -> Result<Node>;
    /// `PUT /nodes/{id}/label/{key}={value}` and `DELETE /nodes/{id}/label/{key}`
    async fn label_node(&self, id: &str, key: &str, value: Option<&str>) -> Result<Node>;

    // --- specs
    /// `GET /specs`
    async fn get_specs(&self) -> Result<Specs>;

    // --- versions and upgrade
    /// `GET /versions` (the server answering fills in `rest`).
    async fn get_versions(&self) -> Result<Versions>;
    /// `GET /upgrade-status`: NotFound when no upgrade was recorded.
    async fn get_upgrade_status(&self) -> Result<UpgradeStatus>;
    /// `PUT /upgrade-status`
    async fn put_upgrade_status(&self, body: UpgradeStatus) -> Result<UpgradeStatus>;
    /// `DELETE /upgrade-status`: NotFound when there is none.
    async fn del_upgrade_status(&self) -> Result<()>;
}
