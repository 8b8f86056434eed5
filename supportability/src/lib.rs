//! Support bundles: `kubectl mayastor dump system|volumes|volume <id>|pools|pool <id>|nodes|node <id>|etcd`
//! gathers the cluster's topology (REST API), component logs (a local
//! cluster's files, Kubernetes pod logs, Loki history), Kubernetes
//! resources and the store into one archive.
//!
//! ```text
//!  REST API (openapi) ──► topology/<kind>/<id>-topology.json
//!  store (etcd v3 gRPC) ─► etcd_dump
//!  local state dir ─────► logs/<group>/[<node>-]<name>.log
//!  Kubernetes API ──────► logs/... (pods), k8s_resources/...
//!  Loki query_range ────► logs/<group>/<node>-loki-<container>.log
//!                           │ every byte through redact::Redactor
//!                           ▼
//!             archive::Archive (O_TMPFILE, linked when complete)
//!             + manifest.json, README.txt, support_tool_logs.log
//! ```
//!
//! Modules: [`bundle`] runs the collectors; [`archive`] writes zip or
//! tar.gz; [`redact`] removes secrets; [`topology`] reads and selects REST
//! objects; [`store`] dumps the store; [`local`] and [`logcut`] collect
//! and cut log files; [`loki`] pages Loki; [`kube`] reads Kubernetes;
//! [`manifest`] describes the bundle; [`progress`] reports. Times, sizes
//! and durations are `mayastor-common`'s.
//!
//! Invariants: bad input (an unusable output directory, an unknown id, an
//! unreachable REST API or store) fails before anything is written; after
//! that a failing collector never aborts the dump, it is recorded in the
//! manifest and the dump is "partially collected". Logs are streamed into
//! the archive, never held whole. Threading: async on the caller's tokio
//! runtime; collectors run one after another.
//!
//! Depends on the REST client crate `openapi` for the cluster, on
//! `io-engine-api` only for the etcd v3 client, and on `kube` for
//! Kubernetes; never on server internals.

#![forbid(unsafe_code)]

pub mod archive;
pub mod bundle;
pub mod kubernetes;
pub mod local;
pub mod logcut;
pub mod loki;
pub mod manifest;
pub mod progress;
pub mod redact;
pub mod store;
pub mod topology;

use std::path::PathBuf;
use std::time::Duration;

pub use archive::Format;
pub use bundle::{dump, dump_store_to, Summary};
pub use topology::Resource;

/// The component group of a container or local component: the folder
/// under `logs/` in the bundle.
pub fn log_group(component: &str) -> &'static str {
    match component {
        c if c.starts_with("io-engine") || c == "metrics-exporter" => "mayastor",
        c if c.starts_with("agent-") || c.starts_with("operator-") => "core-agents",
        "api-rest" => "rest",
        c if c.starts_with("csi-") => "csi",
        "store" | "etcd" => "etcd",
        _ => "other",
    }
}

/// Nanoseconds since the Unix epoch, now (millisecond precision).
pub fn now_ns() -> i64 {
    mayastor_common::time::now_unix_ms().saturating_mul(1_000_000)
}

/// RFC 3339 UTC with milliseconds of a time in nanoseconds.
pub fn rfc3339(ns: i64) -> String {
    mayastor_common::time::format_millis(ns.div_euclid(1_000_000))
}

/// Default per-source log limit (`--max-log-bytes`).
pub const DEFAULT_MAX_LOG_BYTES: u64 = 100 << 20;

/// Why a dump could not be made at all (nothing was written).
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("cannot write the bundle to {}: {reason}", dir.display())]
    OutputDirectory { dir: PathBuf, reason: String },
    #[error("cannot read {what} from the REST API: {}", error.message)]
    Rest {
        what: String,
        #[source]
        error: openapi::RestError,
    },
    #[error("no REST endpoint: {0}")]
    NoRest(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("the store at {endpoint} is unreachable: {reason}")]
    Store { endpoint: String, reason: String },
    #[error("no store endpoint: {0}")]
    NoStore(String),
    #[error("{0}")]
    Kube(String),
    #[error("cannot write {what}: {source}")]
    Archive {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
}

/// The Kubernetes cluster to read (when there is one).
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// Kubeconfig path (else KUBECONFIG, else ~/.kube/config).
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of the release.
    pub namespace: String,
}

/// Everything a dump needs.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    pub resource: Resource,
    /// Where the bundle goes (must exist and be writable).
    pub output_dir: PathBuf,
    pub format: Format,
    /// Logs from this long ago on.
    pub since: Duration,
    /// Newest bytes kept per log source.
    pub max_log_bytes: u64,
    /// Timeout of each request.
    pub timeout: Duration,
    /// The REST API (`None` only for `dump etcd`).
    pub rest_url: Option<String>,
    /// Sent to the REST API and Loki as `Authorization: Bearer`; redacted.
    pub bearer_token: Option<String>,
    /// The store (`host:port`); else the local cluster's.
    pub store_endpoint: Option<String>,
    /// A local cluster's state directory: its logs and store.
    pub local_state_dir: Option<PathBuf>,
    /// A Kubernetes cluster: resources and pod logs.
    pub kube: Option<KubeOptions>,
    /// Loki's base URL; else found through Kubernetes when there is one.
    pub loki_endpoint: Option<String>,
    /// `system --disable-log-collection`.
    pub collect_logs: bool,
}

impl DumpOptions {
    /// Defaults as the command line's: `.`, zip, 24 h, 100 MiB, 10 s.
    pub fn new(resource: Resource) -> Self {
        Self {
            resource,
            output_dir: PathBuf::from("."),
            format: Format::Zip,
            since: Duration::from_secs(24 * 3600),
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
            timeout: Duration::from_secs(10),
            rest_url: None,
            bearer_token: None,
            store_endpoint: None,
            local_state_dir: None,
            kube: None,
            loki_endpoint: None,
            collect_logs: true,
        }
    }
}
