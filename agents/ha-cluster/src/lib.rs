//! `agent-ha-cluster`: the cluster half of high availability.
//!
//! ```text
//!  agent-ha-node ──ReportFailedPaths──▶ server ──start──▶ one task per volume
//!                                                          │ (switch::run)
//!      store: .../SwitchOverSpec/<volume>  ◀── every stage ┤
//!      core REST: PUT /volumes/{id}/target/republish  ◀────┤ RepublishVolume
//!      agent-ha-node: ReplacePath  ◀───────────────────────┤ ReplacePath
//!      core REST: GET /specs (old nexus gone or queued) ◀──┘ DeleteTarget
//! ```
//!
//! Modules: [`config`] (flags), [`record`] (the persisted switch-over and
//! its stages), [`switch`] (the stage machine of one switch-over),
//! [`server`] (the gRPC service and the one-per-volume rule), [`nodes`]
//! (the registered node agents), [`drain`] (switch-overs of drained
//! targets, make before break), [`agent`] (store, leader lease, resume,
//! serve).
//!
//! Drains: while this agent holds its lease, the core's drain reconciler
//! leaves the targets of a draining node to it. Each becomes a switch-over
//! of kind `drain`: the core republishes make-before-break (the old target
//! set ANA inaccessible, so the host's I/O waits instead of failing, and
//! kept published), the frontend node's agent connects the new path and
//! deletes the old one, then the old target is destroyed.
//!
//! Invariants: at most one switch-over per volume runs at a time (a
//! volume's task is the only writer of its record); each stage is written
//! to the store before the next stage's side effect, and every stage is
//! idempotent, so an agent killed anywhere resumes from the stored stage
//! and finishes. Only the holder of the store's `ha-cluster-agent` lease
//! runs switch-overs.

#![forbid(unsafe_code)]

pub mod agent;
pub mod config;
pub mod drain;
pub mod nodes;
pub mod record;
pub mod server;
pub mod switch;

/// Errors of the cluster agent.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    #[error("store: {0}")]
    Store(#[source] store::StoreError),
    #[error("switch-over record {key}: {source}")]
    Decode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}
