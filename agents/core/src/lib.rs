//! The core agent of the control plane (DESIGN.md section 4).
//!
//! - [`registry`]: nodes (engine registration and heartbeat) and what their
//!   engines report;
//! - [`specs`]: desired state in the store, with the operation in flight;
//! - [`scheduler`]: placement of replicas and targets (pure);
//! - [`core`]: the operations behind the REST API ([`openapi::CoreApi`]),
//!   one file per resource, and their views;
//! - [`reconcile`]: the loops that make the observed state follow the
//!   specs (pools, nexus recreation, self-heal, replica count, garbage
//!   collection, drain);
//! - [`grpc`]: the registration service engines call;
//! - [`upgrade`]: component versions and the upgrade record;
//! - [`locks`]: per-volume, per-pool and per-node serialisation;
//! - [`agent`]: the agent's life (lease, serving, loops), which the
//!   `agent-core` binary runs.
//!
//! Only the holder of the store's lease lock runs any of it (see the
//! binary), so two core agents never reconcile at once.

#![forbid(unsafe_code)]

pub mod agent;
pub mod api;
pub mod config;
pub mod core;
pub mod grpc;
pub mod locks;
pub mod reconcile;
pub mod registry;
pub mod scheduler;
pub mod specs;
pub mod upgrade;

pub use agent::run;

use openapi::{ErrorKind, RestError};

/// Errors of the core agent.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("{0}")]
    Rest(#[from] RestError),
    #[error("store: {0}")]
    Store(String),
    #[error("engine on node {node}: {message}")]
    Engine {
        node: String,
        code: tonic::Code,
        message: String,
    },
    #[error("{0}")]
    Internal(String),
}

impl CoreError {
    pub fn engine(node: &str, status: tonic::Status) -> Self {
        CoreError::Engine {
            node: node.to_owned(),
            code: status.code(),
            message: status.message().to_owned(),
        }
    }

    /// Whether the engine said the thing does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            CoreError::Engine {
                code: tonic::Code::NotFound,
                ..
            }
        ) || matches!(self, CoreError::Rest(r) if r.kind == ErrorKind::NotFound)
    }
}

impl From<CoreError> for RestError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Rest(r) => r,
            CoreError::Store(m) => RestError::new(ErrorKind::FailedPersist, m),
            CoreError::Engine {
                node,
                code,
                message,
            } => {
                let kind = match code {
                    tonic::Code::InvalidArgument => ErrorKind::InvalidArgument,
                    tonic::Code::NotFound => ErrorKind::NotFound,
                    tonic::Code::AlreadyExists => ErrorKind::AlreadyExists,
                    tonic::Code::FailedPrecondition => ErrorKind::FailedPrecondition,
                    tonic::Code::ResourceExhausted => ErrorKind::ResourceExhausted,
                    tonic::Code::Unavailable => ErrorKind::Unavailable,
                    tonic::Code::DeadlineExceeded => ErrorKind::DeadlineExceeded,
                    _ => ErrorKind::Internal,
                };
                RestError::new(kind, format!("engine on node {node}: {message}"))
            }
            CoreError::Internal(m) => RestError::new(ErrorKind::Internal, m),
        }
    }
}
