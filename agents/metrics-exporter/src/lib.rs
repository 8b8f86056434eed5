//! The metrics exporter (`metrics-exporter`): runs beside one io-engine (a
//! sidecar of its pod, or one process per node of the local cluster), asks
//! that engine over gRPC for its pools and I/O statistics on every scrape,
//! and answers `GET /metrics` with Prometheus text.
//!
//! ```text
//!  Prometheus ──GET /metrics──> server ──collect──> engine (gRPC, local io-engine)
//!                                  │                  ListPools, ListReplicas, stats
//!                                  └── render (prometheus crate, text format 0.0.4)
//! ```
//!
//! Modules:
//! - [`metrics`]: the metric families (names and labels as upstream's
//!   exporter has them, one home) and the rendering of one [`Snapshot`];
//! - [`engine`]: the gRPC client of the local engine that takes a
//!   [`Snapshot`];
//! - [`server`]: the HTTP server (axum) and its `/metrics` handler.
//!
//! Invariants: nothing is cached between scrapes, so a figure on the page
//! is always the engine's answer to this scrape; when the engine does not
//! answer (in time), the page holds only `io_engine_up 0` and no pool,
//! volume or replica series (Prometheus marks the old ones stale), and the
//! exporter logs the failure once per transition. Dependency rule: an agent
//! that talks to the engine through `engine/api` only.
//!
//! Threading: one tokio runtime; each scrape runs its engine calls on its
//! own task; the gRPC channel is shared (tonic multiplexes it).

#![forbid(unsafe_code)]

pub mod engine;
pub mod metrics;
pub mod server;

pub use engine::{EngineClient, EngineError};
pub use metrics::{IoCounters, PoolFigures, PoolStatus, ReplicaIo, Snapshot};
pub use server::{serve, ExporterConfig};
