//! The one error type of the store layer, with stable kinds.

use std::path::PathBuf;

use crate::LeaseId;

/// Stable, matchable error kinds (for the API and for scripts).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The store cannot be reached, timed out or has stopped; retrying may
    /// help.
    Unavailable,
    /// A revision older than the retained history was asked for.
    Compacted,
    /// A revision newer than the store's current one was asked for.
    FutureRevision,
    /// The lease does not exist (never granted, revoked or expired).
    LeaseNotFound,
    /// The request itself is wrong (empty key, duplicate key in a
    /// transaction, bad TTL, ...); retrying will not help.
    InvalidArgument,
    /// Persistent data failed its checks.
    Corrupt,
    /// A file operation of the embedded store failed.
    Io,
    /// The other side broke the protocol or a feature is not supported.
    Internal,
}

impl ErrorKind {
    /// The kind as a short lowercase word.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Compacted => "compacted",
            ErrorKind::FutureRevision => "future_revision",
            ErrorKind::LeaseNotFound => "lease_not_found",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Io => "io",
            ErrorKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error of any store implementation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("store unavailable: {reason}")]
    Unavailable {
        reason: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// `compact_revision` is the oldest revision still available, or 0 when
    /// the store did not say.
    #[error("revision {requested} has been compacted (oldest available: {compact_revision})")]
    Compacted {
        requested: i64,
        compact_revision: i64,
    },
    #[error("revision {requested} is newer than the store's revision {current}")]
    FutureRevision { requested: i64, current: i64 },
    #[error("lease {id} not found (never granted, revoked or expired)")]
    LeaseNotFound { id: LeaseId },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("corrupt store data in {}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("store protocol error: {0}")]
    Protocol(String),
}

impl StoreError {
    /// Refuses a watch's start revision that is not positive (absent
    /// means "from now on").
    pub fn check_start_revision(start_revision: Option<i64>) -> Result<(), StoreError> {
        match start_revision.filter(|r| *r <= 0) {
            Some(start) => Err(StoreError::InvalidArgument(format!(
                "start revision {start} is not positive"
            ))),
            None => Ok(()),
        }
    }

    /// The stable kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Unavailable { .. } => ErrorKind::Unavailable,
            StoreError::Compacted { .. } => ErrorKind::Compacted,
            StoreError::FutureRevision { .. } => ErrorKind::FutureRevision,
            StoreError::LeaseNotFound { .. } => ErrorKind::LeaseNotFound,
            StoreError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            StoreError::Corrupt { .. } => ErrorKind::Corrupt,
            StoreError::Io { .. } => ErrorKind::Io,
            StoreError::Protocol(_) => ErrorKind::Internal,
        }
    }

    /// An [`StoreError::Unavailable`] without a source.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        StoreError::Unavailable {
            reason: reason.into(),
            source: None,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }
}
