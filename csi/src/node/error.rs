//! Errors of the node plugin and their one mapping to gRPC status codes
//! (the codes the CSI spec names for each case).

use tonic::{Code, Status};

/// What went wrong in a node call; the message is one lowercase line that
/// names the volume, path or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A missing or malformed field of the request.
    #[error("{0}")]
    InvalidArgument(String),
    /// The volume is not where the request says it is.
    #[error("{0}")]
    NotFound(String),
    /// Staged or published elsewhere, or with other options.
    #[error("{0}")]
    AlreadyExists(String),
    /// The host cannot do it now (no `nvme_tcp`, volume not staged, ...).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Another call on the same volume is in progress.
    #[error("{0}")]
    Aborted(String),
    /// A bounded wait ran out (the namespace never appeared, ...).
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A tool or system call failed.
    #[error("{0}")]
    Internal(String),
}

impl From<crate::volume_guard::Busy> for NodeError {
    fn from(b: crate::volume_guard::Busy) -> Self {
        NodeError::Aborted(b.0)
    }
}

impl NodeError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        NodeError::InvalidArgument(msg.into())
    }

    pub fn internal(msg: impl Into<String>) -> Self {
        NodeError::Internal(msg.into())
    }
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Status {
        let code = match &e {
            NodeError::InvalidArgument(_) => Code::InvalidArgument,
            NodeError::NotFound(_) => Code::NotFound,
            NodeError::AlreadyExists(_) => Code::AlreadyExists,
            NodeError::FailedPrecondition(_) => Code::FailedPrecondition,
            NodeError::Aborted(_) => Code::Aborted,
            NodeError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            NodeError::Internal(_) => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

/// Result of the node plugin's operations.
pub type NodeResult<T> = Result<T, NodeError>;
